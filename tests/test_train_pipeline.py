"""The training stages on a run directory: `zelo demo` end to end on a tiny collection (index →
retrieve → annotate the training queries → Ray Train → rerank → metrics.json), then the
refinement pass and a two-trial Ray Tune search on the same run."""

import json
import os

import numpy as np
import pytest

from tests.helpers import write_beir
from zelo_ray.cli import main
from zelo_ray.config import load_config
from zelo_ray.scoring.models import tiny_encoder
from zelo_ray.workflows.refine import failing_queries
from zelo_ray.layout import layout

TOPICS = ["wing lift", "shock wave", "heat transfer", "boundary layer", "jet noise", "panel flutter"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    import tempfile

    root = tmp_path_factory.mktemp("demo")
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="zrd", dir="/tmp")
    rng = np.random.default_rng(0)
    docs, qrels, queries = [], [], []
    for t, topic in enumerate(TOPICS):
        for i in range(8):
            docs.append({"_id": f"d{t}_{i}", "title": topic if i < 3 else "", "text": f"{topic} study {i} " +
                         " ".join(rng.choice(["flow", "model", "test", "data", "theory"], 6))})
        for j in range(3):
            qid = f"q{t}_{j}"
            queries.append({"_id": qid, "text": f"{topic} question {j}"})
            qrels += [(qid, f"d{t}_{i}", 2 if i == 0 else 1) for i in range(3)]
    src = write_beir(root / "beir", docs, queries, qrels)
    tiny = tiny_encoder(root / "tiny", hidden=32, layers=1)
    out = root / "run"
    sets = ["retrieve.k_bm25=20", "retrieve.k_dense=20", "annotate.top_n=12", "graph.k=4",
            "annotate.calibration.k=2", f"train.base={tiny}", "train.lr=3e-3", "train.max_length=32",
            "train.epochs=2", "train.cpus_per_worker=0.5", "rerank.depth=10", "evaluate.bootstrap=100",
            "ray.num_cpus=2"]
    args = ["demo", "--dataset", str(src), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return root, src, out, sets


def test_demo_writes_metrics_for_every_system(demo_run):
    root, src, out, _ = demo_run
    m = json.loads((out / "metrics.json").read_text())
    for system in ("bm25", "dense", "hybrid", "reranker"):
        assert {"ndcg@10", "recall@100", "n_queries"} <= set(m[system])
        assert 0 <= m[system]["ndcg@10"]["mean"] <= 1
    n_test = m["reranker"]["n_queries"]
    assert n_test == m["hybrid"]["n_queries"] == m["meta"]["test_queries"] > 0
    assert m["meta"]["train_queries"] + n_test == 18
    # the simulated judges only ever saw training queries
    import pyarrow.parquet as pq

    z = pq.read_table(out / "annotate" / "zelo.parquet")
    report = json.loads((out / "report.json").read_text())
    assert set(z["query_id"].to_pylist()) == set(report["split"]["train"])
    assert not set(report["split"]["train"]) & set(report["split"]["test"])
    card = json.loads((out / "train" / "model" / "zelo_card.json").read_text())
    # training queries held out from fitting picked the checkpoint (step 0 = the untrained base)
    assert card["validation"]["queries"] >= 1 and 0 <= card["validation"]["best_step"] <= card["total_steps"]
    assert 0 <= card["validation"]["val_ndcg@10"] <= 1
    assert card["validation"]["criterion"].startswith("val_r") and -1 <= card["validation"]["val_r"] <= 1
    assert (out / "annotate" / "pair_outcomes.parquet").exists()
    # what training adds: the untrained base at the same token budget, alone and fused by the same rule
    m = json.loads((out / "metrics.json").read_text())
    for row in ("fusion_only", "base_model_only"):
        assert m[row]["n_queries"] == n_test and 0 <= m[row]["ndcg@10"]["mean"] <= 1
    base_card = json.loads((out / "train" / "base" / "zelo_card.json").read_text())
    assert base_card["train_config"]["max_length"] == card["train_config"]["max_length"]
    d = m["paired"]["reranker-fusion_only"]
    assert d["ci_low"] <= d["mean"] <= d["ci_high"]
    assert "reranker_model_only-base_model_only" in m["paired"]


def test_query_tower_training_reranks_serves_and_retrieves(demo_run, tmp_path):
    """train.towers=query on the demo run: the query encoder and the map learn over the frozen
    document tower's vectors; the checkpoint carries that tower, serves through the engine, and
    its query tower retrieves (dense_tuned / hybrid_tuned rows)."""
    import torch

    from zelo_ray.data import open_collection
    from zelo_ray.serve.engine import ScoringEngine
    from zelo_ray.scoring.models import load_reranker
    from zelo_ray.eval.rerank import evaluate_reranker

    root, src, out, sets = demo_run
    qt_out = tmp_path / "qt"
    extra = ["train.kind=bi_encoder", "train.towers=query", f"train.output={qt_out}", "train.query_tower.max_length=32",
             "train.query_tower.queries_per_step=4", "train.query_tower.epochs=3", "train.checkpoint_every=3"]
    args = ["train", "--dataset", str(src), "--workdir", str(out)]
    for x in sets + extra:
        args += ["--set", x]
    assert main(args) == 0
    card = json.loads((qt_out / "model" / "zelo_card.json").read_text())
    assert card["towers"] == "query" and card["train_config"]["loss"] == "inbatch_listwise"
    assert (qt_out / "model" / "document_encoder" / "config.json").exists()
    n_train = len(json.loads((out / "report.json").read_text())["split"]["train"])
    assert card["training_groups"] == n_train - card["validation"]["queries"]  # one row per fitting query
    model = load_reranker(str(qt_out / "model"))
    engine = ScoringEngine.load(str(qt_out / "model"), device="cpu")
    pairs = engine.encode("wing lift question 0", ["wing lift study 0 flow", "heat transfer study 1"], max_doc_tokens=30)
    served = engine.score(pairs)
    assert np.isfinite(served).all()
    direct = model.score(["wing lift question 0"] * 2, ["wing lift study 0 flow", "heat transfer study 1"], max_length=32)
    assert np.allclose(served, direct.numpy(), atol=1e-4)
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={out}", *sets, *extra])
    col = open_collection(out / "data")
    test = json.loads((out / "report.json").read_text())["split"]["test"]
    said = []
    m = evaluate_reranker(cfg, col, test, {"qt": str(qt_out / "model")}, log=said.append,
                          embedder={"qt": "tuned"}, paired=[("dense_tuned", "dense")])
    assert m["qt"]["n_queries"] == len(test) and 0 <= m["qt"]["ndcg@10"]["mean"] <= 1
    # this run's index was built by MiniLM, not by the tiny base: its vectors are not the tower's
    assert "dense_tuned" not in m and any("no dense_tuned row" in x for x in said), said
    assert torch.is_tensor(model.doc_map) and m["paired"] == {}


def test_one_pooled_model_trains_on_every_collection_and_serves_each(demo_run, tmp_path):
    """Two collections (the demo run under two names) pool their training queries into one query
    tower; each gets the same weights with its own BM25 weight, and evaluates like its own model."""
    import pyarrow.parquet as pq

    from zelo_ray.data import open_collection
    from zelo_ray.eval.rerank import evaluate_reranker
    from zelo_ray.workflows.pooled import pooled_for, train_pooled

    root, src, out, sets = demo_run
    extra = ["train.kind=bi_encoder", "train.towers=query", "train.query_tower.max_length=32",
             "train.query_tower.queries_per_step=4", "train.query_tower.epochs=2"]
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={out}", *sets, *extra])
    pooled = train_pooled({"a": cfg, "b": cfg}, tmp_path / "pooled", log=lambda *_: None)
    t = pq.read_table(tmp_path / "pooled" / "examples-pooled.parquet")
    one = pq.read_table(tmp_path / "pooled" / "a" / "examples-query-zelo.parquet")
    assert pooled["card"]["training_groups"] == t.num_rows == 2 * one.num_rows > 0
    qids = t["query_id"].to_pylist()
    assert {q.split("/")[0] for q in qids} == {"a", "b"} and len(set(qids)) == len(qids)
    assert all(d.startswith(q.split("/")[0] + "/") for q, ds in zip(qids, t["doc_ids"].to_pylist()) for d in ds)
    n_val = len(pooled["validation"]["a"]["query_ids"])
    assert pooled["card"]["validation"]["queries"] == 2 * n_val > 0
    col = open_collection(out / "data")
    test = json.loads((out / "report.json").read_text())["split"]["test"]
    for name in ("a", "b"):
        served = pooled_for(cfg, pooled, name, log=lambda *_: None)
        weights = [p for p in served.iterdir() if p.suffix == ".safetensors"]
        assert weights and all(os.path.samefile(p, pooled["checkpoint"] / p.name) for p in weights)
        assert (served / "zelo_fusion.json").exists() and not (pooled["checkpoint"] / "zelo_fusion.json").exists()
        m = evaluate_reranker(cfg, col, test, {"pooled": str(served)}, log=lambda *_: None)
        assert m["pooled"]["n_queries"] == len(test) and 0 <= m["pooled"]["ndcg@10"]["mean"] <= 1


def test_the_gpu_query_tower_script_trains_from_a_bundle_without_ray(demo_run, tmp_path):
    """`gpu_train.py --query-tower`'s code path on CPU: the bundle holds no vectors and no Ray
    object; training from it validates every epoch, keeps the best, and reports test nDCG@10."""
    from zelo_ray.bench.query_tower_gpu import prepare, train
    from zelo_ray.data import open_collection
    from zelo_ray.eval.splits import query_split
    from zelo_ray.train.stage import training_examples

    root, src, out, sets = demo_run
    extra = ["train.kind=bi_encoder", "train.towers=query", f"train.output={tmp_path / 'qt'}",
             "train.query_tower.max_length=32"]
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={out}", *sets, *extra])
    col = open_collection(out / "data")
    training_examples(cfg, col, query_split(cfg, col), log=lambda *_: None)
    bundle = prepare({"tiny": cfg}, tmp_path / "bundle", log=lambda *_: None)["tiny"]
    assert sum(f.stat().st_size for f in bundle.iterdir()) < 1 << 20
    r = train([bundle], str(root / "tiny"), device="cpu", epochs=2, max_length=32, queries_per_step=4,
              precision="fp32", log=lambda *_: None)
    assert r["rows"] > 0 and [h["epoch"] for h in r["history"]] == [0, 1, 2]
    assert all(np.isfinite(h["loss"]) for h in r["history"][1:]) and "val_r" in r["history"][0]
    assert 0 <= r["best_epoch"] <= 2
    for phase in ("base", "trained"):
        assert set(r[phase]["tiny"]) == {"hybrid", "model_only", "dense"}
        assert all(0 <= v <= 1 for v in r[phase]["tiny"].values())
    assert r["base"]["tiny"]["hybrid"] == r["trained"]["tiny"]["hybrid"]


def test_demo_writes_a_self_contained_html_report(demo_run):
    """`zelo demo` ends with report.html: every section drawn from the run, every figure inline
    SVG, nothing fetched from anywhere (no scripts, no external links or sources)."""
    from html.parser import HTMLParser

    root, src, out, _ = demo_run
    text = (out / "report.html").read_text()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.external = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            for k, v in attrs:
                if k in ("src", "href") and v and not v.startswith("#"):
                    self.external.append((tag, k, v))

    parser = Tags()
    parser.feed(text)
    assert "script" not in parser.tags and not parser.external, parser.external
    for section in ("Metrics", "Per query: reranker vs hybrid", "Elo scores", "Judges", "Training"):
        assert f"<h2>{section}</h2>" in text, section
    assert parser.tags.count("svg") == 5  # per-query deltas, Elo (2), position bias, training curve
    card = json.loads((out / "train" / "model" / "zelo_card.json").read_text())
    assert any("loss" in h for h in card["history"]) and any("val_ndcg@10" in h for h in card["history"])
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["per_query"]["ndcg@10"]["reranker"]) == set(m["per_query"]["ndcg@10"]["hybrid"])
    assert len(m["per_query"]["ndcg@10"]["reranker"]) == m["meta"]["test_queries"]
    # the command alone, on the same run, to another file
    assert main(["report", str(out), "--out", str(root / "r.html")]) == 0 and (root / "r.html").exists()
    assert main(["report", str(root / "nothing-here")]) == 2


def test_failing_queries_golden():
    ranked = {"q1": ["a", "b", "c", "d"], "q2": ["x", "y"], "q3": ["m", "n", "o"]}
    qrels = {"q1": {"d": 2, "b": 1}, "q2": {"x": 1}, "q3": {}}
    assert failing_queries(ranked, qrels, 2) == {"q1": ("d", "c", 4)}
    assert failing_queries(ranked, qrels, 4) == {}


def test_refine_adds_pairs_and_retrains(demo_run):
    from zelo_ray.workflows.refine import run_refine

    root, src, out, sets = demo_run
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={out}", *sets, "refine.threshold=1"])
    rep = run_refine(cfg, log=lambda *_: None)
    r = rep["rounds"][0]
    assert rep["failing_before"] > 0 and r["pairs_added"] == rep["failing_before"]
    assert 0 < r["judge_calls_asked"] <= 3 * r["pairs_added"]  # only the new pairs cost calls
    assert (out / "train-refined-1" / "model" / "zelo_card.json").exists()
    assert "mean" in rep["test_ndcg10_after"]


@pytest.mark.slow  # two Ray Train runs inside Tune trials: minutes on 2 cores
def test_tune_two_trials_with_asha(demo_run):
    from zelo_ray.workflows.tune import run_tune

    root, src, out, sets = demo_run
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={out}", *sets, "tune.num_samples=2",
                             "tune.losses=[mse,listwise]", "tune.elo_models=[bradley_terry]", "tune.graph_k=[4]",
                             "tune.top_n=[12]", "train.epochs=1", "train.checkpoint_every=2",
                             "annotate.executor=local"])
    res = run_tune(cfg, log=lambda *_: None)
    assert len(res["trials"]) == 2
    assert all(t["error"] is None for t in res["trials"]), res["trials"]
    assert res["best"] is not None and 0 <= res["best"]["val_ndcg@10"] <= 1
    assert (out / "tune" / "best.json").exists()


def test_one_failing_record_per_stage_is_listed_and_a_rerun_retries_only_it(demo_run, tmp_path):
    """errors.inject fails one record in each stage: every stage completes, its errors table lists
    exactly that record, and a re-run asks only the failed records again."""
    import shutil

    import pyarrow.parquet as pq

    from zelo_ray.annotate.pairs import build_pairs, select_nodes
    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.data import open_collection
    from zelo_ray.retrieval.pipeline import run_retrieve
    from zelo_ray.eval.rerank import evaluate_reranker
    from zelo_ray.eval.splits import query_split
    from zelo_ray.train.stage import run_train_stage

    root, src, out, sets = demo_run
    work = tmp_path / "run"
    for d in ("data", "index"):  # reuse the demo's collection and indexes, nothing else
        shutil.copytree(out / d, work / d)
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={work}", *sets, "train.max_steps=2",
                             "train.val_fraction=0",  # every training query reaches example building
                             "errors.max_fraction=0.5"])
    col = open_collection(work / "data")
    split = query_split(cfg, col)
    no_cands, no_rerank = split["test"][:2]
    no_examples = split["train"][0]

    def errors(path):
        return pq.read_table(path)["record_id"].to_pylist()

    cfg.errors.inject = [f"retrieve:{no_cands}"]
    ret = run_retrieve(cfg)
    assert errors(layout(cfg).retrieve_errors) == [no_cands] and ret["failed"]["failed"] == 1

    nodes = select_nodes(str(layout(cfg).candidates), cfg.annotate.top_n, queries=split["train"])
    pair = build_pairs(nodes, strategy=cfg.graph.strategy, k=cfg.graph.k, seed=cfg.annotate.seed)["pair_id"][0].as_py()
    cfg.errors.inject = [f"annotate:{pair}/sim-1"]
    ann = run_annotate(cfg, log_fn=lambda *_: None, queries=split["train"])
    assert errors(work / "annotate" / "errors.parquet") == [f"{pair}/sim-1"] and ann["failed"]["failed"] == 1
    assert ann["missing_votes"] == 1  # a call never asked is no vote, never a score

    cfg.errors.inject = [f"examples:{no_examples}"]
    card = run_train_stage(cfg, log=lambda *_: None, split=split)
    assert errors(layout(cfg).train / "examples-zelo.errors.parquet") == [no_examples]
    assert card["failed_training_queries"] == 1
    examples = pq.read_table(layout(cfg).train / "examples-zelo.parquet")
    assert no_examples not in examples["query_id"].to_pylist() and examples.num_rows > 0

    cfg.errors.inject = [f"rerank:{no_rerank}"]
    ckpt = {"reranker": str(layout(cfg).train / "model")}
    m = evaluate_reranker(cfg, col, split["test"], ckpt, log=lambda *_: None, out=layout(cfg).train)
    assert errors(layout(cfg).train / "reranked-reranker.errors.parquet") == [no_rerank]
    assert m["failed"]["reranker"]["failed"] == 1
    assert m["reranker"]["n_queries"] == m["hybrid"]["n_queries"] == len(split["test"]) - 1  # still paired

    # the re-run: each stage asks only what failed, and every errors table is gone
    cfg.errors.inject = []
    assert run_retrieve(cfg)["retried"] == 1 and not layout(cfg).retrieve_errors.exists()
    again = run_annotate(cfg, log_fn=lambda *_: None, queries=split["train"])
    assert again["asked_this_run"] == 1 and again["missing_votes"] == 0
    assert not (work / "annotate" / "errors.parquet").exists()
    lines = []
    m = evaluate_reranker(cfg, col, split["test"], ckpt, log=lines.append, out=layout(cfg).train)
    # the query rerank failed on, and the one that had no candidates before; the others are reused
    assert any(f"of 2 queries with reranker" in line and f"{len(split['test']) - 2} reranked by an earlier run"
               in line for line in lines), lines
    assert m["reranker"]["n_queries"] == len(split["test"]) and m["failed"]["reranker"]["failed"] == 0
    lines = []
    evaluate_reranker(cfg, col, split["test"], ckpt, log=lines.append, out=layout(cfg).train)
    assert any("of 0 queries with reranker" in line for line in lines), lines  # all reused


def test_served_function_is_the_evaluated_one(demo_run, tmp_path):
    """`zelo train` stores the fusion weight chosen on validation queries and the corpus's BM25
    statistics in the checkpoint; a rerank call with only (query, documents) then reproduces the
    evaluated ranking and scores of that query."""
    import asyncio
    import shutil

    import pyarrow.compute as pc

    from zelo_ray.data import open_collection
    from zelo_ray.retrieval.lexical import TermStats
    from zelo_ray.serve.engine import ScoringEngine
    from zelo_ray.serve.service import RerankService
    from zelo_ray.config.serve import ServeConfig
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.scoring.fusion import load_fusion, write_fusion
    from zelo_ray.scoring.rerank import rerank_candidates

    root, src, out, sets = demo_run
    card = json.loads((out / "train" / "model" / "zelo_card.json").read_text())
    fusion = json.loads((out / "train" / "model" / "zelo_fusion.json").read_text())
    assert fusion["bm25_weight"] in [float(w) for w in fusion["val_r_by_weight"]]
    assert "validation queries" in fusion["chosen_on"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert ("reranker_model_only" in metrics) == (fusion["bm25_weight"] > 0)
    # whatever weight validation chose, force a mixed one on a copy so both parts matter
    ckpt = tmp_path / "model"
    shutil.copytree(out / "train" / "model", ckpt)
    col = open_collection(out / "data")
    write_fusion(ckpt, 0.5, TermStats.from_corpus(col.corpus_path, "en_stem_stop"), {})
    report = json.loads((out / "report.json").read_text())
    qid = report["split"]["test"][0]
    t = rerank_candidates(col, out / "candidates.parquet", str(ckpt), [qid], depth=10, log=lambda *_: None)
    head = t.filter(pc.is_valid(t["score"]))
    ids, scores = head["doc_id"].to_pylist(), head["score"].to_pylist()
    assert head["model_score"].to_pylist() != scores  # fused, not the model's score
    texts = doc_texts(col, ids)
    engine = ScoringEngine.load(str(ckpt), device="cpu")

    async def score(pairs):
        return engine.score(pairs)

    svc = RerankService(ServeConfig(checkpoint=str(ckpt)), encode=engine.encode, score=score,
                        model_info=engine.info(), api_keys=[], fuse=load_fusion(ckpt).scores)
    shuffled = list(reversed(range(len(ids))))  # the order a client sends must not matter
    body = {"model": "zelo-reranker", "query": query_texts(col)[qid], "documents": [texts[ids[i]] for i in shuffled]}
    code, payload = asyncio.run(svc.rerank("cohere", json.dumps(body).encode()))
    assert code == 200, payload
    served = [ids[shuffled[r["index"]]] for r in payload["results"]]
    assert served == ids
    assert [r["relevance_score"] for r in payload["results"]] == pytest.approx(scores, abs=1e-4)


@pytest.mark.slow  # starts a real browser
def test_the_demo_report_renders_in_a_headless_browser(demo_run, tmp_path):
    """`zelo demo`'s report.html in headless Chromium: no console message, all five figures drawn."""
    from tests.browser import open_in_browser

    _, _, out, _ = demo_run
    assert len(open_in_browser(out / "report.html", tmp_path)) == 5
