"""The numeric solvers behind :class:`~simsearch.models.SVC`, written against an array namespace.

- :func:`fit_squared_hinge`: the linear (and Nyström-feature) primal, ½‖w‖² + C Σ max(0, 1 − y f)²,
  by the finite Newton method of Keerthi & DeCoste (2005), all one-vs-rest problems at once. The
  objective is the one LinearSVC minimises; each step is one (d+1)² solve per class, so it runs
  as a handful of GEMMs on numpy or CuPy.
- :func:`fit_hinge_dual`: the exact kernel C-SVM dual (the problem libsvm solves), by
  decomposition as in ThunderSVM: pick a working set of the worst KKT violators, build its kernel
  rows with one GEMM on the device, solve the small subproblem with SMO (libsvm's second-order
  working-set rule) on the host, and update the gradient with one GEMV.
- :func:`sgd_step`: one mini-batch stochastic gradient step (averaged by the caller), for ``partial_fit``.
- :func:`sigmoid_train`: Platt scaling, the Newton method of Lin, Lin & Weng (2007) used by libsvm.
"""

from __future__ import annotations

import math

import numpy as np

from ._base import to_numpy

__all__ = ["KernelRows", "rbf_kernel", "fit_squared_hinge", "fit_squared_hinge_warm", "fit_hinge_dual", "sgd_step", "sigmoid_train"]

_TAU = 1e-12


def rbf_kernel(xp, A, B, gamma: float, B_sq=None):
    """exp(−gamma ‖a − b‖²) for every row pair, computed with one GEMM."""
    if B_sq is None:
        B_sq = (B * B).sum(axis=1)
    K = A @ B.T
    K *= -2.0
    K += (A * A).sum(axis=1)[:, None]
    K += B_sq[None, :]
    xp.maximum(K, 0.0, out=K)
    K *= -gamma
    xp.exp(K, out=K)
    return K


def row_chunks(n_rows: int, row_width: int, budget: int = 1 << 23):
    """Slices over ``n_rows`` so that a (chunk, row_width) float64 block stays near 64 MiB."""
    step = max(1, budget // max(1, row_width))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


# ------------------------------------------------------------------------------------------
# Primal squared hinge (LinearSVC's objective), finite Newton, one-vs-rest columns at once.


def _objective(xp, W, RW, Y, Z, C):
    R = xp.maximum(1.0 - Y * Z, 0.0)
    return 0.5 * (W * RW).sum(axis=0) + C * (R * R).sum(axis=0)


def fit_squared_hinge(xp, Xa, Y, C: float, tol: float, max_iter: int, reg=None, W0=None):
    """Minimise ½ w_kᵀ R w_k + C Σ_i max(0, 1 − Y_ik x_i·w_k)² for every column k of ``Y`` (±1).

    ``Xa`` carries a trailing column of ones whose weight (the intercept) is not regularised.
    ``reg`` is R without that row and column; ``None`` means the identity (LinearSVC's objective),
    a kernel matrix K_LL gives the Nyström / reduced-set kernel machine without forming features.
    ``W0`` warm-starts the solver (see :func:`fit_squared_hinge_warm`).
    Returns ``(W, n_iter, converged)`` with ``W`` of shape (d+1, K). Stops when every column's
    gradient norm falls below ``tol`` times its initial norm; on a piecewise quadratic the Newton
    step is exact once the set of margin violators stops changing, so few iterations are needed.
    """
    n, d1 = Xa.shape
    K = Y.shape[1]
    R = xp.zeros((d1, d1), dtype=Xa.dtype)
    if reg is None:
        R[xp.arange(d1 - 1), xp.arange(d1 - 1)] = 1.0
    else:
        R[:-1, :-1] = reg
    R[-1, -1] = 1e-10 * max(1.0, float(xp.trace(R)) / d1)  # keeps H regular when nothing violates the margin
    W = xp.zeros((d1, K), dtype=Xa.dtype) if W0 is None else W0
    Z = Xa @ W
    RW = R @ W
    f = _objective(xp, W, RW, Y, Z, C)
    g0 = None
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        Rm = xp.maximum(1.0 - Y * Z, 0.0)
        grad = RW - 2.0 * C * (Xa.T @ (Y * Rm))
        gnorm = xp.sqrt((grad * grad).sum(axis=0))
        if g0 is None:
            g0 = xp.maximum(gnorm, 1e-300)
        todo_host = to_numpy(gnorm > tol * g0)
        if not todo_host.any():
            converged = True
            n_iter -= 1
            break
        active = Rm > 0
        H = xp.empty((K, d1, d1), dtype=Xa.dtype)
        for k in range(K):
            if not todo_host[k]:
                H[k] = xp.eye(d1, dtype=Xa.dtype)
                continue
            H[k] = 0.0
            for rows in row_chunks(n, d1):  # bounded copies of the violating rows
                Xk = Xa[rows][active[rows, k]]
                H[k] += Xk.T @ Xk
            H[k] *= 2.0 * C
            H[k] += R
        P = -xp.linalg.solve(H, grad.T[:, :, None])[:, :, 0].T  # (d1, K)
        P *= xp.asarray(todo_host)[None, :]
        W, Z, RW, f_new, moved = _line_search(xp, W, Z, RW, P, Xa @ P, R @ P, Y, C, f, (grad * P).sum(axis=0))
        if not moved:
            break
        f = f_new
    return W, n_iter, converged


def fit_squared_hinge_warm(xp, Xa, Y, C: float, tol: float, max_iter: int, reg=None, rng=None):
    """:func:`fit_squared_hinge`, first on a random eighth of a large ``Xa``, then on all of it.

    From w = 0 every sample violates the margin, so the first Hessians cost n·d² each; started
    from the subsample's solution (with C scaled by 8, the same objective per sample) only the
    few remaining violators enter them.
    """
    n, d1 = Xa.shape
    W0 = None
    if rng is not None and n >= 16 * d1 and n >= 20_000:
        sub = xp.asarray(np.sort(rng.choice(n, size=n // 8, replace=False)))
        W0, _, _ = fit_squared_hinge(xp, Xa[sub], Y[sub], C * n / (n // 8), max(tol, 1e-2), max_iter, reg)
    return fit_squared_hinge(xp, Xa, Y, C, tol, max_iter, reg, W0)


def _line_search(xp, W, Z, RW, P, ZP, RP, Y, C, f0, slope):
    """Backtracking (Armijo) along the Newton direction, per column; returns the new point."""
    t = xp.ones(W.shape[1], dtype=W.dtype)
    accepted = xp.zeros(W.shape[1], dtype=bool)
    still = slope < 0
    for _ in range(30):
        f_t = _objective(xp, W + t * P, RW + t * RP, Y, Z + t * ZP, C)
        accepted |= still & (f_t <= f0 + 1e-4 * t * slope)
        if bool((accepted | ~still).all()):
            break
        t = xp.where(accepted, t, 0.5 * t)
    t = xp.where(accepted, t, 0.0)
    W, Z, RW = W + t * P, Z + t * ZP, RW + t * RP
    return W, Z, RW, _objective(xp, W, RW, Y, Z, C), bool(accepted.any())


# ------------------------------------------------------------------------------------------
# Mini-batch averaged SGD on the same objective, for partial_fit.


def sgd_step(xp, Xa, Y, W, lam: float, eta: float):
    """One mini-batch stochastic gradient step on λ/2‖w‖² + mean_i max(0, 1 − y_i x_i·w)².

    The squared hinge is smooth, so a constant step ``eta`` ≈ 1/(2 mean‖x‖²) with Polyak–Ruppert
    averaging of the iterates (done by the caller) converges (Bach & Moulines 2013) where a
    Pegasos step 1/(λt) would crawl for the small λ = 1/(C n) that matches ``fit``.
    The intercept is the last row of ``W`` and is not regularised.
    """
    R = xp.maximum(1.0 - Y * (Xa @ W), 0.0)
    grad = (-2.0 / Xa.shape[0]) * (Xa.T @ (Y * R))
    grad[:-1] += lam * W[:-1]
    return W - eta * grad


# ------------------------------------------------------------------------------------------
# Exact kernel dual by decomposition (ThunderSVM-style outer loop, libsvm SMO inner loop).


def _smo_python(Q, y, alpha, G, C, eps, max_iter):  # pragma: no cover - compiled by numba
    """libsvm's SMO with second-order working-set selection on a dense subproblem.

    ``Q`` is the (q, q) matrix y_i y_j K_ij of the working set, ``G`` its gradient; ``alpha``
    and ``G`` are updated in place. Returns the number of pair updates.
    """
    q = y.shape[0]
    it = 0
    while it < max_iter:
        gmax = -np.inf
        i = -1
        for t in range(q):
            if (y[t] > 0 and alpha[t] < C) or (y[t] < 0 and alpha[t] > 0):
                v = -y[t] * G[t]
                if v >= gmax:
                    gmax = v
                    i = t
        gmax2 = -np.inf
        j = -1
        obj_min = np.inf
        for t in range(q):
            if (y[t] > 0 and alpha[t] > 0) or (y[t] < 0 and alpha[t] < C):
                v = y[t] * G[t]
                if v >= gmax2:
                    gmax2 = v
                if i >= 0:
                    grad_diff = gmax + v
                    if grad_diff > 0:
                        quad = Q[i, i] + Q[t, t] - 2.0 * y[i] * y[t] * Q[i, t]
                        if quad <= 0:
                            quad = _TAU
                        obj = -(grad_diff * grad_diff) / quad
                        if obj <= obj_min:
                            obj_min = obj
                            j = t
        if gmax + gmax2 < eps or i < 0 or j < 0:
            break
        it += 1
        ai = alpha[i]
        aj = alpha[j]
        if y[i] != y[j]:
            quad = Q[i, i] + Q[j, j] + 2.0 * Q[i, j]
            if quad <= 0:
                quad = _TAU
            delta = (-G[i] - G[j]) / quad
            diff = ai - aj
            alpha[i] = ai + delta
            alpha[j] = aj + delta
            if diff > 0:
                if alpha[j] < 0:
                    alpha[j] = 0.0
                    alpha[i] = diff
            elif alpha[i] < 0:
                alpha[i] = 0.0
                alpha[j] = -diff
            if diff > 0:
                if alpha[i] > C:
                    alpha[i] = C
                    alpha[j] = C - diff
            elif alpha[j] > C:
                alpha[j] = C
                alpha[i] = C + diff
        else:
            quad = Q[i, i] + Q[j, j] - 2.0 * Q[i, j]
            if quad <= 0:
                quad = _TAU
            delta = (G[i] - G[j]) / quad
            total = ai + aj
            alpha[i] = ai - delta
            alpha[j] = aj + delta
            if total > C:
                if alpha[i] > C:
                    alpha[i] = C
                    alpha[j] = total - C
                if alpha[j] > C:
                    alpha[j] = C
                    alpha[i] = total - C
            else:
                if alpha[j] < 0:
                    alpha[j] = 0.0
                    alpha[i] = total
                if alpha[i] < 0:
                    alpha[i] = 0.0
                    alpha[j] = total
        dai = alpha[i] - ai
        daj = alpha[j] - aj
        for t in range(q):
            G[t] += Q[t, i] * dai + Q[t, j] * daj
    return it


_SMO = None


def _smo():
    """The SMO kernel, compiled with numba on first use (plain Python if numba is missing)."""
    global _SMO
    if _SMO is None:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a core dependency
            _SMO = _smo_python
        else:
            _SMO = numba.njit(cache=True, nogil=True)(_smo_python)
    return _SMO


def _rho(xp, y, alpha, G, C):
    """The offset ρ of f(x) = Σ α_i y_i K(x_i, x) − ρ, as libsvm's calculate_rho."""
    yG = y * G
    at_ub = alpha >= C
    at_lb = alpha <= 0
    free = ~at_ub & ~at_lb
    n_free = int(free.sum())
    if n_free:
        return float((yG * free).sum()) / n_free
    ub_mask = (at_ub & (y < 0)) | (at_lb & (y > 0))
    lb_mask = (at_ub & (y > 0)) | (at_lb & (y < 0))
    ub = float(xp.where(ub_mask, yG, np.inf).min()) if bool(ub_mask.any()) else math.inf
    lb = float(xp.where(lb_mask, yG, -np.inf).max()) if bool(lb_mask.any()) else -math.inf
    if math.isinf(ub) or math.isinf(lb):
        return 0.0 if math.isinf(ub) and math.isinf(lb) else (ub if math.isfinite(ub) else lb)
    return (ub + lb) / 2.0


class KernelRows:
    """Rows of the RBF Gram matrix on demand, shared by every one-vs-rest problem of one fit.

    When the whole (n, n) matrix fits in ``cache_bytes`` it is computed once; otherwise rows are
    kept in a least-recently-used cache of as many rows as fit, and missing rows are computed
    with one GEMM per request. Entries are float32, as in libsvm's kernel cache.
    """

    def __init__(self, xp, X, gamma: float, cache_bytes: float):
        self.xp, self.X, self.gamma = xp, X, gamma
        n = X.shape[0]
        self.X32 = X.astype(xp.float32)
        self.X_sq32 = (self.X32 * self.X32).sum(axis=1)
        self.capacity = int(max(0, min(n, cache_bytes // (4 * n))))
        self.full = None
        if self.capacity >= n:
            self.full = xp.empty((n, n), dtype=xp.float32)
            for rows in row_chunks(n, n):
                self.full[rows] = self._compute(xp.arange(rows.start, rows.stop))
            return
        self.store = xp.empty((self.capacity, n), dtype=xp.float32) if self.capacity else None
        self.slot_of = np.full(n, -1, dtype=np.int64)
        self.owner = np.full(self.capacity, -1, dtype=np.int64)
        self.last_used = np.zeros(self.capacity, dtype=np.int64)
        self.clock = 0

    def _compute(self, idx):
        xp = self.xp
        return rbf_kernel(xp, self.X32[idx], self.X32, self.gamma, self.X_sq32)

    def _slots(self, idx, idx_host: np.ndarray):
        """Cache slots of rows ``idx``, computing the missing ones (None when they do not fit)."""
        xp = self.xp
        if len(idx_host) > self.capacity:
            return None
        self.clock += 1
        slots = self.slot_of[idx_host]
        missing = np.flatnonzero(slots < 0)
        if missing.size:
            order = np.argsort(self.last_used, kind="stable")
            protected = np.zeros(self.capacity, dtype=bool)
            protected[slots[slots >= 0]] = True
            free = order[~protected[order]][: missing.size]
            old = self.owner[free]
            self.slot_of[old[old >= 0]] = -1
            self.owner[free] = idx_host[missing]
            self.slot_of[idx_host[missing]] = free
            self.store[xp.asarray(free)] = self._compute(idx[xp.asarray(missing)])
            slots = self.slot_of[idx_host]
        self.last_used[slots] = self.clock
        return xp.asarray(slots)

    def block(self, idx, idx_host: np.ndarray):
        """The square block K[idx][:, idx], and a handle for :meth:`matvec` on the same rows."""
        xp = self.xp
        if self.full is not None:
            n = self.full.shape[0]
            return self.full.ravel().take(idx[:, None] * n + idx[None, :]), idx
        slots = self._slots(idx, idx_host)
        if slots is None:
            rows = self._compute(idx)
            return rows[:, idx], rows
        return self.store[xp.ix_(slots, idx)], slots

    def matvec(self, handle, which, v):
        """K[rows]ᵀ v for the rows ``which`` (positions into the block's index) of ``handle``."""
        if self.full is not None:
            return self.full[handle[which]].T @ v
        if handle.ndim == 2:  # rows computed on the fly
            return handle[which].T @ v
        return self.store[handle[which]].T @ v


def fit_hinge_dual(xp, kernel_rows: KernelRows, y, C: float, tol: float, max_iter: int, ws_size: int | None = None):
    """Solve the RBF C-SVM dual min ½αᵀQα − Σα, 0 ≤ α ≤ C, yᵀα = 0 for one binary problem.

    Stops when the maximal KKT violation m(α) − M(α) (libsvm's stopping rule) falls below ``tol``.
    Returns ``(alpha, rho, n_iter, converged)``; the decision function is Σ α_i y_i K(x_i, x) − ρ.
    The working set holds ``ws_size`` variables: 128 on the CPU, where each outer step costs
    O(ws · n), and 512 on a GPU, where fewer, wider steps pay off.
    """
    n = y.shape[0]
    if ws_size is None:
        ws_size = 128 if xp is np else 512
    alpha = xp.zeros(n, dtype=xp.float64)
    G = -xp.ones(n, dtype=xp.float64)
    half = max(1, min(ws_size // 2, n - 1))
    smo = _smo()
    converged = False
    n_iter = 0
    pos = y > 0
    for n_iter in range(1, max_iter + 1):
        v = -y * G
        up = (pos & (alpha < C)) | (~pos & (alpha > 0))
        low = (pos & (alpha > 0)) | (~pos & (alpha < C))
        vu = xp.where(up, v, -np.inf)
        vl = xp.where(low, v, np.inf)
        gap = float(vu.max() - vl.min())
        if gap < tol:
            converged = True
            n_iter -= 1
            break
        iu = xp.argpartition(-vu, half - 1)[:half]
        il = xp.argpartition(vl, half - 1)[:half]
        B = xp.unique(xp.concatenate([iu[up[iu]], il[low[il]]]))
        B_host = to_numpy(B)
        KBB, handle = kernel_rows.block(B, B_host)
        yB = y[B]
        QBB = KBB.astype(xp.float64) * yB[:, None] * yB[None, :]
        a_old = np.array(to_numpy(alpha[B]), dtype=np.float64)
        a_new = a_old.copy()
        g = np.array(to_numpy(G[B]), dtype=np.float64)
        smo(np.ascontiguousarray(to_numpy(QBB)), np.array(to_numpy(yB), dtype=np.float64), a_new, g,
            float(C), max(tol, 0.1 * gap), 100 * B_host.shape[0])
        d_alpha = a_new - a_old
        changed = np.flatnonzero(d_alpha)
        if changed.size == 0:
            break
        rows = xp.asarray(changed)
        alpha[B[rows]] = xp.asarray(a_new[changed])
        step = (yB[rows] * xp.asarray(d_alpha[changed])).astype(xp.float32)
        G += y * kernel_rows.matvec(handle, rows, step)
    return alpha, _rho(xp, y, alpha, G, C), n_iter, converged


# ------------------------------------------------------------------------------------------
# Platt scaling.


def sigmoid_train(dec: np.ndarray, target: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Fit P(y=1 | f) = 1 / (1 + exp(A f + B)) to decision values by regularised maximum likelihood.

    The targets are Platt's smoothed labels, (N₊+1)/(N₊+2) and 1/(N₋+2), and the solver is the
    Newton method with backtracking of Lin, Lin & Weng (2007), as in libsvm. Runs on the host:
    it sees one float per training sample.
    """
    dec = np.asarray(dec, dtype=np.float64)
    target = np.asarray(target, dtype=bool)
    prior1 = float(target.sum())
    prior0 = float(target.size - prior1)
    t = np.where(target, (prior1 + 1.0) / (prior1 + 2.0), 1.0 / (prior0 + 2.0))
    A, B = 0.0, math.log((prior0 + 1.0) / (prior1 + 1.0))

    def objective(a, b):
        z = dec * a + b
        return float(np.sum(np.where(z >= 0, t * z + np.log1p(np.exp(-np.abs(z))), (t - 1) * z + np.log1p(np.exp(-np.abs(z))))))

    fval = objective(A, B)
    for _ in range(max_iter):
        z = dec * A + B
        e = np.exp(-np.abs(z))
        p = np.where(z >= 0, e / (1.0 + e), 1.0 / (1.0 + e))  # P(y=1) = 1/(1+exp(z))
        d2 = p * (1.0 - p)
        h11 = 1e-12 + float(np.sum(dec * dec * d2))
        h22 = 1e-12 + float(np.sum(d2))
        h21 = float(np.sum(dec * d2))
        d1 = t - p
        g1 = float(np.sum(dec * d1))
        g2 = float(np.sum(d1))
        if abs(g1) < 1e-5 and abs(g2) < 1e-5:
            break
        det = h11 * h22 - h21 * h21
        dA = -(h22 * g1 - h21 * g2) / det
        dB = -(-h21 * g1 + h11 * g2) / det
        gd = g1 * dA + g2 * dB
        step = 1.0
        while step >= 1e-10:
            new_f = objective(A + step * dA, B + step * dB)
            if new_f < fval + 1e-4 * step * gd:
                A, B, fval = A + step * dA, B + step * dB, new_f
                break
            step /= 2.0
        else:
            break
    return A, B
