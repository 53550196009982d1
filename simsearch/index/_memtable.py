"""The memtable: a collection's writes since its last flushed segment, in memory.

Rows arrive in rowid order (rowids only grow), so a rowid is found by ``searchsorted``; external
ids by a dict of the alive rows. Band keys are computed once, on insert, and queries scan them
linearly (the memtable is small: :data:`simsearch.index._engine.MEMTABLE_ROWS`). When it passes
that size it becomes a segment (:func:`simsearch.index._segments.write_segment`).
"""

from __future__ import annotations

import numpy as np

from .._lsh_storage import GrowingArray
from ._segments import SegmentData


class Memtable:
    """Recent rows: rowids, ids, labels, signatures, band keys, vectors (NaN rows: none), alive."""

    def __init__(self, num_perm: int, b: int, dim: int | None):
        self.dim = dim
        self._rowids = GrowingArray(np.int64, fill=0)
        self._sigs = GrowingArray(np.uint32, num_perm, fill=0)
        self._keys = GrowingArray(np.uint64, b, fill=0)
        self._indexable = GrowingArray(np.bool_, fill=False)
        self._alive = GrowingArray(np.bool_, fill=False)
        self._vecs = GrowingArray(np.float32, dim, np.nan) if dim else None
        self.ext: list[str] = []
        self.lab: list[str | None] = []
        self.by_ext: dict[str, int] = {}
        self.n_dead = 0

    def __len__(self) -> int:
        return self._rowids.n

    @property
    def live(self) -> int:
        return len(self) - self.n_dead

    @property
    def rowids(self) -> np.ndarray:
        return self._rowids.view

    @property
    def sigs(self) -> np.ndarray:
        return self._sigs.view

    @property
    def keys(self) -> np.ndarray:
        return self._keys.view

    @property
    def alive(self) -> np.ndarray:
        return self._alive.view

    def lsh_mask(self) -> np.ndarray:
        """Rows a near-duplicate query may return: alive, with a non-empty signature."""
        return self._alive.view & self._indexable.view

    @property
    def vecs(self) -> np.ndarray | None:
        return None if self._vecs is None else self._vecs.view

    def append(self, rowids, ext_ids, labels, sigs, keys, indexable, vecs) -> None:
        base = len(self)
        self._rowids.append(np.asarray(rowids, np.int64))
        self._sigs.append(sigs)
        self._keys.append(keys)
        self._indexable.append(indexable)
        self._alive.append(np.ones(len(rowids), bool))
        if self._vecs is not None:
            self._vecs.append(vecs)
        self.ext.extend(ext_ids)
        self.lab.extend(labels)
        self.by_ext.update(zip(ext_ids, range(base, base + len(ext_ids))))

    def locate_rowids(self, rowids: np.ndarray) -> np.ndarray:
        n = len(self)
        if not n:
            return np.full(len(rowids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.rowids, rowids), n - 1)
        hit = (self.rowids[pos] == rowids) & self.alive[pos]
        return np.where(hit, pos, -1).astype(np.int64)

    def locate_ext(self, ids: list[str], hashes=None) -> np.ndarray:
        get = self.by_ext.get
        return np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))

    def ext_ids(self, rows) -> list[str]:
        return [self.ext[r] for r in np.asarray(rows).tolist()]

    def labels(self, rows) -> list[str | None]:
        return [self.lab[r] for r in np.asarray(rows).tolist()]

    def kill(self, rows: np.ndarray) -> None:
        rows = rows[self._alive.data[rows]]
        self._alive.data[rows] = False
        for r in rows.tolist():
            self.by_ext.pop(self.ext[r], None)
        self.n_dead += len(rows)

    def vector_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, vectors) of the alive rows that have a vector (a small copy)."""
        v = self.vecs
        rows = np.flatnonzero(self.alive & ~np.isnan(v[:, 0]))
        return rows, v[rows]

    def to_segment_data(self) -> SegmentData:
        """The alive rows, for a flush."""
        rows = np.flatnonzero(self.alive)
        pl = rows.tolist()
        return SegmentData.from_rows(
            self.rowids[rows], [self.ext[r] for r in pl], [self.lab[r] for r in pl], self.sigs[rows],
            self.keys[rows], self._indexable.view[rows], None if self._vecs is None else self.vecs[rows],
        )

    def nbytes(self) -> int:
        grows = [self._rowids, self._sigs, self._keys, self._indexable, self._alive] + (
            [self._vecs] if self._vecs is not None else [])
        return sum(g.data.nbytes for g in grows) + 150 * len(self.by_ext)
