"""`zelo audit`: query logs and samples, TREC runs, pooling, scores and failures (pure), rerank
endpoints over HTTP, and the whole audit with simulated and with OpenAI-compatible judges."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import write_beir
from zelo_ray.cli import main
from zelo_ray.config import OpenAIJudgeConfig, load_config
from zelo_ray.data.querylog import read_query_log, sample_queries, strata_of
from zelo_ray.data.trec import read_run, write_run
from zelo_ray.eval.audit import find_failures, pool_runs, recall_at, score_systems
from zelo_ray.eval.rerank_endpoint import rerank_with_endpoint, request_shape
from zelo_ray.faults import StageFailed
from zelo_ray.judges.fake_server import FakeJudgeServer, Faults

SECRET = "sk-zelo-audit-7d1e4b2a9c"


# --- query logs and samples -------------------------------------------------------------------

def test_query_log_reads_jsonl_tsv_parquet_and_reports_bad_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join([
        json.dumps({"query_id": "a", "text": "what is bm25", "day": "2026-11-02"}),
        "{not json",
        json.dumps({"query": "elo ratings", "day": "2026-11-03"}),
        json.dumps({"query_id": "b"}),                              # no text
        json.dumps(["a list"]),
        json.dumps({"query": "elo ratings", "day": "2026-11-04"}),  # the same text again: counted
        json.dumps({"query_id": "a", "text": "another text"}),      # id reused with other text
        json.dumps({"query_id": "has space", "text": "x"}),
    ]) + "\n")
    log = read_query_log(p)
    assert {q.query_id for q in log.queries} == {"a", log.queries[1].query_id}
    assert [q.count for q in log.queries] == [1, 2]
    assert log.queries[0].fields == {"day": "2026-11-02"}
    where = [w for w, _ in log.problems]
    assert where == ["log.jsonl:2", "log.jsonl:4", "log.jsonl:5", "log.jsonl:7", "log.jsonl:8"]
    assert "not JSON" in log.problems[0][1] and "no query text" in log.problems[1][1]
    tsv = tmp_path / "q.tsv"
    tsv.write_text("q1\tfirst query\nsecond query without id\n")
    assert [(q.query_id[:2], q.text) for q in read_query_log(tsv).queries] == [("q1", "first query"),
                                                                              ("q-", "second query without id")]
    pq.write_table(pa.table({"qid": ["x", "y"], "query": ["one", "two"], "market": ["de", "fr"]}), tmp_path / "l.parquet")
    got = read_query_log(tmp_path / "l.parquet").queries
    assert [(q.query_id, q.text, q.fields) for q in got] == [("x", "one", {"market": "de"}), ("y", "two", {"market": "fr"})]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_query_log(tmp_path / "nope.jsonl")


def _log(n, field):
    from zelo_ray.data.querylog import LoggedQuery

    return [LoggedQuery(f"q{i:03d}", f"text {i}", 1, {field: v}) for i, v in enumerate(n)]


def test_sampling_is_seeded_proportional_and_keeps_every_stratum():
    queries = _log(["big"] * 80 + ["mid"] * 15 + ["rare"] * 5, "market")
    a = sample_queries(queries, n=20, stratify_by="market", seed=3)
    assert [q.query_id for q in a] == [q.query_id for q in sample_queries(list(reversed(queries)), n=20,
                                                                           stratify_by="market", seed=3)]
    counts = {m: sum(q.fields["market"] == m for q in a) for m in ("big", "mid", "rare")}
    assert counts == {"big": 16, "mid": 3, "rare": 1}
    tiny = sample_queries(_log(["a"] * 97 + ["b", "c", "d"], "m"), n=4, stratify_by="m", seed=0)
    assert sorted(q.fields["m"] for q in tiny) == ["a", "b", "c", "d"]   # each stratum at least once
    assert len(sample_queries(queries, n=7, seed=1)) == 7
    assert len(sample_queries(queries, n=500, seed=1)) == 100
    with pytest.raises(ValueError, match="no logged query has that field"):
        sample_queries(queries, n=5, stratify_by="nope")


def test_time_fields_are_cut_into_equal_windows():
    days = [f"2026-11-{d:02d}T10:00:00Z" for d in (1, 2, 3, 4, 5, 6, 7, 8)]
    assert strata_of(_log(days, "t"), "t", 4) == ["window 1/4"] * 2 + ["window 2/4"] * 2 + ["window 3/4"] * 2 + ["window 4/4"] * 2
    assert strata_of(_log([1.0, 5.0, None], "t"), "t", 2) == ["window 1/2", "window 2/2", "(missing)"]
    assert strata_of(_log(["x", 3], "t"), "t", 2) == ["x", "3"]     # not all times: categorical


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=12))
def test_arbitrary_unicode_query_logs_are_read_or_reported(tmp_path, texts):
    p = tmp_path / "u.jsonl"
    p.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    log = read_query_log(p)
    good = {t for t in texts if t.strip() and _utf8(t)}
    assert {q.text for q in log.queries} == good
    assert sum(q.count for q in log.queries) + len(log.problems) == len(texts)
    for q in log.queries:
        assert q.query_id.startswith("q-") and len(q.query_id.split()) == 1


def _utf8(t):
    try:
        t.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# --- TREC runs --------------------------------------------------------------------------------

def test_trec_runs_sort_by_score_and_report_bad_lines(tmp_path):
    p = tmp_path / "sys.trec"
    p.write_text("q1 Q0 d1 1 0.5 sys\n"
                 "q1 Q0 d2 2 0.9 sys\n"          # a higher score wins over the rank column
                 "q1 Q0 d1 3 0.1 sys\n"          # repeated
                 "q1 Q0 d3 4 sys\n"              # five fields
                 "q2 Q0 d9 1 abc sys\n"          # not a number
                 "q2 Q0 d8 1e999 1 sys\n"        # a rank no integer holds
                 "q2 Q0 zz 1 1.0 sys\n"          # not in the corpus
                 "q3 Q0 d1 1 1.0 sys\n"          # not sampled
                 "# comment\n\n"
                 "q2 Q0 d4 2 0.2 sys\n")
    rf = read_run(p, queries={"q1", "q2"}, doc_ids={"d1", "d2", "d3", "d4"})
    assert rf.run == {"q1": ["d2", "d1"], "q2": ["d4"]}
    assert [w for w, _ in rf.problems] == ["sys.trec:3", "sys.trec:4", "sys.trec:5", "sys.trec:6", "sys.trec:7"]
    assert rf.skipped_queries == 1
    out = tmp_path / "back.trec"
    write_run(rf.run, out, tag="x")
    assert read_run(out).run == rf.run
    with pytest.raises(ValueError, match="whitespace"):
        write_run({"q 1": ["d"]}, tmp_path / "bad.trec")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1,
                            max_size=12).filter(lambda s: len(s.split()) == 1 and s.split()[0] == s and not s.startswith("#")),
                    min_size=1, max_size=10, unique=True))
def test_unicode_ids_survive_a_trec_round_trip(tmp_path, ids):
    run = {ids[0]: ids[1:] or [ids[0]]}
    write_run(run, tmp_path / "u.trec")
    assert read_run(tmp_path / "u.trec").run == run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(max_size=60), max_size=15))
def test_any_text_in_a_run_file_is_parsed_or_reported(tmp_path, lines):
    p = tmp_path / "fuzz.trec"
    p.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    rf = read_run(p)
    kept = sum(len(v) for v in rf.run.values())
    assert kept + len(rf.problems) <= len([x for x in p.read_bytes().split(b"\n")])
    for where, why in rf.problems:
        assert where.startswith("fuzz.trec:") and why


# --- pooling, scores, failures ----------------------------------------------------------------

def test_pool_scores_and_failures():
    qrels = {f"q{i}": {"r1": 2, "r2": 1, "n1": 0, "n2": 0} for i in range(30)}
    good = {q: ["r1", "r2", "n1", "n2"] for q in qrels}
    worse = {q: ["n1", "r2", "r1", "n2"] for q in qrels}
    pool = pool_runs({"good": good, "worse": worse}, list(qrels), depth=2)
    assert pool["q0"] == ["r2", "n1", "r1"]
    assert recall_at(qrels, worse, ["q0"], 2) == {"q0": 0.5}
    s = score_systems(qrels, {"good": good, "worse": worse}, list(qrels), k=2, n_boot=200)
    assert s["systems"]["good"]["ndcg@10"]["mean"] == 1.0
    assert s["systems"]["good"]["recall@2"]["mean"] == 1.0
    d = s["paired"]["good - worse"]["ndcg@10"]
    assert d["mean"] > 0 and d["ci_low"] > 0
    best = {q: ("r1", 1.0) for q in qrels}
    fails = find_failures(best, {"good": good, "worse": worse}, fail_rank=2)
    assert {f["system"] for f in fails} == {"worse"} and len(fails) == 30 and fails[0]["best_rank"] == 3
    assert find_failures({"q0": ("r1", 1.0)}, {"empty": {}}, fail_rank=10)[0]["best_rank"] is None


# --- rerank endpoints -------------------------------------------------------------------------

class _Reranker(BaseHTTPRequestHandler):
    """Scores documents by word overlap with the query; 'boom' queries always fail, and the
    first request of a 'flaky' query gets a 503."""

    seen: dict = {}
    auth: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.auth.append(self.headers.get("Authorization"))
        q = body["query"]
        if "boom" in q:
            return self._send(500, {"message": "model crashed"})
        if "flaky" in q and not self.seen.get(q):
            self.seen[q] = True
            return self._send(503, {"message": "busy"})
        docs = body.get("documents") or body.get("texts")
        words = set(q.split())
        scores = [len(words & set(d.split())) for d in docs]
        if self.path.endswith("/v2/rerank"):
            order = sorted(range(len(docs)), key=lambda i: -scores[i])
            return self._send(200, {"results": [{"index": i, "relevance_score": scores[i]} for i in order]})
        return self._send(200, [{"index": i, "score": s} for i, s in enumerate(scores)])

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def rerank_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reranker)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rerank_endpoints_cohere_and_tei_shapes(rerank_server):
    assert request_shape("http://h/v2/rerank") == "cohere" and request_shape("http://h/rerank") == "tei"
    with pytest.raises(ValueError, match="ends in /rerank"):
        request_shape("http://h/v1/chat/completions")
    texts = {"a": "cats and dogs", "b": "dogs only", "c": "nothing here"}
    queries = {"q1": "cats dogs", "q2": "boom dogs", "q3": "flaky cats"}
    base = {q: ["c", "b", "a"] for q in queries}
    for path in ("/v2/rerank", "/rerank"):
        run, problems = rerank_with_endpoint(rerank_server + path, queries, base, texts.__getitem__, depth=3,
                                             api_key="k-123", concurrency=2, timeout_s=5)
        assert run["q1"] == ["a", "b", "c"]
        assert run["q3"][0] == "a"                               # retried after the 503
        assert [q for q, _ in problems] == ["q2"] and "HTTP 500" in problems[0][1]
        _Reranker.seen.clear()
    assert set(_Reranker.auth) == {"Bearer k-123"}


# --- the whole audit --------------------------------------------------------------------------

N_Q, N_D = 40, 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A synthetic collection: each query has three graded relevant documents; 'good' ranks them
    first, 'broken' is 'good' except for four queries (10%) where it returns unrelated documents,
    and 'weak' ranks one relevant document low."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("audit")
    docs = [{"_id": f"d{i}", "title": "", "text": f"document {i} — ünïcødé ✓ {i % 7}"} for i in range(N_D)]
    queries = [{"_id": f"q{j}", "text": f"question {j} ❓"} for j in range(N_Q)]
    rel = {f"q{j}": [f"d{(3 * j + k) % N_D}" for k in range(3)] for j in range(N_Q)}
    qrels = [(q, d, 3 - k) for q, ds in rel.items() for k, d in enumerate(ds)]
    src = write_beir(root / "beir", docs, queries, qrels)
    broken = sorted(rng.choice(N_Q, size=N_Q // 10, replace=False).tolist())
    others = [f"d{i}" for i in range(150, N_D)]
    runs = {"good": {}, "broken": {}, "weak": {}}
    for j in range(N_Q):
        q = f"q{j}"
        filler = [d for d in rng.choice(others, size=12, replace=False).tolist() if d not in rel[q]][:9]
        runs["good"][q] = rel[q] + filler
        runs["weak"][q] = filler[:5] + rel[q][::-1] + filler[5:]
        runs["broken"][q] = rng.choice(others, size=12, replace=False).tolist() if j in broken else runs["good"][q]
    for name, run in runs.items():
        write_run(run, root / f"{name}.trec", tag=name)
    (root / "log.jsonl").write_text("".join(json.dumps({"query_id": q["_id"], "text": q["text"],
                                                        "week": 48 + int(q["_id"][1:]) % 2}) + "\n" for q in queries)
                                    + "garbage line\n")
    return root, src, [f"q{j}" for j in broken]


def _args(root, src, *extra):
    return ["audit", "--dataset", str(src), "--workdir", str(root / "run"), "--queries", str(root / "log.jsonl"),
            "--set", "annotate.executor=local", "--set", "graph.k=4", "--set", "annotate.calibration.k=2",
            *(x for name in ("good", "broken", "weak") for x in ("--run", f"{name}={root / (name + '.trec')}")),
            *extra]


def test_audit_ranks_systems_and_lists_the_broken_queries(corpus, capsys):
    root, src, broken = corpus
    assert main(_args(root, src, "--label", "week 48")) == 0
    out = root / "run" / "audit"
    audit = json.loads((out / "audit.json").read_text())
    nd = {s: m["ndcg@10"]["mean"] for s, m in audit["systems"].items()}
    assert nd["good"] > nd["broken"] > 0 and nd["good"] > nd["weak"], nd
    assert audit["paired"]["good - weak"]["ndcg@10"]["ci_low"] > 0
    assert audit["simulated"] == "SIMULATION" and audit["bad_records"] == 1   # the garbage log line
    fails = pq.read_table(out / "failures.parquet").to_pylist()
    by = {s: {f["query_id"] for f in fails if f["system"] == s} for s in ("good", "broken")}
    assert set(broken) <= by["broken"]                          # every broken query is listed
    assert by["broken"] - by["good"] == set(broken)             # and nothing else is new
    row = next(f for f in fails if f["system"] == "broken" and f["query_id"] == broken[0])
    assert row["best_rank"] is None and "ünïcødé" in row["best_text"] and row["system_top_text"]
    html = (out / "report.html").read_text()
    assert "<h2>Audit week 48</h2>" in html and "Failing queries" in html and broken[0] in html
    assert "<script" not in html and not re.search(r"(src|href)=\"?(https?:)?//|url\((?!#)", html)  # nothing fetched
    assert "http://" not in re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", html)
    err = capsys.readouterr().err
    assert "[5/5]" in err and f"report: {out / 'report.html'}" in err
    # Next week: another sample, the same directory. Answers already paid for are reused and
    # the history holds both audits.
    votes_before = sum(1 for _ in (out / "annotate" / "votes").rglob("*.parquet"))
    assert main(_args(root, src, "--label", "week 49", "--sample", "30", "--stratify-by", "week")) == 0
    second = json.loads((out / "audit.json").read_text())
    assert second["sampling"]["sampled"] == 30 and second["judging"]["reused"] > 0
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["label"] for h in history] == ["week 48", "week 49"]
    assert votes_before > 0 and "History" in (out / "report.html").read_text()


def test_audit_with_an_openai_compatible_judge_prices_first_and_survives_faults(corpus, monkeypatch, capsys):
    root, src, _ = corpus
    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    faults = Faults(http_500=0.05, malformed_json=0.05, http_429=0.05)
    with FakeJudgeServer(latency_s=0.002, faults=faults, api_key=SECRET, retry_after_s=0.02, seed=2) as server:
        judge = OpenAIJudgeConfig(name="llm", model="fake", base_url=server.base_url, api_key_env="ZELO_TEST_KEY",
                                  max_retries=1, backoff_s=0.01, backoff_max_s=0.02, timeout_s=2.0,
                                  price_per_million_input=3.0, price_per_million_output=15.0, max_tokens=200)
        cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={root}/llm", "annotate.executor=local",
                                 "graph.k=4", "annotate.calibration.k=2", "audit.sample=12"])
        cfg.annotate.judges = [judge]
        from zelo_ray.workflows.audit import run_audit

        runs = {n: str(root / f"{n}.trec") for n in ("good", "weak")}
        est = run_audit(cfg, queries=str(root / "log.jsonl"), runs=runs, dry_run=True)
        assert est["dry_run"] and est["estimate"]["calls"] > 0 and est["estimate"]["usd"] > 0
        assert server.total == 0                                 # pricing asks nothing
        cfg.audit.max_usd = est["estimate"]["usd"] / 2
        with pytest.raises(StageFailed, match="exceeds audit.max_usd"):
            run_audit(cfg, queries=str(root / "log.jsonl"), runs=runs)
        assert server.total == 0
        cfg.audit.max_usd = est["estimate"]["usd"] * 1.01
        result = run_audit(cfg, queries=str(root / "log.jsonl"), runs=runs)
    assert result["judging"]["judge_calls"] == est["estimate"]["calls"]
    assert 0 < result["judging"]["total_cost"] <= est["estimate"]["usd"]
    assert result["judging"]["missing_votes"] >= 0 and server.total >= est["estimate"]["calls"]
    assert set(result["systems"]) == {"good", "weak"} and result["judged_queries"] > 0
    logs = capsys.readouterr()
    assert SECRET not in logs.out + logs.err
    for f in (root / "llm").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_audit_with_a_rerank_endpoint_and_bad_arguments(corpus, rerank_server, capsys):
    root, src, _ = corpus
    args = _args(root, src, "--endpoint", f"overlap={rerank_server}/v2/rerank", "--set", "audit.rerank_over=weak",
                 "--set", "audit.rerank_depth=12", "--sample", "10", "--out", str(root / "ep"))
    assert main(args) == 0
    audit = json.loads((root / "ep" / "audit.json").read_text())
    assert "overlap" in audit["systems"] and audit["systems_info"]["overlap"]["reranks"] == "weak"
    assert main(["audit", "--dataset", str(src), "--workdir", str(root / "run"), "--run", "nameonly"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    bad = root / "empty.trec"
    bad.write_text("x Q0 d1 1 1.0 t\n")
    assert main(["audit", "--dataset", str(src), "--workdir", str(root / "run"), "--queries",
                 str(root / "log.jsonl"), "--run", f"b={bad}"]) == 2
    assert "none of the 40 sampled queries is in this run" in capsys.readouterr().err



@pytest.mark.slow  # starts a real browser
def test_the_audit_report_renders_in_a_headless_browser(corpus, tmp_path):
    """The audit's report.html in headless Chromium: no console message, every figure drawn."""
    from tests.browser import open_in_browser

    root, src, _ = corpus
    out = root / "run" / "audit"
    if not (out / "report.html").exists():
        assert main(_args(root, src, "--label", "browser")) == 0
    figs = open_in_browser(out / "report.html", tmp_path)
    assert len(figs) >= 4          # the systems, Elo (2), and the history or position bias


def test_audit_runs_our_own_retrieval_on_the_sampled_log_queries(corpus, ray_tmp, monkeypatch):
    """--retrieval: BM25, dense and hybrid over the collection's indexes (built on first use) for
    the log's queries, audited next to the given runs."""
    root, src, _ = corpus
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    out = root / "ours"
    try:
        assert main(_args(root, src, "--retrieval", "--sample", "10", "--out", str(out), "--set", "ray.num_cpus=2")) == 0
    finally:
        import ray

        ray.shutdown()  # the modules after this one start their own Ray instances
    audit = json.loads((out / "audit.json").read_text())
    assert set(audit["systems"]) == {"good", "broken", "weak", "bm25", "dense", "hybrid"}
    for name in ("bm25", "dense", "hybrid"):
        info = audit["systems_info"][name]
        assert info["queries"] == 10 and "retrieval.parquet" in info["source"]
    assert (root / "run" / "index" / "bm25").exists() and (out / "index").is_symlink()
