"""The pairwise-SLM loop (`zelo slm`, issue #20) on CPU: routing of pairs between the ensemble and
the SLM, the three passes with simulated judges and a tiny random decoder as the SLM's base,
source labels, the τ report, resumption, and the config's errors. The same loop with a real
SLM served by vLLM is in tests/test_vllm_judge.py (the `vllm` suite)."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.helpers import N_QUERIES, annotate_cfg as _cfg, annotate_workdir
from zelo_ray.annotate.teacher import judge_rows, teacher_mask
from zelo_ray.config import ConfigError
from zelo_ray.workflows.slm_loop import elo_tau, run_slm_loop


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The annotation tests' tiny collection (tests/helpers.py)."""
    return annotate_workdir(tmp_path_factory.mktemp("annotate"))


def test_teacher_pairs_are_a_stable_share_and_routing_keeps_each_call_once():
    ids = np.arange(20_000, dtype=np.int64) * 7919
    for share in (0.1, 0.25, 0.5, 1.0):
        m = teacher_mask(ids, share, seed=3)
        assert abs(m.mean() - share) < 0.015 and (m == teacher_mask(ids, share, seed=3)).all()
    assert (teacher_mask(ids, 0.1, 3) <= teacher_mask(ids, 0.5, 3)).all()   # a larger share adds pairs
    assert not (teacher_mask(ids, 0.5, 3) == teacher_mask(ids, 0.5, 4)).all()
    with pytest.raises(ValueError, match="teacher_share"):
        teacher_mask(ids, 0.0, 0)
    # the calls built for the routed rows are exactly the calls of every judge on every row, filtered
    # by the loop's rule (the reference): same keys, orders, probes, simulated relevance
    from types import SimpleNamespace

    from zelo_ray.annotate.tasks import build_tasks
    from zelo_ray.config import SimulatedJudgeConfig

    n, m = 400, 40
    items = pa.table({"pair_id": np.arange(n + m, dtype=np.int64) * 31, "kind": ["within"] * n + ["cross"] * m,
                      "query_id": [f"q{i % 7}" for i in range(n + m)],
                      "query_b": [None] * n + [f"q{(i + 1) % 7}" for i in range(m)],
                      "doc_a": [f"a{i}" for i in range(n + m)], "doc_b": [f"b{i}" for i in range(n + m)]})
    judges = [SimulatedJudgeConfig(name=x, kind="simulated", model=x) for x in ("llm", "llm2", "slm")]
    acfg = SimpleNamespace(judges=judges, seed=0, slm=SimpleNamespace(judge="slm", teacher_share=0.3))
    rel = lambda q, d: np.array([len(x) % 3 for x in d.to_pylist()], np.int32)  # noqa: E731
    full = build_tasks(items, judges, seed=0, swap_probe=0.2, relevance=rel)
    within = (full["kind"].to_numpy(zero_copy_only=False) == "within")
    teach = teacher_mask(full["pair_id"].to_numpy(), 0.3, 0)
    is_slm = full["judge"].to_numpy(zero_copy_only=False) == "slm"
    for teacher_only in (False, True):
        want = full.filter(pa.array(np.where(is_slm, within & ~teach & (not teacher_only), ~within | teach)))
        got = build_tasks(items, judges, seed=0, swap_probe=0.2, relevance=rel,
                          rows=judge_rows(items, acfg, teacher_only=teacher_only))
        assert got.equals(want)
        if teacher_only:
            assert set(got["judge"].to_pylist()) == {"llm", "llm2"}            # the SLM is not distilled yet
    routed = build_tasks(items, judges, seed=0, rows=judge_rows(items, acfg, teacher_only=False))
    jr, kr = routed["judge"].to_numpy(zero_copy_only=False), routed["kind"].to_numpy(zero_copy_only=False)
    t = teacher_mask(routed["pair_id"].to_numpy(), 0.3, 0)
    assert ((jr == "slm") == (~t & (kr == "within"))).all()                  # the SLM: the non-teacher within pairs
    ti, wi = teacher_mask(items["pair_id"].to_numpy(), 0.3, 0), np.arange(n + m) < n
    assert routed.num_rows == 2 * int((ti | ~wi).sum()) + int((wi & ~ti).sum())   # two ensemble judges, one SLM
    per_pair = {}
    for pid, judge in zip(routed["pair_id"].to_pylist(), jr):
        per_pair.setdefault(pid, set()).add("slm" if judge == "slm" else "ensemble")
    assert len(per_pair) == n + m and all(len(v) == 1 for v in per_pair.values())   # one side per pair
    assert judge_rows(items, SimpleNamespace(judges=judges, seed=0, slm=SimpleNamespace(judge=None)),
                      teacher_only=False) is None                           # outside the loop: no routing


def test_elo_tau_per_query():
    a = pa.table({"query_id": ["q1"] * 4 + ["q2"] * 2 + ["q3"], "doc_id": list("abcd") + ["x", "y", "z"],
                  "elo": [4.0, 3, 2, 1, 1, 2, 0]})
    b = pa.table({"query_id": ["q1"] * 4 + ["q2"] * 2 + ["q3"], "doc_id": list("abcd") + ["x", "y", "z"],
                  "elo": [1.0, 2, 3, 4, 0, 5, 0]})
    t = {r["query_id"]: r for r in elo_tau(a, b).to_pylist()}
    assert t["q1"]["tau"] == pytest.approx(-1.0) and t["q2"]["tau"] == pytest.approx(1.0)
    assert t["q3"]["tau"] is None and t["q3"]["documents"] == 1
    assert elo_tau(a, a).to_pylist()[0]["tau"] == pytest.approx(1.0)


def test_elo_tau_of_files_by_row_group_equals_the_whole_table_join(tmp_path):
    """Paper-sized Elo tables are compared bucket by bucket (row groups laid out alike); the result
    is the whole-table join's, and files laid out differently still get the right answer."""
    from zelo_ray.workflows.slm_loop import elo_tau_files

    rng = np.random.default_rng(2)
    q = np.repeat([f"q{i:03d}" for i in rng.permutation(60)], 10)
    d = np.tile([f"d{i}" for i in range(10)], 60)
    a = pa.table({"query_id": q, "doc_id": d, "elo": rng.normal(size=600)})
    b = pa.table({"query_id": q, "doc_id": d, "elo": a["elo"].to_numpy() + rng.normal(scale=0.7, size=600)})
    pq.write_table(a, tmp_path / "a.parquet", row_group_size=100)     # 6 buckets of 10 queries
    pq.write_table(b, tmp_path / "b.parquet", row_group_size=100)
    pq.write_table(b.take(rng.permutation(600)), tmp_path / "b-shuffled.parquet", row_group_size=100)
    want = {r["query_id"]: r["tau"] for r in elo_tau(a, b).to_pylist()}
    for other in ("b.parquet", "b-shuffled.parquet"):
        got = {r["query_id"]: r["tau"] for r in elo_tau_files(tmp_path / "a.parquet", tmp_path / other).to_pylist()}
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k]) for k in want)


def test_slm_config_errors_name_the_field(workdir):  # noqa: F811
    with pytest.raises(ConfigError, match="slm.judge='nope' names no judge"):
        _cfg(workdir, "x", "annotate.slm.judge=nope")
    with pytest.raises(ConfigError, match="teacher_share"):
        _cfg(workdir, "x", "annotate.slm.judge=sim-2", "annotate.slm.teacher_share=1.5")
    with pytest.raises(ValueError, match="annotate.slm.judge is not set"):
        run_slm_loop(_cfg(workdir, "x"))
    with pytest.raises(FileNotFoundError, match="annotate.slm.base='/no/such/model'"):
        run_slm_loop(_cfg(workdir, "x-base", "annotate.slm.judge=sim-2", "annotate.slm.base=/no/such/model"))
    assert not (workdir[0] / "x-base").exists()          # nothing judged, nothing spent


@pytest.fixture(scope="module")
def tiny_slm(tmp_path_factory):
    from zelo_ray.scoring.models import tiny_decoder

    return tiny_decoder(tmp_path_factory.mktemp("slm") / "base", hidden=32, layers=1, intermediate=64)


def test_the_loop_routes_distils_judges_and_resumes(workdir, tiny_slm, capsys):  # noqa: F811
    cfg = _cfg(workdir, "slm-loop", "annotate.slm.judge=sim-2", "annotate.slm.teacher_share=0.5",
               f"annotate.slm.base={tiny_slm}", "annotate.slm.max_length=64", "annotate.slm.heldout=0.25",
               "annotate.slm.lr=1e-3", "annotate.slm.require_agreement=false")   # the wiring, whatever it learned
    report = run_slm_loop(cfg)
    out = Path(cfg.annotate.output)
    pairs = pq.read_table(out / "pairs.parquet")
    teach = teacher_mask(pairs["pair_id"].to_numpy(), 0.5, cfg.annotate.seed)
    n_cross = pq.read_table(out / "cross_pairs.parquet").num_rows
    # pass 1: two ensemble judges on the teacher pairs and the cross pairs; pass 3: the SLM on the rest
    assert report["teacher_pass"]["asked_this_run"] == 2 * (int(teach.sum()) + n_cross)
    assert report["bulk_pass"]["asked_this_run"] == int((~teach).sum())
    assert report["bulk_pass"]["reused"] == report["teacher_pass"]["asked_this_run"]
    assert report["pairs"]["ensemble"]["pairs"] == int(teach.sum())
    assert report["pairs"]["slm"]["pairs"] == int((~teach).sum()) == report["saving"]["slm_calls"]
    assert report["saving"]["ensemble_calls_saved"] == 2 * int((~teach).sum())
    # every vote is labelled by its judge; the SLM judged only non-teacher within-query pairs
    from zelo_ray.judges.store import VoteStore

    votes = VoteStore(out / "votes").read()
    slm_pairs = set(votes.filter(pc.equal(votes["judge"], "sim-2"))["pair_id"].to_pylist())
    assert slm_pairs == set(pairs.filter(pa.array(~teach))["pair_id"].to_pylist())
    ens = set(votes.filter(pc.invert(pc.equal(votes["judge"], "sim-2")))["pair_id"].to_pylist())
    assert not (ens & slm_pairs)
    outcomes = pq.read_table(out / "pair_outcomes.parquet")
    assert outcomes["source"].to_pylist() == np.where(teach, "ensemble", "slm").tolist()
    assert outcomes["p_a"].null_count == 0                        # the union covers every pair
    # the ensemble-only Elo at this budget is kept, and compared with the mixed one per query
    teacher_z = pq.read_table(out / "slm" / "teacher" / "zelo.parquet")
    assert teacher_z.num_rows == pq.read_table(out / "zelo.parquet").num_rows
    tau = pq.read_table(out / "slm" / "elo_tau.parquet")
    assert tau.num_rows == N_QUERIES and report["tau_ensemble_only_vs_mixed"]["queries"] > 0
    assert -1 <= report["tau_ensemble_only_vs_mixed"]["mean"] <= 1
    d = report["distillation"]
    assert d["reused"] is False and d["steps"] > 0 and d["heldout_queries"] >= 1
    for side in ("heldout_before", "heldout"):
        assert 0 <= d[side]["agreement"] <= 1 and d[side]["log_loss"] > 0 and 0 <= d[side]["first_shown_share"] <= 1
    card = json.loads((Path(d["model"]) / "zelo_card.json").read_text())
    assert card["kind"] == "pairwise_slm" and card["loop_key"]
    assert json.loads((out / "slm" / "report.json").read_text())["pairs"] == report["pairs"]
    assert "distillation_concern" in report          # a string with the numbers when the SLM learned nothing
    lines = capsys.readouterr().out
    assert "[slm 1/3]" in lines and "[slm 3/3]" in lines
    # `zelo report` shows the loop: who judged what, the held-out table, τ, the saving
    from zelo_ray.workflows.report import build_report
    from zelo_ray.workflows.report_slm import slm_section

    run = out.parent / "slm-loop-run"
    run.mkdir()
    (run / "annotate").symlink_to(out)
    page = build_report(run)
    assert "<h2>Pairwise SLM</h2>" in page and f"judged {report['pairs']['slm']['pairs']:,}." in page
    assert f"{report['saving']['ensemble_calls_saved']:,} ensemble calls" in page and "Kendall τ per query" in page
    assert ("Warning: " in page) == (report["distillation_concern"] is not None)
    assert slm_section(out.parent / "slm") == []          # no loop there: no section
    # a re-run asks nothing and reuses the distilled model
    again = run_slm_loop(cfg)
    assert again["teacher_pass"]["asked_this_run"] == 0 and again["bulk_pass"]["asked_this_run"] == 0
    assert again["distillation"]["reused"] is True and again["pairs"] == report["pairs"]


def test_an_slm_that_learned_nothing_does_not_judge(workdir, tiny_slm, capsys):  # noqa: F811
    """require_agreement (the default): a distilled SLM whose held-out agreement does not beat the
    base is not let loose on the bulk; the ensemble-only Elo is the result. Switching the gate off
    reuses the distilled model and judges with it."""
    from zelo_ray.judges.store import VoteStore

    args = ("annotate.slm.judge=sim-2", "annotate.slm.teacher_share=0.5", f"annotate.slm.base={tiny_slm}",
            "annotate.slm.max_length=64", "annotate.slm.heldout=0.25", "annotate.slm.lr=1e-9")  # learns nothing
    cfg = _cfg(workdir, "slm-gate", *args)
    report = run_slm_loop(cfg)
    out = Path(cfg.annotate.output)
    assert report["distillation_concern"] and report["slm_judged"] is False and report["bulk_pass"] is None
    assert report["pairs"]["slm"]["with_outcome"] == 0 and report["saving"]["ensemble_calls_saved"] == 0
    votes = VoteStore(out / "votes").read()
    assert "sim-2" not in set(votes["judge"].to_pylist())                   # the SLM was never asked
    assert (out / "zelo.parquet").read_bytes() == (out / "slm" / "teacher" / "zelo.parquet").read_bytes()
    assert not (out / "slm" / "elo_tau.parquet").exists()
    from zelo_ray.workflows.report_slm import slm_section

    page = "".join(slm_section(out / "slm"))
    assert f"did not judge: it had not shown agreement with the ensemble, so its {report['pairs']['slm']['pairs']}" in page
    console = capsys.readouterr().out
    assert "[slm 3/3] skipped: the distilled SLM did not learn" in console and "require_agreement=false" in console
    ungated = run_slm_loop(_cfg(workdir, "slm-gate", *args, "annotate.slm.require_agreement=false"))
    assert ungated["distillation"]["reused"] is True and ungated["slm_judged"] is True
    assert ungated["bulk_pass"]["asked_this_run"] == ungated["pairs"]["slm"]["pairs"] > 0
    assert (out / "slm" / "elo_tau.parquet").exists()


def test_long_documents_are_shortened_so_the_query_and_the_question_survive(tiny_slm):
    from zelo_ray.train.pairwise import PairwiseLM

    m = PairwiseLM.load(tiny_slm)
    long_a, long_b = "alpha " * 900, "beta " * 700
    enc = m.encode(["zebra crossing"], [long_a], [long_b], max_length=96)
    ids = enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    text = m.tokenizer.decode(ids, skip_special_tokens=True).lower()
    assert len(ids) <= 96
    assert "zebra crossing" in text and "alpha" in text and "beta" in text
    assert text.rstrip().endswith("answer a or b. answer :")      # the question is whole, at the end
    from zelo_ray.judges.vllm_pairwise import slm_prompt

    short = m.encode(["q"], ["a b"], ["c d"], max_length=96)["input_ids"][0].tolist()
    assert short == m.tokenizer(slm_prompt("q", "a b", "c d"))["input_ids"]   # what fits is not touched


def test_a_pairwise_models_probability_is_averaged_as_it_is_and_ratings_are_rounded():
    from zelo_ray.annotate.teacher import clamp_mask
    from zelo_ray.config import AnnotateConfig, SimulatedJudgeConfig, VLLMPairwiseJudgeConfig
    from zelo_ray.core.ensemble import soft_outcomes

    scores = np.array([[-0.4, -0.4], [0.3, 0.9]])        # judge 0: an LLM's rating, judge 1: P(first) = 0.7, 0.05
    both = soft_outcomes(scores, clamp=True).w
    assert both.tolist() == pytest.approx([0.5 + 0.0 / 2, (1 - 0.5) / 2])   # ratings and probabilities rounded
    mixed = soft_outcomes(scores, clamp=np.array([True, False])).w
    assert mixed.tolist() == pytest.approx([(1 - (0 - 0.4) / 2) / 2, (1 - (0 + 0.9) / 2) / 2])
    acfg = AnnotateConfig(judges=[SimulatedJudgeConfig(name="s", kind="simulated", model="m"),
                                  VLLMPairwiseJudgeConfig(name="v", kind="vllm_pairwise", model="/m")])
    assert clamp_mask(acfg).tolist() == [True, False]
    assert clamp_mask(acfg.model_copy(update={"clamp": False})).tolist() == [False, False]


def test_distillation_reads_documents_as_the_judge_serves_them(workdir):  # noqa: F811
    """Train/serve skew: the distillation prompts show each document as the vLLM judge will (title
    line, cut to the judge's max_doc_chars), not as the reranker reads it."""
    from zelo_ray.config import VLLMPairwiseJudgeConfig
    from zelo_ray.data import open_collection
    from zelo_ray.layout import layout
    from zelo_ray.workflows.slm_loop import _distil_key, _judge_docs

    def cfg_with(chars):
        d = _cfg(workdir, "x-docs").model_dump()
        d["annotate"]["judges"].append(VLLMPairwiseJudgeConfig(name="slm", kind="vllm_pairwise", model="m",
                                                               max_doc_chars=chars).model_dump())
        d["annotate"]["slm"]["judge"] = "slm"
        return type(_cfg(workdir, "x-docs")).model_validate(d)

    cfg = cfg_with(20)
    col = open_collection(layout(cfg).data)
    corpus = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"]).slice(0, 5).to_pylist()
    docs = _judge_docs(cfg, col, [r["doc_id"] for r in corpus] * 2)
    assert len(docs) == 5
    for r in corpus:
        full = f"{r['title']}\n{r['text']}" if r["title"] else r["text"]
        assert docs[r["doc_id"]] == full[:20] + " …" and "\n" in docs[r["doc_id"]]
    teacher = workdir[0] / "teacher.bin"
    teacher.write_bytes(b"outcomes")
    assert _distil_key(cfg, teacher) != _distil_key(cfg_with(80), teacher)   # another cut: distil again


def test_teacher_pairs_stream_the_same_sample_as_reading_everything(tmp_path):
    """The distillation's sample is taken in two streaming passes over the teacher outcomes (a
    paper-sized run has millions); it is the same seeded sample as filtering the whole table."""
    from zelo_ray.workflows.slm_loop import teacher_pairs

    rng = np.random.default_rng(5)
    n = 150_000                                              # more than two read batches
    p = rng.random(n)
    t = pa.table({"query_id": pa.array([f"q{i // 100}" for i in range(n)]), "pair_id": np.arange(n, dtype=np.int64),
                  "doc_a": pa.array([f"a{i}" for i in range(n)]), "doc_b": pa.array([f"b{i}" for i in range(n)]),
                  "p_a": pa.array(p, mask=rng.random(n) < 0.1),
                  "source": pa.array(np.where(rng.random(n) < 0.3, "slm", "ensemble"))})
    path = tmp_path / "pair_outcomes.parquet"
    pq.write_table(t, path, row_group_size=40_000)
    eligible = t.filter(pc.and_(pc.is_valid(t["p_a"]), pc.equal(t["source"], "ensemble")))
    want = eligible.take(np.sort(np.random.default_rng(7).choice(eligible.num_rows, size=5_000, replace=False)))
    got = teacher_pairs(path, 5_000, seed=7)
    assert got.num_rows == 5_000 and got["pair_id"].to_pylist() == want["pair_id"].to_pylist()
    assert got["p_a"].to_pylist() == want["p_a"].to_pylist() and set(got["source"].to_pylist()) == {"ensemble"}
    everything = teacher_pairs(path, None, seed=7)
    assert everything["pair_id"].to_pylist() == eligible["pair_id"].to_pylist()
    assert teacher_pairs(path, eligible.num_rows + 1, seed=7).num_rows == eligible.num_rows


def test_the_slm_scale_bench_compares_equal_votes(tmp_path):
    """`zelo bench slm-scale` wiring at toy size: the loop and plain annotation ask the same number
    of votes over the same pairs, each side in its own process, and the loop's sides add up."""
    from zelo_ray.bench.slm_scale import run

    r = run(queries=30, docs=8, share=0.5, max_pairs=40, executor="local", workdir=str(tmp_path), log=lambda *_: None)
    plain, loop = r["plain"], r["loop"]
    assert plain["votes"] == loop["votes"] > 0
    by = loop["pairs_by_source"]
    assert by["ensemble"]["pairs"] + by["slm"]["pairs"] == loop["pairs"] == plain["pairs"] == 30 * 28  # 8 docs: all pairs
    assert by["slm"]["with_outcome"] == by["slm"]["pairs"] > 0 and loop["sample_rows"] == 40
    assert set(loop["phases"]) == {"teacher pass", "distillation sample", "bulk pass", "report and τ"}
    assert r["time_ratio_loop_vs_plain"] > 0 and loop["tau_queries"] == 30
