"""GPU LSH kernels: band keys, band tables, lookups, scans, self-join, pair Jaccard, components.

numba-cuda kernels (they also run on numba's CUDA simulator) plus CuPy sorts and scans through
:mod:`._device`; every result is bit-equal to the numpy reference :mod:`._numpy_lsh`, whose
docstring defines band keys, band tables and packed pairs. Inputs and outputs are host arrays.

Candidates are produced in two passes: a count per work item, an exclusive scan, then a fill in
which every thread writes one output (a binary search over the scan finds its work item), so a
long run of equal keys costs no more than many short ones. Lookups and the self-join write
packed ``(hi << 32) | lo`` uint64 values and sort and deduplicate them on the device.

Memory: every device buffer is sized by a plan from :func:`._device.free_bytes`. An input too big
to keep whole (a band table, an append buffer, edges) is cut into pieces uploaded again on each
pass; batches (rows, queries, pairs) are cut into chunks, each run under
:func:`._device.split_on_oom`. The self-join cuts its output by ranges of first rows, so a run
of equal keys whose pairs do not fit is processed in pieces that never need merging.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
from numba import cuda, float64, int64, uint64

from ..errors import InvalidArgumentError, ResourceExhaustedError
from . import _device as D
from ._cuda_prims import GPU
from .._arrays import ranges
from ._numpy_lsh import bucket_bits

__all__ = ["CudaLSHKernels"]

_band_hash = GPU.band_hash
_intersection = GPU.sorted_intersection_size
xp = D.xp  # CuPy on a device, numpy under the simulator

_BLOCK = 256  # preferred threads per block
_TILE = 64  # append-buffer rows per scan thread
_USE = 0.75  # share of the free device memory a call plans for (CuPy's sort scratch is not planned)
_NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # a candidate the mask excluded; sorts last
_S32 = np.uint64(32)
_M32 = np.uint64(0xFFFFFFFF)
_FULL = np.uint32(0xFFFFFFFF)

# Planned bytes per unit of work (inputs, outputs, scans and sort scratch).
_B_CAND = 64  # one lookup/scan candidate: fill, sort, keep mask, unique, query and row
_B_PAIR = 40  # one emitted self-join pair
_B_PROBE = 48  # one (query, band) of a lookup
_B_JOIN = 112  # one band-table entry prepared for the self-join


# -- device functions -------------------------------------------------------------------------


@D.device_function
def _top(key, d):
    """The top ``d`` bits of a uint64 key, as int64 (0 when d == 0)."""
    return int64((key >> uint64(1)) >> uint64(63 - d))


@D.device_function
def _search(a, j, lo, hi, k, past):
    """First p in [lo, hi) with a[j, p] >= k, or > k when ``past`` (a[j] sorted)."""
    while lo < hi:
        mid = (lo + hi) // 2
        v = a[j, mid]
        if v < k or (past and v == k):
            lo = mid + 1
        else:
            hi = mid
    return lo


@D.device_function
def _owner(off, lo, hi, t):
    """The last i in [lo, hi) with off[i] <= t: the work item whose outputs include number t."""
    while lo < hi:
        mid = (lo + hi) // 2
        if off[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@D.device_function
def _pack(hi, lo):
    return (uint64(hi) << uint64(32)) | uint64(lo)


@D.device_function
def _hits(keys, row, qkeys, q):
    """Whether append-buffer row ``row`` shares a band key with query ``q``."""
    for j in range(keys.shape[1]):
        if keys[row, j] == qkeys[q, j]:
            return True
    return False


# -- kernels ----------------------------------------------------------------------------------


@D.kernel
def _k_band_keys(sigs, b, r, out):
    """out[i, j]: the band key of band j of signature i (one thread per (document, band))."""
    n = out.shape[0]
    for t in range(cuda.grid(1), n * b, cuda.gridsize(1)):
        i, j = t // b, t % b
        out[i, j] = _band_hash(sigs, i, j * r, r, uint64(j))


@D.kernel
def _k_directory(skeys, d, directory):
    """directory[j, u] = first position whose key has top-d bits >= u; item (j, p) writes the
    entries u in (top(p - 1), top(p)], so each entry is written once."""
    nb, m = skeys.shape
    last = directory.shape[1] - 1
    for t in range(cuda.grid(1), nb * (m + 1), cuda.gridsize(1)):
        j, p = t // (m + 1), t % (m + 1)
        lo = 0
        if p > 0:
            lo = _top(skeys[j, p - 1], d) + 1
        hi = last
        if p < m:
            hi = _top(skeys[j, p], d)
        for u in range(lo, hi + 1):
            directory[j, u] = p


@D.kernel
def _k_probe(skeys, directory, d, qkeys, qvalid, pos, cnt):
    """For each (query, band): where its key's run starts in the band column, and its length."""
    nb = qkeys.shape[1]
    for t in range(cuda.grid(1), qkeys.shape[0] * nb, cuda.gridsize(1)):
        q, j = t // nb, t % nb
        k = qkeys[q, j]
        u = _top(k, d)
        hi = int64(directory[j, u + 1])
        a = _search(skeys, j, int64(directory[j, u]), hi, k, False)
        c = _search(skeys, j, a, hi, k, True) - a
        if qvalid[q] == 0:
            c = 0
        pos[t] = a
        cnt[t] = c


@D.kernel
def _k_gather(srows, mask, pos, off, nb, total, out):
    """Candidate t of a lookup: (query << 32 | row), or _NONE when the mask excludes the row."""
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        i = _owner(off, 0, off.shape[0], t)
        q = i // nb
        row = srows[i - q * nb, pos[i] + (t - off[i])]
        v = _NONE
        if mask[row] != 0:
            v = _pack(q, row)
        out[t] = v


@D.kernel
def _k_scan_count(keys, mask, qkeys, qvalid, cnt):
    """cnt[q * tiles + tile]: rows of the tile (mask True) sharing a band key with query q."""
    m = keys.shape[0]
    tiles = (m + _TILE - 1) // _TILE
    for t in range(cuda.grid(1), qkeys.shape[0] * tiles, cuda.gridsize(1)):
        q, r0 = t // tiles, (t % tiles) * _TILE
        c = 0
        if qvalid[q] != 0:
            for row in range(r0, min(m, r0 + _TILE)):
                if mask[row] != 0 and _hits(keys, row, qkeys, q):
                    c += 1
        cnt[t] = c


@D.kernel
def _k_scan_fill(keys, mask, qkeys, qvalid, off, row0, out):
    """The hits counted by :func:`_k_scan_count`, packed (q << 32 | row0 + row), rows ascending."""
    m = keys.shape[0]
    tiles = (m + _TILE - 1) // _TILE
    for t in range(cuda.grid(1), qkeys.shape[0] * tiles, cuda.gridsize(1)):
        q, r0 = t // tiles, (t % tiles) * _TILE
        w = off[t]
        if qvalid[q] != 0:
            for row in range(r0, min(m, r0 + _TILE)):
                if mask[row] != 0 and _hits(keys, row, qkeys, q):
                    out[w] = _pack(q, row0 + row)
                    w += 1


@D.kernel
def _k_emit_pairs(rows, perm, off, e0, e1, t0, n, base, out):
    """Pairs t0 .. t0 + n - 1 of a join piece. Element perm[i] (position p of a run) owns the
    pairs off[i] .. off[i + 1] - 1, with the positions p + 1, p + 2, ... of its run."""
    for s in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = t0 + s
        i = _owner(off, e0, e1, t)
        p = perm[i]
        out[base + s] = _pack(rows[p], rows[p + 1 + (t - off[i])])


@D.kernel
def _k_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib, out):
    """Exact Jaccard of sorted unique sets, one merge-intersection per thread."""
    for k in range(cuda.grid(1), ia.shape[0], cuda.gridsize(1)):
        p, pe = off_a[ia[k]], off_a[ia[k] + 1]
        q, qe = off_b[ib[k]], off_b[ib[k] + 1]
        union = (pe - p) + (qe - q)
        res = 0.0
        if pe > p and qe > q:
            inter = _intersection(hash_a, p, pe, hash_b, q, qe)
            res = float64(inter) / float64(union - inter)
        out[k] = res


@D.kernel
def _k_jaccard_sigs(sig_a, sig_b, ia, ib, out):
    """Equal positions / num_perm; 0.0 when either signature is all 0xFFFFFFFF."""
    k = sig_a.shape[1]
    for t in range(cuda.grid(1), ia.shape[0], cuda.gridsize(1)):
        a, b = ia[t], ib[t]
        eq, full_a, full_b = 0, 1, 1
        for j in range(k):
            x, y = sig_a[a, j], sig_b[b, j]
            if x == y:
                eq += 1
            if x != _FULL:
                full_a = 0
            if y != _FULL:
                full_b = 0
        res = 0.0
        if full_a == 0 and full_b == 0:
            res = float64(eq) / float64(k)
        out[t] = res


@D.kernel
def _k_hook(a, b, labels, changed):
    """For each edge whose ends have different labels, hook the larger label onto the smaller."""
    for t in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        la, lb = labels[a[t]], labels[b[t]]
        if la != lb:
            cuda.atomic.min(labels, max(la, lb), min(la, lb))
            changed[0] = 1


@D.kernel
def _k_jump(labels, changed):
    """One round of pointer jumping: labels[i] = labels[labels[i]]."""
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        up = labels[labels[i]]
        if up != labels[i]:
            labels[i] = up
            changed[0] = 1


# -- host helpers -----------------------------------------------------------------------------


def _on_stream(method):
    """Run a kernel method on the calling thread's stream: every CuPy allocation, fill, sort and
    scan in it is then ordered with its copies and launches."""

    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with D.on_stream():
            return method(*args, **kwargs)

    return wrapped


def _budget() -> int:
    return int(D.free_bytes() * _USE)


def _launch(kern, items: int, *args) -> None:
    if items > 0:
        block = D.block_for(_BLOCK)
        D.launch(kern, D.grid_for(items, block), block, *args)


def _c(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _mask(a) -> np.ndarray:
    """A bool array as uint8 (what the kernels read)."""
    return _c(a, np.bool_).view(np.uint8)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _weighted_chunks(weights: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Consecutive ranges whose weights sum to at most ``cap`` (or hold a single item)."""
    cw = np.cumsum(weights, dtype=np.int64)
    out, lo = [], 0
    while lo < cw.shape[0]:
        base = int(cw[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cw, base + cap, side="right")))
        out.append((lo, hi))
        lo = hi
    return out


def _fit(what: str, need: int, budget: int) -> None:
    """Raise ResourceExhaustedError when the smallest piece of the plan exceeds its budget."""
    if need > budget:
        raise ResourceExhaustedError(f"{what}: the smallest piece needs {need} bytes of device memory and the "
                                     f"plan has {budget}. Use a smaller input or backend='numba'.")


def _unless_oom(build: Callable[[], object]):
    """``build()``, or None when it runs out of device memory."""
    try:
        return build()
    except Exception as exc:
        if not D.is_oom(exc):
            raise
        D.release_cached()
        return None


def _whole(what: str, build: Callable[[], object]):
    """``build()`` for something that cannot be split (out of memory: ResourceExhaustedError)."""
    return D.split_on_oom(lambda lo, hi: build(), 0, 1, what)[0]


def _check_ids(ids: np.ndarray, n: int, name: str) -> None:
    if ids.shape[0] and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise InvalidArgumentError(f"{name} must index [0, {n}); got values in [{ids.min()}, {ids.max()}].")


def _scalar(dev) -> int:
    return int(D.to_host(dev)[0])


def _exclusive(cnt) -> tuple[object, int]:
    """Exclusive prefix sums of a device int64 vector, and its total."""
    inc = xp.cumsum(cnt)
    return inc - cnt, (_scalar(inc[-1:]) if inc.shape[0] else 0)


def _sort_unique(x):
    """Sorted unique values of a device uint64 vector, without _NONE."""
    s = xp.sort(x)
    keep = xp.empty(s.shape[0], dtype=np.bool_)
    keep[:1] = s[:1] != _NONE
    keep[1:] = (s[1:] != s[:-1]) & (s[1:] != _NONE)
    return s[keep]


class _Pieces:
    """An input cut into pieces along one axis by a memory plan of ``size`` items a piece. A
    single piece is built (uploaded) once and kept; several are built again on every pass, at
    most two at a time (the next is built while the last is still referenced), so they get half
    the size each. A single planned piece that does not fit is cut in four."""

    def __init__(self, n: int, size: int, build: Callable[[int, int], object], what: str) -> None:
        self.ranges = _chunks(n, size)
        if len(self.ranges) > 1:
            self.ranges = _chunks(n, max(1, int(size)) // 2)
        self.size = self.ranges[0][1] - self.ranges[0][0]
        self._build = build
        self._kept = None
        if len(self.ranges) == 1:
            self._kept = _whole(what, lambda: build(0, n)) if n == 1 else _unless_oom(lambda: build(0, n))
            if self._kept is None:  # pieces of a quarter: two halves may be alive at once
                self.ranges = _chunks(n, (n + 3) // 4)
                self.size = self.ranges[0][1]

    def __iter__(self) -> Iterator[tuple[tuple[int, int], object]]:
        if self._kept is not None:
            yield self.ranges[0], self._kept
            return
        for lo, hi in self.ranges:
            yield (lo, hi), self._build(lo, hi)


def _candidates(nq: int, group: int, cap: int, pieces: _Pieces, count, sort: bool, what: str):
    """CSR (offsets, rows) of the candidates of ``nq`` queries, in groups of queries, from the
    pieces of a table. ``count(lo, hi, span, piece)`` launches the counting pass of queries
    [lo, hi) and returns the device counts per work item and ``fill(off, n, buf)``, which writes
    the packed (query << 32 | row) candidates of those items at their offsets. A group with more
    than ``cap`` candidates is halved; ``sort``: candidates need a sort-unique (they always do
    when they come from several pieces)."""

    def gather(lo, hi):  # the device buffers of packed candidates, or None beyond the plan
        parts, total = [], 0
        for span, piece in pieces:
            cnt, fill = count(lo, hi, span, piece)
            off, n = _exclusive(cnt)
            total += n
            if total > cap and hi - lo > 1:
                return None
            if n:
                parts.append(D.empty(n, np.uint64))
                fill(off, n, parts[-1])
        return parts

    def run(lo, hi):
        parts = gather(lo, hi)
        if parts is None:  # more candidates than planned: halve the group
            mid = (lo + hi) // 2
            return run(lo, mid) + run(mid, hi)
        if not parts:
            return [(np.zeros(hi - lo, np.int64), np.empty(0, np.int64))]
        packed = parts[0] if len(parts) == 1 else xp.concatenate(parts)
        if sort or len(parts) > 1:
            packed = _sort_unique(packed)
        q = (packed >> _S32).astype(np.int64)
        bounds = xp.searchsorted(q, xp.arange(hi - lo + 1, dtype=np.int64), side="left")
        return [(D.to_host(bounds[1:] - bounds[:-1]), D.to_host((packed & _M32).astype(np.int64)))]

    parts = []
    for lo, hi in _chunks(nq, group):
        for res in D.split_on_oom(run, lo, hi, what):
            parts.extend(res)
    offsets = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.concatenate([c for c, _ in parts]), out=offsets[1:])
    return offsets, np.concatenate([r for _, r in parts])


# -- the mixin --------------------------------------------------------------------------------


class CudaLSHKernels:
    """LSH kernels on the GPU; mixed into the GPU backend."""

    @_on_stream
    def band_keys(self, sigs, b, r):
        """uint64 (n, b) band keys of uint32 signatures (n, >= b*r); see :mod:`._numpy_lsh`."""
        b, r = int(b), int(r)
        sigs = np.asarray(sigs)
        if b < 0 or r < 0 or sigs.ndim != 2 or sigs.shape[1] < b * r:
            raise InvalidArgumentError(f"band_keys needs (n, >= b*r) signatures and b, r >= 0; got shape "
                                       f"{sigs.shape}, b={b}, r={r}.")
        n = sigs.shape[0]
        out = np.empty((n, b), dtype=np.uint64)
        if n == 0 or b == 0:
            return out
        sigs = _c(sigs[:, : b * r], np.uint32)

        def run(lo, hi):
            dsig, dout = D.to_device(sigs[lo:hi]), D.empty((hi - lo, b), np.uint64)
            _launch(_k_band_keys, (hi - lo) * b, dsig, b, r, dout)
            D.to_host(dout, out=out[lo:hi])

        for lo, hi in _chunks(n, _budget() // (4 * b * r + 8 * b)):
            D.split_on_oom(run, lo, hi, "band_keys")
        return out

    @_on_stream
    def bucket_sort(self, keys, valid):
        """Band table (skeys, srows, directory, d) over the rows where ``valid`` is True: per band
        a stable device sort of the keys (ties by row), then the directory of their top d bits."""
        keys = _c(keys, np.uint64)
        n, nb = keys.shape
        rows = np.flatnonzero(_c(valid, np.bool_)).astype(np.int64)
        m = rows.shape[0]
        d = bucket_bits(m)
        skeys = np.empty((nb, m), dtype=np.uint64)
        srows = np.empty((nb, m), dtype=np.int32)
        directory = np.empty((nb, (1 << d) + 1), dtype=np.int32)
        if nb == 0:
            return skeys, srows, directory, d
        budget = _budget() - 12 * m
        per_band = 8 * n + 60 * m + 4 * ((1 << d) + 1)  # keys, gathered, sorted, order, sort scratch
        _fit("bucket_sort", per_band, budget)
        drows = _whole("bucket_sort", lambda: D.to_device(rows))

        def run(j0, j1):  # writes bands j0..j1 of the outputs, all of them, or raises
            dk = D.to_device(keys if j1 - j0 == nb else keys[:, j0:j1])
            ddir = D.empty((j1 - j0, (1 << d) + 1), np.int32)
            sub = xp.ascontiguousarray(dk[drows].T)
            order = xp.argsort(sub, axis=1, kind="stable")
            sk = xp.take_along_axis(sub, order, axis=1)
            _launch(_k_directory, (j1 - j0) * (m + 1), sk, d, ddir)
            D.to_host(sk, out=skeys[j0:j1])
            D.to_host(drows.astype(np.int32)[order], out=srows[j0:j1])
            D.to_host(ddir, out=directory[j0:j1])

        for j0, j1 in _chunks(nb, budget // per_band):
            D.split_on_oom(run, j0, j1, "bucket_sort")
        return skeys, srows, directory, d

    @_on_stream
    def lookup(self, skeys, srows, directory, d, mask, qkeys, qvalid):
        """CSR (offsets, rows) of the table rows (mask True) sharing a band key with each valid
        query, rows ascending: per (query, band) a binary search in the directory's bucket gives
        a run of equal keys; count, scan, gather, and a device sort-unique per query group."""
        skeys, srows, directory, d = _c(skeys, np.uint64), _c(srows, np.int32), _c(directory, np.int32), int(d)
        qkeys, qvalid, mask = _c(qkeys, np.uint64), _mask(qvalid), _mask(mask)
        nb, m = skeys.shape
        nq = qkeys.shape[0]
        if qkeys.ndim != 2 or qkeys.shape[1] != nb or directory.shape != (nb, (1 << d) + 1):
            raise InvalidArgumentError(f"lookup: query keys {qkeys.shape} and directory {directory.shape} do "
                                       f"not match a table of {nb} bands with d={d}.")
        if nq == 0 or nb == 0 or m == 0:
            return np.zeros(nq + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
        budget = _budget() - mask.shape[0]
        per_band = 12 * m + 4 * ((1 << d) + 1)
        _fit("lookup", per_band, budget // 2)
        dmask = _whole("lookup", lambda: D.to_device(mask))

        def table(j0, j1):
            return D.to_device(skeys[j0:j1]), D.to_device(srows[j0:j1]), D.to_device(directory[j0:j1])

        def count(lo, hi, span, piece):
            (j0, j1), (sk, sr, ddir) = span, piece
            dq, dvalid = D.to_device(qkeys[lo:hi, j0:j1]), D.to_device(qvalid[lo:hi])
            items = (hi - lo) * (j1 - j0)
            pos, cnt = D.empty(items, np.int64), D.empty(items, np.int64)
            _launch(_k_probe, items, sk, ddir, d, dq, dvalid, pos, cnt)
            return cnt, lambda off, n, buf: _launch(_k_gather, n, sr, dmask, pos, off, j1 - j0, n, buf)

        bands = _Pieces(nb, budget // 2 // per_band, table, "lookup")
        rest = budget - per_band * bands.size
        group = rest // 2 // (_B_PROBE * bands.size + 16)
        return _candidates(nq, group, max(1, rest // 2 // _B_CAND), bands, count, True, "lookup")

    @_on_stream
    def scan(self, keys, mask, qkeys, qvalid):
        """:meth:`lookup` against an unsorted (m, b) key array: one thread per (query, tile of
        rows) counts its hits, a scan, and the same threads write them in row order."""
        keys, mask, qkeys, qvalid = _c(keys, np.uint64), _mask(mask), _c(qkeys, np.uint64), _mask(qvalid)
        m, nb = keys.shape
        nq = qkeys.shape[0]
        if qkeys.ndim != 2 or qkeys.shape[1] != nb:
            raise InvalidArgumentError(f"scan: query keys {qkeys.shape} do not match keys {keys.shape}.")
        if nq == 0 or m == 0 or nb == 0:
            return np.zeros(nq + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
        budget = _budget()
        per_tile = (8 * nb + 1) * _TILE
        _fit("scan", per_tile, budget // 2)

        def buffer(r0, r1):
            return D.to_device(keys[r0:r1]), D.to_device(mask[r0:r1])

        def count(lo, hi, span, piece):
            r0, r1 = span
            dq, dvalid = D.to_device(qkeys[lo:hi]), D.to_device(qvalid[lo:hi])
            items = (hi - lo) * -(-(r1 - r0) // _TILE)
            cnt = D.empty(items, np.int64)
            _launch(_k_scan_count, items, *piece, dq, dvalid, cnt)
            return cnt, lambda off, n, buf: _launch(_k_scan_fill, items, *piece, dq, dvalid, off, r0, buf)

        rows = _Pieces(m, budget // 2 // per_tile * _TILE, buffer, "scan")
        rest = budget - per_tile * -(-rows.size // _TILE)
        group = rest // 2 // (8 * nb + 16 + 16 * -(-rows.size // _TILE))
        return _candidates(nq, group, max(1, rest // 2 // _B_CAND), rows, count, False, "scan")

    @_on_stream
    def self_join(self, skeys, srows, mask):
        """Packed pairs (a << 32 | b) of rows (mask True) in one run of equal keys of a band,
        sorted unique; built in pieces of first rows, each within the plan's pair buffer."""
        skeys, srows, mask = _c(skeys, np.uint64), _c(srows, np.int32), _mask(mask)
        nb, m = skeys.shape
        n = mask.shape[0]
        if nb == 0 or m < 2:
            return np.empty(0, dtype=np.uint64)
        budget = _budget() - 25 * (n + 1)
        _fit("self_join", _B_JOIN * m, budget // 2)
        dmask = _whole("self_join", lambda: D.to_device(mask))
        ecum = _whole("self_join", lambda: D.zeros(n + 1, np.int64))

        def state(j0, j1):
            return _JoinState(skeys[j0:j1], srows[j0:j1], dmask)

        bands = _Pieces(nb, budget // 2 // (_B_JOIN * m), state, "self_join")
        _whole("self_join", lambda: [st.add_pair_counts(ecum) for _, st in bands])
        return _join_pieces(bands, ecum, n, max(1, (budget - _B_JOIN * m * bands.size) // _B_PAIR))

    @_on_stream
    def pair_jaccard_sets(self, off_a, hash_a, off_b, hash_b, ia, ib):
        """float64 exact Jaccard of the sorted unique sets A[ia[k]] and B[ib[k]] (0.0 when either
        is empty), one merge-intersection per thread."""
        same = off_a is off_b and hash_a is hash_b
        a = (_c(off_a, np.int64), _c(hash_a, np.uint64))
        b = a if same else (_c(off_b, np.int64), _c(hash_b, np.uint64))
        ia, ib = _c(ia, np.int64).reshape(-1), _c(ib, np.int64).reshape(-1)
        _check_ids(ia, a[0].shape[0] - 1, "ia")
        _check_ids(ib, b[0].shape[0] - 1, "ib")
        out = np.zeros(ia.shape[0], dtype=np.float64)
        if ia.shape[0]:
            _SetPairs(a, b, same, ia, ib).run(_k_jaccard_sets, out, "pair_jaccard_sets")
        return out

    @_on_stream
    def pair_jaccard_sigs(self, sig_a, sig_b, ia, ib):
        """float64 estimated Jaccard (equal positions / num_perm); 0.0 when either signature is
        all 0xFFFFFFFF."""
        same = sig_a is sig_b
        sig_a = _c(sig_a, np.uint32)
        sig_b = sig_a if same else _c(sig_b, np.uint32)
        ia, ib = _c(ia, np.int64).reshape(-1), _c(ib, np.int64).reshape(-1)
        if sig_a.ndim != 2 or sig_b.ndim != 2 or sig_a.shape[1] != sig_b.shape[1]:
            raise InvalidArgumentError(f"pair_jaccard_sigs needs signatures of one width; got {sig_a.shape} "
                                       f"and {sig_b.shape}.")
        _check_ids(ia, sig_a.shape[0], "ia")
        _check_ids(ib, sig_b.shape[0], "ib")
        out = np.zeros(ia.shape[0], dtype=np.float64)
        if ia.shape[0]:
            _SigPairs(sig_a, sig_b, same, ia, ib).run(_k_jaccard_sigs, out, "pair_jaccard_sigs")
        return out

    @_on_stream
    def connected_components(self, n, pairs):
        """int64 label of each of ``n`` nodes, the smallest node index in its component: hook
        labels with an atomic min over the edges, pointer-jump until stable, and repeat until no
        edge joins two labels. Every step keeps labels[i] <= i within i's component, so the
        fixed point is unique whatever order the threads run in."""
        n = int(n)
        pairs = _c(pairs, np.int64).reshape(-1, 2)
        if pairs.shape[0] == 0:
            return np.arange(n, dtype=np.int64)
        _check_ids(pairs.reshape(-1), n, "pairs")
        budget = _budget()
        _fit("connected_components", 8 * n + 16, budget)
        labels = _whole("connected_components", lambda: D.to_device(np.arange(n, dtype=np.int64)))
        changed = D.zeros(1, np.int32)

        def upload(lo, hi):
            return D.to_device(pairs[lo:hi, 0]), D.to_device(pairs[lo:hi, 1])

        edges = _Pieces(pairs.shape[0], (budget - 8 * n) // 16, upload, "connected_components")
        while True:
            changed[...] = 0
            for _, (a, b) in edges:
                _launch(_k_hook, a.shape[0], a, b, labels, changed)
            if _scalar(changed) == 0:
                return D.to_host(labels)
            while True:
                changed[...] = 0
                _launch(_k_jump, n, labels, changed)
                if _scalar(changed) == 0:
                    break


# -- self-join internals ----------------------------------------------------------------------


class _JoinState:
    """Bands of a band table on the device, as the elements (band, position) whose row the mask
    keeps. ``rows`` are in table order; ``perm`` orders the elements by row and ``off`` holds, in
    that order, the exclusive prefix sums of each element's pair count (the kept elements after
    it in its run), so the pairs whose first row is in [lo, hi) are one range of pair numbers."""

    def __init__(self, skeys, srows, dmask) -> None:
        sk, sr = D.to_device(skeys), D.to_device(srows)
        idx = xp.flatnonzero(dmask[sr].reshape(-1))
        keys, band = sk.reshape(-1)[idx], idx // sk.shape[1]
        self.rows = sr.reshape(-1)[idx].astype(np.int64)
        size = self.rows.shape[0]
        start = xp.empty(size, dtype=np.bool_)  # a run of equal keys of one band starts here
        start[:1] = True
        start[1:] = (keys[1:] != keys[:-1]) | (band[1:] != band[:-1])
        first = xp.flatnonzero(start)
        end = xp.empty(first.shape[0], dtype=np.int64)
        end[:-1] = first[1:]
        end[-1:] = size
        count = end[xp.cumsum(start) - 1] - xp.arange(size, dtype=np.int64) - 1
        self.perm = xp.argsort(self.rows, kind="stable")
        self.sorted_rows = self.rows[self.perm]
        self.off = xp.zeros(size + 1, dtype=np.int64)
        self.off[1:] = xp.cumsum(count[self.perm])

    def add_pair_counts(self, ecum) -> None:
        """ecum[a] += the pairs of these bands whose first row is below a."""
        at = xp.searchsorted(self.sorted_rows, xp.arange(ecum.shape[0], dtype=np.int64), side="left")
        ecum += self.off[at]

    def span(self, lo: int, hi: int) -> tuple[int, int, int, int]:
        """(e0, e1, t0, t1): the elements (in row order) whose row is in [lo, hi), and their pairs."""
        e = xp.searchsorted(self.sorted_rows, D.to_device(np.array([lo, hi], dtype=np.int64)), side="left")
        e0, e1, t0, t1 = D.to_host(xp.concatenate([e, self.off[e]])).tolist()
        return e0, e1, t0, t1


def _join_pieces(bands: _Pieces, ecum, n: int, cap: int) -> np.ndarray:
    """The sorted unique packed pairs, built in pieces of first rows [a0, a1) with at most
    ``cap`` pairs each (one first row may have more) and concatenated: pieces never overlap."""
    total = _scalar(ecum[n:])
    out, a0 = [], 0
    while a0 < n and total:
        a1 = _scalar(xp.searchsorted(ecum, ecum[a0 : a0 + 1] + cap, side="right")) - 1
        a1 = min(n, max(a1, a0 + 1))
        out.extend(D.split_on_oom(lambda lo, hi: _join_piece(bands, ecum, lo, hi), a0, a1, "self_join"))
        a0 = a1
    return np.concatenate(out) if out else np.empty(0, dtype=np.uint64)


def _join_piece(bands: _Pieces, ecum, lo: int, hi: int) -> np.ndarray:
    """Sorted unique packed pairs whose first row is in [lo, hi): emit, sort, deduplicate."""
    lim = D.to_host(xp.concatenate([ecum[lo : lo + 1], ecum[hi : hi + 1]]))
    total = int(lim[1] - lim[0])
    if total == 0:
        return np.empty(0, dtype=np.uint64)
    buf = D.empty(total, np.uint64)
    base = 0
    for _, st in bands:
        e0, e1, t0, t1 = st.span(lo, hi)
        _launch(_k_emit_pairs, t1 - t0, st.rows, st.perm, st.off, e0, e1, t0, t1 - t0, base, buf)
        base += t1 - t0
    return D.to_host(_sort_unique(buf))


# -- pair-kernel internals --------------------------------------------------------------------


def _renumber(ia, ib, same: bool):
    """(ids of A, ids of B, local ia, local ib): the rows a chunk of pairs reads, renumbered."""
    if same:
        ids, inv = np.unique(np.concatenate([ia, ib]), return_inverse=True)
        return ids, ids, inv[: ia.shape[0]], inv[ia.shape[0] :]
    ua, la = np.unique(ia, return_inverse=True)
    ub, lb = np.unique(ib, return_inverse=True)
    return ua, ub, la, lb


class _PairInputs:
    """The inputs of a one-thread-per-pair kernel: uploaded whole once when they fit half the
    plan (and the device), else uploaded per chunk of pairs, only the rows or sets it reads."""

    def __init__(self, a, b, same: bool, ia, ib) -> None:
        self.a, self.b, self.same, self.ia, self.ib = a, b, same, ia, ib
        budget = _budget() // 2
        self.whole = _unless_oom(lambda: self.upload(a, b)) if self.nbytes() <= budget else None
        if self.whole is not None:
            self.chunks = _chunks(ia.shape[0], budget // 24)
        else:
            self.chunks = _weighted_chunks(self.weights(), budget)

    def run(self, kern, out: np.ndarray, what: str) -> None:
        """``kern(*inputs, ia, ib, out)`` over the chunks of pairs, into the host array ``out``."""

        def chunk(lo, hi):
            args, la, lb = self.prepare(lo, hi)
            dia, dib, dout = D.to_device(la), D.to_device(lb), D.empty(hi - lo, np.float64)
            _launch(kern, hi - lo, *args, dia, dib, dout)
            D.to_host(dout, out=out[lo:hi])

        for lo, hi in self.chunks:
            D.split_on_oom(chunk, lo, hi, what)

    def upload(self, a, b) -> tuple:
        da = self.to_device(a)
        return da + (da if self.same else self.to_device(b))

    def prepare(self, lo: int, hi: int):
        ia, ib = self.ia[lo:hi], self.ib[lo:hi]
        if self.whole is not None:
            return self.whole, ia, ib
        ua, ub, la, lb = _renumber(ia, ib, self.same)
        sub_a = self.subset(self.a, ua)
        return self.upload(sub_a, sub_a if self.same else self.subset(self.b, ub)), la, lb


class _SetPairs(_PairInputs):
    """CSR sets (offsets, hashes) of A and B."""

    def nbytes(self) -> int:
        return sum(x.nbytes for x in (self.a if self.same else self.a + self.b))

    def weights(self) -> np.ndarray:
        (oa, _), (ob, _) = self.a, self.b
        return 8 * ((oa[self.ia + 1] - oa[self.ia]) + (ob[self.ib + 1] - ob[self.ib])) + 40

    @staticmethod
    def to_device(x) -> tuple:
        return D.to_device(x[0]), D.to_device(x[1])

    @staticmethod
    def subset(x, ids):
        """The sets ``ids`` of CSR x, renumbered 0..len(ids)-1."""
        off, hashes = x
        sizes = off[ids + 1] - off[ids]
        sub = np.zeros(ids.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=sub[1:])
        return sub, hashes[ranges(off[ids], sizes)]


class _SigPairs(_PairInputs):
    """Signature matrices of A and B."""

    def nbytes(self) -> int:
        return self.a.nbytes + (0 if self.same else self.b.nbytes)

    def weights(self) -> np.ndarray:
        return np.full(self.ia.shape[0], 8 * self.a.shape[1] + 40, dtype=np.int64)

    @staticmethod
    def to_device(x) -> tuple:
        return (D.to_device(x),)

    @staticmethod
    def subset(x, ids):
        return x[ids]
