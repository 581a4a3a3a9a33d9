"""The judging stage end to end: pairs, simulated and OpenAI-compatible judges against a local
fault-injecting server, durable votes, resume after kill -9, Elo and calibration."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import spearmanr

from tests.helpers import N_QUERIES, annotate_cfg, annotate_workdir, kill_annotate_and_rerun
from zelo_ray.annotate.pairs import build_pairs, select_nodes
from zelo_ray.annotate.run import run_annotate
from zelo_ray.cli import main
from zelo_ray.config import OpenAIJudgeConfig
from zelo_ray.judges.fake_server import FakeJudgeServer, Faults
from zelo_ray.judges.openai_judge import JudgeSetupError
from zelo_ray.judges.store import VoteStore
from zelo_ray.layout import layout

SECRET = "sk-zelo-test-5f0c2d9e8b7a"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny collection with graded qrels and a candidates table (no index needed)."""
    return annotate_workdir(tmp_path_factory.mktemp("annotate"))


_cfg = annotate_cfg


def _llm_judges(server, n=2, **kw):
    base = dict(base_url=server.base_url, api_key_env="ZELO_TEST_KEY", max_concurrency=8, timeout_s=0.5,
                max_retries=3, backoff_s=0.01, backoff_max_s=0.05, price_per_million_input=2.0,
                price_per_million_output=8.0)
    base.update(kw)
    return [OpenAIJudgeConfig(name=f"llm{i}", model=f"fake-{i}", **base) for i in range(n)]


def test_simulated_annotation_end_to_end(workdir, capsys):
    cfg = _cfg(workdir, "sim")
    report = run_annotate(cfg)
    out = Path(cfg.annotate.output)
    assert report["label"] == "SIMULATION" and report["missing_votes"] == 0
    assert report["pairs"] == N_QUERIES * 12 * 4 // 2 and report["cross_pairs"] == N_QUERIES
    z = pq.read_table(out / "zelo.parquet")
    assert z.column_names[:9] == ["query_id", "doc_id", "rank", "elo", "stderr", "n_comparisons",
                                 "converged", "calibrated", "target"]
    assert z.num_rows == N_QUERIES * 12
    assert set(z["n_comparisons"].to_pylist()) == {4}          # the cycle graph is 4-regular
    assert all(z["converged"].to_pylist()) and set(z["label"].to_pylist()) == {"SIMULATION"}
    t = z["target"].to_numpy()
    assert ((t > 0) & (t < 1)).all()
    # The judges see the qrels gains: Elo must order each query's documents by them.
    qrels = {(r["query_id"], r["doc_id"]): r["relevance"] for r in
             pq.read_table(layout(cfg).data / "qrels" / "test.parquet").to_pylist()}
    for q in {r for r in z["query_id"].to_pylist()}:
        rows = [r for r in z.to_pylist() if r["query_id"] == q]
        rho = spearmanr([r["elo"] for r in rows], [qrels.get((q, r["doc_id"]), 0) for r in rows]).statistic
        assert rho > 0.8, (q, rho)
    # A re-run asks nothing and reproduces the same scores.
    again = run_annotate(cfg)
    assert again["asked_this_run"] == 0 and again["reused"] == report["judge_calls"]
    assert pq.read_table(out / "zelo.parquet").equals(z)
    # The CLI runs the same stage.
    assert main(["annotate", "--dataset", str(workdir[1]), "--workdir", str(workdir[0] / "run"),
                 "--set", "annotate.executor=local", "--set", "annotate.top_n=12", "--set", "graph.k=4", "--set", "annotate.calibration.k=2",
                 "--output", str(out), "--report", str(out / "summary.json")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["asked_this_run"] == 0 and summary["label"] == "SIMULATION"
    out = capsys.readouterr().out
    total = N_QUERIES * 12 * 4 // 2 + N_QUERIES
    assert f"pairs {total}/{total} · calls 375/375" in out           # the first run's last line


def test_pairs_are_deterministic_per_query(workdir):
    cfg = _cfg(workdir, "unused")
    cand = str(layout(cfg).candidates)
    a = build_pairs(select_nodes(cand, 12), k=4, seed=5)
    b = build_pairs(select_nodes(cand, 12), k=4, seed=5)
    assert a.equals(b)
    sub = build_pairs(select_nodes(cand, 12, queries=["q1", "q3"]), k=4, seed=5)
    same = a.filter(pc.is_in(a["query_id"], value_set=pa.array(["q1", "q3"])))
    assert sub.equals(same)     # a query's graph does not depend on the other queries
    assert not build_pairs(select_nodes(cand, 12), k=4, seed=6).equals(a)


def test_fault_injection_records_missing_votes(workdir, monkeypatch, capsys):
    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    faults = Faults(http_429=0.05, http_429_bare=0.05, http_500=0.05, timeout=0.03, malformed_json=0.05,
                    out_of_range=0.05, empty=0.05)
    with FakeJudgeServer(latency_s=0.005, faults=faults, api_key=SECRET, timeout_sleep_s=1.0,
                         retry_after_s=0.05, seed=1) as server:
        cfg = _cfg(workdir, "faults", "annotate.swap_probe=0.1")
        cfg.annotate.judges = _llm_judges(server)
        report = run_annotate(cfg)
    out = Path(cfg.annotate.output)
    votes = VoteStore(out / "votes").read()
    assert votes.num_rows == len(set(votes["cache_key"].to_pylist()))
    scores = votes["score"].to_numpy(zero_copy_only=False)
    ok = ~np.isnan(scores)
    assert (np.abs(scores[ok]) <= 1).all()
    errors = votes["error"].to_pylist()
    assert all(e for e, good in zip(errors, ok) if not good)            # every missing vote says why
    assert all(e is None for e, good in zip(errors, ok) if good)
    # Each answered vote is exactly one good server reply: nothing lost, nothing counted twice.
    answered_by_server = {int(k) for k, c in server.answered.items() if c}
    assert set(votes.filter(pc.is_valid(votes["score"]))["cache_key"].to_pylist()) == answered_by_server
    assert max(server.answered.values()) == 1
    assert server.total > report["asked_this_run"]                      # retries happened
    cats = {c for j in report["judges"].values() for c in j["errors"]}
    assert {"unparseable: empty reply", "unparseable: outside [-1, 1]"} <= cats
    assert report["missing_votes"] == int((~ok).sum())
    spend = sum(j["spend"]["cost"] for j in report["judges"].values())
    tokens_in = sum(votes["input_tokens"].to_pylist())
    assert spend >= tokens_in * 2.0 / 1e6 > 0
    assert report["judges"]["llm0"]["position_bias"].get("probe_pairs", 0) > 0
    # The key never reaches a file or the log.
    logs = capsys.readouterr()
    assert SECRET not in logs.out + logs.err
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f

    # A re-run against a healthy server asks only the missing calls, and fills them.
    missing_keys = set(votes.filter(pc.is_null(votes["score"]))["cache_key"].to_pylist())
    with FakeJudgeServer(api_key=SECRET) as healthy:
        cfg.annotate.judges = _llm_judges(healthy)
        again = run_annotate(cfg)
    assert {int(k) for k in healthy.calls} == missing_keys
    assert again["missing_votes"] == 0 and again["asked_this_run"] == len(missing_keys)


def test_missing_key_and_wrong_key(workdir, monkeypatch):
    monkeypatch.delenv("ZELO_TEST_KEY", raising=False)
    with FakeJudgeServer(api_key=SECRET) as server:
        cfg = _cfg(workdir, "nokey")
        cfg.annotate.judges = _llm_judges(server, n=1)
        with pytest.raises(JudgeSetupError, match="ZELO_TEST_KEY is not set"):
            run_annotate(cfg)
        monkeypatch.setenv("ZELO_TEST_KEY", "sk-wrong-key-000")
        report = run_annotate(cfg)
    assert report["missing_votes"] == report["judge_calls"]
    assert set(report["judges"]["llm0"]["errors"]) == {"HTTP 401"}   # not retried, not a score
    assert server.total == report["judge_calls"]


def test_structured_output_fallback(workdir, monkeypatch):
    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    with FakeJudgeServer(api_key=SECRET, reject_json_schema=True, reply="text") as server:
        cfg = _cfg(workdir, "fallback", "annotate.max_queries=1")
        cfg.annotate.judges = _llm_judges(server, n=1)
        report = run_annotate(cfg)
    assert report["missing_votes"] == 0 and server.outcomes["400"] >= 1


def test_resume_after_kill9(workdir, tmp_path, ray_tmp):
    """Kill the whole run (driver and Ray) with SIGKILL mid-way; the re-run asks no question whose
    answer was stored, and ends with every call answered exactly once in the store."""
    root, src = workdir
    out = tmp_path / "killed"
    with FakeJudgeServer(latency_s=0.05, concurrency=4, api_key=SECRET) as server:
        conf = {"data": {"dataset": str(src), "workdir": str(root / "run")},
                "ray": {"num_cpus": 2}, "graph": {"k": 4},
                "annotate": {"top_n": 12, "executor": "ray", "callers": 1, "batch_size": 16,
                             "batches_in_flight": 2, "flush_rows": 8, "flush_s": 0.2, "output": str(out),
                             "calibration": {"k": 2},
                             "judges": [j.model_dump() for j in _llm_judges(server, n=2, max_concurrency=4)]}}
        path = tmp_path / "annotate.yaml"
        path.write_text(yaml.safe_dump(conf))
        env = dict(os.environ, ZELO_TEST_KEY=SECRET, RAY_TMPDIR=ray_tmp)
        total_calls = (N_QUERIES * 24 + N_QUERIES) * 2

        def mid_run(n):
            assert 0 < n < total_calls, "the kill must land mid-run"

        run = kill_annotate_and_rerun(path, env, out, server, kill_at=40, check_stored=mid_run)
    stored, second_run = run["stored"], run["second_calls"]
    first_run, first_answered = run["first_calls"], run["first_answered"]
    assert not second_run & stored                       # nothing stored was asked again
    final = VoteStore(out / "votes").read()
    assert final.num_rows == total_calls and final["score"].null_count == 0
    assert len(set(final["cache_key"].to_pylist())) == total_calls
    # Only answers lost in flight at the kill were paid for twice: each caller logs every answer
    # the moment it arrives, so at most the two judges' max_concurrency (4 + 4) calls are repaid.
    asked_twice = {int(k) for k in first_run} & second_run
    assert not asked_twice & stored
    assert len(first_answered & second_run) <= 8, len(first_answered & second_run)
    report = json.loads((out / "report.json").read_text())
    assert report["reused"] == len(stored) and report["missing_votes"] == 0


def test_calibration_separates_queries_that_elo_centres(workdir):
    """Query q0's candidates are all relevant, q1's all irrelevant: per-query Elo centres both at
    0, the cross-query offsets must put q0 well above q1."""
    cand = str(layout(_cfg(workdir, "unused")).candidates)
    nodes = select_nodes(cand, 12)
    gains = {"q0": (3, 4), "q1": (0, 1)}
    rng = np.random.default_rng(0)
    rows = [{"query_id": q, "doc_id": d,
             "relevance": int(rng.choice(gains.get(q, (0, 1, 2, 3, 4))))}
            for q, d in zip(nodes["query_id"].to_pylist(), nodes["doc_id"].to_pylist())]
    qrels = pa.Table.from_pylist(rows).cast(pa.schema([("query_id", pa.string()), ("doc_id", pa.string()),
                                                       ("relevance", pa.int32())]))
    cfg = _cfg(workdir, "calibration", "annotate.calibration.k=4", "annotate.calibration.prior=0.01")
    report = run_annotate(cfg, qrels=qrels)
    z = pq.read_table(Path(cfg.annotate.output) / "zelo.parquet").to_pandas()
    by_q = z.groupby("query_id")
    raw, cal = by_q["elo"].mean(), by_q["calibrated"].mean()
    assert abs(raw["q0"]) < 1e-6 and abs(raw["q1"]) < 1e-6         # centred per query
    assert cal["q0"] - cal["q1"] > 1.0, cal.to_dict()
    assert by_q["target"].mean()["q0"] > 0.5 > by_q["target"].mean()["q1"]
    assert report["calibration"]["converged"]
    gain_tau = report["calibration"]["kendall_tau_vs_qrels_gain_pooled"]
    assert gain_tau["calibrated"] > gain_tau["raw_elo"]             # pooled ordering improves


@pytest.mark.parametrize("judges", ["simulated", "llm"])
def test_buckets_give_the_same_run_as_one_pass(workdir, judges, monkeypatch):
    """Taking the queries bucket by bucket (the driver's memory stays flat in the number of
    queries) asks the same calls and gives the same Elo, calibration and targets as one pass."""
    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    reports, tables = {}, {}
    with FakeJudgeServer(api_key=SECRET) as server:
        for bq in (1000, 2, 1):
            cfg = _cfg(workdir, f"buckets-{judges}-{bq}", f"annotate.bucket_queries={bq}")
            if judges == "llm":
                cfg.annotate.judges = _llm_judges(server, n=2)
            reports[bq] = run_annotate(cfg)
            out = Path(cfg.annotate.output)
            tables[bq] = {name: pq.read_table(out / f"{name}.parquet").sort_by(key)
                          for name, key in (("zelo", [("query_id", "ascending"), ("doc_id", "ascending")]),
                                            ("pairs", "pair_id"), ("cross_pairs", "pair_id"),
                                            ("pair_outcomes", "pair_id"))}
    assert reports[1000]["buckets"] == 1 and reports[2]["buckets"] > 1 and reports[1]["buckets"] >= N_QUERIES
    for bq in (2, 1):
        for k in ("judge_calls", "asked_this_run", "pairs", "cross_pairs", "missing_votes", "queries"):
            assert reports[bq][k] == reports[1000][k], (bq, k)
        assert reports[bq]["elo"]["converged_queries"] == N_QUERIES
        assert reports[bq]["calibration"]["fitted_pairs"] == reports[1000]["calibration"]["fitted_pairs"]
        for name in ("pairs", "cross_pairs", "pair_outcomes"):
            assert tables[bq][name].equals(tables[1000][name]), (bq, name)
        z, z1 = tables[bq]["zelo"], tables[1000]["zelo"]
        assert z["doc_id"].equals(z1["doc_id"])
        for col in ("elo", "calibrated", "target"):
            np.testing.assert_allclose(z[col].to_numpy(), z1[col].to_numpy(), rtol=0, atol=1e-9)
    if judges == "llm":   # every call of the three runs' own stores was asked once per store
        assert reports[1]["judges"]["llm0"]["spend"]["calls"] == reports[1000]["judges"]["llm0"]["spend"]["calls"]


def test_a_rerun_with_nothing_to_do_returns_the_last_report(workdir):
    """The outputs are a function of the inputs and the vote store: with neither changed and
    nothing left to ask, a re-run returns the last report at once; any change recomputes."""
    cfg = _cfg(workdir, "unchanged")
    first = run_annotate(cfg)
    out = Path(cfg.annotate.output)
    z = pq.read_table(out / "zelo.parquet")
    again = run_annotate(cfg)
    assert again.get("unchanged") and again["asked_this_run"] == 0 and again["reused"] == first["judge_calls"]
    assert again["fingerprint"] == first["fingerprint"] and pq.read_table(out / "zelo.parquet").equals(z)
    cfg.annotate.heldout = 0.2                          # a setting the report depends on
    changed = run_annotate(cfg)
    assert not changed.get("unchanged") and changed["asked_this_run"] == 0
    (out / "zelo.parquet").unlink()                     # an output gone
    assert not run_annotate(cfg).get("unchanged") and (out / "zelo.parquet").exists()
    cfg.elo.model = "bradley_terry"                     # the fit changes
    refit = run_annotate(cfg)
    assert not refit.get("unchanged") and not pq.read_table(out / "zelo.parquet").equals(z)
    assert run_annotate(cfg).get("unchanged")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 1001, 50_000])
@pytest.mark.parametrize("ties", [False, True])
def test_streaming_median_is_numpys_median(n, ties):
    from zelo_ray.annotate.scores import streaming_median

    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    if ties:
        x = np.round(x, 1)
    x[rng.random(n) < 0.05] = np.nan
    chunks = np.array_split(x, 7)
    finite = x[np.isfinite(x)]
    assert streaming_median(lambda: iter(chunks)) == (float(np.median(finite)) if len(finite) else 0.0)


def test_an_autoscaling_caller_pool_keeps_the_endpoint_rate(workdir, ray_tmp, monkeypatch, capsys):
    """A caller pool that grows from 1 to 4 actors keeps one endpoint limited to R requests/min
    under R (± 5%) with fewer than 1% 429s: every caller takes its slots from one shared book
    of limits, so the limit does not grow with the pool (a 1/callers split would be fixed at
    start and a grown pool would exceed it)."""
    import ray

    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    rpm, burst_s = 1200.0, 1.0   # a provider that allows a 1 s burst
    ray.shutdown()
    try:
        with FakeJudgeServer(latency_s=0.3, api_key=SECRET, requests_per_minute=rpm, burst_s=burst_s) as server:
            cfg = _cfg(workdir, "autoscale", "annotate.executor=ray", "annotate.callers=1",
                       "annotate.max_callers=4", "annotate.top_n=24", "graph.k=8", "annotate.batch_size=8",
                       "annotate.batches_in_flight=2", "ray.num_cpus=2")
            cfg.annotate.judges = _llm_judges(server, n=1, max_concurrency=64, requests_per_minute=rpm,
                                              timeout_s=5.0, max_retries=6, backoff_s=0.5, backoff_max_s=5.0)
            report = run_annotate(cfg)
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert report["missing_votes"] == 0
    calls = report["judge_calls"]
    arrivals = np.sort(np.asarray(server.arrivals))
    assert len(arrivals) == server.total >= calls
    rejected = server.outcomes["429_rate"]
    assert rejected < 0.01 * server.total, (rejected, server.total)
    # the rate in every 10 s window is at most R plus the bucket's burst, within 5 %
    rate = rpm / 60.0
    window = 10.0
    ends = np.searchsorted(arrivals, arrivals + window, side="right")
    busiest = int((ends - np.arange(len(arrivals))).max())
    assert busiest <= 1.05 * rate * (window + burst_s), (busiest, rate * (window + burst_s))
    # ... and the pool used what the limit allows (not a trivially slow client)
    steady = (len(arrivals) - rate * burst_s) / (arrivals[-1] - arrivals[0])
    assert 0.8 * rate <= steady <= 1.05 * rate, (steady, rate)
    used = int(out.split("judge callers: ")[1].split(" used")[0])
    print(f"pool used {used} callers; {rejected} of {server.total} requests got 429; busiest 10 s: "
          f"{busiest} (R allows {rate * (window + burst_s):.0f}); steady {steady:.2f}/s of {rate:.2f}/s")
    assert used == 4, out[-2000:]


def test_vllm_and_hosted_judges_run_at_the_same_time(workdir, monkeypatch):
    """The vLLM judges' Ray Data job and the hosted judges' callers overlap in time (they used
    to run one after the other); every call of both is stored. The vLLM engine is stood in for
    by a generator that takes a second, so this needs neither vLLM nor a GPU."""
    import zelo_ray.annotate.execute as execute_mod
    import zelo_ray.judges.vllm_pairwise as vllm_mod
    import zelo_ray.raysession as raysession
    from zelo_ray.config import VLLMPairwiseJudgeConfig
    from zelo_ray.judges.base import VOTE_SCHEMA

    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    window = {}

    def fake_vllm_votes(rows, judge, texts, *, batch_size):
        window["start"] = time.monotonic()
        for block in rows.to_batches(max_chunksize=batch_size):
            time.sleep(1.0 / max(1, -(-rows.num_rows // batch_size)))
            n = block.num_rows
            cols = {f.name: pa.nulls(n, f.type) for f in VOTE_SCHEMA}
            for c in ("pair_id", "query_id", "kind", "probe", "judge", "swapped", "cache_key"):
                cols[c] = block.column(c)
            cols["score"] = pa.array(np.zeros(n))
            yield pa.table(cols, schema=VOTE_SCHEMA)
        window["end"] = time.monotonic()

    monkeypatch.setattr(vllm_mod, "vllm_votes", fake_vllm_votes)
    monkeypatch.setattr(execute_mod, "preflight", lambda judge: None)
    monkeypatch.setattr("zelo_ray.annotate.run.preflight", lambda judge: None)
    monkeypatch.setattr(raysession, "ensure_ray", lambda *a, **k: None)
    with FakeJudgeServer(latency_s=0.02, api_key=SECRET) as server:
        cfg = _cfg(workdir, "concurrent-vllm", "annotate.batch_size=16")
        cfg.annotate.judges = [*_llm_judges(server, n=1, max_concurrency=1),
                               VLLMPairwiseJudgeConfig(name="slm", kind="vllm_pairwise", model="/nowhere")]
        report = run_annotate(cfg)
        busy = (server.first_request_at, server.last_reply_at)
    assert report["missing_votes"] == 0
    assert report["judges"]["slm"]["spend"]["calls"] == report["judges"]["llm0"]["spend"]["calls"] > 0
    # the two windows overlap: each started before the other ended
    assert window["start"] < busy[1] and busy[0] < window["end"], (window, busy)


def _damage(part: Path, how: str) -> None:
    data = part.read_bytes()
    if how == "truncated":                 # a writer cut short in the middle of its row group
        part.write_bytes(data[: len(data) // 2])
    elif how == "garbage footer":          # the metadata overwritten, its length and magic intact
        part.write_bytes(data[:-48] + bytes(range(40)) + data[-8:])
    elif how == "zero bytes":
        part.write_bytes(b"")
    else:                                  # one flipped byte inside the first data page, footer intact
        i = len(data) // 8
        part.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])


def test_damaged_vote_parts_are_moved_aside_and_only_their_votes_asked_again(workdir, monkeypatch, capsys):
    """Four parts damaged four ways (truncated mid-row-group, garbage footer, zero bytes, a page
    whose checksum fails): the re-run moves exactly those aside, names them in the console and
    the report, asks exactly their votes again, and ends with the undamaged run's Elo."""
    monkeypatch.setenv("ZELO_TEST_KEY", SECRET)
    with FakeJudgeServer(api_key=SECRET) as server:
        cfg = _cfg(workdir, "damaged")
        cfg.annotate.judges = _llm_judges(server, n=2)
        first = run_annotate(cfg)
        out = Path(cfg.annotate.output)
        undamaged = pq.read_table(out / "zelo.parquet")
        store = VoteStore(out / "votes")
        parts = [p for p in store.parts() if p.parent != store.path][:4]
        assert len(parts) == 4 and len({p.parent for p in parts}) == 4   # four partitions, one part each
        lost = set()
        for part, how in zip(parts, ("truncated", "garbage footer", "zero bytes", "bad page")):
            lost |= set(pq.read_table(part)["cache_key"].to_pylist())
            _damage(part, how)
        server.calls.clear()
        capsys.readouterr()
        again = run_annotate(cfg)
        asked = {int(k) for k in server.calls}
    console = capsys.readouterr().out
    assert asked == lost and again["asked_this_run"] == len(lost) and again["missing_votes"] == 0
    assert "damaged vote part" in console and "quarantine" in console
    moved = {n["part"] for n in again["quarantined_parts"]}
    assert moved == {str(p.relative_to(store.path)) for p in parts}
    assert all((out / "votes" / "quarantine" / Path(n["moved_to"]).name).exists() for n in again["quarantined_parts"])
    assert again["judge_calls"] == first["judge_calls"] and not again.get("unchanged")
    z = pq.read_table(out / "zelo.parquet")
    assert z["doc_id"].equals(undamaged["doc_id"]) and z["query_id"].equals(undamaged["query_id"])
    for col in ("elo", "calibrated", "target"):
        np.testing.assert_allclose(z[col].to_numpy(), undamaged[col].to_numpy(), rtol=0, atol=1e-9)
    assert run_annotate(cfg).get("unchanged")           # the quarantine is settled: nothing to do
