"""RRF and IR metrics: golden cases computed by hand."""

import numpy as np
import pytest

from zelo_ray.eval.metrics import bootstrap_ci, judged_queries, per_query_metrics
from zelo_ray.retrieval.fusion import rrf


def test_rrf_golden():
    f = rrf([np.array([10, 20, 30]), np.array([30, 40])], c=60)
    expected = {10: 1 / 61, 20: 1 / 62, 30: 1 / 63 + 1 / 61, 40: 1 / 62}
    assert f.ids.tolist() == [30, 10, 20, 40]  # 20 and 40 tie: best rank 2 each, then id
    np.testing.assert_allclose(f.scores, [expected[i] for i in f.ids.tolist()])
    assert f.ranks.tolist() == [[3, 1], [1, 0], [2, 0], [0, 2]]


def test_rrf_missing_list_contributes_nothing_and_c():
    f = rrf([np.array([1, 2]), np.array([], np.int64)], c=0)
    np.testing.assert_allclose(f.scores, [1.0, 0.5])
    with pytest.raises(ValueError, match="repeats"):
        rrf([np.array([1, 1])])
    with pytest.raises(ValueError, match="c="):
        rrf([np.array([1])], c=-1)


QRELS = {"a": {"d1": 2, "d2": 1, "d9": 0}, "b": {"d3": 1}, "c": {"d4": 0}}


def test_per_query_metrics_golden():
    run = {"a": ["d2", "d5", "d1"], "b": ["d7"] * 0 + [f"x{i}" for i in range(10)] + ["d3"]}
    m = per_query_metrics(QRELS, run)
    assert judged_queries(QRELS) == ["a", "b"]  # c has no relevant document
    dcg = 1 / np.log2(2) * 1 + 3 / np.log2(4)  # gains 2^rel-1? trec_eval uses rel as gain
    dcg = 1 / np.log2(2) + 2 / np.log2(4)
    idcg = 2 / np.log2(2) + 1 / np.log2(3)
    assert m["ndcg@10"]["a"] == pytest.approx(dcg / idcg)
    assert m["mrr@10"]["a"] == 1.0
    assert m["recall@100"]["a"] == 1.0
    assert m["mrr@10"]["b"] == 0.0  # relevant at rank 11: outside MRR@10
    assert m["recall@100"]["b"] == 1.0
    m2 = per_query_metrics(QRELS, {"a": ["d1"]})
    assert m2["ndcg@10"]["b"] == 0.0  # judged but missing from the run counts as 0


def test_bootstrap_ci_paired_and_degenerate():
    rng = np.random.default_rng(0)
    x = rng.random((2, 200))
    ci = bootstrap_ci(x, n_boot=2000, seed=1)
    assert np.all(ci[:, 0] < x.mean(1)) and np.all(x.mean(1) < ci[:, 1])
    half = 1.96 * x.std(1, ddof=1) / np.sqrt(200)
    np.testing.assert_allclose(ci[:, 1] - ci[:, 0], 2 * half, rtol=0.15)
    np.testing.assert_allclose(bootstrap_ci(np.ones((1, 5)), n_boot=100), [[1, 1]])
    np.testing.assert_allclose(bootstrap_ci(x, n_boot=0), np.c_[x.mean(1), x.mean(1)])


def test_rrf_batch_matches_per_query_rrf(rng):
    from zelo_ray.retrieval.fusion import rrf_batch

    a = [rng.permutation(50)[: rng.integers(0, 20)] for _ in range(30)]
    b = [rng.permutation(50)[: rng.integers(0, 20)] for _ in range(30)]
    f = rrf_batch([a, b], c=60)
    for q in range(30):
        ref = rrf([a[q], b[q]], c=60)
        sel = f.query == q
        assert f.ids[sel].tolist() == ref.ids.tolist()
        np.testing.assert_allclose(f.scores[sel], ref.scores)
        assert f.ranks[sel].tolist() == ref.ranks.tolist()
        assert f.rank[sel].tolist() == list(range(1, sel.sum() + 1))
    with pytest.raises(ValueError, match="repeats"):
        rrf_batch([[np.array([1, 1])]])
