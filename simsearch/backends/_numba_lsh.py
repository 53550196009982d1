"""Numba LSH kernels: band keys (XXH64), bucketed band tables, lookups, self-join, pair Jaccard, union-find.

Definitions are in :mod:`._numpy_lsh`; every kernel here returns the same bits as its numpy
reference. Band tables are built with a counting sort on the top ``d`` bits of the (uniformly
distributed) keys followed by a stable insertion sort inside each small bucket, so building is
O(m) per band, and a lookup reads one directory entry and one cache line of keys.
"""

from __future__ import annotations

import threading
import types

import numba
import numpy as np
from numba import njit, prange, uint64

from .._arrays import sorted_unique
from ._numpy_lsh import bucket_bits

__all__ = ["NumbaLSHKernels"]

_PAR_MIN = 1 << 15  # work items (rows x bands, pairs) below which a kernel runs on one thread


def _twin(fn):
    """Compile ``fn`` twice: parallel, and serial (for small inputs, where waking threads costs
    more than the work). Call as ``fn(*args, work=n)``."""
    par = njit(cache=True, parallel=True)(fn)
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + "_serial"
    ser = njit(cache=True)(clone)

    def call(*args, work):
        return (par if work >= _PAR_MIN else ser)(*args)

    call.__doc__, call.par, call.ser = fn.__doc__, par, ser
    return call


from ._numba_xxh64 import CPU  # noqa: E402  (the shared hash primitives, compiled for the CPU)

_band_hash = CPU.band_hash
_intersection = CPU.sorted_intersection_size


@_twin
def band_keys(sigs, b, r):
    n = sigs.shape[0]
    out = np.empty((n, b), np.uint64)
    for i in prange(n):
        for j in range(b):
            out[i, j] = _band_hash(sigs, i, j * r, r, uint64(j))
    return out


@njit(inline="always")
def _top(key, d):
    return (key >> uint64(1)) >> uint64(63 - d)


@_twin
def _bucket_sort(keys_t, rows, d, skeys, srows, directory):
    """Per band: counting sort of rows by top-d key bits, then stable insertion sort per bucket.

    ``keys_t`` is band-major (b, n), so each band reads its keys sequentially.
    """
    m = rows.shape[0]
    nb = keys_t.shape[0]
    nbuckets = 1 << d
    for j in prange(nb):
        counts = np.zeros(nbuckets + 1, np.int64)
        for t in range(m):
            counts[_top(keys_t[j, rows[t]], d) + 1] += 1
        for u in range(nbuckets):
            counts[u + 1] += counts[u]
        for u in range(nbuckets + 1):
            directory[j, u] = counts[u]
        fill = counts[:nbuckets].copy()
        for t in range(m):
            row = rows[t]
            k = keys_t[j, row]
            u = _top(k, d)
            pos = fill[u]
            fill[u] += 1
            skeys[j, pos] = k
            srows[j, pos] = row
        for u in range(nbuckets):
            lo = directory[j, u]
            hi = directory[j, u + 1]
            for p in range(lo + 1, hi):  # stable: equal keys keep row order
                k = skeys[j, p]
                rw = srows[j, p]
                q = p - 1
                while q >= lo and skeys[j, q] > k:
                    skeys[j, q + 1] = skeys[j, q]
                    srows[j, q + 1] = srows[j, q]
                    q -= 1
                skeys[j, q + 1] = k
                srows[j, q + 1] = rw


@njit(inline="always")
def _sort_unique(a, lo, hi):
    """Sort a[lo:hi] in place and squeeze out repeats; returns the unique count."""
    n = hi - lo
    if n <= 1:
        return n
    if n <= 32:
        for p in range(lo + 1, hi):
            v = a[p]
            q = p - 1
            while q >= lo and a[q] > v:
                a[q + 1] = a[q]
                q -= 1
            a[q + 1] = v
    else:
        a[lo:hi].sort()
    u = lo + 1
    for p in range(lo + 1, hi):
        if a[p] != a[u - 1]:
            a[u] = a[p]
            u += 1
    return u - lo


_BLOCK = 64


@_twin
def _probe_all(skeys, srows, directory, d, qkeys, qvalid, bounds, pos, cnt, row0):
    """For every (query, band): where the run of equal keys starts in the band table, and its length.

    Queries go in blocks: first every directory entry of the block is read, then every key
    range, so the loads of one stage are independent and the memory system overlaps them.
    """
    nb = qkeys.shape[1]
    last = max(skeys.shape[1] - 1, 0)
    sink = np.zeros(bounds.shape[0], np.uint64)
    if skeys.shape[1] == 0:
        pos[:] = 0
        cnt[:] = 0
        row0[:] = -1
        return sink
    for c in prange(bounds.shape[0] - 1):
        lo_b = np.empty((_BLOCK, nb), np.int64)
        hi_b = np.empty((_BLOCK, nb), np.int64)
        for q0 in range(bounds[c], bounds[c + 1], _BLOCK):
            q1 = min(q0 + _BLOCK, bounds[c + 1])
            for q in range(q0, q1):
                for j in range(nb):
                    u = _top(qkeys[q, j], d)
                    lo_b[q - q0, j] = directory[j, u]
                    hi_b[q - q0, j] = directory[j, u + 1]
            touch = uint64(0)
            for q in range(q0, q1):  # branch-free loads: the misses overlap, later scans hit cache
                for j in range(nb):
                    lo = min(lo_b[q - q0, j], last)
                    hi = max(hi_b[q - q0, j] - 1, 0)  # a bucket may straddle two cache lines
                    touch ^= skeys[j, lo] ^ skeys[j, hi] ^ uint64(srows[j, lo])
            sink[c] ^= touch
            for q in range(q0, q1):
                for j in range(nb):
                    k = qkeys[q, j]
                    lo = lo_b[q - q0, j]
                    less = 0
                    same = 0
                    for p in range(lo, hi_b[q - q0, j]):  # a bucket holds ~4-8 keys: count, don't branch
                        kk = skeys[j, p]
                        less += kk < k
                        same += kk == k
                    p = lo + less
                    pos[q, j] = p
                    cnt[q, j] = same if qvalid[q] else 0
                    row0[q, j] = srows[j, p] if same else -1
    return sink


@_twin
def _gather(srows, mask, pos, cnt, row0, bounds):
    """CSR of the sorted unique rows (mask True) in the (pos, cnt) ranges of each query."""
    nq, nb = pos.shape
    ub = np.zeros(nq + 1, np.int64)
    for q in range(nq):
        t = 0
        for j in range(nb):
            t += cnt[q, j]
        ub[q + 1] = ub[q] + t
    buf = np.empty(ub[nq], np.int64)
    out = np.zeros(nq + 1, np.int64)
    for c in prange(bounds.shape[0] - 1):
        for q in range(bounds[c], bounds[c + 1]):
            lo = ub[q]
            if ub[q + 1] == lo:
                continue
            t = lo
            for j in range(nb):
                if cnt[q, j] == 1:  # the common case: read the row the probe already fetched
                    row = row0[q, j]
                    if mask[row]:
                        buf[t] = row
                        t += 1
                    continue
                for p in range(pos[q, j], pos[q, j] + cnt[q, j]):
                    row = srows[j, p]
                    if mask[row]:
                        buf[t] = row
                        t += 1
            out[q + 1] = _sort_unique(buf, lo, t)
    return _compact(ub, out, buf)


@njit(cache=True)
def _lookup_small(skeys, srows, directory, d, mask, qkeys, qvalid):
    """:meth:`lookup` for a handful of queries, serially and in one pass per query."""
    nq, nb = qkeys.shape
    offsets = np.zeros(nq + 1, np.int64)
    buf = np.empty(64, np.int64)
    t = 0
    for q in range(nq):
        start = t
        if qvalid[q] and skeys.shape[1] > 0:
            for j in range(nb):
                k = qkeys[q, j]
                u = _top(k, d)
                for p in range(directory[j, u], directory[j, u + 1]):
                    if skeys[j, p] == k:
                        row = srows[j, p]
                        if mask[row]:
                            if t == buf.shape[0]:
                                grown = np.empty(2 * t, np.int64)
                                grown[:t] = buf[:t]
                                buf = grown
                            buf[t] = row
                            t += 1
        t = start + _sort_unique(buf, start, t)
        offsets[q + 1] = t
    return offsets, buf[:t].copy()


@njit(cache=True)
def _compact(ub, cnt, buf):
    nq = cnt.shape[0] - 1
    for q in range(nq):
        cnt[q + 1] += cnt[q]
    rows = np.empty(cnt[nq], np.int64)
    for q in range(nq):
        base = ub[q]
        for t in range(cnt[q + 1] - cnt[q]):
            rows[cnt[q] + t] = buf[base + t]
    return cnt, rows


@_twin
def _scan(keys, mask, qkeys, qvalid, bounds):
    nq = qkeys.shape[0]
    m = keys.shape[0]
    nb = keys.shape[1]
    ub = np.zeros(nq + 1, np.int64)
    for c in prange(bounds.shape[0] - 1):
        for q in range(bounds[c], bounds[c + 1]):
            if qvalid[q]:
                t = 0
                for row in range(m):
                    if mask[row]:
                        for j in range(nb):
                            if keys[row, j] == qkeys[q, j]:
                                t += 1
                                break
                ub[q + 1] = t
    for q in range(nq):
        ub[q + 1] += ub[q]
    rows = np.empty(ub[nq], np.int64)
    for c in prange(bounds.shape[0] - 1):
        for q in range(bounds[c], bounds[c + 1]):
            t = ub[q]
            if ub[q + 1] > t:
                for row in range(m):
                    if mask[row]:
                        for j in range(nb):
                            if keys[row, j] == qkeys[q, j]:
                                rows[t] = row
                                t += 1
                                break
    return ub, rows


@_twin
def _self_join(skeys, srows, mask):
    """Unsorted packed pairs (with repeats across bands) of rows sharing a key in some band."""
    nb = skeys.shape[0]
    m = skeys.shape[1]
    per_band = np.zeros(nb + 1, np.int64)
    for j in prange(nb):
        total = 0
        p = 0
        while p < m:
            e = p + 1
            while e < m and skeys[j, e] == skeys[j, p]:
                e += 1
            if e - p > 1:
                g = 0
                for t in range(p, e):
                    if mask[srows[j, t]]:
                        g += 1
                total += g * (g - 1) // 2
            p = e
        per_band[j + 1] = total
    for j in range(nb):
        per_band[j + 1] += per_band[j]
    out = np.empty(per_band[nb], np.uint64)
    for j in prange(nb):
        w = per_band[j]
        p = 0
        while p < m:
            e = p + 1
            while e < m and skeys[j, e] == skeys[j, p]:
                e += 1
            for x in range(p, e):
                a = srows[j, x]
                if mask[a]:
                    for y in range(x + 1, e):
                        bb = srows[j, y]
                        if mask[bb]:
                            out[w] = (uint64(a) << uint64(32)) | uint64(bb)
                            w += 1
            p = e
    return out


@_twin
def _pair_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib):
    m = ia.shape[0]
    out = np.zeros(m, np.float64)
    for k in prange(m):
        p, pe = off_a[ia[k]], off_a[ia[k] + 1]
        q, qe = off_b[ib[k]], off_b[ib[k] + 1]
        na = pe - p
        nb = qe - q
        if na == 0 or nb == 0:
            continue
        inter = _intersection(hash_a, p, pe, hash_b, q, qe)
        out[k] = inter / (na + nb - inter)
    return out


@_twin
def _pair_jaccard_sigs(sig_a, sig_b, ia, ib):
    m = ia.shape[0]
    k = sig_a.shape[1]
    out = np.zeros(m, np.float64)
    full = np.uint32(0xFFFFFFFF)
    for t in prange(m):
        a = ia[t]
        b = ib[t]
        eq = 0
        ea = True
        eb = True
        for j in range(k):
            x = sig_a[a, j]
            y = sig_b[b, j]
            eq += x == y
            ea &= x == full
            eb &= y == full
        if not (ea or eb):
            out[t] = eq / k
    return out


@njit(inline="always")
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _components(n, a, b):
    parent = np.arange(n, dtype=np.int64)
    for t in range(a.shape[0]):
        ra = _find(parent, a[t])
        rb = _find(parent, b[t])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb
    for x in range(n):
        parent[x] = _find(parent, x)
    return parent


def _bounds(n: int) -> np.ndarray:
    if n < 4096:
        return np.array([0, n], dtype=np.int64)
    parts = max(1, min(n, 16 * numba.get_num_threads()))
    return np.linspace(0, n, parts + 1).astype(np.int64)


_tls = threading.local()


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three int32 work arrays of at least ``size`` elements, kept per thread between calls (a
    fresh multi-megabyte array costs a page fault per 4 KiB on every call)."""
    have = getattr(_tls, "lookup", None)
    if have is None or have[0].shape[0] < size:
        have = tuple(np.empty(size, np.int32) for _ in range(3))
        _tls.lookup = have
    return have


def _c(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype)


class NumbaLSHKernels:
    """LSH kernels compiled with numba; mixed into the numba backend."""

    def band_keys(self, sigs, b, r):
        sigs = _c(sigs, np.uint32)
        return band_keys(sigs, int(b), int(r), work=sigs.shape[0] * int(b))

    def bucket_sort(self, keys, valid):
        keys = _c(keys, np.uint64)
        rows = np.flatnonzero(valid).astype(np.int64)
        nb = keys.shape[1]
        d = bucket_bits(rows.shape[0])
        skeys = np.empty((nb, rows.shape[0]), np.uint64)
        srows = np.empty((nb, rows.shape[0]), np.int32)
        directory = np.empty((nb, (1 << d) + 1), np.int32)
        if nb:
            _bucket_sort(np.ascontiguousarray(keys.T), rows, d, skeys, srows, directory, work=rows.shape[0] * nb)
        return skeys, srows, directory, d

    def lookup(self, skeys, srows, directory, d, mask, qkeys, qvalid):
        qkeys = _c(qkeys, np.uint64)
        qvalid = _c(qvalid, np.bool_)
        mask = _c(mask, np.bool_)
        nq, nb = qkeys.shape
        if nq <= 16:  # one call, no scratch: the latency path of single queries
            return _lookup_small(skeys, srows, directory, d, mask, qkeys, qvalid)
        chunk = max(64, (1 << 20) // max(nb, 1))  # scratch: 12 bytes per (query, band), <= 12 MiB
        pos, cnt, row0 = _scratch(min(nq, chunk) * nb)
        offsets, parts, base = [np.zeros(1, np.int64)], [], 0
        for start in range(0, nq, chunk):
            stop = min(nq, start + chunk)
            shape = (stop - start, nb)
            p, c, r0 = (a[: shape[0] * nb].reshape(shape) for a in (pos, cnt, row0))
            bounds = _bounds(stop - start)
            work = (stop - start) * nb
            _probe_all(skeys, srows, directory, d, qkeys[start:stop], qvalid[start:stop], bounds, p, c, r0, work=work)
            off, rows = _gather(srows, mask, p, c, r0, bounds, work=work)
            offsets.append(off[1:] + base)
            parts.append(rows)
            base += rows.shape[0]
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return np.concatenate(offsets), rows

    def scan(self, keys, mask, qkeys, qvalid):
        qkeys = _c(qkeys, np.uint64)
        keys = _c(keys, np.uint64)
        return _scan(keys, _c(mask, np.bool_), qkeys, _c(qvalid, np.bool_), _bounds(qkeys.shape[0]),
                     work=qkeys.shape[0] * keys.shape[0])

    def self_join(self, skeys, srows, mask):
        return sorted_unique(_self_join(skeys, srows, _c(mask, np.bool_), work=skeys.size))

    def pair_jaccard_sets(self, off_a, hash_a, off_b, hash_b, ia, ib):
        return _pair_jaccard_sets(
            _c(off_a, np.int64), _c(hash_a, np.uint64), _c(off_b, np.int64), _c(hash_b, np.uint64),
            _c(ia, np.int64), _c(ib, np.int64), work=16 * len(ia),
        )

    def pair_jaccard_sigs(self, sig_a, sig_b, ia, ib):
        return _pair_jaccard_sigs(_c(sig_a, np.uint32), _c(sig_b, np.uint32), _c(ia, np.int64), _c(ib, np.int64),
                                  work=16 * len(ia))

    def connected_components(self, n, pairs):
        pairs = _c(pairs, np.int64).reshape(-1, 2)
        return _components(int(n), np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]))
