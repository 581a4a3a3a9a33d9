"""The Elo stage: votes → soft outcomes per pair → Elo per query → calibrated scores → targets.

Output table (``zelo.parquet``): ``query_id, doc_id, rank, elo, stderr, n_comparisons,
converged, calibrated, target``. ``elo`` is centred within its query; ``calibrated`` adds the
query's cross-query offset; ``target`` is the training target in (0, 1)
(:func:`zelo_ray.core.calibration.targets`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.annotate.pairs import query_bounds
from zelo_ray.core.calibration import fit_offsets, targets
from zelo_ray.core.elo import EloConvergenceWarning, fit
from zelo_ray.core.ensemble import soft_outcomes

__all__ = ["EloStage", "task_scores", "outcome_matrix", "run_elo_stage"]


def task_scores(tasks: pa.Table, votes: pa.Table) -> pa.Table:
    """Every task with its stored answer (``score`` null: missing or not asked yet)."""
    left = tasks.select(["pair_id", "kind", "probe", "judge", "swapped", "cache_key"])
    left = left.append_column("_row", pa.array(np.arange(tasks.num_rows)))
    right = votes.select(["cache_key", "score", "error"])
    joined = left.join(right, keys="cache_key", join_type="left outer")
    return joined.sort_by("_row").drop_columns(["_row"])


def outcome_matrix(ts: pa.Table, pair_ids: pa.Array, judge_names: list[str], kind: str) -> np.ndarray:
    """(E, P) scores in the A/B frame of ``pair_ids``, NaN where missing; probes excluded."""
    sel = ts.filter(pc.and_(pc.equal(ts["kind"], kind), pc.invert(ts["probe"])))
    out = np.full((len(pair_ids), len(judge_names)), np.nan)
    if sel.num_rows == 0:
        return out
    row = pc.index_in(sel["pair_id"], value_set=pair_ids).to_numpy(zero_copy_only=False)
    col = pc.index_in(sel["judge"], value_set=pa.array(judge_names)).to_numpy(zero_copy_only=False)
    score = sel["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    out[row.astype(np.int64), col.astype(np.int64)] = score
    return out


@dataclass
class EloStage:
    table: pa.Table
    within: dict
    calibration: dict
    w_within: np.ndarray
    valid_within: np.ndarray
    edge_i: np.ndarray
    """(E,) node row of each pair's document A (rows of ``table``)."""
    edge_j: np.ndarray
    group: np.ndarray
    """(n,) query index of every node."""


def run_elo_stage(nodes: pa.Table, pairs: pa.Table, cross: pa.Table, ts: pa.Table,
                  judge_names: list[str], *, clamp: bool, min_votes: int, elo_cfg, cal_cfg) -> EloStage:
    starts, qids = query_bounds(nodes)
    n = nodes.num_rows
    group = np.repeat(np.arange(len(qids)), np.diff(np.r_[starts, n])) if n else np.empty(0, np.int64)
    qindex = lambda col: pc.index_in(col, value_set=pa.array(qids, pa.string())).to_numpy(  # noqa: E731
        zero_copy_only=False).astype(np.int64)

    votes = outcome_matrix(ts, pairs["pair_id"], judge_names, "within")
    out = soft_outcomes(votes, clamp=clamp, min_votes=min_votes)
    qa = qindex(pairs["query_id"]) if pairs.num_rows else np.empty(0, np.int64)
    ia = starts[qa] + pairs["a_pos"].to_numpy() if pairs.num_rows else np.empty(0, np.int64)
    ib = starts[qa] + pairs["b_pos"].to_numpy() if pairs.num_rows else np.empty(0, np.int64)
    keep = out.valid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EloConvergenceWarning)
        res = fit(ia[keep], ib[keep], out.w[keep], n, group=group, model=elo_cfg.model,
                  prior=elo_cfg.prior, tol=elo_cfg.tol, max_iter=elo_cfg.max_iter, stderr=elo_cfg.stderr)
    n_cmp = np.bincount(np.r_[ia[keep], ib[keep]], minlength=n)
    converged_q = np.zeros(len(qids), bool)
    converged_q[res.group_ids] = res.converged  # group ids are 0..Q-1 here
    within = {"pairs": int(pairs.num_rows), "fitted_pairs": int(keep.sum()),
              "pairs_without_enough_votes": int((~keep).sum()), "queries": int(len(qids)),
              "converged_queries": int(converged_q.sum()), "model": elo_cfg.model,
              "warnings": [str(w.message) for w in caught]}

    offsets = np.zeros(len(qids))
    calibration: dict = {"enabled": cross.num_rows > 0, "cross_pairs": int(cross.num_rows)}
    if cross.num_rows:
        cv = outcome_matrix(ts, cross["pair_id"], judge_names, "cross")
        co = soft_outcomes(cv, clamp=clamp, min_votes=min_votes)
        c1, c2 = qindex(cross["query_id"]), qindex(cross["query_b"])
        n1 = starts[c1] + cross["a_pos"].to_numpy()
        n2 = starts[c2] + cross["b_pos"].to_numpy()
        ok = co.valid & np.isfinite(res.scores[n1]) & np.isfinite(res.scores[n2])
        off = fit_offsets(c1[ok], c2[ok], res.scores[n1[ok]] - res.scores[n2[ok]], co.w[ok], len(qids),
                          model=elo_cfg.model, prior=cal_cfg.prior)
        offsets = off.offsets
        calibration.update(fitted_pairs=int(ok.sum()), converged=off.converged, iterations=off.iterations,
                           offset_sd=float(offsets.std()) if len(offsets) else 0.0)
    calibrated = res.scores + (offsets[group] if n else 0.0)
    table = pa.table({
        "query_id": nodes["query_id"], "doc_id": nodes["doc_id"], "rank": nodes["rank"],
        "elo": res.scores, "stderr": res.stderr, "n_comparisons": pa.array(n_cmp, pa.int32()),
        "converged": pa.array(converged_q[group] if n else np.empty(0, bool)),
        "calibrated": calibrated, "target": targets(calibrated, cal_cfg.temperature) if n else np.empty(0),
    })
    return EloStage(table=table, within=within, calibration=calibration, w_within=out.w, valid_within=keep,
                    edge_i=ia, edge_j=ib, group=group)
