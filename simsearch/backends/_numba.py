"""The numba backend: parallel CPU kernels, the default where there is no GPU."""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np

from .. import _unicode
from ..shingling import encode_texts
from . import _numba_text as K
from ._numba_lsh import NumbaLSHKernels


_PAR_MIN_BYTES = 1 << 16  # text bytes (or 8 x shingle hashes) below which the kernels run on one thread


@contextmanager
def _threads_for(work: int):
    """One thread for small batches: a parallel region must wake every worker, and on a busy
    machine one descheduled worker stalls the whole call (seen: 30-50 ms p90 on single-document
    near-duplicate queries under load, 0.3 ms on one thread). ``set_num_threads`` is per
    calling thread, so concurrent callers are not affected."""
    if work >= _PAR_MIN_BYTES:
        yield
        return
    prev = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(prev)


class NumbaBackend(NumbaLSHKernels):
    name = "numba"

    def _prep(self, texts):
        data, offsets = encode_texts(texts)
        return data, offsets, _unicode.tables()

    def shingle_hashes(self, texts, ngram, shingle):
        data, offsets, t = self._prep(texts)
        with _threads_for(len(data)):
            return self._shingle_hashes(data, offsets, K._chunks(len(texts), numba.get_num_threads()), t, len(texts),
                                        ngram, shingle)

    def _shingle_hashes(self, data, offsets, bounds, t, n, ngram, shingle):
        char_mode = shingle == "char"
        counts = K.shingle_counts(data, offsets, bounds, ngram, char_mode, t.lower, t.multi, t.flags)
        out_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=out_offsets[1:])
        hashes = np.empty(int(out_offsets[-1]), dtype=np.uint64)
        K.shingle_fill(data, offsets, bounds, ngram, char_mode, t.lower, t.multi, t.flags, out_offsets, hashes)
        return out_offsets, hashes

    def minhash_texts(self, texts, ngram, shingle, a, b):
        data, offsets, t = self._prep(texts)
        with _threads_for(len(data)):
            bounds = K._chunks(len(texts), numba.get_num_threads())
            return K.minhash_texts(data, offsets, bounds, ngram, shingle == "char", t.lower, t.multi, t.flags, a, b)

    def minhash_hashes(self, offsets, hashes, a, b):
        with _threads_for(8 * len(hashes)):
            bounds = K._chunks(len(offsets) - 1, numba.get_num_threads())
            return K.minhash_csr(offsets, hashes, bounds, a, b)

    def pairwise(self, x, y, metric):
        from . import _numba_distance

        return _numba_distance.pairwise(x, y, metric)

    def knn(self, base, queries, k, metric):
        from . import _numba_distance

        return _numba_distance.knn(base, queries, k, metric)


def create() -> NumbaBackend:
    return NumbaBackend()
