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

__all__ = ["WithinFit", "cross_outcomes", "streaming_median", "endpoint_scores", "fit_calibration", "fit_within", "merge_within",
           "outcome_matrix", "task_scores", "with_targets"]


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
class WithinFit:
    """Elo per query of one bucket: ``table`` has ``query_id, doc_id, rank, elo, stderr,
    n_comparisons, converged``; the rest feeds the diagnostics."""

    table: pa.Table
    within: dict
    w_within: np.ndarray
    valid_within: np.ndarray
    edge_i: np.ndarray
    """(E,) node row of each pair's document A (rows of ``table``)."""
    edge_j: np.ndarray
    group: np.ndarray
    """(n,) query index of every node (within the bucket)."""


def fit_within(nodes: pa.Table, pairs: pa.Table, ts: pa.Table, judge_names: list[str], *, clamp: bool,
               min_votes: int, elo_cfg) -> WithinFit:
    """Soft outcomes of the within-query pairs → one Elo fit per query."""
    starts, qids = query_bounds(nodes)
    n = nodes.num_rows
    group = np.repeat(np.arange(len(qids)), np.diff(np.r_[starts, n])) if n else np.empty(0, np.int64)
    votes = outcome_matrix(ts, pairs["pair_id"], judge_names, "within")
    out = soft_outcomes(votes, clamp=clamp, min_votes=min_votes)
    qa = _index(pairs["query_id"], qids) if pairs.num_rows else np.empty(0, np.int64)
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
    table = pa.table({
        "query_id": nodes["query_id"], "doc_id": nodes["doc_id"], "rank": nodes["rank"],
        "elo": res.scores, "stderr": res.stderr, "n_comparisons": pa.array(n_cmp, pa.int32()),
        "converged": pa.array(converged_q[group] if n else np.empty(0, bool)),
    })
    return WithinFit(table=table, within=within, w_within=out.w, valid_within=keep, edge_i=ia, edge_j=ib,
                     group=group)


def merge_within(a: dict | None, b: dict) -> dict:
    """The within-query summary of two buckets together."""
    if a is None:
        return dict(b)
    out = dict(a)
    for k in ("pairs", "fitted_pairs", "pairs_without_enough_votes", "queries", "converged_queries"):
        out[k] = a[k] + b[k]
    out["warnings"] = (a["warnings"] + b["warnings"])[:20]
    return out


def _index(col, qids) -> np.ndarray:
    return pc.index_in(col, value_set=pa.array(list(qids), pa.string())).to_numpy(
        zero_copy_only=False).astype(np.int64)


def endpoint_scores(fitted: WithinFit, nodes: pa.Table, query_index: np.ndarray, pos: np.ndarray,
                    qids_of_run: np.ndarray) -> np.ndarray:
    """Elo of the candidates at ``pos`` of queries ``query_index`` (indexes into the run's
    ``qids_of_run``), all in this bucket."""
    starts, qids = query_bounds(nodes)
    local = _index(pa.array(qids_of_run[query_index].tolist(), pa.string()), qids)
    return fitted.table["elo"].to_numpy(zero_copy_only=False)[starts[local] + pos]


def cross_outcomes(ts: pa.Table, cross: pa.Table, judge_names: list[str], *, clamp: bool, min_votes: int):
    """Soft outcome (``w``, ``valid``) of each cross-query pair, in the order of ``cross``."""
    cv = outcome_matrix(ts, cross["pair_id"], judge_names, "cross")
    return soft_outcomes(cv, clamp=clamp, min_votes=min_votes)


def fit_calibration(qa: np.ndarray, qb: np.ndarray, elo_a: np.ndarray, elo_b: np.ndarray, w: np.ndarray,
                    valid: np.ndarray, n_queries: int, *, elo_cfg, cal_cfg) -> tuple[np.ndarray, dict]:
    """One offset per query from the cross-query pairs (query indexes ``qa``, ``qb``)."""
    calibration: dict = {"enabled": len(qa) > 0, "cross_pairs": int(len(qa))}
    offsets = np.zeros(n_queries)
    if len(qa):
        ok = valid & np.isfinite(elo_a) & np.isfinite(elo_b)
        off = fit_offsets(qa[ok], qb[ok], elo_a[ok] - elo_b[ok], w[ok], n_queries,
                          model=elo_cfg.model, prior=cal_cfg.prior)
        offsets = off.offsets
        calibration.update(fitted_pairs=int(ok.sum()), converged=off.converged, iterations=off.iterations,
                           offset_sd=float(offsets.std()) if len(offsets) else 0.0)
    return offsets, calibration


def streaming_median(chunks, bins: int = 4096) -> float:
    """``np.median`` of the finite values of every array ``chunks()`` yields, without holding them
    all: a histogram pass finds the bin(s) holding the middle value(s), a last pass sorts only
    those (exact; 0.0 when there are none)."""
    n, lo, hi = 0, np.inf, -np.inf
    for c in chunks():
        f = c[np.isfinite(c)]
        if len(f):
            n, lo, hi = n + len(f), min(lo, float(f.min())), max(hi, float(f.max()))
    if n == 0:
        return 0.0
    if lo == hi:
        return lo

    def bin_of(f):
        return np.minimum(((f - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)

    counts = np.zeros(bins, np.int64)
    for c in chunks():
        f = c[np.isfinite(c)]
        counts += np.bincount(bin_of(f), minlength=bins)
    cum = np.cumsum(counts)
    ranks = sorted({(n - 1) // 2, n // 2})
    wanted = {int(np.searchsorted(cum, k, side="right")) for k in ranks}
    inside = {b: [] for b in wanted}
    for c in chunks():
        f = c[np.isfinite(c)]
        idx = bin_of(f)
        for b in wanted:
            inside[b].append(f[idx == b])
    values = []
    for k in ranks:
        b = int(np.searchsorted(cum, k, side="right"))
        below = int(cum[b - 1]) if b else 0
        values.append(np.sort(np.concatenate(inside[b]))[k - below])
    return float(np.mean(values)) if len(values) == 2 else float(values[0])


def with_targets(table: pa.Table, offsets: np.ndarray, center: float, temperature: float) -> pa.Table:
    """``table`` (a :class:`WithinFit` table, rows of queries whose offsets are given per row)
    with ``calibrated = elo + offset`` and ``target = σ((calibrated − center) / T)``."""
    calibrated = table["elo"].to_numpy(zero_copy_only=False) + offsets
    return table.append_column("calibrated", pa.array(calibrated, pa.float64())).append_column(
        "target", pa.array(targets(calibrated, temperature, center=center), pa.float64()))
