"""Tantivy BM25 and LanceDB dense store/search, without Ray."""

import json

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import bm25_corpus
from zelo_ray.retrieval import bm25 as bm25_mod
from zelo_ray.retrieval.bm25 import BM25Searcher, build_bm25
from zelo_ray.retrieval.dense import DenseSearcher, DenseStore

WORDS = "wing lift drag flow shock boundary layer heat plate cone jet nozzle".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bm25_corpus(tmp_path_factory.mktemp("c"))


def test_query_syntax_is_plain_words(corpus, tmp_path):
    """User text never reaches a query parser: operators, quotes, fields and ``_``-joined words
    (which a parser turns into phrase queries the position-less index cannot answer) are words."""
    build_bm25(corpus.corpus_path, tmp_path / "bm25")
    s = BM25Searcher(tmp_path / "bm25")
    assert bm25_mod.query_terms('Wing: "lift" AND -drag?', s.analyzer) == ["wing", "lift", "drag"]
    assert bm25_mod.query_terms("The CRF01_1b2k wing wings", s.analyzer) == ["crf01", "1b2k", "wing", "wing"]
    (rows, _), (plain, _) = s.search(['title:wing AND "lift" OR NOT drag_flow (heat', "wing lift drag flow heat"], 10)
    assert rows.tolist() == plain.tolist() and len(rows) == 10


def test_bm25_search_finds_rare_term_and_stems(corpus, tmp_path):
    info = build_bm25(corpus.corpus_path, tmp_path / "bm25")
    assert info == {"docs": 300, "resumed_from": 0, "skipped": False}
    s = BM25Searcher(tmp_path / "bm25", threads=2)
    (rows, scores), (rows2, _), (empty, _) = s.search(["Hypersonic?", "hypersonics", "?!"], k=5)
    assert rows.tolist() == [17] and scores[0] > 0
    assert rows2.tolist() == [17]  # en_stem: hypersonics -> hypersonic
    assert len(empty) == 0
    rows, scores = s.search(["wing flow"], k=50)[0]
    assert len(rows) == 50 and np.all(np.diff(scores) <= 0) and len(set(rows.tolist())) == 50
    assert build_bm25(corpus.corpus_path, tmp_path / "bm25")["skipped"]


def test_bm25_resume_after_crash_has_no_duplicates(corpus, tmp_path, monkeypatch):
    path = tmp_path / "bm25"
    calls = {"n": 0}
    real = bm25_mod._write_state

    def crash_after_first_commit(p, state):
        real(p, state)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(bm25_mod, "_write_state", crash_after_first_commit)
    # row groups of the corpus are read 8192 at a time; commit every 100 rows -> first commit at 300
    # would be the end, so use a corpus-sized commit and crash on the very first recorded state
    with pytest.raises(KeyboardInterrupt):
        build_bm25(corpus.corpus_path, path, commit_rows=1)
    state = json.loads((path / "zelo_bm25_state.json").read_text())
    assert 0 < state["committed_rows"] <= 300 and not state["complete"]
    monkeypatch.setattr(bm25_mod, "_write_state", real)
    info = build_bm25(corpus.corpus_path, path, commit_rows=1)
    assert info["resumed_from"] == state["committed_rows"]
    s = BM25Searcher(path)
    assert s.searcher.num_docs == 300
    rows, _ = s.search(["title"], k=1000)[0]
    assert sorted(rows.tolist()) == list(range(300))


def test_bm25_resume_drops_uncommitted_tail(corpus, tmp_path):
    """Documents past the recorded mark (committed but not recorded) are deleted, then re-added."""
    path = tmp_path / "bm25"
    build_bm25(corpus.corpus_path, path)
    state = json.loads((path / "zelo_bm25_state.json").read_text())
    state.update(committed_rows=120, complete=False)
    (path / "zelo_bm25_state.json").write_text(json.dumps(state))
    info = build_bm25(corpus.corpus_path, path)
    assert info["resumed_from"] == 120
    s = BM25Searcher(path)
    assert s.searcher.num_docs == 300
    rows, _ = s.search(["title"], k=1000)[0]
    assert sorted(rows.tolist()) == list(range(300))


def _vec_table(rows, vecs):
    return pa.table({"row": pa.array(rows, pa.int64()),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1])})


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dense_store_incremental_and_exact_search(tmp_path, rng):
    X = _unit(rng, 500)
    store = DenseStore(tmp_path / "dense", model="m")
    store.append([_vec_table(np.arange(0, 200), X[:200])])
    done = DenseStore(tmp_path / "dense", model="m").done_mask(500)  # a fresh process after a crash
    assert done[:200].all() and not done[200:].any()
    with pytest.raises(RuntimeError, match="200 vectors for 500 documents"):
        store.finalise(n_rows=500, ann_min_rows=10**6)
    store.append([_vec_table(np.arange(200, 500)[::-1], X[200:][::-1])])  # any order
    state = store.finalise(n_rows=500, ann_min_rows=10**6)
    assert state["complete"] and state["ann"] is None and state["dim"] == 16
    Q = _unit(rng, 7)
    res = DenseSearcher(tmp_path / "dense").search(Q, k=10)
    assert DenseSearcher(tmp_path / "dense").mode == "exact"
    sims = Q @ X.T
    for (rows, scores), s in zip(res, sims):
        np.testing.assert_array_equal(rows, np.argsort(-s)[:10])
        np.testing.assert_allclose(scores, np.sort(s)[::-1][:10], rtol=1e-5)
    # another model must not reuse these vectors
    assert not DenseStore(tmp_path / "dense", model="other").done_mask(500).any()


def _clustered_store(path, rng, n, clusters):
    """A store of n unit vectors around ``clusters`` centres (what ANN indexes are built for)."""
    centers = _unit(rng, clusters)
    X = centers[rng.integers(0, clusters, n)] + 0.05 * rng.standard_normal((n, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    store = DenseStore(path, model="m")
    store.append([_vec_table(np.arange(n), X)])
    return store, X


def test_dense_ann_index_above_threshold(tmp_path, rng):
    store, X = _clustered_store(tmp_path / "dense", rng, 3000, 20)
    state = store.finalise(n_rows=3000, ann_min_rows=1000, num_partitions=8, num_sub_vectors=4)
    assert state["ann"] == {"type": "ivf_pq", "num_partitions": 8}
    ann = DenseSearcher(tmp_path / "dense", nprobes=8, refine_factor=10)
    assert ann.mode == "ann"
    exact = DenseSearcher(tmp_path / "dense", mode="exact")
    Q = X[:20] + 0.01
    recall = np.mean([len(np.intersect1d(a[0], e[0])) / 10
                      for a, e in zip(ann.search(Q, 10), exact.search(Q, 10))])
    assert recall >= 0.8
    one = ann.search(Q[:1], 10)[0]
    assert len(one[0]) == 10 and np.all(np.diff(one[1]) <= 1e-6)


def test_dense_ivf_mode_close_to_exact(tmp_path, rng):
    store, X = _clustered_store(tmp_path / "dense", rng, 4000, 30)
    store.finalise(n_rows=4000, ann_min_rows=10**6)
    exact = DenseSearcher(tmp_path / "dense", mode="exact")
    ivf = DenseSearcher(tmp_path / "dense", mode="ivf", ivf_probe=16, threads=1)
    assert ivf.ivf.nlist == 63  # sqrt(4000)
    Q = X[:50]
    got, want = ivf.search(Q, 10), exact.search(Q, 10)
    recall = np.mean([len(np.intersect1d(g[0], w[0])) / 10 for g, w in zip(got, want)])
    assert recall >= 0.9
    for (rows, scores), q in zip(got, Q):  # scores are the true dot products of the rows returned
        np.testing.assert_allclose(scores, X[rows] @ q, rtol=1e-5)
    full = DenseSearcher(tmp_path / "dense", mode="ivf", ivf_probe=63, threads=1).search(Q, 10)
    assert [g[0].tolist() for g in full] == [w[0].tolist() for w in want]  # probing every list = exact
    with pytest.raises(ValueError, match="expected auto, exact, ivf or ann"):
        DenseSearcher(tmp_path / "dense", mode="hnsw")
