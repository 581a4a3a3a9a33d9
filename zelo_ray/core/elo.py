"""Elo scores from soft pairwise outcomes: Bradley–Terry and Thurstone maximum likelihood.

zELO (Pipitone et al., arXiv 2509.12541, section 3) turns the judges' soft outcomes
w = P(i ≻ j) on a sparse pair graph into one relevance score per document by minimising, per
query (group),

    L(e) = -Σ_edges weight · [w log P(e_i − e_j) + (1 − w) log(1 − P(e_i − e_j))] + (prior/2) Σ e²

with P = σ (Bradley–Terry) or P = Φ, the standard normal CDF (Thurstone; the paper's
(1 + erf(Δ))/2 is Φ(√2·Δ), the same model on a scale √2 apart). The prior keeps a document that
wins every comparison finite. Scores are shifted to sum to zero in each group, or in each
connected component of a group whose graph is disconnected (flagged in the result).

All groups are fitted in one call by a compiled, parallel Newton solver (see
``_elo_kernels.py``); there is no Python loop over groups.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.elo import fit
    >>> i, j = np.array([0, 1, 2]), np.array([1, 2, 0])
    >>> res = fit(i, j, np.full(3, 0.5), 3)          # a 3-cycle of ties
    >>> np.allclose(res.scores, 0.0)
    True
    >>> res = fit(np.array([0, 1]), np.array([1, 2]), np.array([1.0, 1.0]), 3,
    ...           model="bradley_terry")             # a chain 0 > 1 > 2
    >>> bool(res.scores[0] > res.scores[1] > res.scores[2])
    True
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["EloConvergenceWarning", "EloResult", "Model", "fit", "win_probability"]

Model = Literal["thurstone", "bradley_terry"]
_MODEL_CODES = {"bradley_terry": 0, "thurstone": 1}


class EloConvergenceWarning(RuntimeWarning):
    """Some groups did not reach the gradient tolerance; see ``EloResult.converged``."""


@dataclass(frozen=True)
class EloResult:
    """Result of :func:`fit`. Per-node arrays have length n; per-group arrays length G.

    Per-group arrays are ordered like ``group_ids`` (the sorted distinct values of ``group``).
    """

    scores: np.ndarray
    """(n,) float64 Elo scores, sum zero per group (per component where disconnected)."""
    stderr: np.ndarray
    """(n,) standard error of each centred score from the inverse Hessian; NaN for a node
    without comparisons or when not computed."""
    group_ids: np.ndarray
    """(G,) the distinct group labels, sorted."""
    converged: np.ndarray
    """(G,) bool: max |gradient| <= tol was reached."""
    iterations: np.ndarray
    """(G,) Newton iterations used."""
    nll: np.ndarray
    """(G,) final objective (negative log-likelihood plus prior term)."""
    grad_max: np.ndarray
    """(G,) final max |gradient|."""
    disconnected: np.ndarray
    """(G,) bool: the group's comparison graph has more than one component."""
    model: str
    prior: float

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    @property
    def total_nll(self) -> float:
        return float(self.nll.sum())

    def raise_if_not_converged(self) -> None:
        """Raise ``RuntimeError`` naming the groups that did not converge."""
        bad = self.group_ids[~self.converged]
        if len(bad):
            raise RuntimeError(
                f"Elo fit did not converge for {len(bad)} of {len(self.group_ids)} groups "
                f"(first: {bad[:10].tolist()}); raise max_iter or check the outcomes"
            )


def win_probability(diff: np.ndarray, model: Model = "thurstone") -> np.ndarray:
    """P(i ≻ j) for score differences e_i − e_j under ``model``."""
    diff = np.asarray(diff, dtype=np.float64)
    if model == "thurstone":
        from scipy.special import ndtr

        return ndtr(diff)
    if model == "bradley_terry":
        from scipy.special import expit

        return expit(diff)
    raise ValueError(f"model={model!r}: expected 'thurstone' or 'bradley_terry'")


def fit(
    i: np.ndarray,
    j: np.ndarray,
    w: np.ndarray,
    n: int,
    *,
    group: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    model: Model = "thurstone",
    prior: float = 0.01,
    tol: float = 1e-6,
    max_iter: int = 100,
    stderr: bool = True,
    threads: int | None = None,
) -> EloResult:
    """Maximum-likelihood Elo scores for many groups at once.

    Args:
        i, j: (E,) int node indices in [0, n); edge e compares node i[e] with node j[e].
        w: (E,) float in [0, 1], the probability that i[e] beats j[e] (a soft outcome).
        n: number of nodes.
        group: (n,) int group (query) of every node; edges must stay inside a group.
            ``None``: one group.
        weight: (E,) non-negative weight per edge (default 1).
        model: ``"thurstone"`` (P = Φ) or ``"bradley_terry"`` (P = σ).
        prior: λ of the Gaussian prior (λ/2)Σe²; 0 allowed (then a document that wins
            everything has no finite optimum and its group reports non-convergence).
        tol: convergence when max |gradient| <= tol in a group.
        max_iter: Newton iterations per group before giving up (reported, with a warning).
        stderr: compute standard errors (a dense Cholesky per group, O(n_g^3)).
        threads: worker threads for the parallel loop over groups (default: all cores).
    """
    ii, jj, ww, wt, grp = _validate(i, j, w, n, group, weight, model, prior, tol, max_iter)
    group_ids, g_idx, sorted_nodes = _group_index(grp)
    n_groups = len(group_ids)
    node_ptr = _offsets(g_idx, n_groups)
    node_order, ei, ej, w_s, wt_s, edge_ptr = _localise(ii, jj, ww, wt, n, grp, g_idx, node_ptr, sorted_nodes)
    x, se, converged, iterations, nll, grad_max, disconnected = _solve(
        ei, ej, w_s, wt_s, edge_ptr, node_ptr, n, prior=prior, model=model, tol=tol, max_iter=max_iter,
        stderr=stderr, threads=threads)
    scores, stderr_out = _in_input_order(x, node_order), _in_input_order(se, node_order)
    stderr_out[np.bincount(np.concatenate([ii, jj]), minlength=n) == 0] = np.nan
    if prior == 0 and len(ii):
        # Without a prior the optimum is finite only if every component's "beat" graph is
        # strongly connected (Zermelo/Ford); otherwise the gradient test passes on the way to
        # infinity, so those groups are reported as not converged.
        unbounded = _unbounded_groups(ii, jj, ww, wt, n, g_idx, n_groups)
        converged &= ~unbounded
    result = EloResult(scores=scores, stderr=stderr_out, group_ids=group_ids, converged=converged,
                       iterations=iterations, nll=nll, grad_max=grad_max, disconnected=disconnected,
                       model=model, prior=float(prior))
    if not result.all_converged:
        _warn_unconverged(result, max_iter=max_iter, tol=tol)
    return result


def _warn_unconverged(result: EloResult, *, max_iter: int, tol: float) -> None:
    bad = result.group_ids[~result.converged]
    warnings.warn(
        f"Elo fit: {len(bad)} of {len(result.group_ids)} groups did not converge (max_iter={max_iter}, "
        f"tol={tol}{'; with prior=0 some have no finite optimum' if result.prior == 0 else ''}); "
        f"first: {bad[:10].tolist()}",
        EloConvergenceWarning,
        stacklevel=3,  # the caller of fit()
    )


def _solve(ei, ej, w_s, wt_s, edge_ptr, node_ptr, n: int, *, prior: float, model: str, tol: float,
           max_iter: int, stderr: bool, threads: int | None):
    """Newton per group in the compiled kernel (groups in parallel). Returns scores, standard
    errors (group-local order) and the per-group converged, iterations, nll, grad_max, disconnected."""
    from zelo_ray.core import _elo_kernels as kern

    n_groups = len(node_ptr) - 1
    x = np.zeros(n, dtype=np.float64)
    se = np.full(n, np.nan)
    converged = np.zeros(n_groups, dtype=np.bool_)
    iterations = np.zeros(n_groups, dtype=np.int64)
    nll = np.zeros(n_groups)
    grad_max = np.zeros(n_groups)
    disconnected = np.zeros(n_groups, dtype=np.bool_)
    previous = _set_threads(threads)
    try:
        kern.fit_groups(
            np.ascontiguousarray(ei), np.ascontiguousarray(ej),
            np.ascontiguousarray(w_s), np.ascontiguousarray(wt_s),
            edge_ptr, node_ptr, x, float(prior), _MODEL_CODES[model], float(tol),
            int(max_iter), bool(stderr),
            converged, iterations, nll, grad_max, disconnected, se,
            _n_chunks(n_groups),
        )
    finally:
        _set_threads(previous)
    return x, se, converged, iterations, nll, grad_max, disconnected


def _offsets(idx: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups + 1,) start of each group's run when items are sorted by group."""
    ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n_groups), out=ptr[1:])
    return ptr


def _localise(ii, jj, ww, wt, n, grp, g_idx, node_ptr, sorted_nodes):
    """Edges as group-local node indices, sorted by group, with the kernel's offsets; validates
    the edges on the way. Returns (node_order or None, local i, local j, w, weight, edge_ptr)."""
    from zelo_ray.core import _elo_kernels as kern

    # Fast path for the usual layout (nodes and edges already grouped in order, as the
    # pipeline writes them): one compiled pass validates and localises, no sorting.
    node_order = None if sorted_nodes else np.argsort(g_idx, kind="stable")
    if node_order is None:
        local = (np.arange(n, dtype=np.int64) - node_ptr[g_idx]).astype(np.int32)
    else:
        position = np.empty(n, dtype=np.int64)
        position[node_order] = np.arange(n)
        local = (position - node_ptr[g_idx]).astype(np.int32)
    lei = np.empty(len(ii), dtype=np.int32)
    lej = np.empty(len(ii), dtype=np.int32)
    problem, e, edges_sorted = kern.scan_edges(ii, jj, ww, wt, int(n), g_idx, local, lei, lej)
    if problem:
        _raise_edge_problem(problem, e, ii, jj, ww, wt, n, grp)
    n_groups = len(node_ptr) - 1
    if edges_sorted:
        return node_order, lei, lej, ww, wt, _offsets(g_idx[ii], n_groups)
    g_of_edge = g_idx[ii]
    order = np.argsort(g_of_edge, kind="stable")
    return (node_order, local[ii[order]], local[jj[order]], ww[order], wt[order],
            _offsets(g_of_edge, n_groups))


def _in_input_order(values: np.ndarray, node_order: np.ndarray | None) -> np.ndarray:
    if node_order is None:
        return values
    out = np.empty(len(values))
    out[node_order] = values
    return out


def _unbounded_groups(ii, jj, ww, wt, n, g_idx, n_groups) -> np.ndarray:
    """Groups whose maximum-likelihood scores diverge (some set of nodes never loses outward)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    live = wt > 0
    beats = np.concatenate([ii[live & (ww > 0)], jj[live & (ww < 1)]])
    beaten = np.concatenate([jj[live & (ww > 0)], ii[live & (ww < 1)]])
    graph = coo_matrix((np.ones(len(beats)), (beats, beaten)), shape=(n, n)).tocsr()
    _, weak = connected_components(graph, directed=True, connection="weak")
    _, strong = connected_components(graph, directed=True, connection="strong")
    # A weak component that splits into several strong ones has no finite optimum.
    n_strong_per_weak = np.bincount(
        np.unique(np.stack([weak, strong], 1), axis=0)[:, 0], minlength=weak.max() + 1
    )
    bad_nodes = n_strong_per_weak[weak] > 1
    return np.bincount(g_idx[bad_nodes], minlength=n_groups) > 0


def _raise_edge_problem(problem, e, ii, jj, ww, wt, n, grp) -> None:
    messages = {
        1: f"i[{e}]={ii[e]} is outside [0, n={n})",
        2: f"j[{e}]={jj[e]} is outside [0, n={n})",
        3: f"edge {e} compares node {ii[e]} with itself",
        4: f"w[{e}]={float(ww[e])!r} is not a probability in [0, 1]",
        5: f"weight[{e}]={float(wt[e])!r} must be finite and >= 0",
        6: lambda: (f"edge {e} ({ii[e]}, {jj[e]}) joins group {grp[ii[e]]} to group "
                    f"{grp[jj[e]]}: edges must stay inside one group"),
    }
    msg = messages[problem]
    raise ValueError(msg() if callable(msg) else msg)


def _group_index(grp: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(sorted distinct groups, each node's group index, whether nodes are already in order)."""
    if len(grp) == 0:
        return grp[:0], grp[:0], True
    if bool(np.all(grp[1:] >= grp[:-1])):
        change = np.empty(len(grp), dtype=np.bool_)
        change[0] = True
        np.not_equal(grp[1:], grp[:-1], out=change[1:])
        return grp[change], np.cumsum(change) - 1, True
    ids, inverse = np.unique(grp, return_inverse=True)
    return ids, inverse, False


def _n_chunks(n_groups: int) -> int:
    import numba

    # Several chunks per thread balance groups of unequal cost; each chunk allocates once.
    return max(1, min(n_groups, 16 * numba.get_num_threads()))


def _set_threads(threads: int | None) -> int | None:
    import numba

    if threads is None:
        return None
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    return previous


def _validate(i, j, w, n, group, weight, model, prior, tol, max_iter):
    if model not in _MODEL_CODES:
        raise ValueError(f"model={model!r}: expected one of {sorted(_MODEL_CODES)}")
    if int(n) != n or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative integer")
    if not (np.isfinite(prior) and prior >= 0):
        raise ValueError(f"prior={prior!r} must be finite and >= 0")
    if not tol > 0:
        raise ValueError(f"tol={tol!r} must be > 0")
    if int(max_iter) != max_iter or max_iter < 0:
        raise ValueError(f"max_iter={max_iter!r} must be a non-negative integer")
    ii = _int_array(i, "i")
    jj = _int_array(j, "j")
    ww = np.asarray(w, dtype=np.float64)
    if not (ii.ndim == jj.ndim == ww.ndim == 1 and len(ii) == len(jj) == len(ww)):
        raise ValueError(
            f"i, j, w must be 1-d arrays of one length; got shapes "
            f"{np.shape(i)}, {np.shape(j)}, {np.shape(w)}"
        )
    if weight is None:
        wt = np.ones(len(ii))
    else:
        wt = np.asarray(weight, dtype=np.float64)
        if wt.shape != ww.shape:
            raise ValueError(f"weight has shape {wt.shape}, expected {ww.shape}")
    if group is None:
        grp = np.zeros(int(n), dtype=np.int64)
    else:
        grp = _int_array(group, "group")
        if grp.shape != (n,):
            raise ValueError(f"group has shape {grp.shape}, expected ({n},)")
    return ii, jj, ww, wt, grp


def _int_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


# Numba reads its thread count once; honour the usual cap when the caller set one.
if "ZELO_ELO_THREADS" in os.environ:  # pragma: no cover - environment-specific
    _set_threads(int(os.environ["ZELO_ELO_THREADS"]))
