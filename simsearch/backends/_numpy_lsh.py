"""Numpy reference for the LSH kernels: band keys, band tables, lookups, joins, pair Jaccard, components.

Every kernel here has a numba twin in :mod:`._numba_lsh` that returns bit-equal results; the
numpy versions are written for clarity (sorting and ``searchsorted``) and serve as the oracle.

Shared definitions (both backends):

* **band key** of band ``j`` (0-based) of a signature with band size ``r``: the standard XXH64,
  seeded with ``j``, of the little-endian bytes of ``sig[j*r:(j+1)*r]`` (``4*r`` bytes), i.e.
  ``xxhash.xxh64_intdigest(sig[j*r:(j+1)*r].tobytes(), seed=j)`` on a little-endian machine.
* **band table** of ``m`` indexed rows: per band, the keys sorted ascending (ties by row, so the
  sort is stable) in ``skeys`` (b, m) uint64, the matching rows in ``srows`` (b, m) int32, and a
  directory (b, 2**d + 1) int32 where ``directory[j, u]`` is the first position whose key has top
  ``d`` bits >= u. ``d = max(0, m.bit_length() - 3)``, so a bucket holds 4 to 8 keys on average.
* **packed pair**: ``(a << 32) | b`` as uint64 for rows a < b (< 2**31).
"""

from __future__ import annotations

import numpy as np

from .._arrays import ranges, sorted_unique

__all__ = ["NumpyLSHKernels", "bucket_bits", "top_bits", "unpack_pairs", "sorted_unique"]

_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)
_U32 = np.uint64(32)


def bucket_bits(m: int) -> int:
    """Directory bits for a table of ``m`` keys: 2**d buckets of 4 to 8 keys on average."""
    return max(0, int(m).bit_length() - 3)


def top_bits(keys: np.ndarray, d: int) -> np.ndarray:
    """The top ``d`` bits of uint64 keys (0 when d == 0); shifts stay below 64."""
    return (keys >> np.uint64(1)) >> np.uint64(63 - d)


def unpack_pairs(packed: np.ndarray) -> np.ndarray:
    """(m, 2) int64 rows from packed uint64 pairs."""
    out = np.empty((packed.shape[0], 2), dtype=np.int64)
    out[:, 0] = (packed >> _U32).astype(np.int64)
    out[:, 1] = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return out


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * _P2, 31) * _P1


def _merge_round(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (h ^ _round(np.zeros_like(v), v)) * _P1 + _P4


def _xxh64_words(words: np.ndarray, tail: np.ndarray | None, seed: np.ndarray) -> np.ndarray:
    """XXH64 of rows of little-endian 64-bit words plus an optional 4-byte tail, vectorised.

    ``words`` is (..., w) uint64, ``tail`` (...) uint64 holding a uint32 or None, ``seed`` (...).
    """
    nw = words.shape[-1]
    length = np.uint64(8 * nw + (4 if tail is not None else 0))
    p = 0
    if length >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed.copy()
        v4 = seed - _P1
        while p + 4 <= nw:
            v1 = _round(v1, words[..., p])
            v2 = _round(v2, words[..., p + 1])
            v3 = _round(v3, words[..., p + 2])
            v4 = _round(v4, words[..., p + 3])
            p += 4
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        for v in (v1, v2, v3, v4):
            h = _merge_round(h, v)
    else:
        h = seed + _P5
    h = h + length
    while p < nw:
        h = h ^ _round(np.zeros_like(h), words[..., p])
        h = _rotl(h, 27) * _P1 + _P4
        p += 1
    if tail is not None:
        h = h ^ (tail * _P1)
        h = _rotl(h, 23) * _P2 + _P3
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


def _csr_from_packed(packed: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique packed (query << 32 | row) -> CSR offsets (nq + 1) and rows int64."""
    packed = sorted_unique(packed)
    q = (packed >> _U32).astype(np.int64)
    rows = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    offsets = np.searchsorted(q, np.arange(nq + 1), side="left").astype(np.int64)
    return offsets, rows


def _pack(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint64) << _U32) | b.astype(np.uint64)


class NumpyLSHKernels:
    """LSH kernels in plain numpy; mixed into the numpy backend."""

    def band_keys(self, sigs: np.ndarray, b: int, r: int) -> np.ndarray:
        """uint64 (n, b) band keys of uint32 signatures (n, >= b*r); see the module docstring."""
        n = sigs.shape[0]
        x = sigs[:, : b * r].reshape(n, b, r).astype(np.uint64)
        half = r // 2
        words = x[:, :, 0 : 2 * half : 2] | (x[:, :, 1 : 2 * half : 2] << _U32)
        tail = x[:, :, r - 1] if r % 2 else None
        seed = np.broadcast_to(np.arange(b, dtype=np.uint64), (n, b)).copy()
        return np.ascontiguousarray(_xxh64_words(words, tail, seed))

    def bucket_sort(self, keys: np.ndarray, valid: np.ndarray):
        """Band table (skeys, srows, directory, d) over the rows where ``valid`` is True."""
        rows = np.flatnonzero(valid).astype(np.int32)
        nb = keys.shape[1]
        sub = keys[rows]
        d = bucket_bits(rows.shape[0])
        order = np.argsort(sub, axis=0, kind="stable")
        skeys = np.ascontiguousarray(np.take_along_axis(sub, order, axis=0).T)
        srows = np.ascontiguousarray(rows[order].T).astype(np.int32)
        directory = np.empty((nb, (1 << d) + 1), dtype=np.int32)
        buckets = np.arange((1 << d) + 1, dtype=np.uint64)
        for j in range(nb):
            directory[j] = np.searchsorted(top_bits(skeys[j], d), buckets, side="left")
        return skeys, srows, directory, d

    def lookup(self, skeys, srows, directory, d, mask, qkeys, qvalid):
        """CSR (offsets, rows) of the rows (mask True) sharing a band key with each query."""
        nq = qkeys.shape[0]
        qidx = np.flatnonzero(qvalid)
        parts = []
        for j in range(skeys.shape[0]):
            k = qkeys[qidx, j]
            lo = np.searchsorted(skeys[j], k, side="left")
            cnt = np.searchsorted(skeys[j], k, side="right") - lo
            rows = srows[j, ranges(lo, cnt)]
            q = np.repeat(qidx, cnt)
            keep = mask[rows]
            parts.append(_pack(q[keep], rows[keep]))
        packed = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        return _csr_from_packed(packed, nq)

    def scan(self, keys, mask, qkeys, qvalid, chunk: int = 2048):
        """Like :meth:`lookup` against an unsorted (m, b) key array (the append buffer)."""
        nq = qkeys.shape[0]
        parts = []
        cols = np.flatnonzero(mask)
        for start in range(0, nq, chunk):
            stop = min(nq, start + chunk)
            hit = np.zeros((stop - start, cols.shape[0]), dtype=bool)
            for j in range(keys.shape[1]):
                hit |= qkeys[start:stop, j, None] == keys[cols, j][None, :]
            hit &= qvalid[start:stop, None]
            q, c = np.nonzero(hit)
            parts.append(_pack(q + start, cols[c]))
        packed = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        return _csr_from_packed(packed, nq)

    def self_join(self, skeys, srows, mask):
        """Packed row pairs (a < b, both mask True) that share a key in any band; sorted unique."""
        parts = []
        for j in range(skeys.shape[0]):
            keep = mask[srows[j]]
            k = skeys[j][keep]
            rows = srows[j][keep].astype(np.int64)
            if k.shape[0] < 2:
                continue
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            sizes = np.diff(np.r_[starts, k.shape[0]])
            ends = np.repeat(starts + sizes, sizes)
            pos = np.arange(k.shape[0])
            npart = ends - pos - 1
            first = np.repeat(pos, npart)
            second = ranges(pos + 1, npart)
            parts.append(_pack(rows[first], rows[second]))
        packed = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        return sorted_unique(packed)

    def pair_jaccard_sets(self, off_a, hash_a, off_b, hash_b, ia, ib, chunk: int = 1 << 16):
        """Exact Jaccard of sorted unique sets A[ia[k]] and B[ib[k]]; 0.0 when either is empty."""
        m = ia.shape[0]
        out = np.zeros(m, dtype=np.float64)
        for start in range(0, m, chunk):
            sl = slice(start, min(m, start + chunk))
            sa = off_a[ia[sl] + 1] - off_a[ia[sl]]
            sb = off_b[ib[sl] + 1] - off_b[ib[sl]]
            label = np.arange(sa.shape[0])
            vals = np.concatenate([hash_a[ranges(off_a[ia[sl]], sa)], hash_b[ranges(off_b[ib[sl]], sb)]])
            labs = np.concatenate([np.repeat(label, sa), np.repeat(label, sb)])
            order = np.lexsort((vals, labs))
            vals, labs = vals[order], labs[order]
            dup = (vals[1:] == vals[:-1]) & (labs[1:] == labs[:-1])
            inter = np.bincount(labs[1:][dup], minlength=sa.shape[0]).astype(np.int64)
            union = sa + sb - inter
            ok = (sa > 0) & (sb > 0)
            out[sl] = np.where(ok, inter / np.maximum(union, 1), 0.0)
        return out

    def pair_jaccard_sigs(self, sig_a, sig_b, ia, ib, chunk: int = 1 << 15):
        """Estimated Jaccard (equal positions / num_perm); 0.0 when either signature is empty."""
        m = ia.shape[0]
        out = np.zeros(m, dtype=np.float64)
        full = np.uint32(0xFFFFFFFF)
        for start in range(0, m, chunk):
            sl = slice(start, min(m, start + chunk))
            a, b = sig_a[ia[sl]], sig_b[ib[sl]]
            eq = np.count_nonzero(a == b, axis=1)
            empty = (a == full).all(axis=1) | (b == full).all(axis=1)
            out[sl] = np.where(empty, 0.0, eq / sig_a.shape[1])
        return out

    def connected_components(self, n: int, pairs: np.ndarray) -> np.ndarray:
        """Label of each of ``n`` nodes: the smallest node index in its connected component."""
        labels = np.arange(n, dtype=np.int64)
        if pairs.shape[0] == 0:
            return labels
        a, b = pairs[:, 0], pairs[:, 1]
        while True:
            la, lb = labels[a], labels[b]
            if np.array_equal(la, lb):
                return labels
            low = np.minimum(la, lb)
            np.minimum.at(labels, la, low)
            np.minimum.at(labels, lb, low)
            while True:  # pointer jumping until every node points at a root
                nxt = labels[labels]
                if np.array_equal(nxt, labels):
                    break
                labels = nxt
