"""BM25 from stored term statistics, and the fused served score (model + BM25)."""

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import bm25_corpus
from zelo_ray.retrieval.bm25 import BM25Searcher, build_bm25
from zelo_ray.retrieval.lexical import TermStats
from zelo_ray.scoring.fusion import Fusion, choose_weight, fuse, load_fusion, write_fusion


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The shared 300-document collection (tests/helpers.py)."""
    return bm25_corpus(tmp_path_factory.mktemp("c"))


def test_bm25_by_hand():
    stats = TermStats.from_texts(["wing lift", "lift and drag", "boundary layer"], "en_stem_stop")
    assert stats.n_docs == 3 and stats.df == {"wing": 1, "lift": 2, "drag": 1, "boundari": 1, "layer": 1}
    assert stats.avgdl == pytest.approx(6 / 3)  # 'and' is a stopword
    doc = "lift lift wing"  # 3 terms, avgdl 2
    k = 1.2 * (1 - 0.75 + 0.75 * 3 / 2)
    idf = {t: math.log(1 + (3 - d + 0.5) / (d + 0.5)) for t, d in (("lift", 2), ("wing", 1))}
    want = idf["lift"] * 2 * 2.2 / (2 + k) + idf["wing"] * 1 * 2.2 / (1 + k)
    assert stats.scores("Lifting wings?", [doc])[0] == pytest.approx(want)
    # a query term asked twice counts twice; an unknown term scores nothing in a document without it
    assert stats.scores("wing wing", [doc])[0] == pytest.approx(2 * idf["wing"] * 2.2 / (1 + k))
    assert stats.scores("hypersonic", [doc]).tolist() == [0.0]
    assert stats.scores("", [doc, "x"]).tolist() == [0.0, 0.0]


def test_stats_of_a_corpus_rank_like_the_index_and_survive_a_round_trip(corpus, tmp_path):  # noqa: F811
    stats = TermStats.from_corpus(corpus.corpus_path, "en_stem_stop")
    assert stats.n_docs == 300
    build_bm25(corpus.corpus_path, tmp_path / "bm25")
    t = pq.read_table(corpus.corpus_path, columns=["title", "text"])
    texts = [f"{a}\n{b}" if a else b for a, b in zip(t["title"].to_pylist(), t["text"].to_pylist())]
    for query in ("hypersonic wing", "boundary layer heat", "cone jet nozzle flow"):
        rows, scores = BM25Searcher(tmp_path / "bm25").search([query], k=20)[0]
        ours = stats.scores(query, [texts[r] for r in rows])
        # same statistics and formula; Tantivy's one-byte length norms move scores by a little
        assert np.corrcoef(ours, scores)[0, 1] > 0.98
        assert int(np.argmax(ours)) == 0
    stats.save(tmp_path)
    again = TermStats.load(tmp_path)
    assert again.df == stats.df and again.avgdl == stats.avgdl and again.n_docs == 300
    assert again.scores("wing lift", texts[:5]).tolist() == stats.scores("wing lift", texts[:5]).tolist()


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.lists(st.text(max_size=300), min_size=1, max_size=4))
def test_any_unicode_scores(query, docs):
    stats = TermStats.from_texts(["wing lift", "ünïcödé 東京 text", *docs], "en_stem_stop")
    s = stats.scores(query, docs)
    assert s.shape == (len(docs),) and np.isfinite(s).all() and (s >= 0).all()
    f = Fusion(0.5, stats).scores(query, docs, np.full(len(docs), 0.5))
    assert np.isfinite(f).all() and ((f > 0) & (f < 1)).all()


def test_fuse_golden_cases():
    p = np.array([0.9, 0.6, 0.2])
    assert fuse(p, np.array([9.0, 0.0, 1.0]), 0.0).tolist() == p.tolist()  # the model alone, unchanged
    assert fuse(np.array([0.7]), np.array([3.0]), 0.5).tolist() == [0.5]  # one document: nothing to compare
    assert fuse(np.array([0.5, 0.5]), np.array([1.0, 1.0]), 0.3).tolist() == [0.5, 0.5]  # all equal: a tie
    # BM25 decides when it weighs most; the model when BM25 weighs little
    bm = np.array([0.0, 0.0, 10.0])
    assert fuse(p, bm, 0.9).argmax() == 2 and fuse(p, bm, 0.1).argmax() == 0
    # extreme probabilities stay finite (σ⁻¹ of 0 and 1 is clipped)
    assert np.isfinite(fuse(np.array([0.0, 1.0, 0.5]), np.array([1.0, 2.0, 3.0]), 0.5)).all()


def test_choose_weight_follows_the_zelo_scores():
    elo = {"q1": {"a": 3.0, "b": 0.0, "c": -1.0}, "q2": {"a": -2.0, "b": 0.5, "c": 2.0}}
    good = [("q1", ["a", "b", "c"], np.array([0.9, 0.3, 0.1]), np.array([0.0, 5.0, 4.0])),
            ("q2", ["a", "b", "c"], np.array([0.1, 0.4, 0.9]), np.array([5.0, 0.0, 4.0]))]
    w, table = choose_weight(good, elo)
    assert w == 0.0 and table[0.0] > 0.9  # the model agrees with the judges: BM25 only adds noise
    bad = [(q, ids, p[::-1].copy(), np.array([elo[q][d] for d in ids])) for q, ids, p, _ in good]
    w, table = choose_weight(bad, elo)
    assert w == 0.9 and table[0.9] > 0 > table[0.0]  # the model is backwards, BM25 is right
    # a query without usable scores (one judged document) is skipped, not a NaN
    w, table = choose_weight(good + [("q3", ["a"], np.array([0.5]), np.array([1.0]))], elo)
    assert w == 0.0 and np.isfinite(list(table.values())).all()


def test_fusion_file_round_trip_and_missing_stats(tmp_path):
    stats = TermStats.from_texts(["wing lift", "drag"], "en_stem_stop")
    assert load_fusion(tmp_path) is None  # no fusion file: the model alone
    write_fusion(tmp_path, 0.0, stats, {})
    assert load_fusion(tmp_path) is None and not TermStats.exists(tmp_path)
    info = write_fusion(tmp_path, 0.4, stats, {"chosen_on": "test"})
    assert info["bm25"]["terms"] == 3
    f = load_fusion(tmp_path)
    assert f.weight == 0.4 and f.stats.df == stats.df
    (tmp_path / "bm25_df.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="no BM25 statistics"):
        load_fusion(tmp_path)
