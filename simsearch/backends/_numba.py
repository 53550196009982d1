"""The numba backend: parallel CPU kernels, the default where there is no GPU."""

from __future__ import annotations

import numba
import numpy as np

from .. import _unicode
from ..shingling import encode_texts
from . import _numba_text as K
from ._numba_lsh import NumbaLSHKernels


class NumbaBackend(NumbaLSHKernels):
    name = "numba"

    def _prep(self, texts):
        data, offsets = encode_texts(texts)
        bounds = K._chunks(len(texts), numba.get_num_threads())
        t = _unicode.tables()
        return data, offsets, bounds, t

    def shingle_hashes(self, texts, ngram, shingle):
        data, offsets, bounds, t = self._prep(texts)
        char_mode = shingle == "char"
        counts = K.shingle_counts(data, offsets, bounds, ngram, char_mode, t.lower, t.multi, t.flags)
        out_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out_offsets[1:])
        hashes = np.empty(int(out_offsets[-1]), dtype=np.uint64)
        K.shingle_fill(data, offsets, bounds, ngram, char_mode, t.lower, t.multi, t.flags, out_offsets, hashes)
        return out_offsets, hashes

    def minhash_texts(self, texts, ngram, shingle, a, b):
        data, offsets, bounds, t = self._prep(texts)
        return K.minhash_texts(data, offsets, bounds, ngram, shingle == "char", t.lower, t.multi, t.flags, a, b)

    def minhash_hashes(self, offsets, hashes, a, b):
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
