"""Training: losses (golden cases), training groups, query splits, the plain and the Ray Train
loops on tiny local models, worker-failure recovery, the exported Hugging Face folder, reranking."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.helpers import TOY_WORDS as WORDS, toy_groups
from zelo_ray.config import RayConfig, TrainConfig
from zelo_ray.eval.evaluate import evaluate_runs
from zelo_ray.train.examples import build_groups
from zelo_ray.train.losses import LOSSES, bce_loss, listwise_loss, mse_loss, ranknet_loss
from zelo_ray.scoring.models import load_reranker, tiny_decoder, tiny_encoder
from zelo_ray.train.plain import train_plain
from zelo_ray.eval.splits import seeded_split
from zelo_ray.train.stage import binary_qrels_table


# ---------------------------------------------------------------- losses

def test_mse_and_bce_golden():
    assert float(mse_loss(torch.zeros(3), torch.full((3,), 0.5), None, None)) == 0.0
    assert float(mse_loss(torch.tensor([100.0]), torch.tensor([0.0]), None, None)) == pytest.approx(1.0)
    assert float(bce_loss(torch.zeros(2), torch.tensor([0.0, 1.0]), None, None)) == pytest.approx(np.log(2))
    # BCE against a soft target is minimised where sigmoid(logit) equals the target
    x = torch.linspace(-3, 3, 601)
    vals = torch.stack([bce_loss(v.reshape(1), torch.tensor([0.8]), None, None) for v in x])
    assert float(torch.sigmoid(x[vals.argmin()])) == pytest.approx(0.8, abs=0.01)


def test_ranknet_golden_and_groups():
    g = torch.tensor([0, 0, 1, 1])
    elo = torch.tensor([1.0, 1.0, 2.0, -2.0])
    # ties in Elo → label 0.5 → loss log 2 at equal scores, whatever the other group does
    tie = ranknet_loss(torch.zeros(4), None, torch.tensor([1.0, 1.0, 0.0, 0.0]), g)
    assert float(tie) == pytest.approx(np.log(2), abs=1e-6)
    right = ranknet_loss(torch.tensor([0.0, 0.0, 5.0, -5.0]), None, elo, g)
    wrong = ranknet_loss(torch.tensor([0.0, 0.0, -5.0, 5.0]), None, elo, g)
    assert right < wrong
    # pairs never cross groups: scores of group 0 vs 1 do not matter
    a = ranknet_loss(torch.tensor([9.0, 9.0, 1.0, -1.0]), None, elo, g)
    b = ranknet_loss(torch.tensor([-9.0, -9.0, 1.0, -1.0]), None, elo, g)
    assert float(a) == pytest.approx(float(b))


def test_listwise_minimum_at_elo():
    e = torch.tensor([1.5, 0.0, -1.0, 0.3])
    g = torch.zeros(4, dtype=torch.long)
    best = listwise_loss(e, None, e, g)
    for _ in range(20):
        assert listwise_loss(e + torch.randn(4), None, e, g) >= best - 1e-6
    # shift invariance (softmax)
    assert float(listwise_loss(e + 3.0, None, e, g)) == pytest.approx(float(best), abs=1e-6)


def test_every_loss_has_gradients():
    g = torch.tensor([0, 0, 0, 1, 1])
    for name, fn in LOSSES.items():
        s = torch.randn(5, requires_grad=True)
        fn(s, torch.rand(5), torch.randn(5), g).backward()
        assert s.grad is not None and torch.isfinite(s.grad).all(), name


# ---------------------------------------------------------------- data

def _zelo(n_q=6, n_d=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"q{i}", f"d{(i * 3 + j) % 40}", j + 1, float(rng.normal()), float(rng.uniform()))
            for i in range(n_q) for j in range(n_d)]
    return pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                     "rank": pa.array([r[2] for r in rows], pa.int32()), "elo": [r[3] for r in rows],
                     "target": [r[4] for r in rows]})


def test_build_groups_covers_every_judged_document():
    z = _zelo()
    q = {f"q{i}": f"query {i}" for i in range(6)}
    d = {f"d{i}": f"doc {i}" for i in range(40)}
    g = build_groups(z, q, d, group_size=4, candidates_per_query=None, seed=1)
    pairs = {(qq, x) for qq, ids in zip(g["query_id"].to_pylist(), g["doc_ids"].to_pylist()) for x in ids}
    assert pairs == set(zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist()))
    assert max(len(x) for x in g["doc_ids"].to_pylist()) == 4
    # targets travel with their documents
    tgt = dict(zip(zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist()), z["target"].to_pylist()))
    for qq, ids, ts in zip(g["query_id"].to_pylist(), g["doc_ids"].to_pylist(), g["targets"].to_pylist()):
        assert np.allclose(ts, [tgt[(qq, x)] for x in ids], atol=1e-6)
    top = build_groups(z, q, d, group_size=4, candidates_per_query=3, seed=1)
    assert sum(len(x) for x in top["doc_ids"].to_pylist()) == 6 * 3
    assert build_groups(z, q, d, group_size=4, candidates_per_query=None, seed=1).equals(g)  # reproducible
    with pytest.raises(ValueError, match="'d5' is not in the corpus"):
        build_groups(z, q, {k: v for k, v in d.items() if k != "d5"}, group_size=4, candidates_per_query=None,
                     seed=1)


def test_written_groups_are_the_one_pass_groups_chunk_by_chunk(tmp_path):
    """write_groups (chunks of queries, texts fetched per chunk, the shuffle read memory-mapped)
    writes exactly build_groups' table — the same groups in the same order — whatever the chunk
    size, with a failing query and a filtered-out one in the middle."""
    from tests.helpers import write_beir
    from zelo_ray.data import prepare
    from zelo_ray.faults import ErrorLog, FaultInjector
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.train.examples import write_groups

    rng = np.random.default_rng(5)
    docs = [{"_id": f"d{i}", "title": f"t{i}" if i % 3 else "", "text": f"doc {i} ∂ü"} for i in range(60)]
    queries = [{"_id": f"q{j:02d}", "text": f"query {j}"} for j in range(13)]
    col = prepare(str(write_beir(tmp_path / "beir", docs, queries, [("q00", "d1", 1)])), tmp_path / "data")
    rows = [(f"q{j:02d}", f"d{i}", r + 1) for j in range(13) for r, i in enumerate(rng.permutation(60)[:rng.integers(3, 12)])]
    rows = [rows[i] for i in rng.permutation(len(rows))]           # not sorted by query
    z = pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                  "rank": pa.array([r[2] for r in rows], pa.int32()),
                  "target": pa.array([None if r[0] == "q07" else float(rng.random()) for r in rows], pa.float32()),
                  "elo": pa.array(rng.normal(size=len(rows)), pa.float32())})
    inject = FaultInjector("examples", ["examples:q04"])
    kw = dict(group_size=4, candidates_per_query=9, seed=3, injector=inject)
    errors = ErrorLog(tmp_path / "one.errors.parquet", "examples")
    one = build_groups(z, query_texts(col), doc_texts(col, z["doc_id"].to_pylist()), errors=errors, **kw)
    assert errors.finish()["record_id"].to_pylist() == ["q04"]
    assert set(one["query_id"].to_pylist()) == {f"q{j:02d}" for j in range(13)} - {"q04", "q07"}
    for chunk in (1, 2, 5, 100):
        errors = ErrorLog(tmp_path / f"{chunk}.errors.parquet", "examples")
        path = write_groups(z, col, tmp_path / f"ex-{chunk}.parquet", chunk_queries=chunk, rows_per_write=7,
                            errors=errors, **kw)
        assert pq.read_table(path).equals(one), chunk
        assert errors.finish()["record_id"].to_pylist() == ["q04"]
        assert not list(tmp_path.glob(".*.groups.arrow"))


def test_seeded_split_is_stable_and_disjoint():
    ids = [f"q{i}" for i in range(200)]
    tr, te = seeded_split(ids, 0.5, 7)
    assert not set(tr) & set(te) and set(tr) | set(te) == set(ids)
    assert 70 < len(te) < 130
    tr2, te2 = seeded_split(ids + [f"new{i}" for i in range(50)], 0.5, 7)
    assert set(te) <= set(te2) and set(tr) <= set(tr2)  # adding queries never moves old ones
    with pytest.raises(ValueError):
        seeded_split(ids, 1.0, 0)


def test_the_training_queries_labels_come_from_the_split_they_were_taken_from(tmp_path):
    """A collection with its own 'train' qrels and no split.train_split: the training queries come
    from 'train', and so must their labels (the simulated judges' qrels, the binary baseline) —
    reading data.split's ('test') gave NFCorpus's 2,563 training queries no label at all."""
    from tests.helpers import write_beir
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.eval.splits import query_split, training_qrels_split

    docs = [{"_id": f"d{i}", "title": "", "text": f"document {i}"} for i in range(6)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(6)]
    src = write_beir(tmp_path / "beir", docs, queries, [("q0", "d0", 1), ("q1", "d1", 2)])
    (src / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                            "".join(f"q{i}\td{i}\t1\n" for i in range(2, 6)))
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={tmp_path}/run"])
    col = prepare(str(src), tmp_path / "run" / "data")
    split = query_split(cfg, col)
    assert split["train"] == ["q2", "q3", "q4", "q5"] and split["test"] == ["q0", "q1"]
    assert training_qrels_split(cfg, col) == "train"
    labels = col.qrels(training_qrels_split(cfg, col))
    assert all(labels.get(q) for q in split["train"])
    cfg.split.train_split = "test"  # said explicitly: a seeded share of test's judged queries trains
    assert training_qrels_split(cfg, col) == "test"
    seeded = load_config(None, [f"data.dataset={src}", f"data.workdir={tmp_path}/run", "data.split=train"])
    assert training_qrels_split(seeded, col) == "train"  # testing on 'train': the seeded split of it


def test_binary_qrels_table_mines_negatives_and_adds_missed_positives(tmp_path):
    cand = pa.table({"query_id": ["q1"] * 4 + ["q2"] * 2, "doc_id": ["a", "b", "c", "d", "a", "e"],
                     "rank": pa.array([1, 2, 3, 4, 1, 2], pa.int32())})
    pq.write_table(cand, tmp_path / "c.parquet")
    qrels = {"q1": {"b": 2, "z": 1, "c": 0}, "q2": {"e": 1}}
    t = binary_qrels_table(tmp_path / "c.parquet", qrels, ["q1"], top_n=3)
    got = dict(zip(t["doc_id"].to_pylist(), t["target"].to_pylist()))
    assert got == {"a": 0.0, "b": 1.0, "c": 0.0, "z": 1.0}  # d is beyond top_n; q2 not a training query
    assert dict(zip(t["doc_id"].to_pylist(), t["rank"].to_pylist()))["z"] == 0  # missed by the first stage


# ---------------------------------------------------------------- models and loops

_toy_groups = toy_groups


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("tiny") / "enc", hidden=32, layers=1)


def test_plain_training_learns_the_toy_task(tiny):
    r = train_plain(_toy_groups(), base=tiny, batch_size=16, group_size=8, epochs=6, lr=3e-3, max_length=16,
                    log=lambda *_: None)
    model = r["model"]
    rel = model.score(["alpha", "beta"], ["alpha alpha text", "beta beta text"], max_length=16)
    irr = model.score(["alpha", "beta"], ["gamma other text", "omega other text"], max_length=16)
    assert (rel > 0.6).all() and (irr < 0.4).all(), (rel, irr)


def test_decoder_yes_model_trains_saves_and_reloads(tmp_path):
    base = tiny_decoder(tmp_path / "dec", hidden=32, intermediate=64, layers=1, heads=2)
    r = train_plain(_toy_groups(16), base=base, batch_size=16, group_size=8, epochs=1, lr=1e-3, max_length=32,
                    log=lambda *_: None, out=str(tmp_path / "trained"), loss="bce")
    model = r["model"]
    enc = model.tokenize(["alpha"], ["a very long document " * 50], max_length=32)
    assert enc["input_ids"].shape[1] <= 32
    # the question survives truncation: the prompt always ends with "Answer:"
    assert model.tokenizer.decode(enc["input_ids"][0][-2:]).replace(" ", "") == "answer:"
    again = load_reranker(str(tmp_path / "trained"))
    assert again.kind == "decoder_yes"
    a = model.score(["alpha"], ["alpha alpha text"], max_length=32)
    b = again.score(["alpha"], ["alpha alpha text"], max_length=32)
    assert torch.allclose(a, b, atol=1e-5)


def test_missing_base_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_reranker(str(tmp_path / "nope"))


def test_train_config_validation():
    with pytest.raises(ValueError, match="multiple of group_size"):
        TrainConfig(batch_size=12, group_size=8)


# ---------------------------------------------------------------- Ray Train

@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    import tempfile

    import ray

    tmp = tempfile.mkdtemp(prefix="zrt", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    yield
    ray.shutdown()


def test_ray_train_two_workers_exports_a_crossencoder_folder(tiny, tmp_path, ray_local):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    from zelo_ray.train.trainer import train_reranker

    ex = tmp_path / "examples.parquet"
    pq.write_table(_toy_groups(64), ex)
    t = TrainConfig(base=tiny, batch_size=16, group_size=8, epochs=3, lr=3e-3, max_length=16, num_workers=2,
                    cpus_per_worker=0.5, checkpoint_every=5, log_every=5)
    staged = lambda: set(Path(tempfile.gettempdir()).glob("zelo-ckpt-*"))  # noqa: E731
    before = staged()
    card = train_reranker(t, ex, tmp_path / "out", card={"dataset": "toy"}, log=lambda *_: None,
                          ray_cfg=RayConfig(num_cpus=2))
    assert staged() <= before          # every checkpoint's local staging folder was removed once copied
    assert card["total_steps"] == 3 * (64 // (2 * 2))
    model_dir = tmp_path / "out" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    saved = json.loads((model_dir / "zelo_card.json").read_text())
    assert saved["dataset"] == "toy" and saved["kind"] == "cross_encoder" and saved["train_config"]["lr"] == 3e-3
    assert not (model_dir / "trainer_state.pt").exists()
    ce = CrossEncoder(str(model_dir))
    pairs = [("alpha", "alpha alpha text"), ("alpha", "gamma other text")]
    ce_scores = ce.predict(pairs)
    ours = load_reranker(str(model_dir)).score([p[0] for p in pairs], [p[1] for p in pairs], max_length=16)
    assert np.allclose(ce_scores, ours.numpy(), atol=1e-5)  # CrossEncoder applies the same sigmoid
    assert ce_scores[0] > 0.6 > 0.4 > ce_scores[1]  # it learned the task across 2 data-parallel workers
    AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    # a second run with the same config and data is a no-op
    again = train_reranker(t, ex, tmp_path / "out", log=lambda *_: None, ray_cfg=RayConfig(num_cpus=2))
    assert again["fingerprint"] == card["fingerprint"]


def test_killed_worker_resumes_from_last_checkpoint(tiny, tmp_path, ray_local):
    from zelo_ray.train.trainer import train_reranker

    ex = tmp_path / "examples.parquet"
    pq.write_table(_toy_groups(32), ex)
    t = TrainConfig(base=tiny, batch_size=16, group_size=8, epochs=1, lr=1e-3, max_length=16, num_workers=1,
                    checkpoint_every=4, log_every=2, max_failures=1)
    said = []
    card = train_reranker(t, ex, tmp_path / "out", log=said.append, ray_cfg=RayConfig(num_cpus=2),
                          inject=["train:step-7"])
    # the worker failed at step 7 (errors.inject) and came back at the step-4 checkpoint
    assert any("injected failure at step 7" in x for x in said), said
    assert any("resumed from the checkpoint at step 4/16" in x for x in said), said
    assert card["total_steps"] == 16 and card["final_metrics"]["step"] == 16


# ---------------------------------------------------------------- reranking and evaluation

def test_rerank_orders_by_score_and_keeps_the_tail(tiny, tmp_path):
    from tests.helpers import write_beir
    from zelo_ray.data import prepare
    from zelo_ray.scoring.rerank import rankings_from_reranked, rerank_candidates

    docs = [{"_id": f"d{i}", "title": "", "text": f"document {i}"} for i in range(6)]
    src = write_beir(tmp_path / "beir", docs, [{"_id": "q1", "text": "query"}], [("q1", "d1", 1)])
    col = prepare(str(src), tmp_path / "data")
    cand = pa.table({"query_id": ["q1"] * 6, "doc_id": [f"d{i}" for i in range(6)],
                     "rank": pa.array(range(1, 7), pa.int32())})
    pq.write_table(cand, tmp_path / "cand.parquet")
    model = load_reranker(tiny)
    t = rerank_candidates(col, tmp_path / "cand.parquet", tiny, ["q1"], depth=4, log=lambda *_: None, model=model)
    run = rankings_from_reranked(t)["q1"]
    s = model.score(["query"] * 4, [f"document {i}" for i in range(4)], max_length=256).numpy()
    assert run[:4] == [f"d{i}" for i in np.argsort(-s, kind="stable")]
    assert run[4:] == ["d4", "d5"]


def test_rerank_in_an_actor_pool_matches_the_driver(tiny, tmp_path, ray_tmp, monkeypatch):
    """rerank.executor=ray scores in a Ray Data actor pool: the same ranks and scores as the
    driver, and a query whose scoring raises lands in the errors table the same way (the actors
    report it; the driver files it)."""
    from tests.helpers import write_beir
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.faults import ErrorLog, FaultInjector
    from zelo_ray.scoring.rerank import rerank_candidates
    from zelo_ray.scoring.scorer import ScorerPool

    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    docs = [{"_id": f"d{i}", "title": "", "text": f"document {i} about {'wings' if i % 2 else 'heat'}"}
            for i in range(8)]
    queries = [{"_id": f"q{j}", "text": f"query {j} on {'wings' if j % 2 else 'heat'}"} for j in range(7)]
    src = write_beir(tmp_path / "beir", docs, queries, [("q1", "d1", 1)])
    col = prepare(str(src), tmp_path / "data")
    rng = np.random.default_rng(0)
    cand = pa.table({"query_id": [f"q{j}" for j in range(7) for _ in range(8)],
                     "doc_id": [f"d{i}" for _ in range(7) for i in rng.permutation(8)],
                     "rank": pa.array([r for _ in range(7) for r in range(1, 9)], pa.int32())})
    pq.write_table(cand, tmp_path / "cand.parquet")
    qs = [f"q{j}" for j in range(7)]
    inject = FaultInjector("rerank", ["rerank:q3"])
    tables, errs = {}, {}
    for mode in ("local", "ray"):
        cfg = load_config(None, [f"data.workdir={tmp_path}", f"rerank.executor={mode}", "rerank.actors=2",
                                 "rerank.cpus=0.5", "ray.num_cpus=2"])
        errors = ErrorLog(tmp_path / f"errors-{mode}.parquet", "rerank")
        tables[mode] = rerank_candidates(col, tmp_path / "cand.parquet", tiny, qs, depth=5, log=lambda *_: None,
                                         errors=errors, injector=inject,
                                         pool=ScorerPool(cfg) if mode == "ray" else None
                                         ).sort_by([("query_id", "ascending"), ("rank", "ascending")])
        errs[mode] = errors.finish()
    local, pooled = tables["local"], tables["ray"]
    assert set(local["query_id"].to_pylist()) == set(qs) - {"q3"}
    assert local["doc_id"].equals(pooled["doc_id"]) and local["rank"].equals(pooled["rank"])
    np.testing.assert_allclose(pooled["model_score"].to_numpy(zero_copy_only=False),
                               local["model_score"].to_numpy(zero_copy_only=False), atol=1e-5)
    for mode in ("local", "ray"):
        assert errs[mode]["record_id"].to_pylist() == ["q3"]
        assert errs[mode]["error_type"].to_pylist() == ["InjectedFault"]


def test_evaluate_runs_paired_delta():
    qrels = {f"q{i}": {"a": 1} for i in range(30)}
    good = {q: ["a", "b"] for q in qrels}
    bad = {q: ["b", "a"] for q in qrels}
    rep = evaluate_runs(qrels, {"hybrid": bad, "reranker": good}, sorted(qrels), n_boot=200, versus="hybrid")
    d = rep["reranker"]["delta_vs_hybrid"]["ndcg@10"]
    assert d["mean"] > 0 and d["ci_low"] > 0
    assert rep["reranker"]["n_queries"] == 30


# ---------------------------------------------------------------- pairwise SLM distillation

def test_agreement_golden():
    from zelo_ray.train.pairwise import agreement

    a = agreement(np.array([0.9, 0.2, 0.6, 0.5]), np.array([1.0, 0.0, 0.0, 0.5]))
    assert a["decided"] == 3 and a["agreement"] == pytest.approx(2 / 3)


def test_pairwise_slm_learns_order_free_preferences_and_saves_for_vllm(tmp_path):
    from transformers import AutoModelForCausalLM

    from zelo_ray.judges.vllm_pairwise import answer_token_ids
    from zelo_ray.train.pairwise import PairwiseLM, train_pairwise

    rng = np.random.default_rng(0)
    rows = {"query_id": [], "query": [], "a": [], "b": [], "p_a": []}
    for i in range(160):
        w = WORDS[i % len(WORDS)]
        good, bad = f"{w} {w} text", f"{WORDS[(i + 2) % len(WORDS)]} other"
        a_good = rng.random() < 0.5
        rows["query_id"].append(f"q{i % 20}")
        rows["query"].append(w)
        rows["a"].append(good if a_good else bad)
        rows["b"].append(bad if a_good else good)
        rows["p_a"].append(1.0 if a_good else 0.0)
    base = tiny_decoder(tmp_path / "dec", hidden=64, intermediate=128, layers=2, heads=2)
    r = train_pairwise(rows, base=base, out=str(tmp_path / "slm"), heldout=0.2, epochs=4, batch_size=16, lr=3e-3,
                       max_length=64, log=lambda *_: None)
    assert r["heldout"]["decided"] > 0 and r["heldout"]["agreement"] >= 0.9, r
    assert r["heldout_before"]["decided"] == r["heldout"]["decided"]                 # the same pairs, untrained
    assert r["heldout"]["agreement"] > r["heldout_before"]["agreement"]
    assert abs(r["heldout"]["first_shown_share"] - 0.5) <= 0.1                        # trained on both orders
    m = PairwiseLM.load(str(tmp_path / "slm"))
    p1 = m.prob_first(["alpha"], ["alpha alpha text"], ["gamma other"], max_length=64)
    p2 = m.prob_first(["alpha"], ["gamma other"], ["alpha alpha text"], max_length=64)
    assert float(p1) > 0.5 > float(p2)
    # what vLLM needs: a plain causal-LM folder whose " A" / " B" are single tokens
    AutoModelForCausalLM.from_pretrained(str(tmp_path / "slm"))
    assert answer_token_ids(str(tmp_path / "slm")) == (m.a_id, m.b_id)
    assert json.loads((tmp_path / "slm" / "zelo_card.json").read_text())["prompt_version"] == "pairwise-slm-v1"


def test_bi_encoder_trains_and_loads_as_sentence_transformer(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    r = train_plain(_toy_groups(), base=tiny, kind="bi_encoder", batch_size=16, group_size=8, epochs=6, lr=3e-3,
                    max_length=16, log=lambda *_: None, out=str(tmp_path / "bi"))
    model = r["model"]
    rel = model.score(["alpha", "beta"], ["alpha alpha text", "beta beta text"], max_length=16)
    irr = model.score(["alpha", "beta"], ["gamma other text", "omega other text"], max_length=16)
    assert (rel > irr).all(), (rel, irr)
    again = load_reranker(str(tmp_path / "bi"))
    assert again.kind == "bi_encoder" and float(again.scale) == pytest.approx(float(model.scale))
    assert torch.allclose(again.score(["alpha"], ["alpha alpha text"], max_length=16),
                          model.score(["alpha"], ["alpha alpha text"], max_length=16), atol=1e-5)
    st = SentenceTransformer(str(tmp_path / "bi"), device="cpu")
    e = st.encode(["alpha", "alpha alpha text"], convert_to_tensor=True)
    cos = float((e[0] * e[1]).sum())
    logit = float(model.scale) * cos + float(model.bias)
    assert torch.sigmoid(torch.tensor(logit)) == pytest.approx(float(rel[0]), abs=1e-4)



def test_a_collection_without_qrels_trains_on_every_query(tmp_path, monkeypatch):
    from tests.helpers import write_beir
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.workflows.demo import run_quickstart
    from zelo_ray.eval.splits import split_queries

    src = write_beir(tmp_path / "beir", [{"_id": "d1", "text": "lift"}, {"_id": "d2", "text": "drag"}],
                     [{"_id": "q2", "text": "drag?"}, {"_id": "q1", "text": "lift?"}])
    col = prepare(str(src), tmp_path / "data")
    split = split_queries(col, test_split="test", train_split=None, test_fraction=0.5, seed=0)
    assert split["train"] == ["q1", "q2"] and split["test"] == [] and "no qrels" in split["source"]
    assert split_queries(col, test_split="test", train_split=None, test_fraction=0.5, seed=0,
                         max_train_queries=1)["train"] == ["q1"]
    # the embedded default judges are simulated from qrels: without qrels the pipeline says so
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={tmp_path / 'run'}"])
    import zelo_ray.workflows.demo as qs

    calls = []
    index_report = {"docs": 2, "dense": {"docs": 2, "embedded": 0, "skipped": True, "ann": None},
                    "bm25": {"docs": 2, "resumed_from": 2, "skipped": True, "seconds": 0.0}}
    monkeypatch.setattr(qs, "run_index", lambda c: calls.append("index") or index_report)
    monkeypatch.setattr(qs, "run_retrieve", lambda c: {"rows": 4, "queries": 2, "candidates": "-",
                                                       "failed": {"failed": 0, "total": 2, "errors": None}})
    monkeypatch.setattr(qs, "layout", lambda c: type("P", (), {"data": tmp_path / "data"})())
    with pytest.raises(ValueError, match="no qrels.*LLM judges"):
        run_quickstart(cfg, log=lambda m: None)
    assert calls == ["index"]


def test_validation_split_and_grades():
    import pyarrow as pa

    from zelo_ray.train.validation import split_validation, validation_grades

    qs = [f"q{i}" for i in range(50)]
    fit, val = split_validation(qs, 0.2, seed=3)
    assert sorted(fit + val) == sorted(qs) and not set(fit) & set(val) and 3 <= len(val) <= 20
    assert split_validation(qs, 0.2, seed=3) == (fit, val)          # seeded
    assert split_validation(qs, 0.0, seed=3) == (sorted(qs), [])    # switched off
    assert split_validation(["only"], 0.5, seed=3) == (["only"], [])  # never an empty fit side
    z = pa.table({"query_id": ["a"] * 20, "doc_id": [f"d{i}" for i in range(20)],
                  "calibrated": [float(i) for i in range(20)], "target": [0.5] * 20})
    g = validation_grades(z, ["a"])["a"]
    assert g["d19"] == 3 and g["d0"] == 0 and max(g.values()) == 3  # zELO scores → graded
    binary = pa.table({"query_id": ["a", "a", "b"], "doc_id": ["x", "y", "z"], "target": [1.0, 0.0, 1.0]})
    assert validation_grades(binary, ["a"]) == {"a": {"x": 1, "y": 0}}


def test_early_stopping_counts_validations_without_gain():
    from zelo_ray.train.worker import _no_gain

    stopper = {"best": float("-inf"), "since": 0}
    cfg = {"patience": 2}
    assert [_no_gain(stopper, v, cfg, 1) for v in (0.30, 0.35, 0.34, 0.36, 0.36, 0.20)] == \
        [False, False, False, False, False, True]
    assert stopper["best"] == 0.36
    never = {"best": float("-inf"), "since": 0}
    assert not any(_no_gain(never, v, {"patience": 0}, 1) for v in (0.5, 0.4, 0.3, 0.2))
    assert not _no_gain(stopper, float("nan"), cfg, 1)  # ranks without the score do not decide


def test_validation_scores_agreement_with_zelo_when_it_has_them():
    """The checkpoint is picked by r with the zELO scores (every candidate counts), not by
    nDCG@10 over a few graded ones; without zELO scores (Ray Tune's qrels) by nDCG@10."""
    import torch

    from zelo_ray.train.worker import validate

    class Scorer:
        training = True

        def __init__(self, table):
            self.table = table

        def score(self, queries, docs, **_):
            return torch.tensor([self.table[d] for d in docs])

        def train(self, mode):
            self.training = mode

    val = {"query_ids": ["q"], "queries": ["wing"], "doc_ids": [["a", "b", "c", "d"]], "docs": [["a", "b", "c", "d"]],
           "qrels": {"q": {"a": 1}}, "elo": {"q": {"a": 3.0, "b": 1.0, "c": 0.0, "d": -2.0}}}
    # both put 'a' first (same nDCG@10); only the first orders the rest as the judges did
    agree = validate(Scorer({"a": 0.9, "b": 0.6, "c": 0.4, "d": 0.1}), val, 32, "cpu")
    tail_wrong = validate(Scorer({"a": 0.9, "b": 0.1, "c": 0.4, "d": 0.6}), val, 32, "cpu")
    assert agree["val_ndcg@10"] == tail_wrong["val_ndcg@10"] == 1.0
    assert agree["val_score"] == agree["val_r"] > 0.9 > tail_wrong["val_r"]
    no_elo = validate(Scorer({"a": 0.9, "b": 0.6, "c": 0.4, "d": 0.1}), {**val, "elo": None}, 32, "cpu")
    assert "val_r" not in no_elo and no_elo["val_score"] == no_elo["val_ndcg@10"] == 1.0
