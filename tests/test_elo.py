import choix
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_ndtr

from zelo_ray.core.elo import EloConvergenceWarning, fit, win_probability
from zelo_ray.core.graph import cycle_pairs

MODELS = ["thurstone", "bradley_terry"]


def _reference_objective(e, i, j, w, prior, model, weight=None):
    d = e[i] - e[j]
    if model == "thurstone":
        lp, lq = log_ndtr(d), log_ndtr(-d)
    else:
        lp, lq = -np.logaddexp(0, -d), -np.logaddexp(0, d)
    weight = np.ones_like(w) if weight is None else weight
    return -np.sum(weight * (w * lp + (1 - w) * lq)) + 0.5 * prior * np.sum(e**2)


def _random_problem(rng, n=30, k=6, soft=True):
    pairs = cycle_pairs(n, k, rng)
    s = rng.normal(0, 1.5, n)
    p = win_probability(s[pairs[:, 0]] - s[pairs[:, 1]], "bradley_terry")
    w = rng.binomial(3, p) / 3 if soft else (rng.random(len(p)) < p).astype(float)
    return pairs[:, 0], pairs[:, 1], w, n


@pytest.mark.parametrize("model", MODELS)
def test_three_cycle_of_ties_is_all_zero(model):
    res = fit(np.array([0, 1, 2]), np.array([1, 2, 0]), np.full(3, 0.5), 3, model=model)
    np.testing.assert_allclose(res.scores, 0.0, atol=1e-12)
    assert res.all_converged


@pytest.mark.parametrize("model", MODELS)
def test_three_cycle_of_wins_is_all_zero(model):
    # 0 beats 1, 1 beats 2, 2 beats 0: perfectly balanced.
    res = fit(np.array([0, 1, 2]), np.array([1, 2, 0]), np.ones(3), 3, model=model)
    np.testing.assert_allclose(res.scores, 0.0, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_chain_orders_and_is_antisymmetric(model):
    res = fit(np.array([0, 1, 2]), np.array([1, 2, 3]), np.ones(3), 4, model=model)
    e = res.scores
    assert e[0] > e[1] > e[2] > e[3]
    np.testing.assert_allclose(e, -e[::-1], atol=1e-8)
    assert abs(e.sum()) < 1e-10


@pytest.mark.parametrize("model", MODELS)
def test_winner_of_everything_stays_finite(model):
    n = 6
    i = np.zeros(n - 1, dtype=int)
    j = np.arange(1, n)
    res = fit(i, j, np.ones(n - 1), n, model=model)
    assert res.all_converged
    assert np.isfinite(res.scores).all() and np.isfinite(res.stderr).all()
    assert res.scores[0] == res.scores.max() and res.scores[0] < 100


def test_no_prior_and_unbeaten_node_reports_nonconvergence():
    with pytest.warns(EloConvergenceWarning, match="did not converge"):
        res = fit(np.array([0, 0]), np.array([1, 2]), np.ones(2), 3, prior=0.0, max_iter=20)
    assert not res.all_converged
    with pytest.raises(RuntimeError, match="did not converge"):
        res.raise_if_not_converged()


def test_disconnected_graph_centres_each_component():
    i = np.array([0, 2, 3])
    j = np.array([1, 3, 4])
    res = fit(i, j, np.array([0.8, 0.7, 0.5]), 6, prior=0.0)
    assert res.all_converged
    assert res.disconnected.tolist() == [True]
    e = res.scores
    assert abs(e[0] + e[1]) < 1e-9 and abs(e[2] + e[3] + e[4]) < 1e-9
    assert e[5] == 0 and np.isnan(res.stderr[5])  # isolated node: no information


@pytest.mark.parametrize("model", MODELS)
def test_matches_generic_optimiser(model, rng):
    for _ in range(5):
        i, j, w, n = _random_problem(rng)
        prior = 0.05
        res = fit(i, j, w, n, model=model, prior=prior, tol=1e-9)
        ref = minimize(_reference_objective, np.zeros(n), args=(i, j, w, prior, model),
                       method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
        np.testing.assert_allclose(res.scores, ref.x - ref.x.mean(), atol=1e-4)
        assert res.nll[0] == pytest.approx(ref.fun, rel=1e-8, abs=1e-8)


def test_bradley_terry_matches_choix(rng):
    for _ in range(5):
        n = 25
        pairs = cycle_pairs(n, 6, rng)
        s = rng.normal(0, 1, n)
        wins = rng.binomial(6, win_probability(s[pairs[:, 0]] - s[pairs[:, 1]], "bradley_terry"))
        data = []
        for (a, b), k in zip(pairs.tolist(), wins.tolist()):
            data += [(a, b)] * k + [(b, a)] * (6 - k)
        # choix.opt_pairwise minimises NLL + alpha * |θ|², i.e. our prior = 2 * alpha.
        ref = choix.opt_pairwise(n, data, alpha=0.05, method="BFGS", tol=1e-10)
        res = fit(pairs[:, 0], pairs[:, 1], wins / 6, n, weight=np.full(len(pairs), 6.0),
                  model="bradley_terry", prior=0.1, tol=1e-9)
        np.testing.assert_allclose(res.scores, ref - ref.mean(), atol=1e-4)
        # Unregularised ILSR: the plain maximum-likelihood estimate, when it exists.
        if (wins > 0).all() and (wins < 6).all():
            ml = choix.ilsr_pairwise(n, data, alpha=0.0, tol=1e-12)
            res0 = fit(pairs[:, 0], pairs[:, 1], wins / 6, n, model="bradley_terry",
                       weight=np.full(len(pairs), 6.0), prior=0.0, tol=1e-9)
            np.testing.assert_allclose(res0.scores, ml - ml.mean(), atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_many_groups_equal_separate_fits(model, rng):
    problems = [_random_problem(rng, n=n) for n in (12, 30, 9, 20)]
    ii, jj, ww, grp, off = [], [], [], [], 0
    for g, (i, j, w, n) in enumerate(problems):
        ii.append(i + off), jj.append(j + off), ww.append(w), grp.append(np.full(n, g * 10))
        off += n
    joint = fit(np.concatenate(ii), np.concatenate(jj), np.concatenate(ww), off,
                group=np.concatenate(grp), model=model)
    assert joint.group_ids.tolist() == [0, 10, 20, 30]
    off = 0
    for g, (i, j, w, n) in enumerate(problems):
        alone = fit(i, j, w, n, model=model)
        np.testing.assert_allclose(joint.scores[off:off + n], alone.scores, atol=1e-7)
        np.testing.assert_allclose(joint.stderr[off:off + n], alone.stderr, atol=1e-7)
        assert joint.nll[g] == pytest.approx(alone.nll[0])
        off += n


def test_group_layout_does_not_matter(rng):
    i1, j1, w1, n1 = _random_problem(rng, n=15)
    i2, j2, w2, n2 = _random_problem(rng, n=18)
    i = np.concatenate([i1, i2 + n1])
    j = np.concatenate([j1, j2 + n1])
    w = np.concatenate([w1, w2])
    group = np.repeat([0, 1], [n1, n2])
    a = fit(i, j, w, n1 + n2, group=group)
    perm = rng.permutation(n1 + n2)
    inv = np.argsort(perm)
    eperm = rng.permutation(len(i))
    b = fit(inv[i][eperm], inv[j][eperm], w[eperm], n1 + n2, group=group[perm])
    np.testing.assert_allclose(b.scores[inv], a.scores, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_stderr_matches_inverse_hessian_of_centred_scores(model, rng):
    i, j, w, n = _random_problem(rng, n=15)
    prior = 0.1
    res = fit(i, j, w, n, model=model, prior=prior, tol=1e-10)
    e = res.scores
    h = np.zeros((n, n))
    eps = 1e-4
    for a in range(n):  # numerical Hessian of the reference objective
        for b in range(n):
            def f(da, db):
                x = e.copy()
                x[a] += da
                x[b] += db
                return _reference_objective(x, i, j, w, prior, model)
            h[a, b] = (f(eps, eps) - f(eps, -eps) - f(-eps, eps) + f(-eps, -eps)) / (4 * eps**2)
    cov = np.linalg.inv(h)
    centre = np.eye(n) - 1.0 / n
    np.testing.assert_allclose(res.stderr, np.sqrt(np.diag(centre @ cov @ centre)), rtol=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_extreme_outcomes_are_stable(model):
    # Hard outcomes against a huge prior-free gap: no NaN, no log(0).
    n = 50
    i = np.arange(n - 1)
    j = np.arange(1, n)
    res = fit(i, j, np.ones(n - 1), n, model=model, prior=1e-4, max_iter=200)
    assert np.isfinite(res.scores).all() and np.isfinite(res.nll).all()
    assert res.all_converged
    assert np.all(np.diff(res.scores) < 0)


def test_edge_weight_equals_repeated_edges(rng):
    i, j, w, n = _random_problem(rng, n=10)
    a = fit(i, j, w, n, weight=np.full(len(i), 2.0))
    b = fit(np.concatenate([i, i]), np.concatenate([j, j]), np.concatenate([w, w]), n)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-9)


def test_empty_inputs():
    res = fit(np.array([], dtype=int), np.array([], dtype=int), np.array([]), 0)
    assert res.scores.shape == (0,) and res.group_ids.shape == (0,)
    res = fit(np.array([], dtype=int), np.array([], dtype=int), np.array([]), 3)
    np.testing.assert_array_equal(res.scores, 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(i=[0, 5], j=[1, 2], w=[1, 1], n=3), r"i\[1\]=5 is outside"),
        (dict(i=[0, 1], j=[1, 1], w=[1, 1], n=3), "edge 1 compares node 1 with itself"),
        (dict(i=[0, 1], j=[1, 2], w=[1, 1.5], n=3), r"w\[1\]=1.5"),
        (dict(i=[0, 1], j=[1, 2], w=[1, np.nan], n=3), r"w\[1\]=nan"),
        (dict(i=[0, 1], j=[1, 2], w=[1], n=3), "one length"),
        (dict(i=[0, 1], j=[1, 2], w=[1, 1], n=3, group=[0, 0, 1]), "joins group 0 to group 1"),
        (dict(i=[0], j=[1], w=[1], n=2, model="elo"), "model='elo'"),
        (dict(i=[0], j=[1], w=[1], n=2, prior=-1), "prior"),
        (dict(i=[0], j=[1], w=[1], n=2, weight=[-1.0]), r"weight\[0\]"),
    ],
)
def test_bad_input_names_the_culprit(kwargs, message):
    kwargs = {k: np.asarray(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=message):
        fit(kwargs.pop("i"), kwargs.pop("j"), kwargs.pop("w"), kwargs.pop("n"), **kwargs)


def test_threads_argument_gives_same_answer(rng):
    i, j, w, n = _random_problem(rng, n=40)
    a = fit(i, j, w, n, threads=1)
    b = fit(i, j, w, n, threads=2)
    np.testing.assert_allclose(a.scores, b.scores, atol=0)
