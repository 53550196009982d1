"""The CuPy backend: MinHash (and, via their own modules, other kernels) on an NVIDIA GPU.

Shingle hashes are computed on the CPU by the numba tokenizer (the exact definition lives there),
then streamed to the GPU through pinned host buffers in chunks sized to the free device memory;
the permutations and the min-reduction run in one CUDA kernel, one thread block per document.
Signatures are bit-equal to the numpy and numba backends.
"""

from __future__ import annotations

import numpy as np

try:
    import cupy as cp
except ImportError as exc:  # pragma: no cover - exercised where CuPy is missing
    raise ImportError(f"CuPy is not installed ({exc})") from exc

try:
    if cp.cuda.runtime.getDeviceCount() < 1:  # pragma: no cover
        raise ImportError("CuPy sees no CUDA device")
except cp.cuda.runtime.CUDARuntimeError as exc:  # pragma: no cover
    raise ImportError(f"CuPy sees no CUDA device ({exc})") from exc

_TILE = 2048
_THREADS = 128

_MINHASH_SRC = r"""
__device__ __forceinline__ unsigned int fmix32(unsigned int h) {
    h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
    return h;
}

extern "C" __global__ void minhash_csr(const unsigned long long* __restrict__ hashes,
                                       const long long* __restrict__ offsets, long long base,
                                       const unsigned int* __restrict__ a,
                                       const unsigned int* __restrict__ b,
                                       int k, unsigned int* __restrict__ out) {
    __shared__ unsigned int xs[TILE];
    const int doc = blockIdx.x;
    const long long lo = offsets[doc] - base;
    const long long hi = offsets[doc + 1] - base;
    const int k_round = ((k + blockDim.x - 1) / blockDim.x) * blockDim.x;
    for (int j = threadIdx.x; j < k_round; j += blockDim.x) {
        const unsigned int aj = j < k ? a[j] : 0u;
        const unsigned int bj = j < k ? b[j] : 0u;
        unsigned int m = 0xFFFFFFFFu;
        for (long long t0 = lo; t0 < hi; t0 += TILE) {
            const int cnt = (int)min((long long)TILE, hi - t0);
            __syncthreads();
            for (int t = threadIdx.x; t < cnt; t += blockDim.x)
                xs[t] = fmix32((unsigned int)(hashes[t0 + t] & 0xFFFFFFFFull));
            __syncthreads();
            for (int t = 0; t < cnt; ++t) m = min(m, aj * xs[t] + bj);
        }
        if (j < k) out[(long long)doc * k + j] = m;
    }
}
"""


class CupyBackend:
    name = "cupy"

    def __init__(self) -> None:
        self._module = cp.RawModule(code=_MINHASH_SRC, options=(f"-DTILE={_TILE}",))
        self._kernel = self._module.get_function("minhash_csr")
        self._pinned: np.ndarray | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _pinned_buffer(self, count: int) -> np.ndarray:
        """A reusable pinned host buffer of at least ``count`` uint64 values."""
        if self._pinned is None or self._pinned.size < count:
            mem = cp.cuda.alloc_pinned_memory(max(count, 1) * 8)
            self._pinned = np.frombuffer(mem, dtype=np.uint64, count=max(count, 1))
        return self._pinned

    @staticmethod
    def _chunk_budget(num_perm: int) -> int:
        """How many hashes one chunk may hold: a quarter of free device memory, at most 2^27."""
        free, _ = cp.cuda.runtime.memGetInfo()
        return int(max(1 << 16, min(1 << 27, free // 4 // (8 + 4 * num_perm // 64 + 1))))

    # -- kernels ---------------------------------------------------------------------------
    def shingle_hashes(self, texts, ngram, shingle):
        from . import get_backend

        return get_backend("numba").shingle_hashes(texts, ngram, shingle)

    def minhash_texts(self, texts, ngram, shingle, a, b):
        return self.minhash_hashes(*self.shingle_hashes(texts, ngram, shingle), a, b)

    def minhash_hashes(self, offsets, hashes, a, b):
        n = len(offsets) - 1
        k = len(a)
        out = np.empty((n, k), dtype=np.uint32)
        if n == 0:
            return out
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        d_a = cp.asarray(a, dtype=cp.uint32)
        d_b = cp.asarray(b, dtype=cp.uint32)
        budget = self._chunk_budget(k)
        stream = cp.cuda.Stream(non_blocking=True)
        doc = 0
        with stream:
            while doc < n:
                # Grow the chunk while its hashes fit the budget (always at least one document).
                end = int(np.searchsorted(offsets, offsets[doc] + budget, side="right")) - 1
                end = min(max(end, doc + 1), n)
                lo, hi = int(offsets[doc]), int(offsets[end])
                pinned = self._pinned_buffer(hi - lo)
                pinned[: hi - lo] = hashes[lo:hi]
                d_hashes = cp.empty(max(hi - lo, 1), dtype=cp.uint64)
                d_hashes[: hi - lo].set(pinned[: hi - lo], stream=stream)
                d_offsets = cp.asarray(offsets[doc : end + 1])
                d_out = cp.empty((end - doc, k), dtype=cp.uint32)
                self._kernel(
                    (end - doc,),
                    (_THREADS,),
                    (d_hashes, d_offsets, np.int64(lo), d_a, d_b, np.int32(k), d_out),
                    stream=stream,
                )
                out[doc:end] = cp.asnumpy(d_out, stream=stream)
                stream.synchronize()
                doc = end
        return out

    def pairwise(self, x, y, metric):
        from . import _cupy_distance

        return _cupy_distance.pairwise(x, y, metric)

    def knn(self, base, queries, k, metric):
        from . import _cupy_distance

        return _cupy_distance.knn(base, queries, k, metric)


def create() -> CupyBackend:
    return CupyBackend()
