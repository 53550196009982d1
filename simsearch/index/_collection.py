"""A collection: validated writes to storage, and the engine that answers queries.

The engine (:mod:`simsearch.index._engine`) holds the derived state once: memory-mapped
segments plus a memtable of recent writes, addressed by storage rowid. Writes commit to storage
first and only then update the engine, both under the collection's writer lock, so a query sees
whole batches or none. Query paths go candidate rows -> ids, so a row filter can be applied in
between.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .._rwlock import RWLock
from ..errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    ResourceExhaustedError,
    StorageCorruptionError,
)
from ..minhash import is_empty, minhash
from ..shingling import shingle_hashes
from ..validation import check_int, check_option, check_param
from . import _doctable, _ingest, _scroll
from ._classify import Classification, ClassifierInfo
from ._document import batch_list, check_chunk, check_documents, check_id, check_ids, plain_ids
from ._engine import Engine
from ._filter import parse as parse_filter
from ._filtering import PART_ROWS, FieldStore, RowSet, fields_dir, fields_path
from ._filtering import _remove as _remove_file
from ._segments import SegmentDamaged
from ._storage import pack, unpack
from ._types import (
    METRICS,
    Cluster,
    CollectionConfig,
    Document,
    Duplicate,
    NearDuplicate,
    Neighbor,
    QueryStats,
    ScrollPage,
    SearchResult,
    UpsertResult,
)
from ._vecsearch import CollectionVectors, ann_dir

# Plain upserts larger than this are hashed and inserted in chunks of it, overlapped (_upsert_pipelined).
PIPELINE_DOCS = int(os.environ.get("SIMSEARCH_PIPELINE_DOCS", "1024"))
# A pipelined upsert hashes its next chunk on one core less when, after hashing a chunk, it
# waited for the storage worker more than this fraction of the hashing time.
SHARE_WAIT = 0.1


def _row_blobs(matrix: np.ndarray, dtype: str, present: list[bool]) -> list[bytes | None]:
    """Each row of ``matrix`` as little-endian bytes (what storage.pack writes), None where absent."""
    raw = np.ascontiguousarray(matrix, dtype=dtype).tobytes()
    w = len(raw) // len(matrix) if len(matrix) else 0
    return [raw[i * w : (i + 1) * w] if p else None for i, p in enumerate(present)]



_calls = threading.local()


class _BadChunk(Exception):
    """A chunk of a pipelined upsert failed its document checks (the typed error is its cause)."""


def _repairs_segments(method):
    """Run a public method; when a segment block fails its checksum on first read
    (SegmentDamaged, raised before anything is answered or written), rebuild that segment's rows
    under the write lock and run the method again. Only the outermost call repairs: inner ones
    may hold the collection's lock."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        depth = getattr(_calls, "depth", 0)
        _calls.depth = depth + 1
        try:
            for attempt in range(8):
                try:
                    return method(self, *args, **kwargs)
                except SegmentDamaged as exc:
                    if depth or attempt == 7:
                        raise
                    with self._lock.write():
                        self._engine.repair(exc.segment)
        finally:
            _calls.depth = depth

    return run


class Collection:
    """Documents with text, metadata, optional vector and label, indexed for similarity queries.

    Obtain one from :meth:`simsearch.Index.create_collection` or ``get_collection``.
    """

    def __init__(self, index, cid: int, name: str, config: CollectionConfig) -> None:
        self._index = index
        self._storage = index._storage
        self._cid = cid
        self.name = name
        self.config = config
        self._lock = RWLock()
        self._dropped = False
        self._models: dict = {}
        self._nan_vec = np.full(config.dim, np.nan, np.float32) if config.dim else None
        self._share_cores = True  # see _upsert_pipelined
        self._engine: Engine | None = None
        self._ann: CollectionVectors | None = None
        self._open_engine()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, count={self.count()})"

    # -- in-memory state -------------------------------------------------------------------
    def _open_engine(self) -> None:
        """Map the collection's segments and replay the writes after them (or rebuild them)."""
        self._engine = Engine(self._storage, self._cid, self.config, self._index._backend, self._lock,
                              self._index.path, fsync=self._index._fsync)
        try:
            with self._engine.foreground.opening():  # the catch-up passes wait for it and its first answer
                self._engine.open()
                self._load_query_state()
        except BaseException:
            self._engine.close()
            raise

    # -- filters and the ANN index (simsearch.index._filtering, _vecsearch) --------------------
    def _live_rows(self, vectors_only: bool = False):
        """(rowids, sources and rows) of the live documents (with a vector), in rowid order."""
        parts = []
        for source in self._engine.sources():
            if vectors_only:
                if getattr(source, "vec_rows", None) is not None:  # a segment
                    rows = source.vec_rows[source.alive[source.vec_rows]].astype(np.int64)
                elif hasattr(source, "vec_rows"):
                    continue
                else:
                    rows = source.vector_rows()[0]
            else:
                rows = np.flatnonzero(source.alive)
            parts.append((source.rowids[rows], source, rows))
        rowids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        return np.sort(rowids, kind="stable"), parts  # stable: a merge of the sorted runs of the sources

    def _load_query_state(self) -> None:
        """The indexed fields' columns and the approximate vector index over the live rows."""
        cfg = self.config
        self._fields = FieldStore(cfg.indexed_fields)
        if cfg.indexed_fields:
            # the part files cover the rows up to some rowid; only the live rows they lack are decoded
            rowids, _ = self._live_rows()
            if self._index.path is not None:
                _remove_file(fields_path(self._index.path, self._cid))  # the single file of older versions
                self._fields = FieldStore.load_parts(fields_dir(self._index.path, self._cid), cfg.indexed_fields,
                                                     self._fields_owner())
            missing = rowids[~self._fields.keep_live(rowids)]
            if len(missing) and missing[0] <= self._fields._saved_hi:  # the parts lack a live row: unusable
                self._fields = FieldStore(cfg.indexed_fields)
                missing = rowids
            for lo in range(0, len(missing), 65536):
                chunk = missing[lo:lo + 65536]
                found = {r.rowid: r for r in self._storage.fetch(self._cid, rowids=chunk.tolist())}
                got = [found[int(r)] for r in chunk]
                self._fields.add(chunk, [g.ext_id for g in got], [g.label for g in got], [g.metadata for g in got])
            self._fields.rows_decoded = len(missing)
            if len(missing) >= PART_ROWS:
                self._persist_fields()
        self._ann = None
        if cfg.dim:
            directory = None if self._index.path is None else ann_dir(self._index.path, self._cid)
            uuid = self._storage.state(self._cid)[0] if directory is not None else ""
            self._ann = CollectionVectors(cfg, self._engine, directory, {"db": uuid, "cid": self._cid},
                                          self._index._backend)
            self._ann.start()  # builds the segments' ANN structures in the background

    def _save_query_state(self) -> None:
        """Persist the ANN block and the indexed columns (Index.close, under the write lock)."""
        if self._index.path is None or self._dropped:
            return
        self._persist_fields()

    def _fields_owner(self) -> dict:
        return {"db": self._storage.uuid(), "cid": self._cid, "seq": self._engine.seq}

    def _persist_fields(self) -> None:
        """Write the indexed columns of the rows added since the last call (under the write lock)."""
        if self._index.path is None or self._dropped or not self.config.indexed_fields:
            return
        try:
            self._fields.persist(fields_dir(self._index.path, self._cid), self._fields_owner(), self._index._fsync)
        except OSError:  # derived state: the next open decodes these rows' metadata again
            self._fields.postpone()

    def _snapshot_fields(self, dest_index: str, database: str) -> None:
        """The indexed columns into a snapshot (Index.snapshot, under the write lock)."""
        if self.config.indexed_fields:
            try:
                self._fields.copy_to(fields_dir(dest_index, self._cid), {**self._fields_owner(), "db": database},
                                     self._index._fsync)
            except OSError:  # derived state: the snapshot's first open decodes the metadata
                pass

    def _vectors_of(self, rowids: np.ndarray) -> np.ndarray:
        src, row = self._engine.locate_rowids(np.asarray(rowids, np.int64))
        return self._engine.gather(src, row, "vecs")

    def _applied(self, removed, new_rowids, ids, labels, metadata, vecs) -> None:
        """Reflect a committed write in the filter columns and the ANN index."""
        removed = np.asarray(removed, dtype=np.int64)
        new_rowids = np.asarray(new_rowids, dtype=np.int64)
        self._fields.remove(removed)
        if len(new_rowids):
            self._fields.add(new_rowids, ids, labels, metadata)
            if self._fields.unsaved() >= PART_ROWS:
                self._persist_fields()
            if self._ann is not None:
                self._ann.wrote()

    def _rowset(self, filter, func: str) -> RowSet | None:
        """The live rows ``filter`` keeps (None: no filter); the caller holds the read lock."""
        flt = parse_filter(filter)
        if flt is None:
            return None

        def live():
            _, parts = self._live_rows()
            rowids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
            ext = [e for p in parts for e in p[1].ext_ids(p[2])]
            labels = [x for p in parts for x in p[1].labels(p[2])]
            order = np.argsort(rowids, kind="stable")
            return rowids[order], [ext[i] for i in order.tolist()], [labels[i] for i in order.tolist()]

        def metadata(rowids):
            return {r.rowid: r.metadata for r in self._storage.fetch(self._cid, rowids=rowids)}

        return self._fields.rowset(flt, live, metadata)

    def _rebuild(self) -> None:
        """Reopen the engine from the manifest and the store (after an error while applying a
        committed write, memory must match what was committed)."""
        if self._ann is not None:
            self._ann.stop(join=False)  # the caller may hold the lock the builder reads under
        self._engine.close()
        self._open_engine()

    def _check_alive(self) -> None:
        if self._dropped:
            raise NotFoundError(f"collection {self.name!r} was dropped")
        self._index._check_open()

    # -- validation ------------------------------------------------------------------------
    def _check_vectors(self, values: list, where: str) -> np.ndarray:
        """``values`` (each an array-like or None) as one float32 matrix, NaN rows for None."""
        dim = self.config.dim
        out = np.empty((len(values), dim), np.float32)
        fast = all(v is None or (type(v) is np.ndarray and v.dtype == np.float32 and v.shape == (dim,)) for v in values)
        if not fast:
            for i, v in enumerate(values):
                out[i] = self._nan_vec if v is None else self._check_vector(v, f"{where}[{i}]")
            return out
        for i, v in enumerate(values):
            out[i] = self._nan_vec if v is None else v
        given = np.fromiter((v is not None for v in values), bool, len(values))
        bad = np.nonzero(given & ~np.isfinite(out).all(axis=1))[0]
        if len(bad):
            raise InvalidArgumentError(f"{where}[{bad[0]}]: vector holds NaN or infinity, or values too large for float32.")
        return out

    def _check_vector(self, value: Any, where: str) -> np.ndarray:
        if self.config.dim is None:
            raise InvalidArgumentError(f"{where}: collection {self.name!r} has no vectors (created with dim=None).")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            raise InvalidTypeError(f"{where}: vector must be an array of floats.") from None
        if arr.dtype.kind not in "fiu" or arr.dtype == bool:
            raise InvalidTypeError(f"{where}: vector must hold floats. Got dtype {arr.dtype}.")
        if arr.shape != (self.config.dim,):
            raise InvalidArgumentError(
                f"{where}: vector must have shape ({self.config.dim},) for collection {self.name!r}. Got {arr.shape}."
            )
        with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 becomes inf: refused below
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise InvalidArgumentError(f"{where}: vector holds NaN or infinity, or values too large for float32.")
        return arr

    # -- writes ----------------------------------------------------------------------------
    @_repairs_segments
    def upsert(self, docs: Sequence[Document | dict], *, on_duplicate: str = "insert",
               threshold: float | None = None) -> UpsertResult:
        """Insert or replace a batch of documents atomically; returns after the commit.

        ``on_duplicate``: ``"insert"`` stores every document; ``"skip"`` leaves out a document
        whose near-duplicate (Jaccard >= ``threshold``, default the collection's; exact when the
        collection stores shingles) is stored or comes earlier in the batch and is kept; ``"tag"``
        stores it with metadata ``_duplicate_of`` and ``_duplicate_jaccard`` set. The decision
        and the insert happen under the write lock (see :mod:`simsearch.index._ingest`); the
        result lists each skipped or tagged document."""
        self._check_alive()
        on_duplicate, threshold = _ingest.check_on_duplicate(on_duplicate, threshold, self.config.threshold)
        docs = batch_list(docs, max_batch=self._index.max_batch)
        if on_duplicate == "insert" and len(docs) > PIPELINE_DOCS:
            ids = plain_ids(docs)
            if ids is not None:
                try:
                    return self._upsert_pipelined(docs, ids)
                except _BadChunk as bad:  # raise the batch's first error, as the checks below do
                    self._checked(docs)
                    raise bad.__cause__ from None
        norm, vecs = self._checked(docs)
        sigs, rows = self._prepare(norm, vecs)
        ids = [d.id for d in norm]
        labels = [d.label for d in norm]
        duplicates: tuple[Duplicate, ...] = ()
        with self._lock.write():
            self._check_alive()
            if on_duplicate != "insert":
                decision = _ingest.decide(self, ids, [d.text for d in norm], sigs, on_duplicate, threshold,
                                          self.config.store_shingles)
                duplicates = tuple(Duplicate(ids[j], of, jac) for j, (of, jac) in sorted(decision.matches.items()))
                if on_duplicate == "tag":
                    for j, (of, jac) in decision.matches.items():
                        rows[j] = rows[j][:2] + (_ingest.tag_metadata(rows[j][2], of, jac),) + rows[j][3:]
                elif not decision.stored.all():
                    keep = np.flatnonzero(decision.stored)
                    rows, ids, labels = [rows[i] for i in keep], [ids[i] for i in keep], [labels[i] for i in keep]
                    sigs = sigs[keep]
                    vecs = None if vecs is None else vecs[keep]
                if not rows:
                    return UpsertResult(upserted=0, replaced=0, skipped=len(norm), duplicates=duplicates)
            # A memtable past its size is flushed first: a full disk fails this write uncommitted.
            self._engine.flush_if_full()
            # Only ids the collection holds need a DELETE (the engine mirrors what is committed;
            # were it ever wrong, the UNIQUE (cid, ext_id) constraint fails the batch).
            replaced = [e for e, r in zip(ids, self._engine.rowids_of(ids)) if r >= 0]
            removed, new_rowids, seq = self._storage.write(self._cid, replaced, rows)
            try:
                self._engine.apply(seq, np.asarray(removed, dtype=np.int64), new_rowids, ids, labels, sigs, vecs)
                self._applied(removed, new_rowids, ids, labels, [r[2] for r in rows], vecs)
            except BaseException:
                self._rebuild()  # memory must match what was committed
                raise
        return UpsertResult(upserted=len(rows), replaced=len(removed), skipped=len(norm) - len(rows),
                            duplicates=duplicates)

    def _checked(self, docs: list, start: int | None = None) -> tuple[list[Document], np.ndarray | None]:
        """Documents checked and normalised (metadata as its JSON text), and their vectors as one
        float32 matrix (None without vectors): the whole batch (:func:`check_documents`, its
        first bad document's error) or, with ``start``, the chunk of it at that position."""
        cfg, ix = self.config, self._index
        if start is None:
            norm = check_documents(docs, dim=cfg.dim, collection=self.name, max_batch=ix.max_batch,
                                   max_text_bytes=ix.max_text_bytes)
        else:
            norm = check_chunk(docs, start, dim=cfg.dim, collection=self.name, max_text_bytes=ix.max_text_bytes)
        return norm, (self._check_vectors([d.vector for d in norm], "upsert docs") if cfg.dim else None)

    def _prepare(self, norm: list[Document], vecs: np.ndarray | None) -> tuple[np.ndarray, list[tuple]]:
        """(signatures, storage rows) of checked documents ``norm`` (``vecs``: their checked
        vectors, NaN rows for none; None without vectors)."""
        cfg = self.config
        texted = [i for i, d in enumerate(norm) if d.text is not None]
        sigs = np.full((len(norm), cfg.num_perm), 0xFFFFFFFF, dtype=np.uint32)
        shingle_blobs: list[bytes | None] = [None] * len(norm)
        if texted:
            texts = [norm[i].text for i in texted]
            if cfg.store_shingles and not cfg.store_text:  # with the text stored, shingles are derived from it
                sets = shingle_hashes(texts, ngram=cfg.ngram, shingle=cfg.shingle, backend=self._index._backend)
                sigs[texted] = minhash(sets, num_perm=cfg.num_perm, seed=cfg.seed, backend=self._index._backend)
                for j, i in enumerate(texted):
                    shingle_blobs[i] = pack(sets[j], np.uint64)
            else:
                sigs[texted] = minhash(
                    texts, num_perm=cfg.num_perm, seed=cfg.seed, ngram=cfg.ngram, shingle=cfg.shingle,
                    backend=self._index._backend,
                )
        vec_blobs = [None] * len(norm)
        if vecs is not None:
            vec_blobs = _row_blobs(vecs, "<f4", [d.vector is not None for d in norm])
        sig_blobs = _row_blobs(sigs, "<u4", [d.text is not None for d in norm])
        store_text = cfg.store_text
        rows = [
            (d.id, d.text if store_text else None, d.metadata, d.label, vec_blobs[i], sig_blobs[i], shingle_blobs[i])
            for i, d in enumerate(norm)
        ]
        return sigs, rows

    def _upsert_pipelined(self, docs: list, ids: list[str]) -> UpsertResult:
        """A plain upsert of a large batch (distinct, valid ``ids``), in chunks of PIPELINE_DOCS:
        chunk i + 1 is checked and hashed here while a storage worker checksums and inserts chunk
        i, all in one transaction (see SQLiteStorage.write_chunks), so the result is that of one
        write. A chunk that fails its checks raises _BadChunk (from the typed error) after the
        transaction is rolled back: nothing of the batch is stored."""
        step = PIPELINE_DOCS
        parts: list[tuple] = []

        def part(lo):
            try:
                norm, vecs = self._checked(docs[lo:lo + step], lo)
            except (InvalidArgumentError, InvalidTypeError, ResourceExhaustedError) as exc:
                raise _BadChunk() from exc
            sigs, rows = self._prepare(norm, vecs)
            return norm, vecs, sigs, rows

        first = part(0)  # before the lock: concurrent writers hash their first chunk in parallel

        # The chunks after the first are hashed while the storage worker inserts the previous one:
        # on one core less while the inserts are the slower stage (this thread waited for the
        # worker), on all of them while hashing is (the worker was idle). Which stage is slower
        # depends on the machine (2 cores, 200-word documents: inserts on a Xeon, hashing on an
        # EPYC), so it is measured chunk by chunk, and the last choice carries to the next write.
        sharing = getattr(self._index._backend, "sharing_cores", None)

        def chunks():
            current = first
            hashed = 0.0
            for lo in range(step, len(docs) + step, step):
                parts.append(current[:3])
                t = time.perf_counter()
                yield current[3]
                waited = time.perf_counter() - t
                if lo > step:  # the wait for chunk i - 1's insert after chunk i was hashed
                    self._share_cores = waited > SHARE_WAIT * hashed
                if lo < len(docs):
                    t = time.perf_counter()
                    with sharing() if sharing is not None and self._share_cores else contextlib.nullcontext():
                        current = part(lo)
                    hashed = time.perf_counter() - t

        with self._lock.write():
            self._check_alive()
            replaced = [e for e, r in zip(ids, self._engine.rowids_of(ids)) if r >= 0]
            # A full memtable is flushed beside the inserts (it holds none of this write's rows);
            # the flush ends before the commit, so a full disk fails this write uncommitted.
            flushing = self._engine.flush_beside()
            try:
                removed, new_rowids, seq = self._storage.write_chunks(
                    self._cid, replaced, chunks(), before_commit=None if flushing is None else flushing.wait)
            finally:
                if flushing is not None:
                    flushing.finish()  # waits for it: the engine is this write's again
            try:
                labels = [d.label for p in parts for d in p[0]]
                vecs = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
                self._engine.apply(seq, np.asarray(removed, dtype=np.int64), new_rowids, ids, labels,
                                   np.concatenate([p[2] for p in parts]), vecs)
                self._applied(removed, new_rowids, ids, labels, [d.metadata for p in parts for d in p[0]], vecs)
            except BaseException:
                self._rebuild()  # memory must match what was committed
                raise
        return UpsertResult(upserted=len(docs), replaced=len(removed), skipped=0, duplicates=())

    def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Delete documents by id, atomically. Unknown ids raise NotFoundError unless ``missing_ok``."""
        self._check_alive()
        ids = check_ids(ids, "delete", max_batch=self._index.max_batch)
        with self._lock.write():
            self._check_alive()
            known = self._engine.rowids_of(ids)
            missing = [i for i, r in zip(ids, known) if r < 0]
            if missing and not missing_ok:
                raise NotFoundError(f"delete: {len(missing)} unknown id(s) in collection {self.name!r}, e.g. {missing[0]!r}")
            removed, _, seq = self._storage.write(self._cid, list(dict.fromkeys(ids)), [])
            try:
                self._engine.apply(seq, np.asarray(removed, dtype=np.int64), [], [], [], None, None)
                self._applied(removed, [], [], [], [], None)
            except BaseException:
                self._rebuild()
                raise
        return len(removed)

    # -- reads -----------------------------------------------------------------------------
    def stats(self) -> dict:
        """``documents``, ``segments`` (immutable segment files of the engine), ``bytes_on_disk``
        (those files and the collection's ANN files; None in memory; the shared SQLite database
        is not split per collection) and ``bytes_in_memory`` (heap the collection holds beyond the
        file-backed mappings). The server's metrics and Stats RPC report these. ``vectors_indexed``
        / ``vectors_pending``: live vectors of segments answered by their own ANN structure, and
        of segments due one that are scanned exactly until the background builder has made it."""
        self._check_alive()
        with self._lock.read():
            out = self._engine.stats()
            vec = self._ann.stats() if self._ann is not None else {"vectors_indexed": 0, "vectors_pending": 0}
        out.update(vec)
        if out["bytes_on_disk"] is not None and self._ann is not None:
            out["bytes_on_disk"] += self._ann.nbytes_on_disk()
        return out

    def wait_indexed(self, timeout: float | None = None) -> bool:
        """Wait until every segment due an ANN structure has one (built in the background after
        flushes and merges; until then its vectors are scanned exactly). False on timeout."""
        self._check_alive()
        if self._ann is None:
            return True
        self._engine.wait_merges()  # the merges due first: their outputs are what gets indexed
        return self._ann.wait_indexed(timeout)

    def count(self) -> int:
        self._check_alive()
        with self._lock.read():
            return self._engine.live

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Documents by id, in the order asked. Unknown ids raise NotFoundError."""
        self._check_alive()
        ids = check_ids(ids, "get", max_batch=self._index.max_batch)
        with self._lock.read():
            rows = {r.ext_id: r for r in self._storage.fetch(self._cid, ext_ids=set(ids))}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFoundError(f"get: {len(missing)} unknown id(s) in collection {self.name!r}, e.g. {missing[0]!r}")
        return [self._to_document(rows[i]) for i in ids]

    def scroll(self, filter: dict | str | None = None, *, batch_size: int = 1000, with_text: bool = False,
               with_vector: bool = False, after: str | None = None) -> Iterator[ScrollPage]:
        """Every document (or those ``filter`` keeps: :func:`simsearch.index.parse_filter`) in id
        order, as pages of up to ``batch_size``. Resumable: ``after=page.cursor`` continues after a
        page. Each page is read under the read lock, from one committed state; a document written
        during the walk appears if its id sorts after the current page. Text and vector are
        left out (None) unless ``with_text`` / ``with_vector``."""
        self._check_alive()
        func = "scroll"
        flt = parse_filter(filter)
        batch_size = check_int(batch_size, "batch_size", 1, self._index.max_batch, func=func)
        for name, val in (("with_text", with_text), ("with_vector", with_vector)):
            if not isinstance(val, bool):
                raise InvalidTypeError(f"The '{name}' parameter of {func} must be a bool.")
        if after is not None:
            after = check_id(after, f"The 'after' parameter of {func}")
        return _scroll.pages(self, flt, batch_size, with_text, with_vector, after)

    def _metadata_of(self, ids: list[str]) -> list[dict]:
        """The metadata of stored documents ``ids``, in order, read in chunks (no ``max_batch``
        limit: internal callers such as training read every vector-bearing document)."""
        out: list[dict] = []
        step = self._index.max_batch
        for lo in range(0, len(ids), step):
            chunk = ids[lo : lo + step]
            with self._lock.read():
                rows = {r.ext_id: r.metadata for r in self._storage.fetch(self._cid, ext_ids=set(chunk))}
            out.extend(json.loads(rows[i]) if i in rows else {} for i in chunk)
        return out

    @staticmethod
    def _to_document(row) -> Document:
        return Document(
            id=row.ext_id,
            text=row.text,
            metadata=json.loads(row.metadata),
            vector=unpack(row.vector, np.float32),
            label=row.label,
        )

    # -- near-duplicates -------------------------------------------------------------------
    def _query_signatures(self, texts=None, ids=None, *, want_shingles: bool, func: str):
        """Signatures (and shingle sets) of the query texts or stored ids, plus rowids to exclude."""
        cfg = self.config
        if (texts is None) == (ids is None):
            raise InvalidArgumentError(f"{func} takes either texts or ids, not both and not neither.")
        if texts is not None:
            if isinstance(texts, str) or not isinstance(texts, Iterable):
                raise InvalidTypeError(f"The 'texts' parameter of {func} must be a list of str.")
            texts = list(texts)
            if len(texts) > self._index.max_batch:
                raise ResourceExhaustedError(f"{func} got {len(texts)} texts; the limit max_batch is {self._index.max_batch}.")
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise InvalidTypeError(f"{func} texts[{i}] must be a str. Got {type(t).__name__}.")
                if len(t.encode("utf-8", "surrogatepass")) > self._index.max_text_bytes:
                    raise ResourceExhaustedError(f"{func} texts[{i}] is over max_text_bytes ({self._index.max_text_bytes}).")
            sets = shingle_hashes(texts, ngram=cfg.ngram, shingle=cfg.shingle, backend=self._index._backend)
            for i in range(len(texts)):
                if not len(sets[i]):
                    raise InvalidArgumentError(
                        f"{func} texts[{i}] has no {cfg.shingle} shingles; an empty document is nobody's near-duplicate."
                    )
            sigs = minhash(sets, num_perm=cfg.num_perm, seed=cfg.seed, backend=self._index._backend)
            return sigs, ([sets[i] for i in range(len(texts))] if want_shingles else None), [-1] * len(texts)
        ids = check_ids(ids, func, max_batch=self._index.max_batch)
        src, row = self._engine.locate_ext(ids)
        for i, s in zip(ids, src):
            if s < 0:
                raise NotFoundError(f"{func}: unknown id {i!r} in collection {self.name!r}")
        rowids = self._engine.rowids_at(src, row)
        sigs = self._engine.gather(src, row, "sigs")
        for i, s in zip(ids, sigs):
            if is_empty(s):
                raise FailedPreconditionError(f"{func}: document {i!r} has no text shingles to compare.")
        shingles = None
        if want_shingles:
            sets = self._shingle_sets([int(r) for r in rowids])
            shingles = [sets[int(r)] for r in rowids]
        return sigs, shingles, [int(r) for r in rowids]

    def _shingle_sets(self, rowids: list[int]) -> dict[int, np.ndarray]:
        """rowid -> sorted unique shingle hashes (cached; see Engine.cached_shingles)."""
        return self._engine.cached_shingles(rowids, self._read_shingle_sets)

    def _read_shingle_sets(self, rowids: list[int], known=None) -> dict[int, np.ndarray]:
        """rowid -> sorted unique shingle hashes: the stored blob, else derived from the stored text
        (``known(text)``, when given, may return the set of a text already shingled: an upsert
        batch's own texts, so an exact copy of a stored text is not shingled twice)."""
        found = self._storage.fetch_shingle_sources(self._cid, rowids)
        if len(found) < len(set(rowids)):
            raise StorageCorruptionError(
                f"collection {self.name!r}: documents indexed in memory are missing from storage"
            )
        out: dict[int, np.ndarray] = {}
        derive = []
        for r, (blob, text) in found.items():
            if blob is not None or text is None:
                out[r] = unpack(blob, np.uint64) if blob is not None else np.empty(0, np.uint64)
            elif known is not None and (same := known(text)) is not None:
                out[r] = same
            else:
                derive.append(r)
        if derive:
            cfg = self.config
            sets = shingle_hashes([found[r][1] for r in derive], ngram=cfg.ngram, shingle=cfg.shingle,
                                  backend=self._index._backend)
            for j, r in enumerate(derive):
                out[r] = sets[j]
        return out

    def near_duplicates(self, text: str | None = None, *, id: str | None = None, threshold: float | None = None,
                        k: int | None = None, exact: bool = False, filter: dict | str | None = None,
                        ) -> list[NearDuplicate]:
        """Ranked near-duplicates of one text or stored document (which is left out of its own
        results), among the documents ``filter`` keeps (see the README's "Filters")."""
        texts = None if text is None else [text]
        ids = None if id is None else [id]
        return self.near_duplicates_batch(texts=texts, ids=ids, threshold=threshold, k=k, exact=exact,
                                          filter=filter)[0]

    @_repairs_segments
    def near_duplicates_batch(self, texts=None, ids=None, *, threshold: float | None = None, k: int | None = None,
                              exact: bool = False, filter: dict | str | None = None,
                              with_stats: bool = False) -> list[list[NearDuplicate]] | SearchResult:
        self._check_alive()
        func = "near_duplicates"
        threshold = (self.config.threshold if threshold is None
                     else check_param("threshold", threshold, func=func, rule="collection_threshold"))
        if k is not None:
            k = check_param("k", k, func=func)
        if not isinstance(exact, bool):
            raise InvalidTypeError(f"The 'exact' parameter of {func} must be a bool.")
        if exact and not self.config.store_shingles:
            raise FailedPreconditionError(
                f"exact Jaccard needs the collection to store shingles; {self.name!r} was created with store_shingles=False."
            )
        parse_filter(filter)  # a bad filter fails before any work
        with self._lock.read(), self._engine.foreground.query():  # the catch-up passes give way
            sigs, shingles, exclude = self._query_signatures(texts, ids, want_shingles=exact, func=func)
            rowset = self._rowset(filter, func)
            if rowset is None:
                out = self._ranked_matches(sigs, shingles, exclude, threshold, k)
            else:
                cands = [c[rowset.has(c)] for c in self._candidate_lists(sigs)]
                out = self._ranked_matches(sigs, shingles, exclude, threshold, k, cand_lists=cands)
        if with_stats:
            stats = QueryStats("lsh", "", None if rowset is None else rowset.count,
                               rowset is not None and rowset.scanned)
            return SearchResult(out, stats)
        return out

    def _candidate_lists(self, sigs) -> list[np.ndarray]:
        """LSH candidate rowids (ascending) of each query signature. The caller holds the read or
        write lock."""
        q, src, rows = self._engine.candidates(sigs)
        rowids = self._engine.rowids_at(src, rows)
        order = np.lexsort((rowids, q))
        q, rowids = q[order], rowids[order]
        bounds = np.searchsorted(q, np.arange(len(sigs) + 1))
        return [rowids[bounds[i] : bounds[i + 1]] for i in range(len(sigs))]

    def _ranked_matches(self, sigs, shingles, exclude, threshold, k, cand_lists=None) -> list[list[NearDuplicate]]:
        """Per query signature, its ranked stored near-duplicates: candidates (source, row) from
        the LSH (or ``cand_lists``, rowids per query) -> rowid ``exclude[q]`` left out -> scores
        (the pair-Jaccard kernels; exact when ``shingles`` is given) -> kept -> ranked by score
        then id. The caller holds the read or write lock."""
        eng = self._engine
        nq = len(sigs)
        exclude = np.asarray(exclude, np.int64)
        if cand_lists is None:
            q, src, rows, cand_rowids, est = eng.scored_candidates(sigs)
        else:
            q = np.repeat(np.arange(nq, dtype=np.int64), [len(c) for c in cand_lists])
            flat = np.concatenate(cand_lists).astype(np.int64) if cand_lists else np.empty(0, np.int64)
            src, rows = eng.locate_rowids(flat)
            ok = src >= 0
            q, src, rows, cand_rowids = q[ok], src[ok], rows[ok], flat[ok]
            est = eng.estimate(sigs, q, src, rows)
        keep = cand_rowids != exclude[q]
        if not keep.all():
            q, src, rows, cand_rowids, est = q[keep], src[keep], rows[keep], cand_rowids[keep], est[keep]
        exa = None
        if shingles is not None and len(q):
            from .._arrays import offsets_from_sizes

            uniq, inv = np.unique(cand_rowids, return_inverse=True)
            sets = self._shingle_sets(uniq.tolist())
            c_sets = [sets[int(r)] for r in uniq]
            c_off = offsets_from_sizes([len(x) for x in c_sets])
            c_hash = np.concatenate(c_sets) if c_sets else np.empty(0, np.uint64)
            q_off = offsets_from_sizes([len(x) for x in shingles])
            q_hash = np.concatenate(shingles) if shingles else np.empty(0, np.uint64)
            exa = self._index._backend.host.pair_jaccard_sets(q_off, q_hash, c_off, c_hash, q, inv.astype(np.int64))
        score = est if exa is None else exa
        ok = np.flatnonzero(score >= threshold)
        ext = eng.gather(src[ok], rows[ok], "ext")
        per_query: list[list[int]] = [[] for _ in range(nq)]
        for j, i in enumerate(ok.tolist()):
            per_query[int(q[i])].append(j)
        out = []
        for qi in range(nq):
            order = sorted(per_query[qi], key=lambda j: (-score[ok[j]], ext[j]))
            if k is not None:
                order = order[:k]
            out.append([
                NearDuplicate(id=ext[j], jaccard=float(score[ok[j]]), estimated_jaccard=float(est[ok[j]]),
                              exact_jaccard=None if exa is None else float(exa[ok[j]]))
                for j in order
            ])
        return out

    @_repairs_segments
    def find_duplicates(self, threshold: float | None = None, *, exact: bool | None = None,
                        filter: dict | str | None = None, with_stats: bool = False) -> list[Cluster] | SearchResult:
        """All near-duplicate clusters (size ≥ 2) in the collection, largest first; with
        ``filter``, among the documents it keeps (both ends of every pair match).
        ``with_stats=True`` returns a SearchResult of the clusters and the QueryStats (path "lsh",
        the documents the filter kept, whether it scanned the metadata).

        Pairs come from the LSH self-join and are verified with the exact Jaccard when the
        collection stores shingles (else with the signature estimate). The representative is the
        earliest-inserted document of each cluster.
        """
        self._check_alive()
        threshold = (self.config.threshold if threshold is None
                     else check_param("threshold", threshold, func="find_duplicates", rule="collection_threshold"))
        exact = self.config.store_shingles if exact is None else exact
        if exact and not self.config.store_shingles:
            raise FailedPreconditionError(f"collection {self.name!r} does not store shingles; use exact=False.")
        parse_filter(filter)
        if not isinstance(with_stats, bool):
            raise InvalidTypeError("The 'with_stats' parameter of find_duplicates must be a bool.")
        with self._lock.read():
            rowset = self._rowset(filter, "find_duplicates")
            pairs = self._engine.candidate_pairs()
            if rowset is not None and len(pairs):
                pairs = pairs[rowset.has(pairs[:, 0]) & rowset.has(pairs[:, 1])]
            out = []
            if len(pairs):
                fetch = self._shingle_sets if exact else None
                out = _doctable.clusters_from_pairs(self._engine, pairs, threshold, fetch, self._index._backend)
        if with_stats:
            return SearchResult(out, QueryStats("lsh", "", None if rowset is None else rowset.count,
                                                rowset is not None and rowset.scanned))
        return out

    # -- vectors ---------------------------------------------------------------------------
    def search(self, vector=None, *, id: str | None = None, k: int = 10, metric: str | None = None,
               filter: dict | str | None = None, exact: bool = False) -> list[Neighbor]:
        """k nearest documents to one vector or stored document (left out of its own results),
        among those ``filter`` keeps; ``exact=True`` is brute force (the approximate index's oracle)."""
        vectors = None if vector is None else [vector]
        ids = None if id is None else [id]
        return self.search_batch(vectors=vectors, ids=ids, k=k, metric=metric, filter=filter, exact=exact)[0]

    @_repairs_segments
    def search_batch(self, vectors=None, ids=None, *, k: int = 10, metric: str | None = None,
                     filter: dict | str | None = None, exact: bool = False,
                     with_stats: bool = False) -> list[list[Neighbor]] | SearchResult:
        """Batch :meth:`search`; ``with_stats=True`` returns a SearchResult whose ``stats`` say how
        the query was answered (exact scan, the approximate index, with the filter as a selector)."""
        self._check_alive()
        func = "search"
        if self.config.dim is None:
            raise FailedPreconditionError(f"collection {self.name!r} has no vectors (created with dim=None).")
        k = check_param("k", k, func=func)
        metric = self.config.metric if metric is None else check_option(metric, "metric", METRICS, func=func)
        if (vectors is None) == (ids is None):
            raise InvalidArgumentError(f"{func} takes either vectors or ids, not both and not neither.")
        if not isinstance(exact, bool):
            raise InvalidTypeError(f"The 'exact' parameter of {func} must be a bool.")
        parse_filter(filter)
        with self._lock.read(), self._engine.foreground.query():  # the catch-up passes give way
            if vectors is not None:
                if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
                    vectors = list(vectors)
                vectors = list(vectors)
                if len(vectors) > self._index.max_batch:
                    raise ResourceExhaustedError(f"{func} got {len(vectors)} vectors; the limit max_batch is {self._index.max_batch}.")
                queries = np.stack([self._check_vector(v, f"{func} vectors[{i}]") for i, v in enumerate(vectors)]) if vectors else np.empty((0, self.config.dim), np.float32)
                exclude = [-1] * len(queries)
            else:
                ids = check_ids(ids, func, max_batch=self._index.max_batch)
                rowids, queries = self._stored_vectors(ids, func)
                exclude = [int(r) for r in rowids]
            rowset = self._rowset(filter, func)
            if not len(queries):
                return SearchResult([], QueryStats("exact", "flat")) if with_stats else []
            kk = k + (1 if ids is not None else 0)
            dists, rows, stats = self._ann.search(queries, kk, rowset=rowset, exact=exact, metric=metric,
                                                  vectors_of=self._vectors_of)
            out = []
            for q in range(len(queries)):
                keep = [(d, r) for d, r in zip(dists[q].tolist(), rows[q].tolist()) if r >= 0 and r != exclude[q]][:k]
                ext = self._ext_of_rowids(np.array([r for _, r in keep], dtype=np.int64))
                # equal distances are ordered by id, so results do not depend on insertion order
                hits = sorted((float(d), e) for e, (d, _) in zip(ext, keep))
                out.append([Neighbor(id=e, distance=d) for d, e in hits])
            return SearchResult(out, stats) if with_stats else out

    def _stored_vectors(self, ids: list[str], func: str) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, vectors) of stored documents (the caller holds the read lock); typed errors for
        unknown ids and documents without a vector."""
        src, row = self._engine.locate_ext(ids)
        for i, s in zip(ids, src):
            if s < 0:
                raise NotFoundError(f"{func}: unknown id {i!r} in collection {self.name!r}")
        if not len(src):
            return np.empty(0, np.int64), np.empty((0, self.config.dim or 0), np.float32)
        rowids = self._engine.rowids_at(src, row)
        X = self._engine.gather(src, row, "vecs")
        for i, v in zip(ids, X):
            if np.isnan(v[0]):
                raise FailedPreconditionError(f"{func}: document {i!r} has no vector.")
        return rowids, X

    @_repairs_segments
    def vectors_and_labels(self, *, require_labels: bool) -> tuple[list[str], np.ndarray, list[str | None]]:
        """All live (id, vector, label) with a vector; used to train classifiers."""
        with self._lock.read():
            _, ids, vecs, labels = self._engine.vector_rows_all(require_labels)
            return ids, vecs, labels

    def _ext_of_rowids(self, rowids: np.ndarray) -> list[str]:
        """External ids of alive rowids (the caller holds the read lock)."""
        src, row = self._engine.locate_rowids(rowids)
        return self._engine.gather(src, row, "ext")

    # -- classifiers -----------------------------------------------------------------------
    def train_classifier(self, name: str, kind: str = "svm", params: dict | None = None,
                         filter: dict | None = None, *, fit=None) -> ClassifierInfo:
        """Train an ``svm`` (needs labels, >= 2 classes) or ``gmm`` on the collection's vectors and
        store it under ``name`` (replacing a model of that name). Returns a ClassifierInfo.
        ``filter`` keeps the documents whose metadata has all of its key/value pairs. A failed
        training leaves the stored models as they were. ``fit(estimator, X, y)``, when given,
        runs the fit and returns the fitted estimator (the server's runs it in a worker process
        it can stop); by default the estimator fits in this thread."""
        from . import _classify

        self._check_alive()
        name = _classify.check_model_name(name)
        kind = _classify.check_kind(kind)
        params = _classify.check_params(params)
        filter = _classify.check_filter(filter)
        if self.config.dim is None:
            raise FailedPreconditionError(f"collection {self.name!r} has no vectors (created with dim=None).")
        payload, info = _classify.train(self, name, kind, params, filter, fit=fit or _classify.fit_here)
        with self._lock.write():
            self._check_alive()
            self._storage.put_model(self._cid, name, kind, info.version, payload)
            self._models.pop(name, None)
        return info

    def _loaded_model(self, name: str):
        """The model ``name``, from the cache or storage; the caller holds the read lock, so a
        training or deletion cannot slip between the storage read and the cache fill."""
        from . import _classify

        model = self._models.get(name)
        if model is None:
            try:
                _, _, payload = self._storage.get_model(self._cid, name)
            except NotFoundError:
                raise NotFoundError(f"model {name!r} does not exist in collection {self.name!r}") from None
            model = self._models[name] = _classify.LoadedModel(name, payload)
        return model

    def list_classifiers(self) -> list[ClassifierInfo]:
        """Info of every stored model, by name."""
        self._check_alive()
        with self._lock.read():
            return [self._loaded_model(name).info for name, _, _ in self._storage.list_models(self._cid)]

    def delete_classifier(self, name: str) -> None:
        """Delete the stored model ``name``; NotFoundError if there is none."""
        from . import _classify

        self._check_alive()
        name = _classify.check_model_name(name)
        with self._lock.write():
            if not self._storage.delete_model(self._cid, name):
                raise NotFoundError(f"model {name!r} does not exist in collection {self.name!r}")
            self._models.pop(name, None)

    @_repairs_segments
    def classify(self, vectors=None, *, ids=None, model: str, k: int = 10, filter: dict | str | None = None,
                 with_stats: bool = False) -> list[Classification] | SearchResult:
        """Apply the stored model ``model`` to each query vector (or stored document's vector) and
        return, per query, a Classification holding the prediction and the k nearest neighbours
        (among the documents ``filter`` keeps; the prediction itself is the model's).
        ``with_stats=True`` returns a SearchResult whose stats say how the neighbours were found."""
        from . import _classify

        self._check_alive()
        func = "classify"
        name = _classify.check_model_name(model)
        k = check_param("k", k, func=func)
        parse_filter(filter)
        if not isinstance(with_stats, bool):
            raise InvalidTypeError(f"The 'with_stats' parameter of {func} must be a bool.")
        if (vectors is None) == (ids is None):
            raise InvalidArgumentError(f"{func} takes either vectors or ids, not both and not neither.")
        if vectors is not None:
            if self.config.dim is None:
                raise FailedPreconditionError(f"collection {self.name!r} has no vectors (created with dim=None).")
            if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Iterable):
                raise InvalidTypeError(f"The 'vectors' parameter of {func} must be a list of vectors or a 2-d array.")
            vectors = list(vectors)
            if len(vectors) > self._index.max_batch:
                raise ResourceExhaustedError(f"{func} got {len(vectors)} vectors; the limit max_batch is {self._index.max_batch}.")
            X = [self._check_vector(v, f"{func} vectors[{i}]") for i, v in enumerate(vectors)]
        else:
            ids = check_ids(ids, func, max_batch=self._index.max_batch)
        with self._lock.read():
            loaded = self._loaded_model(name)
            if ids is not None:
                _, X = self._stored_vectors(ids, func)
        if not len(X):
            return SearchResult([], QueryStats("exact", "flat")) if with_stats else []
        X = np.stack(X) if vectors is not None else X
        if X.shape[1] != loaded.info.dim:
            raise InvalidArgumentError(f"model {name!r} expects {loaded.info.dim}-d vectors. Got {X.shape[1]}.")
        found = self.search_batch(vectors=X if vectors is not None else None, ids=ids, k=k, filter=filter,
                                  with_stats=True)
        out = loaded.apply(X, found.results)
        return SearchResult(out, found.stats) if with_stats else out

    def snapshot(self, dest_path: str) -> None:
        """A consistent online copy of the whole index (all collections) into ``dest_path``."""
        self._index.snapshot(dest_path)
