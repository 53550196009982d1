"""Support vector classification on numpy or CuPy arrays, one-vs-rest, with Platt probabilities.

Which solver runs (``solver="auto"``, recorded in ``solver_`` after ``fit``):

============  ==========================  ==================================================
kernel        n_samples                   solver
============  ==========================  ==================================================
"linear"      any                         "newton": primal squared hinge (LinearSVC's loss)
"rbf"         <= ``max_exact_samples``    "exact": the hinge-loss dual, as sklearn's SVC
"rbf"         >  ``max_exact_samples``    "nystroem": ``n_components`` landmarks + "newton"
============  ==========================  ==================================================

``solver="fourier"`` (random Fourier features + "newton") is the data-independent map that
``partial_fit`` uses for the RBF kernel; the linear ``partial_fit`` is averaged mini-batch SGD.
The default ``max_exact_samples=20000`` is where the exact solver's O(n²) kernel work stops
being worth it on a CPU.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..validation import check_float, check_int, check_option
from ..errors import FailedPreconditionError, InvalidArgumentError, InvalidTypeError, NotFittedError
from ._base import BaseModel, ConvergenceWarning, check_random_state, check_X, get_namespace, to_numpy
from ._svm_solvers import KernelRows, fit_hinge_dual, fit_squared_hinge_warm, rbf_kernel, row_chunks, sgd_step, sigmoid_train

__all__ = ["SVC"]

_LINEAR = ("newton", "sgd")
_KERNEL = ("exact", "nystroem")
_PLATT_FOLDS = 5


class SVC(BaseModel):
    """C-support vector classifier with a linear or RBF kernel, one-vs-rest for several classes.

    Parameters
    ----------
    kernel : "linear" or "rbf"
        The linear kernel minimises LinearSVC's objective ½‖w‖² + C Σ max(0, 1 − y f(x))² (the
        intercept is not penalised); the RBF kernel exp(−gamma‖x − x'‖²) uses the solver table
        in the module docstring.
    C : float > 0
        Inverse regularisation strength, as in scikit-learn.
    gamma : "scale", "auto" or float > 0
        RBF width: "scale" is 1 / (n_features · X.var()), "auto" is 1 / n_features.
    tol : float > 0
        Exact solver: stop when the largest KKT violation is below ``tol`` (libsvm's rule).
        Newton solver: stop when the gradient norm falls below 1e-3 · ``tol`` of its start.
    max_iter : int or None
        Outer iterations (None: 100 Newton steps, or max(10 000, 20 n) working-set steps).
    solver : "auto", "exact", "nystroem" or "fourier"
        See the module docstring; "auto" switches to "nystroem" above ``max_exact_samples``.
    max_exact_samples : int
        Largest training set the "auto" RBF solver handles exactly (default 20 000).
    n_components : int
        Landmarks (Nyström) or random features (Fourier), m. Each Newton step costs O(n · m²)
        time and the features take n · (m + 1) · 8 bytes, so a few thousand at most.
    cache_size : float
        MiB for kernel rows in the exact solver; the whole float32 Gram matrix is computed once
        when it fits (n ≤ 16 384 at the default 1024), otherwise rows are cached LRU.
    probability : bool
        Fit one Platt sigmoid per class on decision values from an internal 5-fold stratified
        cross-validation (as libsvm does), so ``fit`` costs about six fits.
    batch_size : int
        Mini-batch size of ``partial_fit``.
    random_state : int, numpy Generator or None
        Seeds landmarks, random features, the Platt folds and the subsample that warm-starts
        Newton on large inputs. The same seed gives the same model on numpy and CuPy.

    Arrays may be numpy or CuPy; results come back on the input's device.
    """

    _fitted_attrs = (
        "classes_", "n_features_in_", "solver_", "gamma_", "coef_", "intercept_", "support_",
        "support_vectors_", "dual_coef_", "random_weights_", "random_offset_", "prob_a_", "prob_b_",
        "n_iter_", "converged_", "n_samples_seen_", "sgd_coef_", "sgd_steps_", "sgd_eta_",
    )
    _required_fitted = "intercept_"

    def __init__(
        self,
        kernel: str = "rbf",
        C: float = 1.0,
        gamma: str | float = "scale",
        *,
        tol: float = 1e-3,
        max_iter: int | None = None,
        solver: str = "auto",
        max_exact_samples: int = 20_000,
        n_components: int = 1024,
        cache_size: float = 1024,
        probability: bool = False,
        batch_size: int = 256,
        random_state: int | None = None,
    ):
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.max_exact_samples = max_exact_samples
        self.n_components = n_components
        self.cache_size = cache_size
        self.probability = probability
        self.batch_size = batch_size
        self.random_state = random_state

    # -- parameters -----------------------------------------------------------------------

    def _check_params(self, func: str) -> None:
        check_option(self.kernel, "kernel", ("linear", "rbf"), func=func)
        check_float(self.C, "C", 0.0, None, lo_open=True, func=func)
        check_float(self.tol, "tol", 0.0, None, lo_open=True, func=func)
        if self.max_iter is not None:
            check_int(self.max_iter, "max_iter", 1, None, func=func)
        check_option(self.solver, "solver", ("auto", "exact", "nystroem", "fourier"), func=func)
        if self.kernel == "linear" and self.solver not in ("auto", "exact"):
            raise InvalidArgumentError(
                f"solver={self.solver!r} approximates the RBF kernel; with kernel='linear' use solver='auto'."
            )
        check_int(self.max_exact_samples, "max_exact_samples", 1, None, func=func)
        check_int(self.n_components, "n_components", 1, None, func=func)
        check_float(self.cache_size, "cache_size", 0.0, None, func=func)
        check_int(self.batch_size, "batch_size", 1, None, func=func)
        if not isinstance(self.probability, (bool, np.bool_)):
            raise InvalidTypeError(f"The 'probability' parameter of {func} must be a bool. Got {self.probability!r} instead.")
        if isinstance(self.gamma, str):
            check_option(self.gamma, "gamma", ("scale", "auto"), func=func)
        else:
            check_float(self.gamma, "gamma", 0.0, None, lo_open=True, func=func)

    def _resolve_gamma(self, xp, X) -> float:
        if not isinstance(self.gamma, str):
            return float(self.gamma)
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        var = float(X.var())
        return 1.0 / (X.shape[1] * var) if var > 0 else 1.0

    def _resolve_solver(self, n: int) -> str:
        if self.kernel == "linear":
            return "newton"
        if self.solver == "auto":
            return "exact" if n <= self.max_exact_samples else "nystroem"
        return self.solver

    def approximation_size(self, n_samples: int) -> int:
        """The Nystroem landmarks or random Fourier features ``fit`` would use for ``n_samples``
        (0 when it solves exactly: the exact RBF dual or the linear primal)."""
        solver = self._resolve_solver(int(n_samples))
        if solver == "nystroem":
            return min(int(self.n_components), int(n_samples))
        return int(self.n_components) if solver == "fourier" else 0

    def fit_memory_bytes(self, n_samples: int, n_features: int, n_classes: int = 2) -> int:
        """An upper estimate of the working memory ``fit`` needs for this data shape, so that a
        caller (the server) can refuse a training before it starts: the float64 data, plus the
        kernel cache (exact: ``cache_size`` MiB or the whole n x n float32 matrix, whichever is
        smaller), or the (n, n_components) feature matrix and its (m, m) regulariser (nystroem,
        fourier), plus the block temporaries of the kernel GEMMs."""
        n, d = int(n_samples), int(n_features)
        cols = 1 if n_classes <= 2 else int(n_classes)
        total = 8 * n * d + 8 * n * cols * 6 + 8 * (1 << 23)  # X, targets/duals/decisions, GEMM blocks
        solver = self._resolve_solver(n)
        if solver == "exact":
            total += min(int(float(self.cache_size) * 2**20), 4 * n * n)
        elif solver in ("nystroem", "fourier"):
            m = int(self.n_components) if solver == "fourier" else min(int(self.n_components), n)
            total += 8 * n * (m + 1) * 2 + 8 * m * m * 3 + 8 * d * m  # features, Newton steps, K_LL
        else:  # newton on the (n, d + 1) data with its Newton-step copies
            total += 8 * n * (d + 1) * 2
        return total

    # -- labels ---------------------------------------------------------------------------

    @staticmethod
    def _label_matrix(xp, idx, n_classes: int):
        """±1 targets: one column for two classes (classes_[1] positive), else one per class."""
        if n_classes == 2:
            return xp.where(idx == 1, 1.0, -1.0)[:, None]
        return xp.where(idx[:, None] == xp.arange(n_classes)[None, :], 1.0, -1.0)

    def _encode_y(self, xp, y, n: int, func: str):
        if y is None:
            raise InvalidTypeError(f"The 'y' parameter of {func} must be an array of labels. Got None instead.")
        y = np.asarray(y) if isinstance(y, (list, tuple)) else y
        if y.ndim != 1 or y.shape[0] != n:
            raise InvalidArgumentError(
                f"The 'y' parameter of {func} must be a 1-d array with one label per row of X ({n}). "
                f"Got shape {tuple(y.shape)} instead."
            )
        if xp is not np:
            if y.dtype.kind in "USO":
                raise InvalidTypeError("String labels work with numpy input only; encode them as integers for CuPy.")
            y = xp.asarray(y)
        return y

    # -- fit --------------------------------------------------------------------------------

    def fit(self, X, y) -> SVC:
        """Train on ``X`` (n, d) and labels ``y`` (n,) with at least two classes; returns ``self``."""
        func = "SVC.fit"
        xp = get_namespace(X, y)
        self._check_params(func)
        X = check_X(xp, X, func=func, min_samples=2)
        y = self._encode_y(xp, y, X.shape[0], func)
        classes, idx = xp.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise InvalidArgumentError(
                f"SVC.fit needs samples of at least two classes; got only class {to_numpy(classes)[0]!r}."
            )
        self._reset()
        rng = check_random_state(self.random_state, func=func)
        solver = self._resolve_solver(X.shape[0])
        gamma = None if self.kernel == "linear" else self._resolve_gamma(xp, X)
        Y = self._label_matrix(xp, idx.reshape(-1), classes.shape[0])
        model, n_iter, converged = self._train(xp, X, Y, solver, gamma, rng)
        if not converged:
            warnings.warn(
                f"SVC ({solver} solver) stopped at max_iter before reaching tol={self.tol}; increase "
                "max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.solver_ = solver
        self.gamma_ = gamma
        self.n_iter_ = n_iter
        self.converged_ = converged
        for name, value in model.items():
            setattr(self, name, value)
        if solver == "newton":  # lets partial_fit continue from this solution
            self.n_samples_seen_ = X.shape[0]
        if self.probability:
            self._fit_platt(xp, X, Y, idx.reshape(-1), solver, gamma, rng)
        return self

    def _train(self, xp, X, Y, solver: str, gamma, rng) -> tuple[dict[str, Any], int, bool]:
        """Fit the raw one-vs-rest model; returns its arrays by attribute name, n_iter, converged."""
        C, tol = float(self.C), float(self.tol)
        if solver == "exact":
            return self._train_exact(xp, X, Y, gamma)
        max_iter = self.max_iter or 100
        reg = None
        if solver == "newton":
            feats, extra = _with_ones(xp, X), {}
        elif solver == "nystroem":
            feats, extra, reg = self._nystroem(xp, X, gamma, rng)
        else:
            extra = self._fourier_map(xp, X.shape[1], gamma, rng)
            feats = _with_ones(xp, _fourier(xp, X, extra["random_weights_"], extra["random_offset_"]))
        # Newton is cheap near the optimum, and ‖∇‖ at w = 0 is large: a relative 1e-3·tol is
        # what brings the objective to ~1e-6 of its minimum.
        W, n_iter, converged = fit_squared_hinge_warm(xp, feats, Y, C, 1e-3 * tol, max_iter, reg, rng)
        extra["dual_coef_" if solver == "nystroem" else "coef_"] = W[:-1].T.copy()
        extra["intercept_"] = W[-1].copy()
        return extra, n_iter, converged

    def _train_exact(self, xp, X, Y, gamma):
        n = X.shape[0]
        rows = KernelRows(xp, X, gamma, float(self.cache_size) * 2**20)
        max_iter = self.max_iter or max(10_000, 20 * n)
        alphas, rhos, iters, ok = [], [], [], True
        for k in range(Y.shape[1]):
            y = Y[:, k]
            alpha, rho, n_iter, converged = fit_hinge_dual(xp, rows, y, float(self.C), float(self.tol), max_iter)
            alphas.append(alpha * y)
            rhos.append(rho)
            iters.append(n_iter)
            ok &= converged
        coef = xp.stack(alphas)  # (K', n): α_i y_i
        support = xp.flatnonzero((coef != 0).any(axis=0))
        model = {
            "support_": support,
            "support_vectors_": X[support].copy(),
            "dual_coef_": coef[:, support].copy(),
            "intercept_": -xp.asarray(rhos, dtype=xp.float64),
        }
        return model, max(iters), ok

    def _nystroem(self, xp, X, gamma, rng):
        """Landmarks L drawn uniformly; features K(x, L) with regulariser K_LL.

        Minimising ½βᵀK_LLβ + loss over f(x) = Σ_j β_j K(x, l_j) is the Nyström-feature linear SVM
        (w = K_LL^{1/2} β) without the (n, m) × (m, m) product that forming the features needs.
        """
        n = X.shape[0]
        m = min(int(self.n_components), n)
        L = X[xp.asarray(np.sort(rng.choice(n, size=m, replace=False)))].copy()
        L_sq = (L * L).sum(axis=1)
        feats = xp.empty((n, m + 1), dtype=xp.float64)  # trailing ones: the intercept's feature
        feats[:, m] = 1.0
        for rows in row_chunks(n, m):
            feats[rows, :m] = rbf_kernel(xp, X[rows], L, gamma, L_sq)
        return feats, {"support_vectors_": L}, rbf_kernel(xp, L, L, gamma, L_sq)

    def _fourier_map(self, xp, d: int, gamma: float, rng) -> dict[str, Any]:
        m = int(self.n_components)
        W = rng.normal(0.0, math.sqrt(2.0 * gamma), size=(d, m))
        b = rng.uniform(0.0, 2.0 * math.pi, size=m)
        return {"random_weights_": xp.asarray(W), "random_offset_": xp.asarray(b)}

    # -- Platt scaling ------------------------------------------------------------------------

    def _fit_platt(self, xp, X, Y, idx, solver, gamma, rng) -> None:
        """Sigmoids on out-of-fold decision values of a stratified 5-fold split (as libsvm)."""
        n = X.shape[0]
        idx_host = to_numpy(idx)
        fold = np.empty(n, dtype=np.int64)
        for c in np.unique(idx_host):
            members = rng.permutation(np.flatnonzero(idx_host == c))
            fold[members] = np.arange(members.size) % _PLATT_FOLDS
        dec = np.empty((n, Y.shape[1]))
        for f in range(_PLATT_FOLDS):
            test = fold == f
            if not test.any():
                continue
            train = xp.asarray(np.flatnonzero(~test))
            model, _, _ = self._train(xp, X[train], Y[train], solver, gamma, rng)
            dec[test] = to_numpy(self._decision(xp, X[xp.asarray(np.flatnonzero(test))], solver, model))
        target = to_numpy(Y) > 0
        ab = [sigmoid_train(dec[:, k], target[:, k]) for k in range(Y.shape[1])]
        self.prob_a_ = xp.asarray([a for a, _ in ab], dtype=xp.float64)
        self.prob_b_ = xp.asarray([b for _, b in ab], dtype=xp.float64)

    # -- partial_fit ------------------------------------------------------------------------

    def partial_fit(self, X, y, classes=None) -> SVC:
        """Update the model with one mini-batch (averaged SGD); ``classes`` is required on the first call.

        The linear kernel updates ``coef_`` directly; the RBF kernel works in random Fourier
        features (``n_components`` of them, drawn once from ``random_state``) with ``gamma``
        resolved on the first batch. Each call makes ``ceil(len(X) / batch_size)`` steps on
        λ/2‖w‖² + mean squared hinge with λ = 1/(C · n_samples_seen_), the objective of ``fit``.
        """
        func = "SVC.partial_fit"
        xp = get_namespace(X, y)
        first = not hasattr(self, "intercept_")
        self._check_params(func)
        X = check_X(xp, X, func=func, n_features=None if first else self.n_features_in_)
        y = self._encode_y(xp, y, X.shape[0], func)
        if first:
            self._start_partial_fit(xp, X, classes, func)
        elif self.solver_ not in _LINEAR + ("fourier",):
            raise FailedPreconditionError(
                f"partial_fit cannot continue a model trained with solver {self.solver_!r}; fit with "
                "kernel='linear' or solver='fourier', or start over with a fresh SVC."
            )
        classes_ = self._fitted_in(xp, "classes_") if self.classes_.dtype.kind not in "US" else self.classes_
        idx = xp.searchsorted(classes_, y)
        idx = xp.clip(idx, 0, classes_.shape[0] - 1)
        if not bool((classes_[idx] == y).all()):
            raise InvalidArgumentError(
                f"y holds labels that are not in classes_ {to_numpy(classes_).tolist()}; pass every label in "
                "`classes` on the first partial_fit call."
            )
        Y = self._label_matrix(xp, idx, classes_.shape[0])
        feats = X if self.solver_ in _LINEAR else _fourier(xp, X, *self._fitted_in(xp, "random_weights_", "random_offset_"))
        Xa = _with_ones(xp, feats)
        coef, intercept = self._fitted_in(xp, "coef_", "intercept_")
        W = self._fitted_in(xp, "sgd_coef_") if hasattr(self, "sgd_coef_") else xp.concatenate([coef.T, intercept[None, :]])
        W_avg = xp.concatenate([coef.T, intercept[None, :]])
        steps = int(getattr(self, "sgd_steps_", 0))
        if not hasattr(self, "sgd_eta_"):
            self.sgd_eta_ = 1.0 / (2.0 * float((Xa * Xa).sum(axis=1).mean()))
            if self.solver_ == "newton":
                steps = math.ceil(self.n_samples_seen_ / self.batch_size)
        self.n_samples_seen_ = int(getattr(self, "n_samples_seen_", 0)) + X.shape[0]
        lam = 1.0 / (float(self.C) * self.n_samples_seen_)
        for start in range(0, X.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            W = sgd_step(xp, Xa[rows], Y[rows], W, lam, self.sgd_eta_)
            steps += 1
            W_avg += (W - W_avg) / steps
        self.sgd_coef_, self.sgd_steps_ = W, steps
        self.coef_, self.intercept_ = W_avg[:-1].T.copy(), W_avg[-1].copy()
        if self.solver_ == "newton":
            self.solver_ = "sgd"
        return self

    def _start_partial_fit(self, xp, X, classes, func: str) -> None:
        if classes is None:
            raise InvalidArgumentError(
                "classes must be passed on the first call to partial_fit (every label the stream will hold)."
            )
        classes = np.asarray(classes) if isinstance(classes, (list, tuple)) else classes
        if xp is not np and classes.dtype.kind not in "USO":
            classes = xp.asarray(classes)
        classes = xp.unique(classes) if get_namespace(classes) is xp else np.unique(classes)
        if classes.shape[0] < 2:
            raise InvalidArgumentError(f"{func} needs at least two classes; got {to_numpy(classes).tolist()}.")
        self._reset()
        n_cols = 1 if classes.shape[0] == 2 else classes.shape[0]
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        if self.kernel == "linear":
            self.solver_, self.gamma_, width = "sgd", None, X.shape[1]
        else:
            self.solver_, self.gamma_, width = "fourier", self._resolve_gamma(xp, X), int(self.n_components)
            rng = check_random_state(self.random_state, func=func)
            for name, value in self._fourier_map(xp, X.shape[1], self.gamma_, rng).items():
                setattr(self, name, value)
        self.coef_ = xp.zeros((n_cols, width), dtype=xp.float64)
        self.intercept_ = xp.zeros(n_cols, dtype=xp.float64)
        self.n_iter_, self.converged_ = 0, False

    # -- prediction ---------------------------------------------------------------------------

    def _decision(self, xp, X, solver: str, model: dict[str, Any]):
        """Raw one-vs-rest decision values (n, K') from the arrays of one trained model."""
        if solver in _LINEAR:
            return X @ model["coef_"].T + model["intercept_"][None, :]
        out = xp.empty((X.shape[0], model["intercept_"].shape[0]), dtype=xp.float64)
        if solver in _KERNEL:
            sv, coef = model["support_vectors_"], model["dual_coef_"]
            sv_sq = (sv * sv).sum(axis=1)
            for rows in row_chunks(X.shape[0], sv.shape[0]):
                out[rows] = rbf_kernel(xp, X[rows], sv, self.gamma_ if self.gamma_ else 1.0, sv_sq) @ coef.T
        else:
            W, b, coef = model["random_weights_"], model["random_offset_"], model["coef_"]
            for rows in row_chunks(X.shape[0], W.shape[1]):
                out[rows] = _fourier(xp, X[rows], W, b) @ coef.T
        out += model["intercept_"][None, :]
        return out

    def _raw_decision(self, X, func: str):
        self._check_is_fitted()
        xp = get_namespace(X)
        X = check_X(xp, X, func=func, n_features=self.n_features_in_)
        names = [n for n in ("coef_", "intercept_", "support_vectors_", "dual_coef_", "random_weights_", "random_offset_") if hasattr(self, n)]
        model = dict(zip(names, self._fitted_in(xp, *names)))
        return xp, self._decision(xp, X, self.solver_, model)

    def decision_function(self, X) -> Any:
        """Signed distances to the one-vs-rest hyperplanes: shape (n,) for two classes, else (n, n_classes)."""
        xp, dec = self._raw_decision(X, "SVC.decision_function")
        return dec[:, 0] if dec.shape[1] == 1 else dec

    def predict(self, X) -> Any:
        """The class with the largest decision value (for two classes: classes_[1] where it is > 0)."""
        xp, dec = self._raw_decision(X, "SVC.predict")
        idx = (dec[:, 0] > 0).astype(xp.int64) if dec.shape[1] == 1 else xp.argmax(dec, axis=1)
        if self.classes_.dtype.kind in "USO":
            return self.classes_[to_numpy(idx)]
        return self._fitted_in(xp, "classes_")[idx]

    def predict_proba(self, X) -> Any:
        """Class probabilities (n, n_classes) from the Platt sigmoids; rows sum to 1.

        Needs ``probability=True`` at fit time. As in scikit-learn, ``predict`` follows the decision
        values, so on a few borderline samples it may disagree with the argmax of these.
        """
        if not hasattr(self, "prob_a_"):
            if hasattr(self, "intercept_"):
                raise NotFittedError(
                    "predict_proba is not available: the Platt sigmoids are fitted by fit with "
                    "probability=True (not by partial_fit). Set probability=True and call fit."
                )
            self._check_is_fitted()
        xp, dec = self._raw_decision(X, "SVC.predict_proba")
        a, b = self._fitted_in(xp, "prob_a_", "prob_b_")
        z = dec * a[None, :] + b[None, :]
        p = xp.exp(-xp.logaddexp(0.0, z))  # 1 / (1 + exp(z)) without overflow
        if p.shape[1] == 1:
            return xp.concatenate([1.0 - p, p], axis=1)
        p = xp.maximum(p, 1e-300)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> Any:
        """Natural log of :meth:`predict_proba`."""
        return get_namespace(X).log(self.predict_proba(X))

    def score(self, X, y) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``."""
        pred = self.predict(X)
        return float((to_numpy(pred) == to_numpy(y)).mean())


def _with_ones(xp, X):
    """``X`` with a trailing column of ones (the intercept's feature)."""
    out = xp.empty((X.shape[0], X.shape[1] + 1), dtype=xp.float64)
    out[:, :-1] = X
    out[:, -1] = 1.0
    return out


def _fourier(xp, X, W, b):
    """Random Fourier features sqrt(2/m) cos(XW + b) of the RBF kernel (Rahimi & Recht 2007)."""
    Z = X @ W
    Z += b[None, :]
    xp.cos(Z, out=Z)
    Z *= math.sqrt(2.0 / W.shape[1])
    return Z

