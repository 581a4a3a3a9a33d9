"""Pooling several collections' training data into one model: ids stay apart, nothing is lost."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.train.query_tower import VECTOR_SCHEMA
from zelo_ray.workflows.pooled import pool_examples, pool_validation


def _examples(path, qids, docs):
    rng = np.random.default_rng(len(qids))
    rows = {"query_id": qids, "query": [f"text of {q}" for q in qids], "doc_ids": docs,
            "targets": [[0.5] * len(d) for d in docs], "elo": [[0.0] * len(d) for d in docs],
            "doc_vectors": [rng.normal(size=(len(d), 3)).astype(np.float32).tolist() for d in docs]}
    pq.write_table(pa.table(rows, schema=VECTOR_SCHEMA), path)
    return path


def test_pooled_examples_keep_two_collections_same_ids_apart(tmp_path):
    a = _examples(tmp_path / "a.parquet", ["1", "2"], [["1", "2"], ["2"]])
    b = _examples(tmp_path / "b.parquet", ["1"], [["1", "3", "ü/ß"]])
    t = pq.read_table(pool_examples({"cranfield": a, "med": b}, tmp_path / "pooled.parquet"))
    assert t.schema == VECTOR_SCHEMA and t.num_rows == 3
    rows = {q: (d, v) for q, d, v in zip(t["query_id"].to_pylist(), t["doc_ids"].to_pylist(),
                                          t["doc_vectors"].to_pylist())}
    assert set(rows) == {"cranfield/1", "cranfield/2", "med/1"}
    assert rows["cranfield/1"][0] == ["cranfield/1", "cranfield/2"] and rows["med/1"][0] == ["med/1", "med/3", "med/ü/ß"]
    # every row keeps its own vectors, whatever order the pooled file holds them in
    src = pq.read_table(b)["doc_vectors"].to_pylist()[0]
    assert np.allclose(rows["med/1"][1], src)


def test_pooled_validation_prefixes_every_id_and_keeps_vectors_aligned():
    def part(q, d):
        return {"query_ids": [q], "queries": [f"text {q}"], "doc_ids": [[d, "x"]], "docs": [["t1", "t2"]],
                "qrels": {q: {d: 2}}, "elo": {q: {d: 1.5, "x": -1.0}}, "doc_vectors": [np.eye(2, dtype=np.float32)]}

    v = pool_validation({"a": part("1", "7"), "b": part("1", "7"), "c": None})
    assert v["query_ids"] == ["a/1", "b/1"] and v["doc_ids"] == [["a/7", "a/x"], ["b/7", "b/x"]]
    assert v["qrels"] == {"a/1": {"a/7": 2}, "b/1": {"b/7": 2}}
    assert v["elo"]["b/1"] == {"b/7": 1.5, "b/x": -1.0}
    assert len(v["doc_vectors"]) == len(v["docs"]) == 2
    assert pool_validation({"a": None}) is None
