"""Array helpers every layer shares: CSR runs and sorted unique values.

A CSR holds many variable-length runs (shingle sets, candidate lists) in one flat array: run ``i``
of ``(offsets, values)`` is ``values[offsets[i]:offsets[i + 1]]``, with int64 ``offsets`` of
length n + 1 starting at 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["offsets_from_sizes", "concat_csr", "gather_csr", "ranges", "sorted_unique"]


def offsets_from_sizes(sizes: Iterable[int] | np.ndarray) -> np.ndarray:
    """int64 offsets (n + 1) of consecutive runs of the given sizes: 0, s0, s0 + s1, ..."""
    if not isinstance(sizes, np.ndarray):
        sizes = np.fromiter(sizes, dtype=np.int64)
    out = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), vectorised (int64)."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    shift = np.repeat(starts.astype(np.int64) - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64)


def concat_csr(offsets: list[np.ndarray], values: list[np.ndarray], dtype=np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """One CSR of the runs of several CSRs, in order (each values array starts at its offsets[0])."""
    sizes = np.concatenate([np.diff(o) for o in offsets]) if offsets else np.empty(0, np.int64)
    return offsets_from_sizes(sizes), (np.concatenate(values) if values else np.empty(0, dtype))


def gather_csr(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of runs ``rows`` (in that order) of ``(offsets, values)``."""
    sizes = offsets[rows + 1] - offsets[rows]
    out = offsets_from_sizes(sizes)
    return out, values[ranges(offsets[rows], sizes)]


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d array by sorting (several times faster than numpy 2's hash-based unique)."""
    s = np.sort(a)
    if s.shape[0] < 2:
        return s
    keep = np.empty(s.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
