"""A collection's kNN through :mod:`simsearch.index._ann`: the approximate index, kept current.

Until the segment engine gives every segment its own ANN block, a collection keeps one
:class:`~simsearch.index._ann.AnnBlock` over all its vectors, persisted next to the SQLite file
(``ann/c<cid>.ann`` and ``.faiss``) and reopened memory-mapped, not rebuilt. It stays current
this way, using the fact that rowids only grow and a document's vector never changes under its
rowid (an upsert writes a new rowid):

- a deleted or replaced row becomes a tombstone: a 0 in the block's live bitmap, which every
  search passes to faiss as its ID selector;
- new rows are *pending*: searched by an exact scan while there are at most
  :data:`PENDING_SCAN_MAX` of them, then added to the block's faiss structure (HNSW and IVF both
  grow incrementally) at the next query;
- the block is rebuilt from the live vectors when tombstones pass a quarter of it, when an
  ``auto`` collection crosses 20,000 vectors, when an IVF has grown four times past its training
  size, or when the file on disk does not match the database (another database's uuid, a row
  that is live but older than the block's newest, a sampled vector that differs). The block is
  saved after a rebuild and on :meth:`Index.close`; after a crash the file covers fewer rows, and
  the rows after it are pending again.

Below the ``auto`` threshold, with ``vector_index="flat"`` and for ``exact=True``, queries are an
exact scan (the collection's flat :class:`~simsearch.VectorIndex`, or the allowed rows' vectors
when filtered).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable

import numpy as np

from ..distance import knn
from ..errors import SimsearchError
from ._ann import AnnBlock, AnnParams, resolve_kind
from ._filtering import RowSet
from ._types import CollectionConfig, QueryStats

log = logging.getLogger("simsearch.index")

__all__ = ["PENDING_SCAN_MAX", "CollectionVectors", "ann_stem"]

PENDING_SCAN_MAX = 1024  # new vectors answered by an exact scan before they join the ANN structure
_TOMBSTONES = 0.25  # rebuild when this share of the block is deleted
_SAMPLE = 256  # stored vectors compared with the database's on open

VectorsOf = Callable[[np.ndarray], np.ndarray]  # rowids -> their vectors (float32, NaN rows: none)


def ann_stem(index_path: str, cid: int) -> str:
    return os.path.join(index_path, "ann", f"c{cid}")


def _merge(d1, r1, d2, r2, k):
    d = np.concatenate([d1, d2], axis=1)
    r = np.concatenate([r1, r2], axis=1)
    key = np.where(r >= 0, r, np.iinfo(np.int64).max)
    order = np.lexsort((key, d), axis=-1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(r, order, axis=1)


class CollectionVectors:
    """The approximate index of one collection's vectors (see the module docstring)."""

    def __init__(self, cfg: CollectionConfig, stem: str | None, identity: dict, backend) -> None:
        self.metric = cfg.metric
        self.dim = cfg.dim
        self.kind_opt = cfg.vector_index
        self.params = AnnParams(hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction, ef_search=cfg.ef_search,
                                nlist=cfg.nlist, nprobe=cfg.nprobe, seed=cfg.seed)
        self.stem = stem
        self.identity = {**identity, "metric": cfg.metric, "dim": cfg.dim, "vector_index": cfg.vector_index,
                         "params": self.params.__dict__}
        self.backend = backend
        self._block: AnnBlock | None = None
        self._live: np.ndarray | None = None  # over the block's positions
        self._pending = np.empty(0, np.int64)  # live rows with a vector that the block lacks, ascending
        self._trained = 0
        self._saved = True
        self._mutex = threading.Lock()
        self._allow_cache: tuple | None = None

    # -- state ---------------------------------------------------------------------------------
    def load(self, rowids: np.ndarray, vectors_of: VectorsOf) -> None:
        """Start from the live rows with a vector (ascending): the saved block where it matches
        the database, the rest pending."""
        rowids = np.asarray(rowids, dtype=np.int64)
        self._block, self._live, self._pending = None, None, rowids.copy()
        if self.stem is None or not os.path.exists(self.stem + ".ann"):
            return
        try:
            block = AnnBlock.open(self.stem)
        except SimsearchError as exc:
            log.warning("ANN block %s is unusable (%s); it will be rebuilt", self.stem, exc)
            return
        if json.dumps(block.extra.get("identity"), sort_keys=True) != json.dumps(self.identity, sort_keys=True):
            return
        pos = np.searchsorted(rowids, block.rows)
        inside = pos < len(rowids)
        live = np.zeros(len(block), dtype=bool)
        live[inside] = rowids[pos[inside]] == block.rows[inside]
        newer = rowids > (block.rows[-1] if len(block) else -1)
        if np.count_nonzero(live) + np.count_nonzero(newer) != len(rowids):
            return  # a live row the block should hold but does not: not this database's block
        check = np.flatnonzero(live)
        if len(check) > 2 * _SAMPLE:
            pick = np.random.default_rng(0).choice(len(check) - _SAMPLE, _SAMPLE, replace=False)
            check = np.concatenate([check[pick], check[-_SAMPLE:]])  # the newest rows are the likeliest reused
        if len(check) and not np.array_equal(block.vectors[check], vectors_of(block.rows[check])):
            return
        self._block, self._live, self._pending = block, live, rowids[newer]
        self._trained = int(block.extra.get("trained", len(block)))

    def added(self, rowids: np.ndarray) -> None:
        """Rows just written that have a vector (ascending, above every row held)."""
        if len(rowids):
            self._pending = np.concatenate([self._pending, np.asarray(rowids, dtype=np.int64)])

    def removed(self, rowids: np.ndarray) -> None:
        rowids = np.asarray(rowids, dtype=np.int64)
        if not len(rowids):
            return
        self._pending = self._pending[~np.isin(self._pending, rowids)]
        if self._block is not None and len(self._block):
            pos = np.searchsorted(self._block.rows, rowids)
            ok = pos < len(self._block)
            ok[ok] = self._block.rows[pos[ok]] == rowids[ok]
            self._live[pos[ok]] = False

    @property
    def count(self) -> int:
        live = 0 if self._live is None else int(np.count_nonzero(self._live))
        return live + len(self._pending)

    def kind(self) -> str:
        return resolve_kind(self.kind_opt, self.count)

    def _current(self, vectors_of: VectorsOf) -> AnnBlock | None:
        """The block, brought up to date (the caller holds the collection's read lock, so no
        write runs meanwhile; the mutex serialises the queries that update it)."""
        kind = self.kind()
        if kind == "flat":
            return None
        with self._mutex:
            block = self._block
            n_live = 0 if self._live is None else int(np.count_nonzero(self._live))
            stale = (block is None or block.kind != kind or len(block) - n_live > _TOMBSTONES * max(len(block), 1)
                     or (kind == "ivf" and self.params.nlist is None and self.count > 4 * max(self._trained, 1)))
            if stale:
                rows = np.concatenate([block.rows[self._live] if block is not None else np.empty(0, np.int64),
                                       self._pending])
                block = AnnBlock.build(rows, vectors_of(rows), metric=self.metric, kind=kind, params=self.params)
                self._block, self._live, self._pending = block, np.ones(len(block), bool), np.empty(0, np.int64)
                self._trained = len(block)
                self._saved = False
                self._save_locked()
            elif len(self._pending) > PENDING_SCAN_MAX:
                add = self._pending
                self._block = block.extended(add, vectors_of(add))
                self._live = np.concatenate([self._live, np.ones(len(add), bool)])
                self._pending = np.empty(0, np.int64)
                self._saved = False
            return self._block

    def save(self) -> None:
        """Persist the block if it changed since it was saved (Index.close, no write in flight)."""
        with self._mutex:
            self._save_locked()

    def discard(self) -> None:
        """Remove the saved block (the collection is dropped)."""
        with self._mutex:
            self._block, self._saved = None, True
            for ext in (".ann", ".faiss"):
                if self.stem is not None and os.path.exists(self.stem + ext):
                    os.remove(self.stem + ext)

    def _save_locked(self) -> None:
        if self._saved or self._block is None or self.stem is None:
            return
        try:
            os.makedirs(os.path.dirname(self.stem), exist_ok=True)
            self._block.save(self.stem, extra={"identity": self.identity, "trained": self._trained})
            self._block = AnnBlock.open(self.stem, verify=False)  # file-backed from now on
            self._saved = True
        except OSError as exc:  # a derived file: the next save or rebuild tries again
            log.warning("could not save ANN block %s (%s)", self.stem, exc)

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, rowset: RowSet | None, exact: bool, metric: str,
               vectors_of: VectorsOf, flat_search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
               live_rowids: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray, QueryStats]:
        """(distances, rowids) (nq, k), -1 padded, and how the query was answered.
        ``flat_search`` is the exact unfiltered search of every vector; ``live_rowids`` gives
        the live rows with a vector (for an exact filtered scan)."""
        allowed = None if rowset is None else rowset.count
        scanned = rowset is not None and rowset.scanned
        block = None if exact or metric != self.metric else self._current(vectors_of)
        if block is None:
            if rowset is None and metric == self.metric:
                d, r = flat_search(queries, k)
                return d, r, QueryStats("exact", "flat", None, False)
            rows = live_rowids() if rowset is None else rowset.rowids()
            d, r = self._scan(queries, k, rows, vectors_of, metric)
            return d, r, QueryStats("exact", "flat", allowed, scanned)
        allow = None if rowset is None else self._allow(rowset, block)
        live = None if self._live.all() else self._live
        res = block.search(queries, k, allow=allow, live=live, backend=self.backend)
        d, r = res.distances, res.rows
        pending = self._pending if rowset is None else self._pending[rowset.has(self._pending)]
        if len(pending):
            d2, r2 = self._scan(queries, k, pending, vectors_of, metric)
            d, r = _merge(d, r, d2, r2, k)
        return d, r, QueryStats(res.path, block.kind, allowed, scanned)

    def _allow(self, rowset: RowSet, block: AnnBlock) -> np.ndarray:
        """The filter's bitmap over the block's positions; the last one is reused while the same
        RowSet (cached by the FieldStore until a write) meets the same block."""
        cached = self._allow_cache
        if cached is not None and cached[0] is rowset and cached[1] is block:
            return cached[2]
        allow = rowset.has(block.rows)
        self._allow_cache = (rowset, block, allow)
        return allow

    def _scan(self, queries, k, rows, vectors_of, metric):
        """Exact top-k among ``rows`` (those without a vector are skipped)."""
        nq = len(queries)
        d = np.full((nq, k), np.inf, np.float32)
        r = np.full((nq, k), -1, np.int64)
        if not len(rows):
            return d, r
        vecs = vectors_of(rows)
        has = ~np.isnan(vecs[:, 0])
        rows, vecs = rows[has], vecs[has]
        kk = min(k, len(rows))
        if kk:
            dd, pos = knn(vecs, queries, kk, metric, backend=self.backend)
            d[:, :kk], r[:, :kk] = dd, rows[pos]
        return d, r

