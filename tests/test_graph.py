import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zelo_ray.core.graph import (
    CompleteGraphFallback,
    _walecki_pairs,
    all_pairs,
    bollobas_diameter_bound,
    cycle_pairs,
    degrees,
    diameter,
    graph_stats,
    n_components,
    random_pairs,
    sample_pairs,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 120), half_k=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_cycle_pairs_is_simple_regular_connected(n, half_k, seed):
    k = 2 * half_k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompleteGraphFallback)
        pairs = cycle_pairs(n, k, np.random.default_rng(seed))
    s = graph_stats(pairs, n)
    assert s.self_loops == 0
    assert s.repeated_pairs == 0
    assert s.components == 1
    if n >= k + 2:
        assert pairs.shape == (n * k // 2, 2)
        assert s.min_degree == s.max_degree == k
    else:
        assert s.edges == n * (n - 1) // 2


@settings(max_examples=20, deadline=None)
@given(n=st.integers(4, 60), half_k=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_cycle_pairs_deterministic_for_seed(n, half_k, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompleteGraphFallback)
        a = cycle_pairs(n, 2 * half_k, np.random.default_rng(seed))
        b = cycle_pairs(n, 2 * half_k, np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)


def test_cycle_pairs_orientation_is_random():
    pairs = cycle_pairs(200, 8, np.random.default_rng(0))
    lower_first = np.mean(pairs[:, 0] < pairs[:, 1])
    assert 0.4 < lower_first < 0.6


@pytest.mark.parametrize("n", [0, 1, 2])
def test_cycle_pairs_tiny_inputs(n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompleteGraphFallback)
        pairs = cycle_pairs(n, 8, np.random.default_rng(0))
    assert pairs.shape == (n * (n - 1) // 2, 2)


def test_cycle_pairs_small_n_warns_and_returns_complete_graph():
    with pytest.warns(CompleteGraphFallback, match="complete graph"):
        pairs = cycle_pairs(9, 8, np.random.default_rng(0))
    assert graph_stats(pairs, 9).edges == 36


@pytest.mark.parametrize("k", [0, 3, -2])
def test_cycle_pairs_rejects_bad_k(k):
    with pytest.raises(ValueError, match="even"):
        cycle_pairs(10, k, np.random.default_rng(0))


def test_walecki_fallback_is_edge_disjoint_for_every_n():
    for n in range(4, 60):
        ring = n - 1 if n % 2 else n - 2
        k = 2 * (ring // 2)
        s = graph_stats(_walecki_pairs(n, k, np.random.default_rng(n)), n)
        assert (s.repeated_pairs, s.self_loops, s.min_degree, s.max_degree) == (0, 0, k, k), n


def test_dense_regime_still_regular():
    # n = k + 2 is the densest case where cycles must exist; repair often fails here.
    for seed in range(5):
        s = graph_stats(cycle_pairs(12, 10, np.random.default_rng(seed)), 12)
        assert s.min_degree == s.max_degree == 10 and s.repeated_pairs == 0


def test_random_pairs_distinct_and_in_range(rng):
    pairs = random_pairs(50, 400, rng)
    s = graph_stats(pairs, 50)
    assert s.edges == 400 and s.repeated_pairs == 0 and s.self_loops == 0
    assert pairs.min() >= 0 and pairs.max() < 50
    assert len(random_pairs(10, 45, rng)) == 45  # the whole triangle
    with pytest.raises(ValueError):
        random_pairs(10, 46, rng)


def test_all_pairs_and_diagnostics():
    p = all_pairs(5)
    assert p.shape == (10, 2) and (p[:, 0] < p[:, 1]).all()
    np.testing.assert_array_equal(degrees(p, 5), [4] * 5)
    assert diameter(p, 5) == 1
    chain = np.array([[0, 1], [1, 2], [3, 4]])
    assert n_components(chain, 5) == 2
    assert diameter(chain, 5) == np.inf


def test_diameter_is_logarithmic_and_within_bollobas_bound():
    pairs = cycle_pairs(100, 8, np.random.default_rng(0))
    d = diameter(pairs, 100)
    assert 2 <= d <= bollobas_diameter_bound(100, 8)


def test_sample_pairs_budgets(rng):
    assert len(sample_pairs("cycles", 100, 8, rng)) == 400
    assert len(sample_pairs("random", 100, 8, rng)) == 400
    assert len(sample_pairs("all", 100, 8, rng)) == 4950
    with pytest.raises(ValueError, match="strategy"):
        sample_pairs("bogus", 10, 2, rng)
