"""The numpy backend: the readable reference every other backend is tested against."""

from __future__ import annotations

import numpy as np

from .._arrays import offsets_from_sizes
from .._text import shingle_hash_set
from ._numpy_lsh import NumpyLSHKernels

_M32 = np.uint64(0xFFFFFFFF)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, elementwise on a uint32 array (wrapping arithmetic)."""
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def low32(hashes: np.ndarray) -> np.ndarray:
    """The low 32 bits of each hash, as uint32 (uint32 input passes through)."""
    if hashes.dtype == np.uint32:
        return hashes
    return (hashes.astype(np.uint64) & _M32).astype(np.uint32)


class NumpyBackend(NumpyLSHKernels):
    name = "numpy"
    device = "CPU (numpy)"

    @property
    def host(self) -> "NumpyBackend":
        """The backend for host-resident data: this one."""
        return self

    def shingle_hashes(self, texts, ngram, shingle):
        sets = [shingle_hash_set(t, ngram, shingle) for t in texts]
        offsets = offsets_from_sizes(len(s) for s in sets)
        hashes = np.concatenate(sets) if sets else np.empty(0, np.uint64)
        return offsets, hashes.astype(np.uint64, copy=False)

    def minhash_texts(self, texts, ngram, shingle, a, b):
        return self.minhash_hashes(*self.shingle_hashes(texts, ngram, shingle), a, b)

    def minhash_hashes(self, offsets, hashes, a, b, rows_per_block: int = 1 << 14):
        """sig[i, k] = min over h in doc i of (a[k] * fmix32(low32(h)) + b[k]) mod 2^32."""
        n = len(offsets) - 1
        sigs = np.full((n, len(a)), 0xFFFFFFFF, dtype=np.uint32)
        x = fmix32(low32(hashes))
        sizes = np.diff(offsets)
        # Process whole documents in blocks of about rows_per_block hashes to bound memory.
        doc = 0
        while doc < n:
            end = doc + 1
            while end < n and offsets[end + 1] - offsets[doc] <= rows_per_block:
                end += 1
            lo, hi = offsets[doc], offsets[end]
            if hi > lo:
                phv = x[lo:hi, None] * a[None, :] + b[None, :]  # uint32: wraps mod 2^32
                nonempty = np.nonzero(sizes[doc:end])[0]
                starts = offsets[doc:end][nonempty] - lo
                sigs[doc + nonempty] = np.minimum.reduceat(phv, starts, axis=0)
            doc = end
        return sigs

    def pairwise(self, x, y, metric):
        from . import _numpy_distance

        return _numpy_distance.pairwise(x, y, metric)

    def knn(self, base, queries, k, metric, cache_key=None):
        from . import _numpy_distance

        return _numpy_distance.knn(base, queries, k, metric)

    def unit_rows(self, x):
        from . import _numpy_distance

        return _numpy_distance.unit_rows(x)

    def exact_pairs(self, x, y, rows, cols, metric):
        from . import _numpy_distance

        return _numpy_distance.exact_pairs(x, y, rows, cols, metric)


def create() -> NumpyBackend:
    return NumpyBackend()
