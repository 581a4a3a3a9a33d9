"""Compiled per-group Newton solver behind :func:`zelo_ray.core.elo.fit`.

Each group (query) is an independent, small (n ~ 100, E ~ 400), strictly convex problem, so the
fast path is one compiled loop per group, run in parallel over groups: the working set of a
group stays in L1/L2 cache, and every group stops as soon as it has converged. Nothing here
allocates per edge; the only Python-visible entry point is :func:`fit_groups`.

Solver per group: Newton's method with the step from preconditioned conjugate gradients on the
weighted graph Laplacian (Jacobi preconditioner, forcing term min(0.5, sqrt|g|)), Armijo
backtracking on the exact objective, stopping when max|gradient| <= tol.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

BRADLEY_TERRY = 0
THURSTONE = 1

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Beyond this |d| the tail Φ(-|d|) is taken from the Mills-ratio continued fraction, because
# erfc underflows to 0 near |d| = 38; up to here it keeps full relative accuracy.
_TAIL_SWITCH = 25.0


@njit(cache=True, inline="always")
def _mills_ratio(a: float) -> float:
    """R(a) = Φ(-a) / φ(a) for a >= _TAIL_SWITCH, by the backward continued fraction."""
    acc = a
    for k in range(24, 0, -1):
        acc = a + k / acc
    return 1.0 / acc


@njit(cache=True, inline="always")
def _tail(a: float):
    """Φ(-a) and φ(a) for a >= 0, each to full relative precision (no underflow to 0)."""
    phi = math.exp(-0.5 * a * a) * _INV_SQRT_2PI
    if a < _TAIL_SWITCH:
        return 0.5 * math.erfc(a / _SQRT2), phi
    return phi * _mills_ratio(a), phi


@njit(cache=True, inline="always")
def _probit_ratios(d: float):
    """φ(d)/Φ(d) and φ(d)/Φ(-d): the derivatives of -log Φ(∓d), stable for any d."""
    a = abs(d)
    if a >= _TAIL_SWITCH:
        r_tail = 1.0 / _mills_ratio(a)
        r_head = 0.0
    else:
        tail, phi = _tail(a)
        r_tail = phi / tail
        r_head = phi / (1.0 - tail)
    if d >= 0.0:
        return r_head, r_tail
    return r_tail, r_head


@njit(cache=True, inline="always")
def _log_probit(d: float):
    """log Φ(d) and log Φ(-d) without log(0)."""
    a = abs(d)
    if a < _TAIL_SWITCH:
        tail = 0.5 * math.erfc(a / _SQRT2)
        log_tail = math.log(tail)
    else:
        log_tail = -0.5 * a * a - _LOG_SQRT_2PI + math.log(_mills_ratio(a))
        tail = math.exp(log_tail)
    log_head = math.log1p(-tail)
    if d >= 0.0:
        return log_head, log_tail
    return log_tail, log_head


@njit(cache=True)
def _value(ei, ej, w, wt, x, prior, model):
    """The objective: weighted negative log-likelihood plus (prior/2)|x|^2."""
    f = 0.0
    for v in range(x.shape[0]):
        f += 0.5 * prior * x[v] * x[v]
    for e in range(ei.shape[0]):
        d = x[ei[e]] - x[ej[e]]
        we = w[e]
        if model == THURSTONE:
            lp, lq = _log_probit(d)
            fe = -(we * lp + (1.0 - we) * lq)
        else:
            sp = (d if d > 0.0 else 0.0) + math.log1p(math.exp(-abs(d)))
            fe = sp - we * d
        f += wt[e] * fe
    return f


@njit(cache=True)
def _derivatives(ei, ej, w, wt, x, prior, model, grad, curv, diag):
    """Gradient, per-edge curvature and Hessian diagonal of the objective at x (no logs)."""
    ng = x.shape[0]
    for v in range(ng):
        grad[v] = prior * x[v]
        diag[v] = prior
    for e in range(ei.shape[0]):
        a = ei[e]
        b = ej[e]
        d = x[a] - x[b]
        we = w[e]
        if model == THURSTONE:
            rp, rq = _probit_ratios(d)
            ge = -(we * rp - (1.0 - we) * rq)
            he = we * rp * (d + rp) + (1.0 - we) * rq * (rq - d)
            # d + r(d) is a difference of near-equal numbers deep in the tail; the true
            # curvature of -log Φ lies in [0, 1].
            if he < 0.0:
                he = 0.0
        else:
            if d >= 0.0:
                s = 1.0 / (1.0 + math.exp(-d))
            else:
                ed = math.exp(d)
                s = ed / (1.0 + ed)
            ge = s - we
            he = s * (1.0 - s)
        c = wt[e]
        grad[a] += c * ge
        grad[b] -= c * ge
        curv[e] = c * he
        diag[a] += c * he
        diag[b] += c * he


@njit(cache=True, inline="always")
def _hess_vec(ei, ej, curv, prior, v, out):
    for t in range(v.shape[0]):
        out[t] = prior * v[t]
    for e in range(ei.shape[0]):
        a = ei[e]
        b = ej[e]
        z = curv[e] * (v[a] - v[b])
        out[a] += z
        out[b] -= z


@njit(cache=True)
def _pcg(ei, ej, curv, prior, diag, g, step, r, z, p, q, rtol, max_cg):
    """Approximately solve H step = -g; H = weighted Laplacian + prior*I (Jacobi-preconditioned)."""
    ng = g.shape[0]
    rz = 0.0
    rr = 0.0
    for t in range(ng):
        step[t] = 0.0
        r[t] = -g[t]
        dt = diag[t] if diag[t] > 0.0 else 1.0
        z[t] = r[t] / dt
        p[t] = z[t]
        rz += r[t] * z[t]
        rr += r[t] * r[t]
    target = rtol * rtol * rr
    for _ in range(max_cg):
        if rr <= target:
            break
        _hess_vec(ei, ej, curv, prior, p, q)
        pq = 0.0
        for t in range(ng):
            pq += p[t] * q[t]
        if pq <= 0.0:
            break  # only reachable with prior = 0 on a flat direction: keep the step so far
        alpha = rz / pq
        rr = 0.0
        rz_new = 0.0
        for t in range(ng):
            step[t] += alpha * p[t]
            r[t] -= alpha * q[t]
            dt = diag[t] if diag[t] > 0.0 else 1.0
            z[t] = r[t] / dt
            rz_new += r[t] * z[t]
            rr += r[t] * r[t]
        beta = rz_new / rz
        rz = rz_new
        for t in range(ng):
            p[t] = z[t] + beta * p[t]


@njit(cache=True)
def _components(ei, ej, parent, label):
    """Union-find component labels 0..c-1 into ``label`` (``parent`` is scratch); returns c."""
    ng = label.shape[0]
    for v in range(ng):
        parent[v] = v
    for e in range(ei.shape[0]):
        a = ei[e]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        b = ej[e]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b:
            parent[a] = b
    c = 0
    for v in range(ng):
        label[v] = -1
    for v in range(ng):
        a = v
        while parent[a] != a:
            a = parent[a]
        if label[a] < 0:
            label[a] = c
            c += 1
        label[v] = label[a]
    return c


@njit(cache=True)
def _fit_one(ei, ej, w, wt, x, prior, model, tol, max_iter, nbuf, ebuf):
    """Newton fit of one group in place in x; nbuf (10, >=ng) and ebuf (2, >=m) are scratch.

    Returns (converged, iterations, objective, max |gradient|, edge curvatures at x).
    """
    ng = x.shape[0]
    m = ei.shape[0]
    grad = nbuf[0, :ng]
    diag = nbuf[1, :ng]
    grad2 = nbuf[2, :ng]
    diag2 = nbuf[3, :ng]
    step = nbuf[4, :ng]
    xnew = nbuf[5, :ng]
    r = nbuf[6, :ng]
    z = nbuf[7, :ng]
    p = nbuf[8, :ng]
    q = nbuf[9, :ng]
    curv = ebuf[0, :m]
    curv2 = ebuf[1, :m]
    _derivatives(ei, ej, w, wt, x, prior, model, grad, curv, diag)
    converged = False
    it = 0
    gmax = 0.0
    max_cg = 2 * ng + 10
    while True:
        gmax = 0.0
        gsq = 0.0
        for t in range(ng):
            gmax = max(gmax, abs(grad[t]))
            gsq += grad[t] * grad[t]
        if gmax <= tol:
            converged = True
            break
        if it >= max_iter:
            break
        it += 1
        rtol = min(0.1, math.sqrt(math.sqrt(gsq)))
        _pcg(ei, ej, curv, prior, diag, grad, step, r, z, p, q, rtol, max_cg)
        slope = 0.0
        for t in range(ng):
            slope += grad[t] * step[t]
        if not slope < 0.0:
            # PCG returned no descent direction (flat problem); fall back to steepest descent.
            for t in range(ng):
                dt = diag[t] if diag[t] > 0.0 else 1.0
                step[t] = -grad[t] / dt
            slope = 0.0
            for t in range(ng):
                slope += grad[t] * step[t]
        # Line search. The objective is convex along the step, so a non-positive directional
        # derivative at the trial point proves the objective fell; only when the trial point
        # overshoots is the (costlier) objective value needed for an Armijo test.
        tstep = 1.0
        accepted = False
        f0 = np.nan
        for _ in range(60):
            for t in range(ng):
                xnew[t] = x[t] + tstep * step[t]
            _derivatives(ei, ej, w, wt, xnew, prior, model, grad2, curv2, diag2)
            slope_new = 0.0
            for t in range(ng):
                slope_new += grad2[t] * step[t]
            if slope_new <= 0.0:
                accepted = True
                break
            if np.isnan(f0):
                f0 = _value(ei, ej, w, wt, x, prior, model)
            if _value(ei, ej, w, wt, xnew, prior, model) <= f0 + 1e-4 * tstep * slope:
                accepted = True
                break
            tstep *= 0.5
        if not accepted:
            break  # no decrease representable in float64: report as not converged
        for t in range(ng):
            x[t] = xnew[t]
        grad, grad2 = grad2, grad
        diag, diag2 = diag2, diag
        curv, curv2 = curv2, curv
    return converged, it, _value(ei, ej, w, wt, x, prior, model), gmax, curv


@njit(cache=True)
def _centered_inverse_diagonal(ei, ej, curv, prior, label, counts, out):
    """Standard errors of the centred scores: sqrt(diag(P H^-1 P)), P centring each component.

    The all-ones vector 1_c of a component is an eigenvector of H (eigenvalue = prior), so
    (H + (1 - prior) 1_c 1_c^T / n_c)^-1 = P H^-1 P + 1_c 1_c^T / n_c: one dense Cholesky gives
    the covariance of the sum-zero scores, and it also works with prior = 0.
    """
    ng = label.shape[0]
    h = np.zeros((ng, ng))
    for a in range(ng):
        for b in range(ng):
            if label[a] == label[b]:
                h[a, b] = (1.0 - prior) / counts[label[a]]
        h[a, a] += prior
    for e in range(ei.shape[0]):
        a = ei[e]
        b = ej[e]
        c = curv[e]
        h[a, a] += c
        h[b, b] += c
        h[a, b] -= c
        h[b, a] -= c
    for col in range(ng):  # in-place lower Cholesky
        s = h[col, col]
        for k in range(col):
            s -= h[col, k] * h[col, k]
        if not s > 0.0:
            for v in range(ng):
                out[v] = np.nan
            return
        s = math.sqrt(s)
        h[col, col] = s
        for row in range(col + 1, ng):
            acc = h[row, col]
            for k in range(col):
                acc -= h[row, k] * h[col, k]
            h[row, col] = acc / s
    # diag(H^-1)_v = squared norm of column v of L^-1; forward-solve L y = e_v.
    y = np.empty(ng)
    for v in range(ng):
        acc_sq = 0.0
        for row in range(v, ng):
            s = 1.0 if row == v else 0.0
            for k in range(v, row):
                s -= h[row, k] * y[k]
            y[row] = s / h[row, row]
            acc_sq += y[row] * y[row]
        out[v] = math.sqrt(max(acc_sq - 1.0 / counts[label[v]], 0.0))


@njit(cache=True)
def _net_win_start(ei, ej, w, x, net, deg):
    """Start at 2 x (mean of 2w - 1 over a node's comparisons).

    Measured on simulated judge data (docs/benchmarks.md): this puts the start on the scale of
    the optimum and saves two Newton iterations against starting from zero; the line search
    keeps the fit correct from any start.
    """
    for v in range(x.shape[0]):
        net[v] = 0.0
        deg[v] = 0.0
    for e in range(ei.shape[0]):
        s = 2.0 * w[e] - 1.0
        net[ei[e]] += s
        net[ej[e]] -= s
        deg[ei[e]] += 1.0
        deg[ej[e]] += 1.0
    for v in range(x.shape[0]):
        x[v] = 2.0 * net[v] / deg[v] if deg[v] > 0.0 else 0.0


@njit(cache=True)
def scan_edges(ii, jj, ww, wt, n, g_idx, local, lei, lej):
    """One pass over the edges: validate and, when already grouped in order, localise them.

    Returns (problem, edge, in_order): problem 0 = fine, 1 = i out of range, 2 = j out of
    range, 3 = self-comparison, 4 = w not in [0, 1], 5 = bad weight, 6 = edge joins two groups.
    ``lei``/``lej`` receive local node indices; they are only complete when in_order is True.
    """
    in_order = True
    prev = -1
    for e in range(ii.shape[0]):
        a = ii[e]
        b = jj[e]
        if a < 0 or a >= n:
            return 1, e, in_order
        if b < 0 or b >= n:
            return 2, e, in_order
        if a == b:
            return 3, e, in_order
        we = ww[e]
        if not (we >= 0.0 and we <= 1.0):
            return 4, e, in_order
        c = wt[e]
        if not (c >= 0.0 and c < np.inf):
            return 5, e, in_order
        g = g_idx[a]
        if g != g_idx[b]:
            return 6, e, in_order
        if g < prev:
            in_order = False
        prev = g
        lei[e] = local[a]
        lej[e] = local[b]
    return 0, -1, in_order


@njit(cache=True, parallel=True)
def fit_groups(
    ei, ej, w, wt, edge_ptr, node_ptr, x, prior, model, tol, max_iter, want_stderr,
    converged, iterations, nll, grad_max, disconnected, stderr, n_chunks,
):
    """Fit every group in parallel; all arrays are laid out group after group (see elo.py).

    Groups are split into ``n_chunks`` contiguous chunks; each chunk allocates its scratch
    space once, so the hot loop never touches the allocator.
    """
    n_groups = node_ptr.shape[0] - 1
    for c in prange(n_chunks):
        g0 = c * n_groups // n_chunks
        g1 = (c + 1) * n_groups // n_chunks
        if g1 <= g0:
            continue
        max_n = 1
        max_m = 1
        for g in range(g0, g1):
            max_n = max(max_n, node_ptr[g + 1] - node_ptr[g])
            max_m = max(max_m, edge_ptr[g + 1] - edge_ptr[g])
        nbuf = np.empty((10, max_n))
        ebuf = np.empty((2, max_m))
        label = np.empty(max_n, dtype=np.int64)
        parent = np.empty(max_n, dtype=np.int64)
        sums = np.empty(max_n)
        counts = np.empty(max_n)
        for g in range(g0, g1):
            n0 = node_ptr[g]
            n1 = node_ptr[g + 1]
            e0 = edge_ptr[g]
            e1 = edge_ptr[g + 1]
            ng = n1 - n0
            gei = ei[e0:e1]
            gej = ej[e0:e1]
            xg = x[n0:n1]
            _net_win_start(gei, gej, w[e0:e1], xg, sums[:ng], counts[:ng])
            conv, it, f, gmax, curv = _fit_one(
                gei, gej, w[e0:e1], wt[e0:e1], xg, prior, model, tol, max_iter, nbuf, ebuf
            )
            converged[g] = conv
            iterations[g] = it
            nll[g] = f
            grad_max[g] = gmax
            glabel = label[:ng]
            n_comp = _components(gei, gej, parent[:ng], glabel)
            disconnected[g] = n_comp > 1
            for k in range(n_comp):
                sums[k] = 0.0
                counts[k] = 0.0
            for v in range(ng):
                sums[glabel[v]] += xg[v]
                counts[glabel[v]] += 1.0
            for v in range(ng):
                xg[v] -= sums[glabel[v]] / counts[glabel[v]]
            if want_stderr:
                _centered_inverse_diagonal(
                    gei, gej, curv, prior, glabel, counts[:n_comp], stderr[n0:n1]
                )
