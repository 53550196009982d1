"""What both estimators share: array-namespace dispatch, the scikit-learn parameter contract,
input validation and a JSON-safe, versioned serialisation.

Dispatch follows scikit-learn's array-API support: :func:`get_namespace` looks at the inputs and
returns ``numpy`` or ``cupy``; every computation is then written against that namespace, so results
stay on the input's device. CuPy is never imported unless an input already is a CuPy array.
"""

from __future__ import annotations

import inspect
import numbers
import sys
from typing import Any, TypeVar

import numpy as np

from ..validation import check_array
from ..errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFittedError,
    UnsupportedFormatError,
)

__all__ = ["get_namespace", "ConvergenceWarning", "FORMAT_VERSION"]

#: Version of the dict layout written by ``to_dict``; ``from_dict`` refuses newer ones.
FORMAT_VERSION = 1


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` before meeting ``tol``."""


_Model = TypeVar("_Model", bound="BaseModel")

def _is_cupy(a: Any) -> bool:
    return type(a).__module__.split(".", 1)[0] == "cupy"


def get_namespace(*arrays: Any) -> Any:
    """Return the array module (``numpy`` or ``cupy``) that the given arrays live in.

    ``None``, Python scalars and lists count as numpy-compatible and never force a namespace.
    Mixing numpy and CuPy arrays, or CuPy arrays on two GPUs, raises
    :class:`~simsearch.errors.InvalidArgumentError` instead of copying silently.
    """
    device = None
    saw_numpy = False
    for a in arrays:
        if a is None or isinstance(a, (numbers.Number, str, bytes, list, tuple)):
            continue
        if _is_cupy(a):
            dev = getattr(getattr(a, "device", None), "id", 0)
            if device is not None and dev != device:
                raise InvalidArgumentError(
                    f"Inputs live on different GPUs (device {device} and device {dev}); "
                    "move them to one device with cupy.asarray inside a `with cupy.cuda.Device(i)` block."
                )
            device = dev
        elif isinstance(a, np.ndarray):
            saw_numpy = True
    if device is not None:
        if saw_numpy:
            raise InvalidArgumentError(
                "Inputs mix numpy and CuPy arrays; pass all of them on one device "
                "(cupy.asarray(a) to move to the GPU, a.get() to move to the host)."
            )
        return sys.modules["cupy"]
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array (numpy or CuPy) to a host numpy array."""
    return a.get() if _is_cupy(a) else np.asarray(a)


def as_namespace(xp, a: Any):
    """Move ``a`` into namespace ``xp`` (a no-op when it is there already)."""
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


def check_random_state(seed: Any, name: str = "random_state", func: str | None = None) -> np.random.Generator:
    """Turn ``None``, an int or a Generator into a host numpy Generator.

    Random choices are always drawn on the host and then moved to the device, so one seed gives
    the same initialisation on numpy and on CuPy.
    """
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    where = f"The '{name}' parameter" + (f" of {func}" if func else "")
    raise InvalidTypeError(f"{where} must be None, an int >= 0 or a numpy Generator. Got {seed!r} instead.")


def check_X(xp, X: Any, name: str = "X", *, func: str, n_features: int | None = None, min_samples: int = 1):
    """Validate a 2-d matrix of finite numbers and return it as C-contiguous float64 in ``xp``.

    float64 keeps EM and the Newton solvers stable; the conversion also copies integer input.
    """
    if xp is np:
        X = check_array(X, name, dtype=np.float64, ndim=2, allowed_kinds="fiub", finite=True, func=func)
    else:
        if X.ndim != 2:
            raise InvalidArgumentError(f"The '{name}' parameter of {func} must be a 2-d array. Got shape {X.shape} instead.")
        if X.dtype.kind not in "fiub":
            raise InvalidTypeError(
                f"The '{name}' parameter of {func} must have a numeric dtype. Got dtype {X.dtype} instead."
            )
        X = xp.ascontiguousarray(X, dtype=xp.float64)
        if X.size and not bool(xp.isfinite(X).all()):
            raise InvalidArgumentError(f"The '{name}' parameter of {func} must hold finite numbers only.")
    if X.shape[0] < min_samples:
        raise InvalidArgumentError(
            f"The '{name}' parameter of {func} must have at least {min_samples} sample(s). Got shape {X.shape} instead."
        )
    if X.shape[1] < 1:
        raise InvalidArgumentError(f"The '{name}' parameter of {func} must have at least 1 feature. Got shape {X.shape}.")
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidArgumentError(
            f"X has {X.shape[1]} features, but the estimator was fitted with {n_features} features; "
            "pass vectors of the training dimension."
        )
    return X


def logsumexp(xp, a, axis: int = 1):
    """Stable log(sum(exp(a))) along ``axis``: shift by the row maximum first."""
    amax = a.max(axis=axis, keepdims=True)
    amax = xp.where(xp.isfinite(amax), amax, 0.0)
    with np.errstate(divide="ignore"):  # a row of -inf gives log(0) = -inf, as it should
        out = xp.log(xp.exp(a - amax).sum(axis=axis, keepdims=True)) + amax
    return xp.squeeze(out, axis=axis)


# -------------------------------------------------------------------------------------------
# Serialisation helpers: arrays become {"dtype", "shape", "data"} with data as a flat list.


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    arr = to_numpy(value)
    if arr.dtype.kind in "US":
        return {"dtype": "str", "shape": list(arr.shape), "data": [str(v) for v in arr.ravel()]}
    if arr.dtype.kind not in "biuf":
        raise InvalidTypeError(f"Cannot serialise an array of dtype {arr.dtype}; use numeric or str labels.")
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.ravel().tolist()}


def _decode(value: Any, xp) -> Any:
    if not isinstance(value, dict):
        return value
    if value["dtype"] == "str":
        arr = np.asarray(value["data"], dtype=str).reshape(value["shape"])
        return arr
    arr = np.asarray(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    return as_namespace(xp, arr)


class BaseModel:
    """scikit-learn's estimator contract without depending on scikit-learn.

    ``__init__`` of a subclass only stores its arguments under the same names; ``get_params`` and
    ``set_params`` read them back through the signature, so ``sklearn.base.clone`` works too.
    Subclasses list their fitted attributes in ``_fitted_attrs`` for ``to_dict``.
    """

    _fitted_attrs: tuple[str, ...] = ()
    _required_fitted: str = ""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor arguments as a dict (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self: _Model, **params: Any) -> _Model:
        """Set constructor arguments by name and return ``self``; unknown names raise."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise InvalidArgumentError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._get_param_names():
            default = sig.parameters[name].default
            value = getattr(self, name)
            if default is inspect.Parameter.empty or not _same(value, default):
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._required_fitted)

    def _check_is_fitted(self) -> None:
        if not hasattr(self, self._required_fitted):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _fitted_in(self, xp, *names: str):
        """Fitted arrays moved to ``xp`` (cached), so a model fitted on one device predicts on another."""
        cache = self.__dict__.setdefault("_device_cache", {})
        out = []
        for name in names:
            value = getattr(self, name)
            if get_namespace(value) is not xp:
                key = (name, xp.__name__, id(value))
                if key not in cache:
                    cache.clear() if len(cache) > 64 else None
                    cache[key] = as_namespace(xp, value)
                value = cache[key]
            out.append(value)
        return out[0] if len(out) == 1 else out

    def _reset(self) -> None:
        for name in list(self.__dict__):
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)
        self.__dict__.pop("_device_cache", None)

    def to_dict(self) -> dict[str, Any]:
        """Return params and fitted arrays as a JSON-safe dict with a format version.

        Arrays are copied to the host and stored as flat lists with dtype and shape, so
        ``json.dumps`` round-trips them exactly (floats keep all 17 digits).
        """
        params = {}
        for key, value in self.get_params().items():
            if isinstance(value, np.random.Generator):
                value = None  # a Generator has no JSON form; the fitted state does not need it
            params[key] = _encode(value)
        out: dict[str, Any] = {
            "format": "simsearch.models",
            "version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": params,
        }
        if hasattr(self, self._required_fitted):
            out["fitted"] = {name: _encode(getattr(self, name)) for name in self._fitted_attrs if hasattr(self, name)}
        return out

    @classmethod
    def from_dict(cls: type[_Model], data: dict[str, Any], *, namespace: str = "numpy") -> _Model:
        """Rebuild an estimator written by :meth:`to_dict`; arrays land in ``namespace`` ("numpy" or "cupy")."""
        if not isinstance(data, dict) or data.get("format") != "simsearch.models":
            raise InvalidArgumentError("from_dict expects a dict written by to_dict (with format 'simsearch.models').")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"The model was written with format version {version!r}; this simsearch reads versions "
                f"<= {FORMAT_VERSION}. Upgrade simsearch to load it."
            )
        if data.get("estimator") != cls.__name__:
            raise InvalidArgumentError(
                f"The dict holds a {data.get('estimator')!r}, not a {cls.__name__}; call "
                f"{data.get('estimator')}.from_dict instead."
            )
        if namespace == "numpy":
            xp = np
        elif namespace == "cupy":
            try:
                import cupy as xp
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"namespace='cupy' needs CuPy ({exc}); install simsearch[gpu]."
                ) from exc
        else:
            raise InvalidArgumentError(f"namespace must be 'numpy' or 'cupy'. Got {namespace!r} instead.")
        est = cls(**{k: _decode(v, np) for k, v in data["params"].items()})
        for name, value in data.get("fitted", {}).items():
            setattr(est, name, _decode(value, xp))
        return est


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and other objects without a scalar ==
        return a is b
