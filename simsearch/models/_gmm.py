"""Gaussian mixture models fitted by expectation–maximisation, on numpy or CuPy arrays.

The parametrisation follows scikit-learn's: each component keeps the Cholesky factor of its
precision matrix (``precisions_cholesky_``), so the log-density is a triangular product and a
sum of log-diagonals, never an inverse or a determinant; responsibilities are normalised with a
log-sum-exp. Initialisation is k-means (k-means++ seeding, then Lloyd), k-means++ seeds alone,
random responsibilities or random points; ``means_init`` starts from given means instead.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np

from ..validation import check_float, check_int, check_option
from ..errors import InvalidArgumentError
from ._base import BaseModel, ConvergenceWarning, check_random_state, check_X, get_namespace, logsumexp, to_numpy

__all__ = ["GaussianMixture", "kmeans", "kmeans_plusplus"]

_COV_TYPES = ("full", "tied", "diag", "spherical")
_INITS = ("kmeans", "k-means++", "random", "random_from_data")


def _sq_dist(xp, X, C, X_sq=None):
    """Squared Euclidean distances (n, k) between rows of X and rows of C, clipped at 0."""
    if X_sq is None:
        X_sq = (X * X).sum(axis=1)
    D = X @ C.T
    D *= -2.0
    D += X_sq[:, None]
    D += (C * C).sum(axis=1)[None, :]
    return xp.maximum(D, 0.0, out=D)


def kmeans_plusplus(xp, X, k: int, rng: np.random.Generator, X_sq=None):
    """Greedy k-means++ seeding (2 + ln k candidates per step, as scikit-learn); returns indices."""
    n = X.shape[0]
    if X_sq is None:
        X_sq = (X * X).sum(axis=1)
    trials = 2 + int(math.log(k))
    first = int(rng.integers(n))
    idx = [first]
    closest = _sq_dist(xp, X, X[first : first + 1], X_sq)[:, 0]
    pot = float(closest.sum())
    for _ in range(1, k):
        cum = to_numpy(xp.cumsum(closest))
        cand = np.minimum(np.searchsorted(cum, rng.uniform(size=trials) * pot), n - 1)
        dist = _sq_dist(xp, X, X[xp.asarray(cand)], X_sq)  # (n, trials)
        xp.minimum(dist, closest[:, None], out=dist)
        pots = to_numpy(dist.sum(axis=0))
        best = int(np.argmin(pots))
        idx.append(int(cand[best]))
        closest, pot = dist[:, best].copy(), float(pots[best])
    return np.asarray(idx, dtype=np.int64)


def kmeans(xp, X, k: int, rng: np.random.Generator, max_iter: int = 300, tol: float = 1e-4, init=None):
    """Lloyd's k-means from k-means++ seeds (or from the centres ``init``); returns (centers, labels).

    Stops when the centres move less than ``tol`` times the mean feature variance (scikit-learn's
    rule). An emptied cluster is re-seeded at the point farthest from its centre.
    """
    X_sq = (X * X).sum(axis=1)
    C = X[xp.asarray(kmeans_plusplus(xp, X, k, rng, X_sq))].copy() if init is None else init.copy()
    tol_abs = tol * float(X.var(axis=0).mean())
    ar = xp.arange(k)
    for _ in range(max_iter):
        D = _sq_dist(xp, X, C, X_sq)
        labels = xp.argmin(D, axis=1)
        onehot = (labels[:, None] == ar[None, :]).astype(X.dtype)
        counts = onehot.sum(axis=0)
        new_C = onehot.T @ X
        empty = to_numpy(counts == 0)
        if empty.any():
            far = to_numpy(xp.argsort(-D[xp.arange(X.shape[0]), labels]))[: int(empty.sum())]
            new_C[xp.asarray(np.flatnonzero(empty))] = X[xp.asarray(far)]
            counts = xp.where(counts == 0, 1.0, counts)
        new_C /= counts[:, None]
        shift = float(((new_C - C) ** 2).sum())
        C = new_C
        if shift <= tol_abs:
            break
    return C, xp.argmin(_sq_dist(xp, X, C, X_sq), axis=1)


# ------------------------------------------------------------------------------------------
# The Gaussian pieces: M-step statistics, precision Cholesky factors, log-densities.


def _estimate_parameters(xp, X, resp, reg_covar: float, cov_type: str):
    """Weights (unnormalised), means and covariances from responsibilities (scikit-learn's M-step)."""
    nk = resp.sum(axis=0) + 10.0 * np.finfo(np.float64).eps
    means = (resp.T @ X) / nk[:, None]
    d = X.shape[1]
    if cov_type == "full":
        cov = xp.empty((means.shape[0], d, d), dtype=X.dtype)
        for k in range(means.shape[0]):
            diff = X - means[k]
            cov[k] = (resp[:, k : k + 1] * diff).T @ diff / nk[k]
            cov[k] += reg_covar * xp.eye(d, dtype=X.dtype)
    elif cov_type == "tied":
        cov = X.T @ X - (nk[:, None] * means).T @ means
        cov /= nk.sum()
        cov += reg_covar * xp.eye(d, dtype=X.dtype)
    else:
        avg_x2 = (resp.T @ (X * X)) / nk[:, None]
        cov = xp.maximum(avg_x2 - means * means, 0.0) + reg_covar
        if cov_type == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov


_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical covariance "
    "(for instance caused by singleton or collapsed samples). Try to decrease the number of "
    "components, increase reg_covar, or remove duplicate points."
)


def _linalg_raises(xp):
    """A context in which ``xp.linalg`` raises ``numpy.linalg.LinAlgError`` on a matrix that is not
    positive definite (cholesky) or is singular (solve), as numpy always does. CuPy does not look at
    cuSOLVER's status (and returns garbage) unless ``cupyx.errstate(linalg="raise")`` is set;
    cupyx is imported only when the arrays already are CuPy arrays."""
    if getattr(xp, "__name__", "").split(".")[0] != "cupy":
        return contextlib.nullcontext()
    import cupyx

    return cupyx.errstate(linalg="raise")


def _cholesky_lower(xp, A):
    try:
        with _linalg_raises(xp):
            L = xp.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise InvalidArgumentError(_ILL_DEFINED) from None
    if not bool(xp.isfinite(L).all()):
        raise InvalidArgumentError(_ILL_DEFINED)
    return L


def _precision_cholesky(xp, cov, cov_type: str):
    """Upper factors U with precision = U Uᵀ, as scikit-learn's ``_compute_precision_cholesky``."""
    if cov_type in ("diag", "spherical"):
        if bool((cov <= 0.0).any()):
            raise InvalidArgumentError(_ILL_DEFINED)
        return 1.0 / xp.sqrt(cov)
    mats = cov[None] if cov_type == "tied" else cov
    out = xp.empty_like(mats)
    eye = xp.eye(mats.shape[-1], dtype=mats.dtype)
    for k in range(mats.shape[0]):
        L = _cholesky_lower(xp, mats[k])
        with _linalg_raises(xp):
            out[k] = xp.tril(xp.linalg.solve(L, eye)).T
    return out[0] if cov_type == "tied" else out


def _precision_cholesky_from_precisions(xp, prec, cov_type: str):
    if cov_type in ("diag", "spherical"):
        return xp.sqrt(prec)
    mats = prec[None] if cov_type == "tied" else prec
    out = xp.stack([_cholesky_lower(xp, m) for m in mats])
    return out[0] if cov_type == "tied" else out


def _precisions(xp, prec_chol, cov_type: str):
    if cov_type == "full":
        return prec_chol @ xp.swapaxes(prec_chol, 1, 2)
    if cov_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol * prec_chol


def _estimate_log_gaussian_prob(xp, X, means, prec_chol, cov_type: str):
    """log N(x | μ_k, Σ_k) for every sample and component, (n, k)."""
    n, d = X.shape
    k = means.shape[0]
    if cov_type == "full":
        log_det = xp.log(xp.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
        log_prob = xp.empty((n, k), dtype=X.dtype)
        for j in range(k):
            y = X @ prec_chol[j] - means[j] @ prec_chol[j]
            log_prob[:, j] = (y * y).sum(axis=1)
    elif cov_type == "tied":
        log_det = xp.log(xp.diagonal(prec_chol)).sum()
        Xp = X @ prec_chol
        Mp = means @ prec_chol
        log_prob = _sq_dist(xp, Xp, Mp)
    elif cov_type == "diag":
        log_det = xp.log(prec_chol).sum(axis=1)
        prec = prec_chol * prec_chol
        log_prob = (means * means * prec).sum(axis=1)[None, :] - 2.0 * (X @ (means * prec).T) + (X * X) @ prec.T
    else:
        log_det = d * xp.log(prec_chol)
        prec = prec_chol * prec_chol
        log_prob = (
            (means * means).sum(axis=1)[None, :] * prec[None, :]
            - 2.0 * (X @ means.T) * prec[None, :]
            + (X * X).sum(axis=1)[:, None] * prec[None, :]
        )
    return -0.5 * (d * math.log(2.0 * math.pi) + log_prob) + log_det


class GaussianMixture(BaseModel):
    """Gaussian mixture with full, tied, diagonal or spherical covariances, fitted by EM.

    Parameters and fitted attributes follow :class:`sklearn.mixture.GaussianMixture`:
    ``n_components``, ``covariance_type``, ``tol`` (on the change of the mean log-likelihood),
    ``reg_covar`` (added to covariance diagonals), ``max_iter`` (0 only initialises), ``n_init``
    (the run with the best lower bound wins), ``init_params`` ("kmeans", "k-means++", "random",
    "random_from_data"), ``weights_init``, ``means_init``, ``precisions_init`` and
    ``random_state``. Fitted: ``weights_``, ``means_``, ``covariances_``,
    ``precisions_cholesky_``, ``precisions_``, ``converged_``, ``n_iter_``, ``lower_bound_``
    (mean log-likelihood per sample of the best run, from the last E-step).

    With ``means_init``, the first weights and covariances come from the k-means partition that
    Lloyd's algorithm reaches from those means (scikit-learn takes them from an unrelated k-means
    run); the means are used as given. Pass ``weights_init`` and ``precisions_init`` too for a
    start that is fixed completely; from one, this EM follows scikit-learn's step for step.
    Arrays may be numpy or CuPy; results come back on the input's device.
    """

    _fitted_attrs = (
        "weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_",
        "converged_", "n_iter_", "lower_bound_", "n_features_in_",
    )
    _required_fitted = "precisions_cholesky_"

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state

    def fit_memory_bytes(self, n_samples: int, n_features: int) -> int:
        """An upper estimate of the working memory ``fit`` needs for this data shape (the float64
        data, the (n, k) responsibilities and log-probabilities with their temporaries, and the
        covariances and their Cholesky factors), so a caller can refuse a training up front."""
        n, d, k = int(n_samples), int(n_features), int(self.n_components)
        cov = {"full": k * d * d, "tied": d * d, "diag": k * d, "spherical": k}.get(self.covariance_type, k * d * d)
        return 8 * (n * d * 2 + n * k * 4 + cov * 4 + n * d)

    # -- validation ---------------------------------------------------------------------------

    def _check_params(self, xp, d: int, func: str) -> dict[str, Any]:
        k = check_int(self.n_components, "n_components", 1, None, func=func)
        check_option(self.covariance_type, "covariance_type", _COV_TYPES, func=func)
        check_float(self.tol, "tol", 0.0, None, func=func)
        check_float(self.reg_covar, "reg_covar", 0.0, None, func=func)
        check_int(self.max_iter, "max_iter", 0, None, func=func)
        check_int(self.n_init, "n_init", 1, None, func=func)
        check_option(self.init_params, "init_params", _INITS, func=func)
        inits: dict[str, Any] = {}
        if self.weights_init is not None:
            w = self._init_array(xp, self.weights_init, "weights_init", (k,), func)
            if bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
                raise InvalidArgumentError(
                    f"The 'weights_init' parameter of {func} must be non-negative and sum to 1. Got sum {float(w.sum())!r}."
                )
            inits["weights"] = w
        if self.means_init is not None:
            inits["means"] = self._init_array(xp, self.means_init, "means_init", (k, d), func)
        if self.precisions_init is not None:
            shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
            prec = self._init_array(xp, self.precisions_init, "precisions_init", shape, func)
            inits["prec_chol"] = _precision_cholesky_from_precisions(xp, prec, self.covariance_type)
        return inits

    @staticmethod
    def _init_array(xp, value, name: str, shape: tuple[int, ...], func: str):
        arr = xp.asarray(value, dtype=xp.float64) if get_namespace(value) is xp else xp.asarray(to_numpy(value), dtype=xp.float64)
        if tuple(arr.shape) != shape:
            raise InvalidArgumentError(
                f"The '{name}' parameter of {func} must have shape {shape}. Got shape {tuple(arr.shape)} instead."
            )
        if not bool(xp.isfinite(arr).all()):
            raise InvalidArgumentError(f"The '{name}' parameter of {func} must hold finite numbers only.")
        return arr

    # -- EM -----------------------------------------------------------------------------------

    def fit(self, X, y=None) -> GaussianMixture:
        """Estimate the parameters with EM (``n_init`` runs, the best lower bound wins); returns ``self``."""
        self._fit(X, "GaussianMixture.fit")
        return self

    def fit_predict(self, X, y=None) -> Any:
        """Fit, then return the component of each sample (consistent with ``fit(X).predict(X)``)."""
        xp, X = self._fit(X, "GaussianMixture.fit_predict")
        return xp.argmax(self._log_resp(xp, X)[1], axis=1)

    def _fit(self, X, func: str):
        xp = get_namespace(X)
        X = check_X(xp, X, func=func, min_samples=2)
        inits = self._check_params(xp, X.shape[1], func)
        if X.shape[0] < self.n_components:
            raise InvalidArgumentError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}."
            )
        self._reset()
        rng = check_random_state(self.random_state, func=func)
        best, best_bound = None, -math.inf
        for _ in range(self.n_init):
            params = self._initialize(xp, X, rng, inits)
            bound, n_iter, converged = -math.inf, 0, False
            for n_iter in range(1, self.max_iter + 1):
                prev = bound
                log_norm, log_resp = self._e_step(xp, X, params)
                params = self._m_step(xp, X, xp.exp(log_resp))
                bound = float(log_norm.mean())
                if abs(bound - prev) < self.tol:
                    converged = True
                    break
            if best is None or bound > best_bound:
                best, best_bound = (params, n_iter, converged), bound
        params, n_iter, converged = best
        if not converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = _precisions(xp, self.precisions_cholesky_, self.covariance_type)
        self.converged_, self.n_iter_, self.lower_bound_ = converged, n_iter, best_bound
        self.n_features_in_ = X.shape[1]
        return xp, X

    def _initialize(self, xp, X, rng, inits):
        n, k = X.shape[0], int(self.n_components)
        if "means" in inits:
            _, labels = kmeans(xp, X, k, rng, init=inits["means"])
            resp = (labels[:, None] == xp.arange(k)[None, :]).astype(xp.float64)
        elif self.init_params == "kmeans":
            _, labels = kmeans(xp, X, k, rng)
            resp = (labels[:, None] == xp.arange(k)[None, :]).astype(xp.float64)
        elif self.init_params == "random":
            resp = xp.asarray(rng.uniform(size=(n, k)))
            resp /= resp.sum(axis=1, keepdims=True)
        else:
            idx = kmeans_plusplus(xp, X, k, rng) if self.init_params == "k-means++" else rng.choice(n, size=k, replace=False)
            resp = xp.zeros((n, k), dtype=xp.float64)
            resp[xp.asarray(idx), xp.arange(k)] = 1.0
        nk, means, cov = _estimate_parameters(xp, X, resp, float(self.reg_covar), self.covariance_type)
        weights = inits.get("weights", nk / n)
        means = inits.get("means", means)
        prec_chol = inits.get("prec_chol")
        if prec_chol is None:
            prec_chol = _precision_cholesky(xp, cov, self.covariance_type)
        return weights, means, cov, prec_chol

    def _e_step(self, xp, X, params):
        weights, means, _, prec_chol = params
        weighted = _estimate_log_gaussian_prob(xp, X, means, prec_chol, self.covariance_type) + xp.log(weights)[None, :]
        log_norm = logsumexp(xp, weighted, axis=1)
        return log_norm, weighted - log_norm[:, None]

    def _m_step(self, xp, X, resp):
        nk, means, cov = _estimate_parameters(xp, X, resp, float(self.reg_covar), self.covariance_type)
        return nk / nk.sum(), means, cov, _precision_cholesky(xp, cov, self.covariance_type)

    # -- inference ----------------------------------------------------------------------------

    def _log_resp(self, xp, X):
        params = self._fitted_in(xp, "weights_", "means_", "covariances_", "precisions_cholesky_")
        return self._e_step(xp, X, params)

    def _checked(self, X, func: str):
        self._check_is_fitted()
        xp = get_namespace(X)
        return xp, check_X(xp, X, func=func, n_features=self.n_features_in_)

    def score_samples(self, X) -> Any:
        """Log-likelihood log p(x) of each sample under the mixture, shape (n,)."""
        xp, X = self._checked(X, "GaussianMixture.score_samples")
        return self._log_resp(xp, X)[0]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def predict(self, X) -> Any:
        """Most probable component of each sample, shape (n,)."""
        xp, X = self._checked(X, "GaussianMixture.predict")
        return xp.argmax(self._log_resp(xp, X)[1], axis=1)

    def predict_proba(self, X) -> Any:
        """Posterior probability of each component for each sample, shape (n, n_components)."""
        xp, X = self._checked(X, "GaussianMixture.predict_proba")
        return xp.exp(self._log_resp(xp, X)[1])

    def _n_parameters(self) -> int:
        k, d = int(self.means_.shape[0]), int(self.means_.shape[1])
        cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2, "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X``; lower is better."""
        n = X.shape[0]
        return -2.0 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X``; lower is better."""
        return -2.0 * self.score(X) * X.shape[0] + 2.0 * self._n_parameters()
