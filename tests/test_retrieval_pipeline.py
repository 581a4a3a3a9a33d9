"""Ray Data indexing and retrieval end to end on a small collection, plus `zelo evaluate`."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import write_beir
from zelo_ray.cli import main
from zelo_ray.config import load_config
from zelo_ray.data import open_collection
from zelo_ray.eval.evaluate import evaluate_candidates, rankings_from_candidates
from zelo_ray.retrieval.bm25 import BM25Searcher
from zelo_ray.retrieval.dense import DenseStore
from zelo_ray.retrieval.indexing import run_index
from zelo_ray.retrieval.pipeline import run_retrieve
from zelo_ray.layout import layout

TOPICS = {
    "aero": "wing lift drag airfoil boundary layer flow separation",
    "med": "patient blood pressure heart treatment clinical trial",
    "lib": "library catalog indexing retrieval citation journals",
}


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    import os

    import ray

    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, ray_local):
    rng = np.random.default_rng(0)
    docs, qrels = [], []
    for i in range(60):
        topic = list(TOPICS)[i % 3]
        words = TOPICS[topic].split()
        docs.append({"_id": f"{topic}-{i}", "title": topic, "text": " ".join(rng.choice(words, 12))})
    queries = [{"_id": t, "text": " ".join(TOPICS[t].split()[:3])} for t in TOPICS]
    queries.append({"_id": "unjudged", "text": "flow heart"})
    for d in docs:
        t = d["_id"].split("-")[0]
        qrels.append((t, d["_id"], 1))
    root = tmp_path_factory.mktemp("col")
    src = write_beir(root / "beir", docs, queries, qrels)
    return load_config(None, [f"data.dataset={src}", f"data.workdir={root}/run",
                              "index.batch_size=16", "index.commit_rows=20", "retrieve.batch_size=2",
                              "retrieve.k_bm25=10", "retrieve.k_dense=10"])


def test_index_retrieve_evaluate(cfg, monkeypatch):
    appends = []
    real_append = DenseStore.append

    def counting_append(self, batches):
        n = real_append(self, batches)
        appends.append(n)
        return n

    monkeypatch.setattr(DenseStore, "append", counting_append)
    rep = run_index(cfg, progress=False)
    # vectors were stored as they streamed in (commit_rows=20), not all at the end
    assert sum(appends) == 60 and len([n for n in appends if n]) >= 2
    assert rep["docs"] == 60 and rep["dense"]["embedded"] == 60 and rep["bm25"]["docs"] == 60
    again = run_index(cfg, progress=False)  # restartable: nothing recomputed
    assert again["dense"]["skipped"] and again["bm25"]["skipped"]

    out = run_retrieve(cfg)
    assert out["queries"] == 4
    t = pq.read_table(out["candidates"]).to_pandas()
    assert list(t.columns) == ["query_id", "doc_id", "rank", "rrf_score", "bm25_score", "bm25_rank",
                               "dense_score", "dense_rank"]
    for qid, g in t.groupby("query_id"):
        g = g.sort_values("rank")
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert g["doc_id"].is_unique
        assert (g["bm25_rank"].notna() | g["dense_rank"].notna()).all()
        assert g["bm25_rank"].notna().sum() == 10 and g["dense_rank"].notna().sum() == 10
        rrf = sum(1 / (60 + g[c].fillna(np.inf)) for c in ("bm25_rank", "dense_rank"))
        np.testing.assert_allclose(g["rrf_score"], rrf)
        assert np.all(np.diff(g["rrf_score"].to_numpy()) <= 1e-12)
        assert g["bm25_score"].isna().tolist() == g["bm25_rank"].isna().tolist()

    # the stored BM25 list is exactly what the BM25 index returns
    col = open_collection(layout(cfg).data)
    ids = col.doc_ids().to_pylist()
    rows, _ = BM25Searcher(layout(cfg).bm25).search(["wing lift drag"], k=10)[0]
    runs = rankings_from_candidates(out["candidates"], ["aero"])
    assert runs["bm25"]["aero"] == [ids[r] for r in rows]

    m = evaluate_candidates(col, "test", out["candidates"], n_boot=200)
    assert m["meta"]["judged_queries"] == 3
    assert m["meta"]["excluded_queries_without_judgments"] == 1
    for system in ("bm25", "dense", "hybrid"):
        assert m[system]["ndcg@10"]["mean"] > 0.9  # topics are trivially separable
        assert m[system]["ndcg@10"]["ci_low"] <= m[system]["ndcg@10"]["mean"] <= m[system]["ndcg@10"]["ci_high"]


def test_dense_index_resumes_missing_rows_only(cfg, tmp_path):
    """Simulate a crash after 20 vectors were stored: the re-run embeds only the other 40."""
    run_index(cfg, progress=False)  # the complete index (reused if the test above built it)
    full = DenseStore(layout(cfg).dense, model="default|None")
    cfg = cfg.model_copy(deep=True)
    cfg.index.uri = str(tmp_path / "dense")
    part = DenseStore(tmp_path / "dense", model="default|None")
    t = full.table.search().select(["row", "vector"]).limit(None).to_arrow()
    part.append([t.filter(np.asarray(t["row"]) < 20)])
    rep = run_index(cfg, progress=False)
    assert rep["dense"]["embedded"] == 40
    part = DenseStore(tmp_path / "dense", model="default|None")  # fresh handle: latest version
    assert part.state()["complete"]
    assert sorted(part.table.search().select(["row"]).limit(None).to_arrow()["row"].to_pylist()) == list(range(60))


def test_cli_evaluate_json(cfg, capsys):
    run_retrieve(cfg)
    code = main(["evaluate", "--dataset", cfg.data.dataset, "--workdir", cfg.data.workdir,
                 "--split", "test", "--json", "--set", "evaluate.bootstrap=50"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep) == {"bm25", "dense", "hybrid", "meta"}
    assert set(rep["hybrid"]) == {"ndcg@10", "recall@100", "mrr@10", "judged_queries", "n_queries"}


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "does-not-exist-xyz"]) == 2
    assert "does-not-exist-xyz" in capsys.readouterr().err
    assert main(["retrieve", "--dataset", "med", "--workdir", str(tmp_path / "w")]) == 2
    assert "zelo index" in capsys.readouterr().err


def test_one_failing_query_is_listed_and_retried_alone(cfg, tmp_path):
    """A query that raises is skipped and listed; the others' candidates are kept; a re-run asks
    only that query and adds it; a query with underscores and parser syntax retrieves normally."""
    from zelo_ray.faults import StageFailed

    run_index(cfg, progress=False)
    cfg = cfg.model_copy(deep=True)
    cfg.retrieve.output = str(tmp_path / "cand.parquet")
    cfg.errors.max_fraction = 0.5
    cfg.errors.inject = ["retrieve:med"]
    first = run_retrieve(cfg)
    assert first["failed"]["failed"] == 1 and first["failed"]["errors"] == str(layout(cfg).retrieve_errors)
    errors = pq.read_table(layout(cfg).retrieve_errors)
    assert errors["record_id"].to_pylist() == ["med"] and errors["error_type"][0].as_py() == "InjectedFault"
    t = pq.read_table(first["candidates"])
    assert sorted(set(t["query_id"].to_pylist())) == ["aero", "lib", "unjudged"]
    before = t.num_rows

    cfg.errors.inject = []
    again = run_retrieve(cfg)
    assert again["retried"] == 1 and again["failed"]["failed"] == 0
    assert not layout(cfg).retrieve_errors.exists()
    t = pq.read_table(again["candidates"]).to_pandas()
    assert sorted(t["query_id"].unique()) == ["aero", "lib", "med", "unjudged"]
    assert len(t) == before + (t["query_id"] == "med").sum()
    assert not t.duplicated(["query_id", "doc_id"]).any()
    assert run_retrieve(cfg).get("reused")  # nothing failed: nothing asked again

    # above the threshold the stage fails with a message naming the table, keeping the rest
    cfg.retrieve.output = str(tmp_path / "cand2.parquet")
    cfg.errors.max_fraction = 0.3
    cfg.errors.inject = ["retrieve:med", "retrieve:aero"]
    with pytest.raises(StageFailed, match=r"2 of 4 queries failed.*cand2\.errors\.parquet"):
        run_retrieve(cfg)
    kept = pq.read_table(cfg.retrieve.output)
    assert sorted(set(kept["query_id"].to_pylist())) == ["lib", "unjudged"]


def test_rows_lost_between_writers_and_the_run_directory_fail_loudly(cfg, tmp_path, monkeypatch):
    """Rows that go missing between the search actors and the candidates directory (a lost
    block, a writer that died) fail the stage loudly instead of publishing a partial set."""
    import zelo_ray.retrieval.pipeline as pipeline
    from zelo_ray.faults import StageFailed

    run_index(cfg, progress=False)
    cfg = cfg.model_copy(deep=True)
    cfg.retrieve.output = str(tmp_path / "cand.parquet")
    real_write = pipeline._write_here

    def write_then_lose_a_query(ds, path, **kw):
        real_write(ds, path, **kw)
        import pyarrow.compute as pc

        f = sorted(Path(path).glob("*.parquet"))[0]
        t = pq.read_table(f)
        pq.write_table(t.filter(pc.not_equal(t["query_id"], t["query_id"][0])), f)

    monkeypatch.setattr(pipeline, "_write_here", write_then_lose_a_query)
    with pytest.raises(StageFailed, match=r"1 of 4 queries that did not fail have no candidates.*nothing was published"):
        run_retrieve(cfg)
    assert not Path(cfg.retrieve.output).exists()      # nothing partial was published
    monkeypatch.setattr(pipeline, "_write_here", real_write)
    assert run_retrieve(cfg)["rows"] > 0


def test_workers_reach_the_run_through_the_object_store_on_several_nodes(tmp_path, monkeypatch):
    """On one node (or a shared work directory) workers get the driver's paths; on several, the
    copy under data.output_uri, pushed first; with no object store to use, a message that says
    what to set."""
    from zelo_ray.config import load_config
    from zelo_ray.reach import checkpoint_storage, for_workers

    work = tmp_path / "run"
    (work / "index" / "bm25").mkdir(parents=True)
    (work / "index" / "bm25" / "meta.json").write_text("{}")
    (work / "data").mkdir()
    (work / "data" / "queries.parquet").write_bytes(b"PAR1")
    store = tmp_path / "bucket"
    cfg = load_config(None, [f"data.workdir={work}", f"data.output_uri=file://{store}"])
    assert for_workers(cfg, work / "data" / "queries.parquet", nodes=1) == str(work / "data" / "queries.parquet")
    with pytest.raises(RuntimeError, match=r"several nodes.*data\.output_uri to object storage.*shared_workdir"):
        for_workers(cfg, work / "data" / "queries.parquet", nodes=2)     # file:// is one machine's disk

    # an object store (here pyarrow's in-memory filesystem stands in for s3://, same code path)
    cfg.data.output_uri = "mock://bucket/run"
    from pyarrow import fs

    mock = fs._MockFileSystem()
    import zelo_ray.storage as storage

    real = storage._fs
    monkeypatch.setattr(storage, "_fs", lambda uri: (mock, uri.split("://", 1)[1]) if uri.startswith("mock://")
                        else real(uri))
    assert for_workers(cfg, work / "data" / "queries.parquet", nodes=2) == "mock://bucket/run/data/queries.parquet"
    assert for_workers(cfg, work / "index" / "bm25", nodes=2) == "mock://bucket/run/index/bm25"
    assert mock.get_file_info("bucket/run/data/queries.parquet").size == 4
    assert mock.get_file_info("bucket/run/index/bm25/meta.json").type == fs.FileType.File
    assert checkpoint_storage(cfg, work / "train" / "ray", nodes=2) == "mock://bucket/run/train/ray"
    cfg.data.shared_workdir = True
    assert for_workers(cfg, work / "index" / "bm25", nodes=4) == str(work / "index" / "bm25")
    with pytest.raises(RuntimeError, match="outside the run directory"):
        cfg.data.shared_workdir = False
        for_workers(cfg, tmp_path / "elsewhere.parquet", nodes=2)
