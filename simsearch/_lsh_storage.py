"""Storage of :class:`simsearch.LSHIndex`: sealed segments (sorted runs) plus one small append buffer.

Layout, per document of a segment (``P`` = num_perm, ``b`` = bands)::

    ids        int64   (m,)        sorted ascending; a segment never holds an id twice
    sigs       uint32  (m, P)      the signatures, row i belongs to ids[i]
    alive      bool    (m,)        False once removed (the row is dropped at the next rebuild)
    skeys      uint64  (b, m')     per band, the band keys sorted ascending (m' = non-empty rows)
    srows      int32   (b, m')     the row of each key
    directory  int32   (b, 2**d+1) start of each top-d-bits bucket, 4-8 keys per bucket

so a stored document costs ``4*P + 9 + 12*b`` bytes plus at most ``b`` bytes of directory: less
than ``4*P + 16*b`` for every b >= 3. Documents whose signature is empty (all 0xFFFFFFFF) are
stored (so they can be removed) but have no band keys and are never anyone's candidate. Optional
shingle sets are kept per segment in CSR form (offsets int64, sorted unique uint64 hashes).

The buffer holds up to ``buffer_size`` recent inserts unsorted (their band keys are compared by
a linear scan); when full it is sealed into a segment. Segments are merged so that each is at
least twice the size of the next newer one (O(log n) segments, each row rewritten O(log n) times),
and a segment is rebuilt without its removed rows once a quarter of them are dead.
"""

from __future__ import annotations

import numpy as np

from ._arrays import concat_csr, gather_csr, offsets_from_sizes

__all__ = ["Segment", "Buffer", "GrowingArray", "build_segment", "merge_segments", "nonempty"]

_FULL = np.uint32(0xFFFFFFFF)


def nonempty(sigs: np.ndarray) -> np.ndarray:
    """False for the rows that are the empty signature (all 0xFFFFFFFF); cheap on big batches."""
    out = np.ones(sigs.shape[0], dtype=bool)
    maybe = np.flatnonzero(sigs[:, 0] == _FULL)
    if maybe.shape[0]:
        out[maybe] = ~(sigs[maybe] == _FULL).all(axis=1)
    return out


class Segment:
    """An immutable sorted run of documents (only ``alive`` changes, on removal)."""

    __slots__ = ("ids", "sigs", "alive", "table", "shingle_offsets", "shingle_hashes", "n_dead")

    def __init__(self, ids, sigs, table, shingle_offsets=None, shingle_hashes=None):
        self.ids = ids
        self.sigs = sigs
        self.alive = np.ones(ids.shape[0], dtype=bool)
        self.table = table  # (skeys, srows, directory, d)
        self.shingle_offsets = shingle_offsets
        self.shingle_hashes = shingle_hashes
        self.n_dead = 0

    def __len__(self) -> int:
        return self.ids.shape[0]

    def locate(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id among this segment's alive rows, or -1."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, max(len(self) - 1, 0))
        if len(self) == 0:
            return np.full(ids.shape[0], -1, dtype=np.int64)
        hit = (self.ids[pos] == ids) & self.alive[pos]
        return np.where(hit, pos, -1).astype(np.int64)

    def band_keys_by_row(self) -> tuple[np.ndarray, np.ndarray]:
        """(m, b) band keys scattered back to rows, and which rows have keys (non-empty)."""
        skeys, srows = self.table[0], self.table[1]
        nb = skeys.shape[0]
        keys = np.zeros((len(self), nb), dtype=np.uint64)
        has = np.zeros(len(self), dtype=bool)
        for j in range(nb):
            keys[srows[j], j] = skeys[j]
        if nb:
            has[srows[0]] = True
        return keys, has

    def nbytes(self, shingles: bool = False) -> dict[str, int]:
        out = {
            "ids": self.ids.nbytes,
            "signatures": self.sigs.nbytes,
            "alive": self.alive.nbytes,
            "band_keys": self.table[0].nbytes,
            "band_rows": self.table[1].nbytes,
            "directory": self.table[2].nbytes,
        }
        if shingles and self.shingle_hashes is not None:
            out["shingles"] = self.shingle_offsets.nbytes + self.shingle_hashes.nbytes
        return out


def build_segment(backend, ids, sigs, keys, indexable, shingle_offsets=None, shingle_hashes=None,
                  copy: bool = False) -> Segment:
    """Seal rows into a segment: order them by id, then build the band tables.

    Rows already in id order are kept as they are (copied when ``copy``: the caller owns them).
    """
    if ids.shape[0] < 2 or (ids[1:] > ids[:-1]).all():
        if copy:
            ids, sigs = ids.copy(), sigs.copy()
            if shingle_offsets is not None:
                shingle_offsets, shingle_hashes = gather_csr(
                    shingle_offsets, shingle_hashes, np.arange(ids.shape[0]))
    else:
        order = np.argsort(ids, kind="stable")
        ids, sigs, keys, indexable = ids[order], sigs[order], keys[order], indexable[order]
        if shingle_offsets is not None:
            shingle_offsets, shingle_hashes = gather_csr(shingle_offsets, shingle_hashes, order)
    table = backend.bucket_sort(keys, indexable)
    return Segment(np.ascontiguousarray(ids), np.ascontiguousarray(sigs), table, shingle_offsets, shingle_hashes)


def merge_segments(backend, segments: list[Segment]) -> Segment:
    """One segment holding the alive rows of ``segments`` (removed rows are dropped)."""
    ids, sigs, keys, has, offs, hashes = [], [], [], [], [], []
    store = segments[0].shingle_hashes is not None
    for seg in segments:
        rows = np.flatnonzero(seg.alive)
        k, h = seg.band_keys_by_row()
        ids.append(seg.ids[rows])
        sigs.append(seg.sigs[rows])
        keys.append(k[rows])
        has.append(h[rows])
        if store:
            o, hs = gather_csr(seg.shingle_offsets, seg.shingle_hashes, rows)
            offs.append(o)
            hashes.append(hs)
    off = hash_ = None
    if store:
        off, hash_ = concat_csr(offs, hashes)
    return build_segment(
        backend, np.concatenate(ids), np.concatenate(sigs), np.concatenate(keys), np.concatenate(has), off, hash_
    )


class GrowingArray:
    """An append-only array with amortised doubling along axis 0; slots past ``n`` hold ``fill``
    (uninitialised when None)."""

    def __init__(self, dtype, width: int | None = None, fill=None):
        self.width = width
        self.n = 0
        self.fill = fill
        self.data = self._alloc((16,) if width is None else (16, width), dtype)

    def _alloc(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype) if self.fill is None else np.full(shape, self.fill, dtype=dtype)

    def append(self, values: np.ndarray) -> None:
        need = self.n + values.shape[0]
        if need > self.data.shape[0]:
            cap = max(need, 2 * self.data.shape[0])
            new = self._alloc((cap,) + self.data.shape[1:], self.data.dtype)
            new[: self.n] = self.data[: self.n]
            self.data = new
        self.data[self.n : need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.n]


class Buffer:
    """Recent inserts, unsorted; ids map to rows through a small dict (bounded by buffer_size)."""

    def __init__(self, num_perm: int, b: int, store_shingles: bool):
        self.ids = GrowingArray(np.int64)
        self.sigs = GrowingArray(np.uint32, num_perm)
        self.keys = GrowingArray(np.uint64, b)
        self.live = GrowingArray(np.bool_)  # alive and non-empty: what a query may return
        self.alive = GrowingArray(np.bool_)
        self.store_shingles = store_shingles
        self.sh_sizes = GrowingArray(np.int64)
        self.sh_hashes = GrowingArray(np.uint64)
        self.row_of: dict[int, int] = {}

    def __len__(self) -> int:
        return self.ids.n

    def append(self, ids, sigs, keys, indexable, shingle_offsets=None, shingle_hashes=None) -> None:
        base = self.ids.n
        self.ids.append(ids)
        self.sigs.append(sigs)
        self.keys.append(keys)
        self.live.append(indexable)
        self.alive.append(np.ones(ids.shape[0], dtype=bool))
        if self.store_shingles:
            self.sh_sizes.append(np.diff(shingle_offsets))
            self.sh_hashes.append(shingle_hashes[shingle_offsets[0] : shingle_offsets[-1]])
        self.row_of.update(zip(ids.tolist(), range(base, base + ids.shape[0])))

    def locate(self, ids: np.ndarray) -> np.ndarray:
        get = self.row_of.get
        return np.fromiter((get(i, -1) for i in ids.tolist()), dtype=np.int64, count=ids.shape[0])

    def kill(self, rows: np.ndarray) -> None:
        self.alive.data[rows] = False
        self.live.data[rows] = False
        for i in self.ids.data[rows].tolist():
            self.row_of.pop(i, None)

    def shingle_csr(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        if not self.store_shingles:
            return None, None
        return offsets_from_sizes(self.sh_sizes.view), self.sh_hashes.view

    def take_alive(self):
        """The alive rows as arrays (ids, sigs, keys, indexable, shingle_offsets, shingle_hashes)."""
        rows = np.flatnonzero(self.alive.view)
        off, hashes = self.shingle_csr()
        if off is not None:
            off, hashes = gather_csr(off, hashes, rows)
        return self.ids.view[rows], self.sigs.view[rows], self.keys.view[rows], self.live.view[rows], off, hashes

    def nbytes(self) -> int:
        grows = (self.ids, self.sigs, self.keys, self.live, self.alive, self.sh_sizes, self.sh_hashes)
        return sum(g.data.nbytes for g in grows) + 100 * len(self.row_of)
