"""CuPy kernels for distances and exact top-k on an NVIDIA GPU.

* L2 / cosine / ip: cuBLAS SGEMM (``cupy.matmul``) of a pre-scaled query block against a base
  block gives ``rank − bterm`` (see :mod:`._numpy_distance`), then :data:`_TOPK_SRC` folds
  ``bterm + block`` into each query's running top-k on the device.
* L1: our own tiled kernel (:data:`_L1_SRC`): 64 x 64 outputs per thread block, 16-dimension
  slabs of both operands staged in shared memory, 4 x 4 accumulators per thread.
* Host traffic goes through reusable pinned buffers: the base is uploaded once per call (or
  streamed block by block when it does not fit in a third of free device memory), query blocks
  are streamed through on a non-blocking stream, and only the (block, k) results come back.

Top-k on the device: one thread block per query row; each thread scans a strided share of the
block's columns into a private sorted list (a strict ``<`` keeps the earlier index on ties, and
thread 0 starts from the running list, whose indices are all smaller), then k rounds of a
block-wide (value, index) argmin merge the lists. Ties go to the smaller index, like the CPU
backends. k above :data:`_KMAX` falls back to CuPy's stable sort per block (slower, same result).

This module imports CuPy at import time; only the CuPy backend imports it, lazily.
"""

from __future__ import annotations

import functools
import threading

import cupy as cp
import numpy as np

from . import _numpy_distance as ref

QBLOCK = 4096  # queries per device block
BBLOCK = 1 << 16  # base rows per block (shrunk to fit free memory)
_THREADS = 128
_KMAX = 256
_EMPTY = np.iinfo(np.int64).max

_TOPK_SRC = r"""
#define INF __int_as_float(0x7f800000)
#define EMPTY 0x7fffffffffffffffLL

__device__ __forceinline__ bool lex_less(float a, long long ia, float b, long long ib) {
    return a < b || (a == b && ia < ib);
}

// Fold rank = bterm[j] + g[row, j] for j < nb into the running top-k (td, ti) of each row; the
// base index of column j is offset + j.
extern "C" __global__ void block_topk(const float* __restrict__ g, const long long ld, const int nb,
                                      const float* __restrict__ bterm, const long long offset,
                                      float* __restrict__ td, long long* __restrict__ ti, const int k) {
    __shared__ float sv[THREADS];
    __shared__ long long si[THREADS];
    __shared__ int sw[THREADS];
    const int t = threadIdx.x;
    const long long row = blockIdx.x;
    const float* gr = g + row * ld;
    float* tdr = td + row * k;
    long long* tir = ti + row * k;
    float lv[KMAX];
    long long li[KMAX];
    for (int r = 0; r < k; ++r) {
        lv[r] = (t == 0) ? tdr[r] : INF;
        li[r] = (t == 0) ? tir[r] : EMPTY;
    }
    float thr = lv[k - 1];
    for (int j = t; j < nb; j += THREADS) {
        const float v = bterm[j] + gr[j];
        if (v < thr) {
            int p = k - 1;
            while (p > 0 && lv[p - 1] > v) {
                lv[p] = lv[p - 1];
                li[p] = li[p - 1];
                --p;
            }
            lv[p] = v;
            li[p] = offset + j;
            thr = lv[k - 1];
        }
    }
    int head = 0;
    for (int r = 0; r < k; ++r) {
        sv[t] = head < k ? lv[head] : INF;
        si[t] = head < k ? li[head] : EMPTY;
        sw[t] = t;
        __syncthreads();
        for (int s = THREADS / 2; s > 0; s >>= 1) {
            if (t < s && lex_less(sv[t + s], si[t + s], sv[t], si[t])) {
                sv[t] = sv[t + s];
                si[t] = si[t + s];
                sw[t] = sw[t + s];
            }
            __syncthreads();
        }
        if (t == 0) {
            tdr[r] = sv[0];
            tir[r] = si[0];
        }
        const int winner = sw[0];
        __syncthreads();  // everyone has read the winner before the next round overwrites it
        if (t == winner) ++head;
    }
}
"""

_L1_SRC = r"""
#define TM 64
#define TK 16

// out[r, c] = sum_d |q[r, d] - b[c, d]| for r < nq, c < nb; out has leading dimension ld.
extern "C" __global__ void l1_block(const float* __restrict__ q, const float* __restrict__ b,
                                    const int nq, const int nb, const int d,
                                    float* __restrict__ out, const long long ld) {
    __shared__ float qs[TK][TM + 1];
    __shared__ float bs[TK][TM + 1];
    const int tx = threadIdx.x % 16;
    const int ty = threadIdx.x / 16;
    const int row0 = blockIdx.y * TM;
    const int col0 = blockIdx.x * TM;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
    for (int c0 = 0; c0 < d; c0 += TK) {
        for (int e = threadIdx.x; e < TM * TK; e += 256) {
            const int r = e / TK, c = e % TK, gc = c0 + c;
            const int gq = row0 + r, gb = col0 + r;
            qs[c][r] = (gq < nq && gc < d) ? q[(long long)gq * d + gc] : 0.f;
            bs[c][r] = (gb < nb && gc < d) ? b[(long long)gb * d + gc] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int c = 0; c < TK; ++c) {
            float qa[4], ba[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                qa[i] = qs[c][ty + 16 * i];
                ba[i] = bs[c][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += fabsf(qa[i] - ba[j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= nq) continue;
        for (int j = 0; j < 4; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c < nb) out[(long long)r * ld + c] = acc[i][j];
        }
    }
}
"""


@functools.lru_cache(maxsize=None)
def _topk_kernel(kmax: int):
    module = cp.RawModule(code=_TOPK_SRC, options=(f"-DKMAX={kmax}", f"-DTHREADS={_THREADS}"))
    return module.get_function("block_topk")


@functools.lru_cache(maxsize=1)
def _l1_kernel():
    return cp.RawModule(code=_L1_SRC).get_function("l1_block")


class _Pinned:
    """Reusable page-locked host buffers, one per key, grown on demand, each with the event of
    the last copy that read it (so that refilling waits for that copy and nothing else)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self.events: dict[str, object] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        buf = self._bufs.get(key)
        if buf is None or buf.size < nbytes:
            ev = self.events.pop(key, None)
            if ev is not None:
                ev.synchronize()
            mem = cp.cuda.alloc_pinned_memory(nbytes)
            buf = np.frombuffer(mem, dtype=np.uint8, count=nbytes)
            self._bufs[key] = buf
        return buf[: int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)

    def wait(self, key: str) -> None:
        ev = self.events.pop(key, None)
        if ev is not None:
            ev.synchronize()

    def mark(self, key: str, stream) -> None:
        ev = cp.cuda.Event()
        ev.record(stream)
        self.events[key] = ev


_PINNED = _Pinned()
_LOCK = threading.Lock()  # the pinned buffers are shared: one call at a time per process
_STAGE_BYTES = 32 << 20  # per pinned staging buffer; two alternate so host copies overlap DMA


def _upload(x: np.ndarray, stream, key: str):
    """Host array to a new device array through two alternating pinned staging buffers."""
    x = np.ascontiguousarray(x)
    out = cp.empty(x.shape, dtype=x.dtype)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    step = max(1, _STAGE_BYTES // x.itemsize)
    for c, lo in enumerate(range(0, flat_x.size, step)):
        hi = min(lo + step, flat_x.size)
        slot = f"{key}{c % 2}"
        _PINNED.wait(slot)  # the copy that last read this buffer has finished
        staging = _PINNED.get(slot, (hi - lo,), x.dtype)
        staging[...] = flat_x[lo:hi]
        flat_out[lo:hi].set(staging, stream=stream)
        _PINNED.mark(slot, stream)
    return out


def _prep_device(d_b, metric: str):
    """(rows to multiply, bterm) on the device, like ref.prepare_base (bterm is 0 for L1 too);
    cosine normalises d_b in place (our own upload), in float64 chunks so any row is exact."""
    n = d_b.shape[0]
    bterm = cp.zeros(n, dtype=cp.float32)
    if metric == "manhattan" or metric == "ip":
        return d_b, bterm
    chunk = 1 << 16
    for lo in range(0, n, chunk):
        blk = d_b[lo : lo + chunk]
        if metric == "cosine":
            b64 = blk.astype(cp.float64)
            nrm = cp.sqrt((b64 * b64).sum(axis=1))
            blk[...] = (b64 / cp.where(nrm > 0, nrm, 1.0)[:, None]).astype(cp.float32)
        else:
            bterm[lo : lo + chunk] = (blk * blk).sum(axis=1)
    return d_b, bterm


def _l1_into(q, b, out) -> None:
    nq, d = q.shape
    nb = b.shape[0]
    grid = ((nb + 63) // 64, (nq + 63) // 64)
    _l1_kernel()(grid, (256,), (q, b, np.int32(nq), np.int32(nb), np.int32(d), out, np.int64(out.shape[1])))


def _plan(n: int, d: int, nq: int) -> tuple[int, int, bool]:
    """(query block, base block, base resident on the device) sized to free device memory."""
    free, _ = cp.cuda.runtime.memGetInfo()
    resident = n * d * 4 <= free // 3
    budget = free // 4 if resident else free // 3
    qblock = max(1, min(QBLOCK, nq))
    bblock = int(max(1024, min(BBLOCK, n, budget // (4 * qblock + 4 * d + 16))))
    return qblock, min(bblock, n), resident


def knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    with _LOCK:
        return _knn(base, queries, k, metric)


def _knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    nq, n = len(queries), len(base)
    gemm = metric != "manhattan"
    queries, qterm = ref.prepare_queries(queries, metric) if gemm else (queries, None)
    qblock, bblock, resident = _plan(n, base.shape[1], nq)
    out_d = np.empty((nq, k), np.float32)
    out_i = np.empty((nq, k), np.int64)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        if resident:
            d_base, d_bterm = _prep_device(_upload(base, stream, "base"), metric)
        gbuf = cp.empty(qblock * bblock, dtype=cp.float32)
        for q0 in range(0, nq, qblock):
            q1 = min(q0 + qblock, nq)
            d_q = _upload(queries[q0:q1], stream, "queries")
            td = cp.full((q1 - q0, k), cp.inf, dtype=cp.float32)
            ti = cp.full((q1 - q0, k), _EMPTY, dtype=cp.int64)
            for b0 in range(0, n, bblock):
                b1 = min(b0 + bblock, n)
                if resident:
                    d_b, bt = d_base[b0:b1], d_bterm[b0:b1]
                else:
                    d_b, bt = _prep_device(_upload(base[b0:b1], stream, "base"), metric)
                g = gbuf[: (q1 - q0) * (b1 - b0)].reshape(q1 - q0, b1 - b0)
                if gemm:
                    cp.matmul(d_q, d_b.T, out=g)
                else:
                    _l1_into(d_q, d_b, g)
                _fold(g, bt, b0, td, ti, k)
            res_d = _PINNED.get("out_d", (q1 - q0, k), np.float32)
            res_i = _PINNED.get("out_i", (q1 - q0, k), np.int64)
            td.get(stream=stream, out=res_d)  # blocking: the pinned buffers are reused next block
            ti.get(stream=stream, out=res_i)
            out_d[q0:q1], out_i[q0:q1] = res_d, res_i
        stream.synchronize()
    out_i[out_i == _EMPTY] = -1
    return (ref.to_distance(out_d, qterm, metric) if gemm else out_d), out_i


def _fold(g, bterm, offset: int, td, ti, k: int) -> None:
    """Fold rank = bterm + g, one (rows, cols) block, into the running top-k (td, ti) on the device."""
    rows, cols = g.shape
    if k <= _KMAX:
        kmax = 1 << max(3, (k - 1).bit_length())
        _topk_kernel(kmax)(
            (rows,), (_THREADS,),
            (g, np.int64(cols), np.int32(cols), bterm, np.int64(offset), td, ti, np.int32(k)),
        )
        return
    vals = bterm[None, :] + g
    # running entries first (smaller indices), then the block in column order: a stable sort
    # by value keeps ties in index order
    allv = cp.concatenate([td, vals], axis=1)
    alli = cp.concatenate([ti, cp.broadcast_to(cp.arange(offset, offset + cols, dtype=cp.int64), (rows, cols))], axis=1)
    order = cp.argsort(allv, axis=1)[:, :k]
    td[...] = cp.take_along_axis(allv, order, axis=1)
    ti[...] = cp.take_along_axis(alli, order, axis=1)


def pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    with _LOCK:
        return _pairwise(x, y, metric)


def _pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    nx, ny = len(x), len(y)
    out = np.empty((nx, ny), dtype=np.float32)
    if out.size == 0:
        return out
    gemm = metric != "manhattan"
    x_used, qterm = ref.prepare_queries(x, metric) if gemm else (x, None)
    free, _ = cp.cuda.runtime.memGetInfo()
    rows = int(max(1, min(nx, free // 4 // (4 * ny + 4 * x.shape[1]))))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        d_y, d_bterm = _prep_device(_upload(y, stream, "base"), metric)
        for r0 in range(0, nx, rows):
            r1 = min(r0 + rows, nx)
            d_x = _upload(x_used[r0:r1], stream, "queries")
            if gemm:
                block = cp.matmul(d_x, d_y.T)
                block += d_bterm[None, :]
            else:
                block = cp.empty((r1 - r0, ny), dtype=cp.float32)
                _l1_into(d_x, d_y, block)
            staging = _PINNED.get("pairwise", (r1 - r0, ny), np.float32)
            block.get(stream=stream, out=staging)
            out[r0:r1] = staging
    if not gemm:
        return out
    return ref.fix_cancellation(x, y, ref.to_distance(out, qterm, metric), metric)
