"""Declarative parameter checks shared by every public entry point.

The limits and the constraints of the parameters many entry points share (``num_perm``, ``seed``,
``ngram``, ``threshold``, ``k``, ``shingle``, ``verify``, ...) are declared once, in
:data:`CONSTRAINTS`, as scikit-learn's ``validate_params`` declares them; entry points check by
name with :func:`check_param` / :func:`check_params`. Messages follow one pattern, modelled on
scikit-learn's: "The 'k' parameter of search must be an int in [1, 10000]. Got 0 instead." Nothing
here uses ``assert``, so ``python -O`` keeps the checks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "MAX_NUM_PERM",
    "MAX_NGRAM",
    "MAX_K",
    "MAX_DIM",
    "SHINGLE_KINDS",
    "VERIFY_MODES",
    "VECTOR_INDEX_KINDS",
    "Interval",
    "OneOf",
    "CONSTRAINTS",
    "check_param",
    "check_params",
    "check_int",
    "check_float",
    "check_option",
    "check_array",
    "check_texts",
    "check_finite",
]


MAX_NUM_PERM = 8192  # permutations of a MinHash signature
MAX_NGRAM = 1 << 16  # tokens (word mode) or code points (char mode) of a shingle
MAX_K = 10_000  # results per query of any search (near-duplicates, kNN, classify neighbours)
MAX_DIM = 1 << 16  # dimensions of a vector
SHINGLE_KINDS = ("word", "char")
VERIFY_MODES = ("exact", "estimate", "none")
VECTOR_INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")  # a collection's vector index (simsearch.index._ann)


def _where(name: str, func: str | None) -> str:
    return f"The '{name}' parameter of {func}" if func else f"The '{name}' parameter"


def check_int(value: Any, name: str, lo: int | None = None, hi: int | None = None, *, func: str | None = None) -> int:
    """Return ``value`` as an int after checking its type and the closed range [lo, hi]."""
    rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{_where(name, func)} must be an int in {rng}. Got {value!r} instead.")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidArgumentError(f"{_where(name, func)} must be an int in {rng}. Got {value!r} instead.")
    return value


def check_float(
    value: Any,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    func: str | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given interval (closed unless *_open)."""
    rng = (
        f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, "
        f"{'inf' if hi is None else hi}{')' if hi_open else ']'}"
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{_where(name, func)} must be a float in {rng}. Got {value!r} instead.")
    value = float(value)
    bad = not math.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        raise InvalidArgumentError(f"{_where(name, func)} must be a float in {rng}. Got {value!r} instead.")
    return value


def check_option(value: Any, name: str, options: Iterable[str], *, func: str | None = None) -> str:
    """Check that ``value`` is one of ``options`` (strings)."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise InvalidArgumentError(f"{_where(name, func)} must be one of {{{listed}}}. Got {value!r} instead.")
    return value


def check_finite(arr: np.ndarray, name: str, *, func: str | None = None) -> None:
    """Raise if a float array holds NaN or infinity, naming the first bad row."""
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidArgumentError(
            f"{_where(name, func)} must hold finite numbers only; found {arr[tuple(bad)]!r} at index "
            f"{tuple(int(i) for i in bad)}."
        )


def check_array(
    value: Any,
    name: str,
    *,
    dtype: Any,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    allowed_kinds: str | None = None,
    finite: bool = False,
    func: str | None = None,
    copy: bool = False,
) -> np.ndarray:
    """Convert ``value`` to a C-contiguous numpy array of ``dtype`` with checked shape.

    ``allowed_kinds`` lists numpy dtype kinds accepted before conversion ("f" for floats, "u" for
    unsigned ints ...); an array of another kind raises :class:`InvalidTypeError` rather than being
    silently cast. ``shape`` may contain None for "any size" in that axis.
    """
    if value is None:
        raise InvalidTypeError(f"{_where(name, func)} must be an array. Got None instead.")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise InvalidTypeError(f"{_where(name, func)} must be an array: {exc}") from None
    if allowed_kinds is not None and arr.size and arr.dtype.kind not in allowed_kinds:
        raise InvalidTypeError(
            f"{_where(name, func)} must have dtype kind in {allowed_kinds!r} "
            f"(e.g. {np.dtype(dtype).name}). Got dtype {arr.dtype} instead."
        )
    if ndim is not None and arr.ndim != ndim:
        raise InvalidArgumentError(
            f"{_where(name, func)} must be a {ndim}-d array. Got shape {arr.shape} instead."
        )
    if shape is not None:
        want = tuple(shape)
        if len(want) != arr.ndim or any(w is not None and w != g for w, g in zip(want, arr.shape)):
            pretty = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
            raise InvalidArgumentError(
                f"{_where(name, func)} must have shape {pretty}. Got shape {arr.shape} instead."
            )
    if finite:
        check_finite(arr, name, func=func)
    out = np.ascontiguousarray(arr, dtype=dtype)
    if copy and out is value:
        out = out.copy()
    return out


def check_texts(texts: Any, name: str = "texts", *, func: str | None = None) -> list[str]:
    """Check that ``texts`` is a sequence of str (not a lone str) and return it as a list."""
    if isinstance(texts, (str, bytes)):
        raise InvalidTypeError(
            f"{_where(name, func)} must be a sequence of str, not a single {type(texts).__name__}; "
            f"wrap it in a list: [{name[:-1] if name.endswith('s') else name}]."
        )
    if texts is None or not isinstance(texts, Iterable):
        raise InvalidTypeError(f"{_where(name, func)} must be a sequence of str. Got {texts!r} instead.")
    out = texts if isinstance(texts, list) else list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidTypeError(
                f"{_where(name, func)} must contain only str. Got {type(t).__name__} at position {i}."
            )
    return out


@dataclass(frozen=True)
class Interval:
    """A number in [lo, hi] (each end open when ``*_open``; None: unbounded), int or float."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def check(self, value: Any, name: str, func: str | None) -> int | float:
        if self.kind is int:
            return check_int(value, name, self.lo, self.hi, func=func)
        return check_float(value, name, self.lo, self.hi, func=func, lo_open=self.lo_open, hi_open=self.hi_open)


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings."""

    options: tuple[str, ...]

    def check(self, value: Any, name: str, func: str | None) -> str:
        return check_option(value, name, self.options, func=func)


CONSTRAINTS: dict[str, Interval | OneOf] = {
    "num_perm": Interval(int, 1, MAX_NUM_PERM),
    "seed": Interval(int, 0, (1 << 32) - 1),
    "ngram": Interval(int, 1, MAX_NGRAM),
    "threshold": Interval(float, 0.0, 1.0),
    "collection_threshold": Interval(float, 0.0, 1.0, lo_open=True),
    "k": Interval(int, 1, MAX_K),
    "dim": Interval(int, 1, MAX_DIM),
    "shingle": OneOf(SHINGLE_KINDS),
    "verify": OneOf(VERIFY_MODES),
    "vector_index": OneOf(VECTOR_INDEX_KINDS),
    "hnsw_m": Interval(int, 2, 512),
    "ef_construction": Interval(int, 1, 1 << 16),
    "ef_search": Interval(int, 1, 1 << 16),
    "nlist": Interval(int, 1, 1 << 20),
    "nprobe": Interval(int, 1, 1 << 20),
}


def check_param(name: str, value: Any, *, func: str | None = None, rule: str | None = None) -> Any:
    """``value`` checked against the declared constraint of parameter ``name`` (or of ``rule``,
    for a parameter whose constraint is another's, e.g. a collection's threshold)."""
    return CONSTRAINTS[rule or name].check(value, name, func)


def check_params(func: str, **values: Any) -> tuple:
    """Each keyword checked with :func:`check_param`, in order; returns the checked values."""
    return tuple(check_param(name, value, func=func) for name, value in values.items())
