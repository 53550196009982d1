"""Numba kernels for distances and exact top-k: a parallel selection over BLAS blocks, and L1 tiles.

* L2 / cosine / ip: each worker of a small thread pool (numba's thread count) runs
  single-threaded BLAS GEMMs of its (base block x query block) tiles (transposed: about 15 %
  faster than the other way round at K = 128) and folds each tile into the running top-k with
  :func:`gemm_topk_update` while the tile is still in L2. Most candidates
  are rejected by one comparison against the current k-th value. BLAS's own threads are limited
  to one meanwhile (threadpoolctl): alternating a multi-threaded BLAS with a parallel selection
  made the two thread pools spin against each other (3x slower on 2 cores).
* L1 has no GEMM form. :func:`l1_topk` transposes a tile of base rows into a thread-local
  (dim x tile) buffer that stays in L2, and accumulates ``|q_c - b_c|`` along the tile, so the
  inner loop is a plain vector loop with no horizontal reduction. Work is split over
  (query block x base part) tasks so that a few queries still use every core.

Ties go to the smaller base index: every scan visits base rows in increasing order and only
replaces the current k-th entry on a strictly smaller value; parts are merged in base order.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

from . import _numpy_distance as ref

_TILE = 256  # base rows per transposed L1 tile: dim * _TILE * 4 bytes (128 KiB at dim 128)
_L1_QBLOCK = 32  # queries that share one transposed tile
_GEMM_QBLOCK = 512  # queries per GEMM task
_GEMM_BBLOCK = 1024  # base rows per GEMM block: the (1024 x 512) float32 product fits in L2
_GEMM_FEW = 64  # up to this many queries form a single block


@njit(cache=True, inline="always")
def _insert(td, ti, v, j):
    """Insert (v, j) into the sorted top-k row (td, ti); the caller checked v < td[-1]."""
    p = td.shape[0] - 1
    while p > 0 and td[p - 1] > v:
        td[p] = td[p - 1]
        ti[p] = ti[p - 1]
        p -= 1
    td[p] = v
    ti[p] = j


@njit(cache=True, nogil=True)
def gemm_topk_update(gt, bterm, offset, td, ti, thr):
    """Fold rank = bterm[j] + gt[j, i] (base row offset + j, query i) into the top-k (td, ti).

    ``gt`` is the transposed block (base rows x queries), the shape single-threaded BLAS runs
    fastest here; ``thr`` caches each query's current k-th value."""
    nb, m = gt.shape
    k = td.shape[1]
    for j in range(nb):
        row = gt[j]
        bj = bterm[j]
        hits = 0
        for i in range(m):  # a branch-free vector pass; most base rows beat no query
            hits += bj + row[i] < thr[i]
        if hits:
            for i in range(m):
                v = bj + row[i]
                if v < thr[i]:
                    _insert(td[i], ti[i], v, offset + j)
                    thr[i] = td[i, k - 1]


@njit(cache=True, nogil=True)
def gemm_topk_update_scaled(gt, bscale, offset, td, ti, thr):
    """Like :func:`gemm_topk_update` with rank = bscale[j] * gt[j, i] (cosine on raw rows)."""
    nb, m = gt.shape
    k = td.shape[1]
    for j in range(nb):
        row = gt[j]
        sj = bscale[j]
        hits = 0
        for i in range(m):
            hits += sj * row[i] < thr[i]
        if hits:
            for i in range(m):
                v = sj * row[i]
                if v < thr[i]:
                    _insert(td[i], ti[i], v, offset + j)
                    thr[i] = td[i, k - 1]


@njit(cache=True, inline="always")
def _l1_tile(q, bt, m, acc):
    """acc[j] = sum_c |q[c] - bt[c, j]| for j < m (four dimensions per pass over acc)."""
    d = q.shape[0]
    for j in range(m):
        acc[j] = 0.0
    c = 0
    while c + 4 <= d:
        q0 = q[c]
        q1 = q[c + 1]
        q2 = q[c + 2]
        q3 = q[c + 3]
        b0 = bt[c]
        b1 = bt[c + 1]
        b2 = bt[c + 2]
        b3 = bt[c + 3]
        for j in range(m):
            acc[j] += (abs(q0 - b0[j]) + abs(q1 - b1[j])) + (abs(q2 - b2[j]) + abs(q3 - b3[j]))
        c += 4
    while c < d:
        qc = q[c]
        bc = bt[c]
        for j in range(m):
            acc[j] += abs(qc - bc[j])
        c += 1


@njit(cache=True, inline="always")
def _transpose_tile(base, t0, m, bt):
    d = base.shape[1]
    for j in range(m):
        row = base[t0 + j]
        for c in range(d):
            bt[c, j] = row[c]


@njit(cache=True, parallel=True)
def l1_topk(base, queries, qblock, nparts, td, ti):
    """Top-k L1 per (query block, base part) task into td/ti[part]; merge with :func:`merge_parts`."""
    nq, d = queries.shape
    n = base.shape[0]
    nqb = (nq + qblock - 1) // qblock
    for task in prange(nqb * nparts):
        qb = task // nparts
        part = task % nparts
        q0 = qb * qblock
        q1 = min(q0 + qblock, nq)
        b0 = part * n // nparts
        b1 = (part + 1) * n // nparts
        bt = np.empty((d, _TILE), np.float32)
        acc = np.empty(_TILE, np.float32)
        tdp = td[part]
        tip = ti[part]
        for t0 in range(b0, b1, _TILE):
            m = min(_TILE, b1 - t0)
            _transpose_tile(base, t0, m, bt)
            for i in range(q0, q1):
                _l1_tile(queries[i], bt, m, acc)
                tdi = tdp[i]
                tii = tip[i]
                k = tdi.shape[0]
                thr = tdi[k - 1]
                for j in range(m):
                    if acc[j] < thr:
                        _insert(tdi, tii, acc[j], t0 + j)
                        thr = tdi[k - 1]


@njit(cache=True, parallel=True)
def merge_parts(td, ti, out_d, out_i):
    """Merge per-part top-k lists (parts hold increasing base ranges) into out_d/out_i."""
    nparts, nq, k = td.shape
    for i in prange(nq):
        od = out_d[i]
        oi = out_i[i]
        for p in range(nparts):
            for r in range(k):
                v = td[p, i, r]
                if not v < od[k - 1]:
                    break  # each part's list is sorted: nothing further can enter
                _insert(od, oi, v, ti[p, i, r])


@njit(cache=True, parallel=True)
def l1_pairwise(x, y, out):
    """out[i, j] = sum_c |x[i, c] - y[j, c]|, tiled like :func:`l1_topk`."""
    nx, d = x.shape
    ny = y.shape[0]
    qblock = _L1_QBLOCK
    nxb = (nx + qblock - 1) // qblock
    nyt = (ny + _TILE - 1) // _TILE
    for task in prange(nxb * nyt):
        xb = task // nyt
        t0 = (task % nyt) * _TILE
        m = min(_TILE, ny - t0)
        bt = np.empty((d, _TILE), np.float32)
        acc = np.empty(_TILE, np.float32)
        _transpose_tile(y, t0, m, bt)
        for i in range(xb * qblock, min(xb * qblock + qblock, nx)):
            _l1_tile(x[i], bt, m, acc)
            for j in range(m):
                out[i, t0 + j] = acc[j]


_PAIR_MODES = {"sqeuclidean": 0, "euclidean": 1, "manhattan": 2, "ip": 3, "cosine": 4}


@njit(cache=True, parallel=True)
def _exact_pairs(x, y, rows, cols, mode, out):
    for p in prange(rows.shape[0]):
        a = x[rows[p]]
        b = y[cols[p]]
        s = 0.0
        if mode <= 1:
            for c in range(a.shape[0]):
                d = np.float64(a[c]) - np.float64(b[c])
                s += d * d
            out[p] = np.sqrt(s) if mode == 1 else s
        elif mode == 2:
            for c in range(a.shape[0]):
                s += abs(np.float64(a[c]) - np.float64(b[c]))
            out[p] = s
        elif mode == 3:
            for c in range(a.shape[0]):
                s += np.float64(a[c]) * np.float64(b[c])
            out[p] = 1.0 - s
        else:
            na = 0.0
            nb = 0.0
            for c in range(a.shape[0]):
                na += np.float64(a[c]) * np.float64(a[c])
                nb += np.float64(b[c]) * np.float64(b[c])
            if na == 0.0 or nb == 0.0:
                out[p] = 1.0
            else:
                na = np.sqrt(na)
                nb = np.sqrt(nb)
                for c in range(a.shape[0]):
                    d = np.float64(a[c]) / na - np.float64(b[c]) / nb
                    s += d * d
                out[p] = min(max(0.5 * s, 0.0), 2.0)


# The same loop without threads, for the few pairs of one query's re-scoring: waking numba's
# thread pool costs far more than the work there, and on a busy machine a parallel region can
# wait a whole scheduler slice (measured: 26 ms for 10 pairs at load 8, against 0.04 ms serial).
_exact_pairs_serial = njit(cache=True)(_exact_pairs.py_func)
_SERIAL_PAIRS = 4096


def exact_pairs(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray, metric: str) -> np.ndarray:
    """:func:`._numpy_distance.exact_pairs` in parallel, without float64 copies of the rows."""
    out = np.empty(len(rows), dtype=np.float64)
    kernel = _exact_pairs_serial if len(rows) < _SERIAL_PAIRS else _exact_pairs
    kernel(x, y, np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(cols, np.int64),
                 _PAIR_MODES[metric], out)
    return out


def _parts(nq: int, n: int, qblock: int, rows_min: int = _TILE) -> int:
    """Base parts per query block so that every thread has a few tasks, each >= rows_min rows."""
    threads = numba.get_num_threads()
    nqb = -(-nq // qblock)
    want = -(-4 * threads // nqb) if nqb < 2 * threads else 1
    return int(max(1, min(want, n // rows_min)))


def _merge(td: np.ndarray, ti: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if td.shape[0] == 1:
        return td[0], ti[0]
    out_d = np.full(td.shape[1:], np.inf, dtype=np.float32)
    out_i = np.full(ti.shape[1:], -1, dtype=np.int64)
    merge_parts(td, ti, out_d, out_i)
    return out_d, out_i


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of worker threads (numba's thread count), created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != threads:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="simsearch-knn")
        return _POOL


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its threads, which is slower, not wrong
        return None
    return ThreadpoolController()


_BLAS_USERS = 0
_BLAS_LIMITER = None


@contextlib.contextmanager
def _blas_single_thread():
    """Limit BLAS to one thread while any knn call runs (process-wide, reference counted so that
    concurrent calls restore the original setting only when the last one leaves)."""
    global _BLAS_USERS, _BLAS_LIMITER
    ctl = _blas_controller()
    if ctl is None:
        yield
        return
    with _POOL_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = ctl.limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def knn_l1(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    nq = len(queries)
    nparts = _parts(nq, len(base), _L1_QBLOCK)
    td = np.full((nparts, nq, k), np.inf, dtype=np.float32)
    ti = np.full((nparts, nq, k), -1, dtype=np.int64)
    l1_topk(base, queries, _L1_QBLOCK, nparts, td, ti)
    return _merge(td, ti)


def _gemm_task(base, queries, bterm, scaled, q0, q1, b0, b1, bblock, td, ti):
    """One thread's share: GEMM (single-threaded BLAS) + selection, block by block, cache-hot."""
    m = q1 - q0
    buf = np.empty(m * min(bblock, b1 - b0), dtype=np.float32)
    q_t = queries[q0:q1].T
    tdq, tiq = td[q0:q1], ti[q0:q1]
    thr = np.ascontiguousarray(tdq[:, -1])
    fold = gemm_topk_update_scaled if scaled else gemm_topk_update
    for s in range(b0, b1, bblock):
        e = min(s + bblock, b1)
        gt = buf[: m * (e - s)].reshape(e - s, m)
        np.matmul(base[s:e], q_t, out=gt)
        fold(gt, bterm[s:e], s, tdq, tiq, thr)


def knn_gemm(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Each worker thread runs its own single-threaded GEMM and selects from the block while it is
    still in cache; BLAS's own threads are paused meanwhile, since they would fight the workers."""
    nq, n = len(queries), len(base)
    # cosine: scale the GEMM's columns by 1/‖b‖ in the selection rather than copy unit rows
    inv = ref.cosine_scales(base) if metric == "cosine" else None
    scaled = inv is not None
    base, bterm = (base, inv) if scaled else ref.prepare_base(base, metric)
    queries, qterm = ref.prepare_queries(queries, metric)
    threads = numba.get_num_threads()
    # Few queries: one block, the base split across threads (each part is read once). Many:
    # query blocks per thread, so that each GEMM has enough rows to run at full speed.
    qblock = nq if nq <= _GEMM_FEW else max(1, min(_GEMM_QBLOCK, -(-nq // threads)))
    nparts = _parts(nq, n, qblock, rows_min=_GEMM_BBLOCK)
    td = np.full((nparts, nq, k), np.inf, dtype=np.float32)
    ti = np.full((nparts, nq, k), -1, dtype=np.int64)
    tasks = [
        (base, queries, bterm, scaled, q0, min(q0 + qblock, nq), p * n // nparts, (p + 1) * n // nparts,
         _GEMM_BBLOCK, td[p], ti[p])
        for q0 in range(0, nq, qblock)
        for p in range(nparts)
    ]
    with _blas_single_thread():
        if len(tasks) == 1 or threads == 1:
            for t in tasks:
                _gemm_task(*t)
        else:
            list(_pool(threads).map(lambda t: _gemm_task(*t), tasks))
    out_d, out_i = _merge(td, ti)
    return ref.to_distance(out_d, qterm, metric), out_i


def knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "manhattan":
        return knn_l1(base, queries, k)
    return knn_gemm(base, queries, k, metric)


def pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    if metric != "manhattan":
        return ref.pairwise(x, y, metric)  # one BLAS GEMM is already as fast as it gets
    out = np.empty((len(x), len(y)), dtype=np.float32)
    if out.size:
        l1_pairwise(x, y, out)
    return out
