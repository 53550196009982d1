"""GPU kernels for pairwise distances and top-k candidates: the distance mixin of the CuPy backend.

Same semantics as :mod:`._numpy_distance` (the reference): ``knn`` returns candidates, float32
distances in the metric's units and int64 base rows, each row sorted by (rank, row), ties to the
smaller row; :func:`simsearch.distance.exact_knn` recomputes them exactly.

* **L2 / cosine / ip**: ``D.xp.matmul`` (cuBLAS on a device, numpy under the simulator) of a
  pre-scaled query block against a base block gives ``rank - bterm`` (see the reference);
  :func:`_fold` adds ``bterm`` and folds the block into each query's running top-k.
* **L1**: :func:`_l1_tiles`, 64 x 64 outputs per thread block from 32-dimension slabs of both
  operands staged in shared memory, 4 x 4 outputs per thread; tiles are dealt to a 1-D grid
  (grid-stride), so no grid dimension grows with the input.
* **Top-k, any k**: the columns of a block are dealt to ``parts`` strided parts per query; one
  thread per (query, part) keeps a max-heap of that part's k best (value, row) in global memory
  and visits its columns in increasing row order, so a value enters only when strictly smaller
  than the heap's top: ties keep the smaller row. Heaps persist over the base blocks; at the
  end :func:`_sort_heaps` sorts each and :func:`_merge_lists` merges :data:`FANIN` lists at a
  time by (value, row) until one remains. Work per insertion is O(log k), memory
  ``rows x parts x k`` entries, both bounded by the plan.
* **Large k** (above :data:`HEAP_KMAX`, e.g. exact_knn asking again for a long tie group): one
  thread's O(k log k) heapsort would serialise, so each block's ranks are packed into unique
  uint64 keys (order-preserving float bits, column), sorted along the row with ``D.xp`` (thrust
  on a device; equal keys cannot occur, so stability does not matter), and the block's first k
  merged with the running list by :func:`_merge_two`. Keys, the sort's scratch and three
  (rows, k) lists are in the plan.
* **Memory**: every buffer of a call is sized by a plan from ``D.free_bytes()`` (query rows per
  block, base rows per block, parts), blocks of queries run under ``D.split_on_oom``, and a base
  too big to keep on the device is streamed block by block. ``pairwise`` fills its host output
  block by block.
* **Resident bases**: ``knn(..., cache_key=key)`` keeps the prepared base (uploaded, cosine rows
  normalised, ``bterm``) on the device in a small LRU bounded by bytes (:data:`CACHE_FRACTION` of
  device memory), keyed by (key, preparation, shape, a digest of sampled rows), so a call with the
  same key skips the upload; a new key, version or shape never answers from an old base. Safe to
  share between threads: an entry is complete (its stream synchronised) before it is published,
  and every call synchronises before it drops its reference.

Ranks rely on float32 cuBLAS GEMMs. TF32 (``CUPY_TF32=1``, ``NVIDIA_TF32_OVERRIDE=1``) has a
10-bit mantissa and breaks the float32 error bound that exact_knn's candidate rule assumes.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
from numba import cuda, float32, float64, int64, uint64

from . import _device as D
from . import _numpy_distance as ref

__all__ = ["RESIDENT", "CudaDistanceKernels", "knn", "pairwise"]

QBLOCK = 4096  # queries per block at most
BBLOCK = 1 << 16  # base rows per block with a full query block (more when there are few queries)
TARGET_TASKS = 1 << 17  # (query, part) threads a fold aims for
PART_MIN = 64  # columns of a base block per part, at least
MAX_PARTS = 4096
FANIN = 8  # sorted lists merged at once
PLAN_FRACTION = 0.5  # of free device memory one call's buffers may use
RESIDENT_FRACTION = 0.5  # of free device memory a prepared base may take to stay resident
CACHE_FRACTION = 0.25  # of device memory the resident-base cache may hold
_THREADS = 128
_L1_THREADS = 256
_EMPTY = np.iinfo(np.int64).max  # the row of an unfilled slot (sorts last)
_INF = float32(np.inf)
_SIGN = uint64(0x80000000)
_LOW32 = uint64(0xFFFFFFFF)
HEAP_KMAX = 1024  # larger k: sort each block's ranks (packed keys) instead of per-thread heaps
SORT_OVERHEAD = 3  # device bytes a row sort needs per byte of keys, beyond the keys (a bound)
_MODES = {"l2": 0, "cos": 1, "raw": 2}  # how _prepare_rows prepares a base for a metric

# L1 tiles: TM query rows x TN base rows, TK dimensions per shared-memory slab, 4 x 4 per thread.
TM = 64
TN = 64
TK = 32
_TM1 = TM + 1  # padded rows of the slabs and the accumulator (no bank conflicts)
_TN1 = TN + 1
_MICRO = (TM // 4) * (TN // 4)


# -- kernels ----------------------------------------------------------------------------------


@D.device_function
def _greater(a, ia, b, ib):
    """(a, ia) > (b, ib) lexicographically."""
    return a > b or (a == b and ia > ib)


@D.device_function
def _sift_down(hv, hi, pos, end, v, j):
    """Put (v, j) at ``pos`` of the max-heap hv/hi[:end] and move it down to its place."""
    while True:
        c = 2 * pos + 1
        if c >= end:
            break
        r = c + 1
        if r < end and _greater(hv[r], hi[r], hv[c], hi[c]):
            c = r
        if not _greater(hv[c], hi[c], v, j):
            break
        hv[pos] = hv[c]
        hi[pos] = hi[c]
        pos = c
    hv[pos] = v
    hi[pos] = j


@D.kernel
def _fold(g, bterm, offset, hv, hi):
    """Fold rank = g[i, j] + bterm[j] (base row offset + j) into the heaps hv/hi[i, p] of each
    (query i, part p); part p visits the columns p, p + parts, ... in increasing order."""
    rows = hv.shape[0]
    parts = hv.shape[1]
    k = hv.shape[2]
    nb = g.shape[1]
    for t in range(cuda.grid(1), rows * parts, cuda.gridsize(1)):
        i = t // parts
        p = t - i * parts
        hvt = hv[i, p]
        hit = hi[i, p]
        thr = hvt[0]
        for j in range(p, nb, parts):
            v = g[i, j] + bterm[j]
            if v < thr:
                _sift_down(hvt, hit, 0, k, v, int64(offset + j))
                thr = hvt[0]


@D.kernel
def _sort_heaps(hv, hi):
    """Heapsort every (query, part) heap in place into ascending (value, row) order."""
    rows = hv.shape[0]
    parts = hv.shape[1]
    k = hv.shape[2]
    for t in range(cuda.grid(1), rows * parts, cuda.gridsize(1)):
        i = t // parts
        p = t - i * parts
        a = hv[i, p]
        b = hi[i, p]
        for end in range(k - 1, 0, -1):
            v = a[end]
            j = b[end]
            a[end] = a[0]
            b[end] = b[0]
            _sift_down(a, b, 0, end, v, j)


@D.kernel
def _merge_lists(sv, si, dv, di, fanin):
    """dv/di[i, o] = the k smallest (value, row) of the sorted lists sv/si[i, o*fanin : (o+1)*fanin]."""
    rows = sv.shape[0]
    parts = sv.shape[1]
    k = sv.shape[2]
    outs = dv.shape[1]
    heads = cuda.local.array(FANIN, int64)
    for t in range(cuda.grid(1), rows * outs, cuda.gridsize(1)):
        i = t // outs
        o = t - i * outs
        p0 = o * fanin
        p1 = min(p0 + fanin, parts)
        for p in range(p1 - p0):
            heads[p] = 0
        for r in range(k):
            best = -1
            bv = float32(0.0)
            bi = int64(0)
            for p in range(p0, p1):
                h = heads[p - p0]
                if h < k:
                    v = sv[i, p, h]
                    j = si[i, p, h]
                    if best < 0 or _greater(bv, bi, v, j):
                        best = p
                        bv = v
                        bi = j
            dv[i, o, r] = bv
            di[i, o, r] = bi
            heads[best - p0] += 1


@D.kernel
def _pack_keys(gbits, keys):
    """keys[i, j] = (order-preserving bits of the float32 rank g[i, j]) << 32 | j: sorting a row
    of keys sorts its ranks, ties to the smaller column. ``gbits`` is the ranks' uint32 view."""
    nb = gbits.shape[1]
    for t in range(cuda.grid(1), gbits.shape[0] * nb, cuda.gridsize(1)):
        i = t // nb
        j = t - i * nb
        u = uint64(gbits[i, j])
        if u == _SIGN:
            u = uint64(0)  # -0.0 ranks as +0.0
        if u & _SIGN:
            u = ~u & _LOW32
        else:
            u = u | _SIGN
        keys[i, j] = (u << uint64(32)) | uint64(j)


@D.kernel
def _unpack_top(keys, g, offset, dv, di):
    """dv/di[i, r] = (rank, row) of the r-th smallest key of row i; placeholders past its width."""
    nb = keys.shape[1]
    k = dv.shape[1]
    for t in range(cuda.grid(1), keys.shape[0] * k, cuda.gridsize(1)):
        i = t // k
        r = t - i * k
        if r < nb:
            j = int64(keys[i, r] & _LOW32)
            dv[i, r] = g[i, j]
            di[i, r] = offset + j
        else:
            dv[i, r] = _INF
            di[i, r] = _EMPTY


@D.kernel
def _merge_two(av, ai, bv, bi, dv, di):
    """dv/di[i] = the k smallest (value, row) of the sorted lists a[i] and b[i]."""
    k = av.shape[1]
    for i in range(cuda.grid(1), av.shape[0], cuda.gridsize(1)):
        p = 0
        q = 0
        for r in range(k):
            if q >= k or (p < k and not _greater(av[i, p], ai[i, p], bv[i, q], bi[i, q])):
                dv[i, r] = av[i, p]
                di[i, r] = ai[i, p]
                p += 1
            else:
                dv[i, r] = bv[i, q]
                di[i, r] = bi[i, q]
                q += 1


@D.kernel
def _prepare_rows(x, bterm, mode):
    """Prepare base rows in place: mode 0 (L2) bterm = ‖x‖²; mode 1 (cosine) unit rows, in
    float64 so that tiny and huge rows normalise exactly, bterm = 0; mode 2 bterm = 0."""
    n = x.shape[0]
    d = x.shape[1]
    for r in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = float64(0.0)
        for c in range(d):
            v = float64(x[r, c])
            s += v * v
        if mode == 0:
            bterm[r] = float32(s)
        else:
            bterm[r] = float32(0.0)
        if mode == 1 and s > 0.0:
            norm = math.sqrt(s)
            for c in range(d):
                x[r, c] = float32(float64(x[r, c]) / norm)


@D.kernel
def _l1_tiles(q, b, out):
    """out[r, c] = sum_d |q[r, d] - b[c, d]|, for every r < len(q), c < len(b)."""
    nq = q.shape[0]
    d = q.shape[1]
    nb = b.shape[0]
    qs = cuda.shared.array((TK, _TM1), float32)
    bs = cuda.shared.array((TK, _TN1), float32)
    acc = cuda.shared.array((TM, _TN1), float32)
    a = cuda.local.array((4, 4), float32)
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    tiles_c = (nb + TN - 1) // TN
    ntiles = ((nq + TM - 1) // TM) * tiles_c
    for tile in range(cuda.blockIdx.x, ntiles, cuda.gridDim.x):
        r0 = (tile // tiles_c) * TM
        c0 = (tile - (tile // tiles_c) * tiles_c) * TN
        for u in range(tid, TM * TN, nthreads):
            acc[u // TN, u - (u // TN) * TN] = float32(0.0)
        for k0 in range(0, d, TK):
            _stage(q, r0, k0, TM, qs, tid, nthreads)
            _stage(b, c0, k0, TN, bs, tid, nthreads)
            cuda.syncthreads()
            kk = min(TK, d - k0)
            for u in range(tid, _MICRO, nthreads):
                ty = u // (TN // 4)
                tx = u - ty * (TN // 4)
                if r0 + ty < nq and c0 + tx < nb:  # else every output of this 4 x 4 is outside
                    _l1_micro(qs, bs, acc, a, ty, tx, kk)
            cuda.syncthreads()
        for u in range(tid, TM * TN, nthreads):
            r = u // TN
            c = u - r * TN
            if r0 + r < nq and c0 + c < nb:
                out[r0 + r, c0 + c] = acc[r, c]


@D.device_function
def _stage(x, row0, k0, nrows, sh, tid, nthreads):
    """sh[c, r] = x[row0 + r, k0 + c] (0 outside x) for r < nrows, c < TK: coalesced reads."""
    n = x.shape[0]
    d = x.shape[1]
    for e in range(tid, nrows * TK, nthreads):
        r = e // TK
        c = e - r * TK
        if row0 + r < n and k0 + c < d:
            sh[c, r] = x[row0 + r, k0 + c]
        else:
            sh[c, r] = float32(0.0)


@D.device_function
def _l1_micro(qs, bs, acc, a, ty, tx, kk):
    """Add one slab's |q - b| to the 4 x 4 outputs (ty + 16 i, tx + 16 j) of the tile."""
    for i in range(4):
        for j in range(4):
            a[i, j] = acc[ty + 16 * i, tx + 16 * j]
    for c in range(kk):
        for i in range(4):
            qv = qs[c, ty + 16 * i]
            for j in range(4):
                a[i, j] += abs(qv - bs[c, tx + 16 * j])
    for i in range(4):
        for j in range(4):
            acc[ty + 16 * i, tx + 16 * j] = a[i, j]


def _launch(kern, tasks: int, threads: int, *args) -> None:
    block = D.block_for(threads)
    D.launch(kern, D.grid_for(tasks, block), block, *args)


# -- the prepared base and its cache ------------------------------------------------------------


class Prepared(NamedTuple):
    """A base on the device, ready to rank against: rows (unit rows for cosine) and bterm."""

    rows: Any
    bterm: Any
    nbytes: int


def _kind(metric: str) -> str:
    if metric in ("sqeuclidean", "euclidean"):
        return "l2"
    return "cos" if metric == "cosine" else "raw"


def _prepared_bytes(n: int, d: int) -> int:
    return 4 * n * (d + 1)


def _prepare(host_rows: np.ndarray, kind: str) -> Prepared:
    """Upload rows and prepare them on the device, on this thread's stream (the fills of
    D.zeros/D.full run on the current CuPy stream, so every buffer is made inside on_stream)."""
    n = len(host_rows)
    with D.on_stream():
        rows = D.to_device(host_rows)
        if kind == "raw":
            bterm = D.zeros(n, np.float32)
        else:
            bterm = D.empty(n, np.float32)
            _launch(_prepare_rows, n, _THREADS, rows, bterm, _MODES[kind])
    return Prepared(rows, bterm, _prepared_bytes(n, host_rows.shape[1]))


def _digest(base: np.ndarray) -> bytes:
    """A digest of up to 64 evenly spaced rows: a cheap guard against a key reused for other
    contents (e.g. the same index rescaled by exact_knn)."""
    take = np.unique(np.linspace(0, len(base) - 1, num=min(len(base), 64)).astype(np.int64))
    return hashlib.blake2b(base[take].tobytes(), digest_size=16).digest()


def device_bytes() -> int:
    """Total device memory (the simulator's budget when simulated)."""
    if D.SIM:
        return D.SIM_MEMORY
    return int(D.xp.cuda.runtime.memGetInfo()[1])  # pragma: no cover - device only


class ResidentBases:
    """A thread-safe LRU of prepared bases on the device, bounded by bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[Any, Prepared] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def budget(self) -> int:
        return int(CACHE_FRACTION * device_bytes())

    def get(self, key) -> Prepared | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key, entry: Prepared) -> Prepared:
        """Publish ``entry`` (complete on the device) and return the entry to use for ``key``."""
        budget = self.budget()
        with self._lock:
            held = self._items.get(key)
            if held is not None:
                return held  # another thread prepared it meanwhile
            if entry.nbytes > budget:
                return entry
            while self._items and self.nbytes + entry.nbytes > budget:
                _, old = self._items.popitem(last=False)
                self.nbytes -= old.nbytes
            self._items[key] = entry
            self.nbytes += entry.nbytes
            return entry

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0
            self.hits = self.misses = 0


RESIDENT = ResidentBases()


def _resident(base: np.ndarray, kind: str, cache_key) -> Prepared | None:
    """The prepared base on the device, from the cache or uploaded now; None when it should be
    streamed block by block instead (too big for free memory)."""
    key = None
    if cache_key is not None:
        key = (cache_key, kind, base.shape, _digest(base))
        entry = RESIDENT.get(key)
        if entry is not None:
            return entry
    if _prepared_bytes(*base.shape) > RESIDENT_FRACTION * D.free_bytes():
        return None
    try:
        entry = _prepare(base, kind)
    except Exception as exc:
        if not D.is_oom(exc):
            raise
        D.release_cached()
        return None
    if key is None:
        return entry
    D.synchronize()  # complete before any other thread's stream may read it
    return RESIDENT.put(key, entry)


# -- plans ----------------------------------------------------------------------------------------


def _parts(rows: int, bn: int, n: int, k: int) -> int:
    """Strided parts per query: enough (query, part) threads to fill the device, each part with
    at least PART_MIN columns per block and 4k rows in all (so that its heap is selective)."""
    return int(max(1, min(TARGET_TASKS // max(rows, 1), bn // PART_MIN, n // (4 * k), MAX_PARTS)))


def _heap_bytes(rows: int, k: int, parts: int) -> int:
    merged = -(-parts // FANIN) if parts > 1 else 0
    return 12 * rows * k * (parts + merged)


def _knn_bytes(rows: int, d: int, bn: int, n: int, k: int, streamed: bool) -> int:
    """Device bytes one query block of ``rows`` needs with base blocks of ``bn`` rows."""
    bn = min(bn, n)
    need = 4 * rows * d + 4 * rows * bn
    if k > HEAP_KMAX:  # keys and the sort's scratch, three (rows, k) lists
        need += 8 * rows * bn * (1 + SORT_OVERHEAD) + 3 * 12 * rows * k
    else:
        need += _heap_bytes(rows, k, _parts(rows, bn, n, k))
    return need + (_prepared_bytes(bn, d) if streamed else 0)


def _knn_plan(nq: int, n: int, d: int, k: int, streamed: bool) -> tuple[int, int]:
    """(query rows per block, base rows per block) whose buffers fit PLAN_FRACTION of free memory:
    halve the query block first, then the base block."""
    budget = PLAN_FRACTION * D.free_bytes()
    rows = max(1, min(QBLOCK, nq))
    bn = max(1, min(n, max(BBLOCK, QBLOCK * BBLOCK // rows)))
    while _knn_bytes(rows, d, bn, n, k, streamed) > budget:
        if rows > 1:
            rows = (rows + 1) // 2
        elif bn > 1:
            bn = (bn + 1) // 2
        else:
            break  # one query, one base row: let the allocation decide (split_on_oom raises)
    return rows, bn


def _pairwise_plan(nx: int, ny: int, d: int, streamed: bool) -> tuple[int, int]:
    """(x rows per block, y rows per block) for pairwise, like :func:`_knn_plan`."""
    budget = PLAN_FRACTION * D.free_bytes()
    rows = max(1, min(QBLOCK, nx))
    cols = max(1, min(ny, max(BBLOCK, QBLOCK * BBLOCK // rows)))

    def need(r: int, c: int) -> int:
        return 4 * r * (d + c) + (_prepared_bytes(c, d) if streamed else 0)

    while need(rows, cols) > budget and (rows > 1 or cols > 1):
        if rows > 1:
            rows = (rows + 1) // 2
        else:
            cols = (cols + 1) // 2
    return rows, cols


# -- drivers -----------------------------------------------------------------------------------


def _base_block(entry: Prepared | None, base: np.ndarray, kind: str, b0: int, b1: int) -> tuple[Any, Any]:
    if entry is not None:
        return entry.rows[b0:b1], entry.bterm[b0:b1]
    block = _prepare(base[b0:b1], kind)
    return block.rows, block.bterm


def _block_values(q_dev, rows_b, gemm: bool, buf) -> Any:
    """The (len(q), len(rows_b)) block: q'·b (GEMM) or the L1 distances, in ``buf``."""
    g = buf[: q_dev.shape[0] * rows_b.shape[0]].reshape(q_dev.shape[0], rows_b.shape[0])
    if gemm:
        D.xp.matmul(q_dev, rows_b.T, out=g)  # callers run on this thread's stream
    else:
        tiles = -(-q_dev.shape[0] // TM) * -(-rows_b.shape[0] // TN)
        block = D.block_for(_L1_THREADS)
        D.launch(_l1_tiles, D.grid_for(tiles * block, block), block, q_dev, rows_b, g)
    return g


def _merge_all(hv_flat, hi_flat, rows: int, parts: int, k: int) -> tuple[Any, Any]:
    """Sort the heaps and merge each query's parts into one sorted (rows, k) list."""
    shape = (rows, parts, k)
    src = (hv_flat[: rows * parts * k].reshape(shape), hi_flat[: rows * parts * k].reshape(shape))
    _launch(_sort_heaps, rows * parts, _THREADS, *src)
    if parts == 1:
        return src[0][:, 0], src[1][:, 0]
    bufs = [(hv_flat, hi_flat), (D.empty(rows * -(-parts // FANIN) * k, np.float32),
                                 D.empty(rows * -(-parts // FANIN) * k, np.int64))]
    turn = 1
    while parts > 1:
        outs = -(-parts // FANIN)
        dv, di = (b[: rows * outs * k].reshape(rows, outs, k) for b in bufs[turn])
        _launch(_merge_lists, rows * outs, _THREADS, src[0], src[1], dv, di, FANIN)
        src, parts, turn = (dv, di), outs, 1 - turn
    return src[0][:, 0], src[1][:, 0]


def _blocks(entry, base, kind, q_dev, bn, gemm, buf):
    """Yield (first base row, ranks or L1 distances of the queries against the block) per block."""
    n = len(base)
    for b0 in range(0, n, bn):
        b1 = min(b0 + bn, n)
        rows_b, bterm_b = _base_block(entry, base, kind, b0, b1)
        yield b0, _block_values(q_dev, rows_b, gemm, buf), bterm_b


def _topk_heaps(entry, base, kind, q_dev, k, bn, gemm):
    """Top-k of each query by per-(query, part) heaps folded block by block, then merged."""
    rows, n = q_dev.shape[0], len(base)
    parts = _parts(rows, min(bn, n), n, k)
    hv = D.full(rows * parts * k, np.inf, np.float32)
    hi = D.full(rows * parts * k, _EMPTY, np.int64)
    heaps = (hv.reshape(rows, parts, k), hi.reshape(rows, parts, k))
    buf = D.empty(rows * min(bn, n), np.float32)
    for b0, g, bterm_b in _blocks(entry, base, kind, q_dev, bn, gemm, buf):
        _launch(_fold, rows * parts, _THREADS, g, bterm_b, b0, *heaps)
    return _merge_all(hv, hi, rows, parts, k)


def _topk_sorted(entry, base, kind, q_dev, k, bn, gemm):
    """Top-k of each query for large k: each block's ranks are packed into unique uint64 keys and
    sorted along the row (D.xp), and its first k merged into the running list."""
    rows, n = q_dev.shape[0], len(base)
    run, new, top = ((D.full((rows, k), np.inf, np.float32), D.full((rows, k), _EMPTY, np.int64)) for _ in range(3))
    buf = D.empty(rows * min(bn, n), np.float32)
    keys_buf = D.empty(rows * min(bn, n), np.uint64)
    for b0, g, bterm_b in _blocks(entry, base, kind, q_dev, bn, gemm, buf):
        g += bterm_b[None, :]
        keys = keys_buf[: g.size].reshape(g.shape)
        _launch(_pack_keys, g.size, _THREADS, g.view(np.uint32), keys)
        keys.sort(axis=1)
        _launch(_unpack_top, rows * k, _THREADS, keys, g, b0, *top)
        _launch(_merge_two, rows, _THREADS, *run, *top, *new)
        run, new = new, run
    return run


def _knn_rows(entry, base, kind, q, k, bn, gemm) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ranks and rows of one block of prepared queries against the whole base."""
    with D.on_stream():
        q_dev = D.to_device(q)
        topk = _topk_sorted if k > HEAP_KMAX else _topk_heaps
        top_v, top_i = topk(entry, base, kind, q_dev, k, bn, gemm)
        return D.to_host(top_v), D.to_host(top_i)


def knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str, cache_key=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k candidates (float32 distances, int64 rows; -1 and inf where the base has fewer than
    k rows) of each query, sorted by rank, ties to the smaller row."""
    nq, n = len(queries), len(base)
    out_d = np.full((nq, k), np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    if nq == 0 or n == 0 or k == 0:
        return out_d, out_i
    gemm = metric != "manhattan"
    q, qterm = ref.prepare_queries(queries, metric) if gemm else (queries, None)
    kind = _kind(metric) if gemm else "raw"
    entry = _resident(base, kind, cache_key)
    rows, bn = _knn_plan(nq, n, base.shape[1], k, entry is None)

    def run(q0: int, q1: int):
        return _knn_rows(entry, base, kind, q[q0:q1], k, bn, gemm)

    for q0 in range(0, nq, rows):
        q1 = min(q0 + rows, nq)
        done = D.split_on_oom(run, q0, q1, "knn")
        out_d[q0:q1] = np.concatenate([v for v, _ in done])
        out_i[q0:q1] = np.concatenate([i for _, i in done])
    out_i[out_i == _EMPTY] = -1
    if gemm:
        out_d = ref.to_distance(out_d, qterm, metric)
    return out_d, out_i


def _pairwise_rows(entry, y, kind, x_blk, cols, gemm, out) -> None:
    """out[:, :] = the (len(x_blk), len(y)) block of ranks (GEMM) or L1 distances."""
    ny = len(y)
    with D.on_stream():
        x_dev = D.to_device(x_blk)
        buf = D.empty(len(x_blk) * min(cols, ny), np.float32)
        for c0 in range(0, ny, cols):
            c1 = min(c0 + cols, ny)
            rows_b, bterm_b = _base_block(entry, y, kind, c0, c1)
            g = _block_values(x_dev, rows_b, gemm, buf)
            if gemm:
                g += bterm_b[None, :]
            D.to_host(g, out=out[:, c0:c1])


def pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """The full (len(x), len(y)) float32 distance matrix, computed in blocks that fit the device."""
    nx, ny = len(x), len(y)
    if nx == 0 or ny == 0:
        return np.zeros((nx, ny), dtype=np.float32)
    gemm = metric != "manhattan"
    x_used, qterm = ref.prepare_queries(x, metric) if gemm else (x, None)
    kind = _kind(metric) if gemm else "raw"
    entry = _resident(y, kind, None)
    rows, cols = _pairwise_plan(nx, ny, x.shape[1], entry is None)
    out = np.empty((nx, ny), dtype=np.float32)

    def run(r0: int, r1: int) -> None:  # a retried block rewrites the same rows of out
        _pairwise_rows(entry, y, kind, x_used[r0:r1], cols, gemm, out[r0:r1])

    for r0 in range(0, nx, rows):
        D.split_on_oom(run, r0, min(r0 + rows, nx), "pairwise")
    if not gemm:
        return out
    return ref.fix_cancellation(x, y, ref.to_distance(out, qterm, metric), metric)


class CudaDistanceKernels:
    """The Backend Protocol's ``pairwise`` and ``knn`` on the GPU (mixed into CupyBackend)."""

    def pairwise(self, x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
        return pairwise(x, y, metric)

    def knn(self, base: np.ndarray, queries: np.ndarray, k: int, metric: str, cache_key=None):
        """Top-k candidates; ``cache_key`` (e.g. ``(id(index), version)``) keeps the prepared base
        resident on the device for the next call with the same key."""
        return knn(base, queries, k, metric, cache_key=cache_key)
