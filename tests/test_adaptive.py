"""Adaptive pair selection (#33): the per-query math, its config, and the judging stage running it in
rounds — same budget as cycles, connected, resumable mid-round."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import N_QUERIES, annotate_cfg, annotate_workdir, kill_annotate_and_rerun
from zelo_ray.annotate.run import run_annotate
from zelo_ray.config import load_config
from zelo_ray.config.loading import ConfigError
from zelo_ray.core.adaptive import next_pairs, pair_values, round_budgets, settled, top_membership
from zelo_ray.core.elo import fit
from zelo_ray.core.ensemble import soft_outcomes
from zelo_ray.core.graph import all_pairs, n_components, sample_pairs
from zelo_ray.core.simulate import JudgeModel, simulate_ensemble


# -- the math -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,rounds", [(100, 4, 4), (100, 8, 2), (12, 4, 3), (7, 3, 5), (50, 2, 4)])
def test_round_budgets_spend_what_cycles_spend(n, k, rounds):
    b = round_budgets(n, k, rounds)
    assert sum(b) == round(k * n / 2) and b[0] == n      # first round: one Hamiltonian cycle
    assert len(b) == rounds and max(b[1:]) - min(b[1:]) <= 1


def test_round_budgets_of_tiny_queries():
    assert round_budgets(1, 8, 4) == [0]
    assert round_budgets(3, 8, 4) == [3]                  # the complete graph, at once
    assert round_budgets(5, 8, 4)[0] == 5 and sum(round_budgets(5, 8, 4)) == 10


def test_top_membership():
    e = np.array([2.0, 1.0, 0.0, -1.0])
    assert top_membership(e, np.full(4, 0.1), 4).tolist() == [1.0] * 4     # everyone is in the top 4
    pi = top_membership(e, np.full(4, 0.3), 2)
    assert np.all(np.diff(pi) < 0) and pi[0] > 0.99 and pi[3] < 0.01
    # an unseen document (NaN stderr) is uncertain, not certain
    assert 0.2 < top_membership(np.array([0.0, 1.0, -1.0]), np.array([np.nan, 0.1, 0.1]), 1)[0] < 0.5


def test_pair_values_favour_uncertain_pairs_near_the_top():
    e = np.array([3.0, 2.9, 0.0, -0.1, -3.0])
    se = np.full(5, 0.3)
    v = pair_values(e, se, top=2)
    assert np.allclose(v, v.T) and np.all(np.diag(v) == 0) and np.all(v >= 0)
    assert v[0, 1] > v[2, 3] > 0           # equally close, but (0, 1) is the head
    assert v[0, 1] > 100 * v[0, 4]         # a settled pair is worth almost nothing
    # a document we know less about is worth more comparisons
    wide = se.copy()
    wide[1] = 1.0
    assert pair_values(e, wide, top=2)[0, 1] > v[0, 1]


def test_settled():
    assert settled(np.array([4.0, 2.0, 0.0, -9]), np.full(4, 0.1), top=2, confidence=0.95)
    assert not settled(np.array([4.0, 3.9, 0.0, -9]), np.full(4, 0.1), top=2, confidence=0.95)
    assert settled(np.array([1.0]), np.array([0.1]), top=2, confidence=0.99)


def test_next_pairs_is_new_distinct_and_within_budget():
    rng = np.random.default_rng(0)
    n = 30
    judged = sample_pairs("cycles", n, 2, rng)
    e, se = rng.normal(size=n), rng.uniform(0.2, 1.0, n)
    new = next_pairs(e, se, judged, 20, top=5, rng=np.random.default_rng(1))
    assert new.shape == (20, 2) and (new[:, 0] != new[:, 1]).all()
    key = lambda p: set(map(frozenset, p.tolist()))  # noqa: E731
    assert len(key(new)) == 20 and not key(new) & key(judged)
    # each pick shrinks its documents' variance: a round spreads instead of piling on one document
    assert np.bincount(new.ravel(), minlength=n).max() <= 6
    again = next_pairs(e, se, judged, 20, top=5, rng=np.random.default_rng(1))
    assert np.array_equal(new, again)     # a pure function of its inputs and the generator


def test_next_pairs_spends_the_budget_on_the_head():
    rng = np.random.default_rng(2)
    n, top = 60, 10
    e = np.sort(rng.normal(0, 2, n))[::-1]
    judged = sample_pairs("cycles", n, 2, rng)
    new = next_pairs(e, np.full(n, 0.5), judged, 40, top=top, rng=rng)
    in_head = (new < top + 5).any(axis=1)
    assert in_head.mean() > 0.8, in_head.mean()


def test_next_pairs_when_nothing_is_left_or_asked():
    n = 5
    assert next_pairs(np.zeros(n), np.ones(n), all_pairs(n), 3, top=2, rng=np.random.default_rng(0)).shape == (0, 2)
    assert next_pairs(np.zeros(n), np.ones(n), np.zeros((0, 2)), 0, top=2, rng=np.random.default_rng(0)).shape == (0, 2)
    # more budget than pairs: every remaining pair once
    got = next_pairs(np.zeros(n), np.ones(n), np.array([[0, 1]]), 50, top=2, rng=np.random.default_rng(0))
    assert len(got) == 9


def _dense_outcomes(hidden: np.ndarray, rng) -> np.ndarray:
    n = len(hidden)
    pairs = all_pairs(n)
    w = soft_outcomes(simulate_ensemble(pairs, hidden, 3, rng, JudgeModel()), clamp=True, min_votes=1).w
    out = np.full((n, n), np.nan)
    out[pairs[:, 0], pairs[:, 1]], out[pairs[:, 1], pairs[:, 0]] = w, 1 - w
    return out


def _elo(pairs: np.ndarray, outcome: np.ndarray, stderr=False):
    res = fit(pairs[:, 0], pairs[:, 1], outcome[pairs[:, 0], pairs[:, 1]], len(outcome), stderr=stderr)
    return res.scores, res.stderr


def test_adaptive_orders_the_head_better_than_cycles_at_the_same_budget():
    """Cross-check against the method it replaces: 40 simulated queries of 40 documents (hidden
    relevance spread like graded qrels), k = 4 comparisons per document either way."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(7)
    n, top, gains = 40, 8, []
    for q in range(40):
        hidden = np.sort(rng.normal(0, 2, n))[::-1] + rng.normal(0, 0.1, n)
        outcome = _dense_outcomes(hidden, rng)
        dense, _ = _elo(all_pairs(n), outcome)
        head = np.argsort(-dense)[:top]
        cyc, _ = _elo(sample_pairs("cycles", n, 4, rng), outcome)
        pairs = sample_pairs("cycles", n, 2, rng)
        for m in round_budgets(n, 4, 4)[1:]:
            e, se = _elo(pairs, outcome, stderr=True)
            pairs = np.concatenate([pairs, next_pairs(e, se, pairs, m, top=top, rng=rng)])
        assert len(pairs) == n * 4 // 2 and n_components(pairs, n) == 1
        ada, _ = _elo(pairs, outcome)
        gains.append(kendalltau(ada[head], dense[head]).statistic - kendalltau(cyc[head], dense[head]).statistic)
    assert np.mean(gains) > 0.05, np.mean(gains)


# -- the config -----------------------------------------------------------------------------------
def test_graph_config():
    assert load_config(None, ["graph.strategy=adaptive", "graph.k=3"]).graph.k == 3   # any budget
    with pytest.raises(ConfigError, match="k=3 must be even"):
        load_config(None, ["graph.k=3"])                                             # cycles need even k
    with pytest.raises(ConfigError, match="graph.rounds"):
        load_config(None, ["graph.strategy=adaptive", "graph.rounds=1"])
    with pytest.raises(ConfigError, match="graph.confidence"):
        load_config(None, ["graph.strategy=adaptive", "graph.confidence=0.4"])


# -- the judging stage ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return annotate_workdir(tmp_path_factory.mktemp("adaptive"))


def test_adaptive_annotation_spends_the_cycle_budget_in_rounds(workdir, capsys):
    from zelo_ray.annotate.estimate import estimate_annotate

    cfg = annotate_cfg(workdir, "adaptive", "graph.strategy=adaptive", "graph.rounds=3", "graph.top=4")
    before = estimate_annotate(cfg)      # what a dry run (e.g. `zelo audit`'s) says it will cost
    report = run_annotate(cfg)
    assert before["calls"] == report["judge_calls"] == (N_QUERIES * 24 + N_QUERIES) * 3
    out = capsys.readouterr().out
    assert "round 2/3: +30 pairs for 5 queries" in out and "round 3/3" in out
    assert report["pairs"] == N_QUERIES * 12 * 4 // 2 and report["missing_votes"] == 0
    pairs = pq.read_table(f"{cfg.annotate.output}/pairs.parquet")
    z = pq.read_table(f"{cfg.annotate.output}/zelo.parquet")
    assert pairs.num_rows == N_QUERIES * 24 and len(set(pairs["pair_id"].to_pylist())) == pairs.num_rows
    for q in {f"q{j}" for j in range(N_QUERIES)}:
        mine = [r for r in pairs.to_pylist() if r["query_id"] == q]
        local = np.array([[r["a_pos"], r["b_pos"]] for r in mine])
        assert n_components(local, 12) == 1
    n_cmp = np.array(z["n_comparisons"].to_pylist())
    assert n_cmp.min() >= 2 and n_cmp.max() > 4         # uneven: more where the head is uncertain
    again = run_annotate(cfg)                            # the same rounds, derived again: nothing asked
    assert again["asked_this_run"] == 0 and again["reused"] == report["judge_calls"]
    assert pq.read_table(f"{cfg.annotate.output}/pairs.parquet").equals(pairs)


def test_a_killed_adaptive_run_resumes_mid_round_without_paying_twice(workdir, tmp_path, ray_tmp):
    """SIGKILL the whole run (driver and Ray) after its first round; the re-run derives the same
    later rounds from the stored votes, asks nothing already stored, and every stored answer
    belongs to the final pairs (a round chosen differently would leave paid calls unused)."""
    import json
    import os

    import yaml

    from zelo_ray.config import OpenAIJudgeConfig
    from zelo_ray.judges.fake_server import FakeJudgeServer
    from zelo_ray.judges.store import VoteStore

    secret = "sk-zelo-test-adaptive-31c5"
    root, src = workdir
    out = tmp_path / "killed"
    first_round = (N_QUERIES * 12 + N_QUERIES) * 2      # a 12-cycle per query + the cross pairs, 2 judges
    total_calls = (N_QUERIES * 24 + N_QUERIES) * 2      # k = 4: 24 pairs per query in all
    with FakeJudgeServer(latency_s=0.1, concurrency=4, api_key=secret) as server:
        judges = [OpenAIJudgeConfig(name=f"llm{i}", model=f"fake-{i}", base_url=server.base_url,
                                    api_key_env="ZELO_TEST_KEY", max_concurrency=4, timeout_s=2.0, max_retries=3,
                                    backoff_s=0.01, backoff_max_s=0.05).model_dump() for i in range(2)]
        conf = {"data": {"dataset": str(src), "workdir": str(root / "run")}, "ray": {"num_cpus": 2},
                "graph": {"strategy": "adaptive", "k": 4, "rounds": 3, "top": 4},
                "annotate": {"top_n": 12, "executor": "ray", "callers": 1, "batch_size": 8, "batches_in_flight": 2,
                             "flush_rows": 4, "flush_s": 0.1, "output": str(out), "calibration": {"k": 2},
                             "judges": judges}}
        path = tmp_path / "annotate.yaml"
        path.write_text(yaml.safe_dump(conf))
        env = dict(os.environ, ZELO_TEST_KEY=secret, RAY_TMPDIR=ray_tmp)

        def in_a_later_round(n):
            assert first_round < n < total_calls, "the kill must land in a later round"

        run = kill_annotate_and_rerun(path, env, out, server, kill_at=first_round + 10,
                                      check_stored=in_a_later_round)
    stored, second_run = run["stored"], run["second_calls"]
    assert not second_run & stored                       # nothing stored was asked again
    final = VoteStore(out / "votes").read()
    assert final.num_rows == total_calls and final["score"].null_count == 0
    assert len(set(final["cache_key"].to_pylist())) == total_calls
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"] == N_QUERIES * 24 and report["reused"] == len(stored) and report["missing_votes"] == 0


def test_rounds_of_queries_with_few_candidates():
    """Queries of 1, 2, 3 and 5 candidates beside a normal one: the first round is whatever
    graph they can have, later rounds add only pairs they do not hold, never past the budget."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from zelo_ray.annotate.adaptive import next_round
    from zelo_ray.annotate.pairs import build_pairs
    from zelo_ray.config.core import GraphConfig

    sizes = {"a": 1, "b": 2, "c": 3, "d": 5, "e": 30}
    rows = [(q, f"{q}-{i}", i + 1, i) for q, n in sizes.items() for i in range(n)]
    nodes = pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                      "rank": pa.array([r[2] for r in rows], pa.int32()), "pos": pa.array([r[3] for r in rows], pa.int32())})
    graph = GraphConfig(strategy="adaptive", k=4, rounds=4, top=3)
    pairs = build_pairs(nodes, strategy="adaptive", k=4, seed=0)
    counts = {q: pairs.filter(pc.equal(pairs["query_id"], q)).num_rows for q in sizes}
    assert counts == {"a": 0, "b": 1, "c": 3, "d": 5, "e": 30}
    rng = np.random.default_rng(0)
    for r in range(1, 4):
        elo = pa.table({"elo": rng.normal(size=nodes.num_rows), "stderr": rng.uniform(0.2, 1, nodes.num_rows)})
        step = next_round(nodes, pairs, elo, graph, r, model="thurstone", seed=0)
        assert not set(step.pairs["pair_id"].to_pylist()) & set(pairs["pair_id"].to_pylist())
        pairs = pa.concat_tables([pairs, step.pairs])
    final = {q: pairs.filter(pc.equal(pairs["query_id"], q)).num_rows for q in sizes}
    assert final == {"a": 0, "b": 1, "c": 3, "d": 10, "e": 60}    # min(k·n/2, n(n−1)/2)
    assert len(set(pairs["pair_id"].to_pylist())) == pairs.num_rows


def test_a_settled_query_stops_early_and_saves_its_budget():
    """graph.confidence: a query whose head is already ordered with that confidence gets no more
    pairs; an unsettled one gets its round's budget."""
    import pyarrow as pa

    from zelo_ray.annotate.adaptive import next_round
    from zelo_ray.annotate.pairs import build_pairs
    from zelo_ray.config.core import GraphConfig

    n = 12
    rows = [(q, f"{q}-{i}", i) for q in ("settled", "open") for i in range(n)]
    nodes = pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                      "rank": pa.array([r[2] + 1 for r in rows], pa.int32()), "pos": pa.array([r[2] for r in rows], pa.int32())})
    pairs = build_pairs(nodes, strategy="adaptive", k=4, seed=0)
    # rows of "settled" first: far apart and sure; then "open": close, with wide errors
    elo = pa.table({"elo": np.r_[np.linspace(6, -6, n), np.linspace(0.3, -0.3, n)],
                    "stderr": np.r_[np.full(n, 0.05), np.full(n, 1.0)]})
    graph = GraphConfig(strategy="adaptive", k=4, rounds=3, top=4, confidence=0.95)
    step = next_round(nodes, pairs, elo, graph, 1, model="thurstone", seed=0)
    assert step.settled == 1 and step.queries == 1
    assert set(step.pairs["query_id"].to_pylist()) == {"open"} and step.pairs.num_rows == 6
    everyone = next_round(nodes, pairs, elo, graph.model_copy(update={"confidence": None}), 1, model="thurstone", seed=0)
    assert everyone.settled == 0 and everyone.pairs.num_rows == 12
