import numpy as np
import pytest

from zelo_ray.core.elo import fit
from zelo_ray.core.ensemble import clamp_votes, soft_outcomes
from zelo_ray.core.simulate import LABEL, JudgeModel, judge_scores, simulate_ensemble, simulate_queries


def test_clamp_rounds_to_nearest_vote():
    out = clamp_votes(np.array([-1.0, -0.6, -0.5, 0.0, 0.3, 0.51, 1.0, np.nan]))
    np.testing.assert_array_equal(out[:-1], [-1, -1, 0, 0, 0, 1, 1])
    assert np.isnan(out[-1])


def test_missing_votes_are_not_counted():
    scores = np.array([[-1.0, np.nan, np.nan], [np.nan, np.nan, np.nan], [1.0, 1.0, -1.0]])
    out = soft_outcomes(scores)
    assert out.w[0] == 1.0  # the single answer decides; failed calls do not vote for A
    assert np.isnan(out.w[1]) and not out.valid[1]
    assert out.w[2] == pytest.approx(1 / 3)
    assert out.n_votes.tolist() == [1, 0, 3]


def test_min_votes_and_soft_mean():
    scores = np.array([[-0.4, -0.4, np.nan]])
    assert not soft_outcomes(scores, min_votes=3).valid[0]
    assert soft_outcomes(scores).w[0] == 0.5  # both clamp to a tie
    assert soft_outcomes(scores, clamp=False).w[0] == pytest.approx(0.7)


def test_out_of_range_score_is_rejected():
    with pytest.raises(ValueError, match="pair 0, judge 1"):
        soft_outcomes(np.array([[0.0, 1.5]]))


def test_judge_prefers_the_more_relevant_document(rng):
    s = judge_scores(np.full(4000, 2.0), np.full(4000, -2.0), rng, JudgeModel())
    # Negative score means the first document is more relevant; 2% are uniform draws.
    assert np.mean(s < 0) > 0.97


def test_position_bias_cancels_with_random_order(rng):
    biased = JudgeModel(noise_sd=0.2, uniform_mix=0.0, position_bias=1.5)
    equal = np.zeros(20_000)
    raw = judge_scores(equal, equal, rng, biased)
    assert np.mean(raw) < -0.5  # shown first wins without order randomisation
    pairs = np.stack([np.arange(0, 20_000, 2), np.arange(1, 20_000, 2)], 1)
    votes = simulate_ensemble(pairs, equal, 3, rng, biased)
    assert abs(np.mean(votes)) < 0.05


def test_simulated_ensemble_recovers_ranking(rng):
    batch = simulate_queries(20, 60, rng, k=8, graph_pool=4)
    assert batch.votes.shape == (20 * 240, 3)
    w = soft_outcomes(batch.votes).w
    res = fit(batch.i, batch.j, w, 20 * 60, group=batch.group)
    from scipy.stats import kendalltau

    taus = [kendalltau(res.scores[q * 60:(q + 1) * 60], batch.hidden[q]).statistic
            for q in range(20)]
    assert np.mean(taus) > 0.8
    assert LABEL == "SIMULATION"


def test_bad_judge_parameters():
    with pytest.raises(ValueError):
        JudgeModel(uniform_mix=2.0)
    with pytest.raises(ValueError):
        JudgeModel(link="cauchy")


def test_latent_from_grades_makes_relevance_decisive_and_equal_grades_tie():
    from zelo_ray.core.simulate import latent_from_grades

    rng = np.random.default_rng(5)
    n = 4000
    grades = np.repeat([0, 1], n)  # a binary collection
    s = latent_from_grades(grades, 1, rng.standard_normal(2 * n))
    assert latent_from_grades(np.array([0, 2, 4, 9]), 4, np.zeros(4)).tolist() == [-3.0, 0.0, 3.0, 3.0]
    a, b = rng.integers(0, n, 3000), n + rng.integers(0, n, 3000)   # non-relevant vs relevant
    mixed = clamp_votes(judge_scores(s[a], s[b], rng, JudgeModel()))
    assert (mixed == 1).mean() > 0.95           # the relevant (second) document wins decisively
    c, d = rng.integers(0, n, 3000), rng.integers(0, n, 3000)       # two non-relevant documents
    same = clamp_votes(judge_scores(s[c], s[d], rng, JudgeModel()))
    assert 0.75 < (same == 0).mean() < 0.95     # mostly a tie, not always
    # the raw gain (the old mapping) gave a relevant document a tie most of the time
    raw = clamp_votes(judge_scores(grades[a].astype(float), grades[b].astype(float), rng, JudgeModel()))
    assert (raw == 0).mean() > 0.5


def test_decisive_by_grade_golden():
    import pyarrow as pa

    from zelo_ray.annotate.diagnostics import decisive_by_grade

    pairs = pa.table({"pair_id": [1, 2, 3], "query_id": ["q"] * 3, "doc_a": ["r", "n1", "n1"],
                      "doc_b": ["n1", "r", "n2"]})
    votes = pa.table({"pair_id": [1, 2, 3, 3], "kind": ["within"] * 4, "score": [-0.9, -0.8, 0.1, None]})
    grade = {"r": 1.0, "n1": 0.0, "n2": 0.0}
    out = decisive_by_grade(votes, pairs, lambda q, d: np.array([grade[x] for x in d.to_pylist()]))
    assert out == {"0-0": {"votes": 1, "decisive": 0.0, "agree_with_grades": 1.0},
                   "0-1": {"votes": 2, "decisive": 1.0, "agree_with_grades": 0.5}}
