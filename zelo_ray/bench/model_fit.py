"""Benchmark 3: does the held-out likelihood pick the model that generated the data?

Outcomes are drawn from Bradley–Terry (P = σ) or Thurstone (P = Φ) on hidden scores: each
judged pair gets three Bernoulli votes. Both Elo models are fitted on the cycle-graph pairs
(k = 8) and scored by the mean log-likelihood of held-out random pairs of the same queries.
With few votes per pair the maximum-likelihood scores are over-dispersed, which favours the
heavier-tailed logistic link whatever the truth; the table therefore varies the votes per pair.
"""

from __future__ import annotations

import numpy as np

from zelo_ray.bench.common import machine
from zelo_ray.core.elo import fit, win_probability
from zelo_ray.core.graph import sample_pairs
from zelo_ray.core.simulate import LABEL, hidden_scores

MODELS = ("bradley_terry", "thurstone")


def run(n_queries: int = 500, n_docs: int = 100, k: int = 8, n_test: int = 400,
        votes: tuple[int, ...] = (3, 10, 30), seed: int = 0) -> dict:
    rows = []
    for v in votes:
        rows += _run_votes(n_queries, n_docs, k, n_test, v, np.random.default_rng(seed))
    return {"label": LABEL, "n_queries": n_queries, "n_docs": n_docs, "k": k,
            "machine": machine(), "rows": rows}


def _run_votes(n_queries, n_docs, k, n_test, votes, rng) -> list[dict]:
    rows = []
    for truth in MODELS:
        s = hidden_scores(n_queries, n_docs, rng, -2.0, 2.0)
        train = np.concatenate([sample_pairs("cycles", n_docs, k, rng) + q * n_docs
                                for q in range(n_queries)])
        test = np.concatenate([rng.integers(0, n_docs, size=(n_test, 2)) + q * n_docs
                               for q in range(n_queries)])
        test = test[test[:, 0] != test[:, 1]]
        flat = s.ravel()

        def outcomes(pairs):
            p = win_probability(flat[pairs[:, 0]] - flat[pairs[:, 1]], truth)
            return rng.binomial(votes, p) / votes

        w_train, w_test = outcomes(train), outcomes(test)
        group = np.repeat(np.arange(n_queries), n_docs)
        row = {"truth": truth, "votes_per_pair": votes}
        for model in MODELS:
            res = fit(train[:, 0], train[:, 1], w_train, n_queries * n_docs, group=group,
                      model=model, stderr=False)
            p = np.clip(win_probability(res.scores[test[:, 0]] - res.scores[test[:, 1]], model),
                        1e-12, 1 - 1e-12)
            row[f"heldout_ll_{model}"] = float(np.mean(w_test * np.log(p)
                                                       + (1 - w_test) * np.log1p(-p)))
        row["picked"] = max(MODELS, key=lambda m: row[f"heldout_ll_{m}"])
        row["correct"] = row["picked"] == truth
        rows.append(row)
    return rows
