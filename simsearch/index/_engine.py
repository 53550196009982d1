"""The index engine of one collection: memory-mapped segments, a memtable, a manifest, merges.

SQLite (:mod:`simsearch.index._storage`) is the source of truth and the write-ahead log; what
queries read lives here, derived from it, once:

* **segments** (:mod:`simsearch.index._segments`): immutable checksummed files in
  ``<index>/segments/c<cid>/``, memory-mapped, each with its rows' signatures, band tables, ids,
  labels and vectors; an in-memory ``alive`` byte per row marks removals;
* the **memtable** (:mod:`simsearch.index._memtable`): writes since the last flush;
* the **manifest** (:mod:`simsearch.index._manifest`): which segments (and tombstone files) are
  live and which write ``seq`` / ``max_rowid`` they cover.

A write commits to SQLite, then :meth:`Engine.apply` marks the removed rows dead and appends the
new ones to the memtable. Before a write, a memtable past :data:`MEMTABLE_ROWS` is flushed to a
new segment and a new manifest (so a full disk fails that write, uncommitted, with
ResourceExhaustedError, and the engine keeps serving). A background thread merges segments of
similar size (:data:`MERGE_FACTOR` at a time) and rewrites a segment a quarter dead, LSM-style.

Opening maps the manifest's segments (their structural sections verified; the large ones block
by block on first read, see :mod:`simsearch.index._segments`, and by a background pass) and
replays the SQLite rows after its ``max_rowid`` and the deletes logged after its ``seq``; the live
count is checked against the store's document counter. The same after a clean close and after a
kill -9. A damaged or missing segment (at open, or a block at its first read) is dropped and only
its rows are rebuilt (:meth:`Engine.repair`: the stored rows of its rowid range that no other
segment holds alive; this stays exact when merges combine non-adjacent segments, whose ranges
then overlap). A damaged or stale manifest, or one of another database, rebuilds every segment. The caller (the collection) holds its
read lock around queries and its write lock around :meth:`apply`, :meth:`flush_if_full` and the
install step of a merge.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager

import numpy as np

from .._lsh_storage import nonempty
from ..backends import get_knn_backend
from ..banding import choose_params
from ..distance import exact_knn, max_abs, max_row_norm, rank
from ..errors import ResourceExhaustedError, StorageCorruptionError
from . import _manifest
from ._memtable import Memtable
from ._segments import (
    Segment,
    SegmentDamaged,
    SegmentData,
    build_segment,
    hash_ids,
    open_segment,
    segment_file,
    segment_in_memory,
    write_segment,
)
from ._storage import _is_full, pack, unpack

log = logging.getLogger("simsearch.index")

MEMTABLE_ROWS = int(os.environ.get("SIMSEARCH_MEMTABLE_ROWS", "16384"))
REBUILD_ROWS = 1 << 18  # rows per segment when building from the stored rows
MERGE_FACTOR = 4
# no merge makes a segment larger than this: a merge holds its output in memory (~1.6 KB a row
# with 128-d vectors), so at 10M documents segments stay ~1M rows and a merge under ~3.5 GB
MAX_MERGE_ROWS = int(os.environ.get("SIMSEARCH_MAX_MERGE_ROWS", str(1 << 21)))
SEGMENTS_DIR = "segments"
# shingle sets for exact Jaccard (queries with exact=True, dedup on ingest), an LRU per collection:
# 256 MiB holds ~160k sets of 200-word documents; an LRU gets no hits when the sets in use cycle
# through more than it holds (at 64 MiB, skip-upserts over 50k texts ran at 0.61x a plain upsert,
# at 256 MiB 0.78x); SIMSEARCH_SHINGLE_CACHE_MB sets it
SHINGLE_CACHE_BYTES = int(os.environ.get("SIMSEARCH_SHINGLE_CACHE_MB", "256")) << 20
FLAT_COPY_BYTES = 1 << 30  # vectors of segments scanned flat, copied to the heap, per collection (no multi-GB copies)
_GATHER_DEAD = 256  # a vector block with more removed rows than this is gathered, not scanned whole


def segments_dir(index_path: str, cid: int) -> str:
    return os.path.join(index_path, SEGMENTS_DIR, f"c{cid}")


_SCAN_LIMIT = 1 << 22  # queries x memtable rows above which a probe sorts the memtable instead of scanning it

class Engine:
    def __init__(self, storage, cid: int, cfg, backend, lock, index_path: str | None, *, fsync: bool):
        self.storage = storage
        self.cid = cid
        self.cfg = cfg
        self.backend = backend
        self.k = backend.host  # band tables live in host memory (mapped files)
        self.knn_be = get_knn_backend(backend)
        self.b, self.r = choose_params(cfg.threshold, cfg.num_perm, "exact", cfg.weights)
        self.lock = lock  # the collection's RWLock
        self.dir = None if index_path is None else segments_dir(index_path, cid)
        self.fsync = fsync
        self.segments: list[Segment] = []
        self.mem = self._new_memtable()
        self.seq = 0  # the last write applied
        self.flushed_seq = 0  # the seq the manifest's segments cover
        self.max_rowid = 0  # the largest rowid the manifest's segments cover
        self.last_rowid = 0
        self.generation = 0
        self.next_id = 1
        self.live = 0
        self._shingles: OrderedDict[int, np.ndarray] = OrderedDict()
        self._shingle_bytes = 0
        self._flat_bytes = 0
        self._copy_queue: deque = deque()  # (segment, vectors) waiting for their heap copy
        self._copier: threading.Thread | None = None
        self._flusher = None  # see _flush_pool
        self._shingle_mutex = threading.Lock()
        self._merge_wake = threading.Event()
        self._merge_mutex = threading.Lock()
        self._merge_stop = False
        self._merging: set[str] = set()  # file names a running merge is writing (kept from garbage collection)
        self._merger: threading.Thread | None = None
        self.merge_error: BaseException | None = None
        self._verifier: threading.Thread | None = None
        self.foreground = Foreground()  # queries in flight, which the catch-up threads give way to
        self.rows_loaded = 0  # rows read from the store into segments (rebuilds, repairs), for tests
        self.repairs = 0
        self._bucket_lookup = getattr(backend.host, "name", "") == "numba"  # its lookup reads one bucket per key
        # called as on_segments(removed, added) under the write lock whenever a flush or a merge
        # changes the segment list (the collection's ANN builder: simsearch.index._vecsearch)
        self.on_segments = None
        # whether a flat scan of a segment is worth a heap copy of its vectors (the ANN builder says
        # no for segments due their own structure: they are scanned flat only until it is ready)
        self.flat_copy_ok = lambda seg: True
        self._mem_scan: tuple | None = None  # (memtable, rows seen, max |value|, max norm, rows without a vector)

    def _new_memtable(self) -> Memtable:
        return Memtable(self.cfg.num_perm, self.b, self.cfg.dim)

    def sources(self) -> list:
        return self.segments + ([self.mem] if len(self.mem) else [])

    # -- open ------------------------------------------------------------------------------
    def open(self) -> None:
        if self.dir is None:
            self._rebuild()
        else:
            os.makedirs(self.dir, exist_ok=True)
            if not self._open_manifest():
                self._rebuild()
            self._start_merger()
            self._start_verifier()

    def _open_manifest(self) -> bool:
        """Map the manifest's segments and replay what follows; False (nothing kept) when the
        manifest is missing, damaged, stale or of another database, or a segment is bad."""
        try:
            body = _manifest.read_manifest(self.dir)
        except StorageCorruptionError as exc:
            log.warning("rebuilding the segments of collection %d: %s", self.cid, exc)
            return False
        if body is None:
            return False
        db_seq = self.storage.seq(self.cid)
        if body.get("database") != self.storage.uuid() or body.get("cid") != self.cid or body["seq"] > db_seq:
            log.warning("rebuilding the segments of collection %d: the manifest is stale or of another database",
                        self.cid)
            return False
        segs, bad = [], []
        for entry in body["segments"]:
            try:
                seg = open_segment(os.path.join(self.dir, entry["file"]), self.cfg, self.b, self.r)
                if seg.n != entry["n"]:
                    raise StorageCorruptionError(f"segment {entry['file']} does not match the manifest")
                if entry.get("tomb"):
                    try:
                        seg.alive = _manifest.read_tombstones(self.dir, entry["tomb"], seg.n)
                    except StorageCorruptionError:
                        seg.close()
                        raise
                    seg.n_dead = int(seg.n - seg.alive.sum())
                    seg.tomb = entry["tomb"]
                segs.append(seg)
            except StorageCorruptionError as exc:
                if "max_rowid" not in entry:  # a manifest from before coverage was recorded
                    log.warning("rebuilding the segments of collection %d: %s", self.cid, exc)
                    for sg in segs:
                        if sg is not None:
                            sg.close()
                    return False
                log.warning("rebuilding the rows of one segment of collection %d: %s", self.cid, exc)
                _remove(os.path.join(self.dir, entry["file"]))  # never mapped again, even if the rebuild fails
                segs.append(None)
                bad.append((len(segs) - 1, entry))
        self.seq = self.flushed_seq = int(body["seq"])
        self.max_rowid = self.last_rowid = int(body["max_rowid"])
        self.generation = int(body["generation"])
        self.next_id = int(body["next_id"])
        self.segments = [sg for sg in segs if sg is not None]
        self.live = sum(sg.live for sg in self.segments)
        if bad:
            for pos, entry in reversed(bad):
                others = [sg for sg in segs if sg is not None]
                new = self._reload_range(int(entry["min_rowid"]), int(entry["max_rowid"]), others)
                segs[pos:pos + 1] = new
                self.segments = [sg for sg in segs if sg is not None]
            self._write_manifest(self.segments)
        self._replay()
        if self.live != self.storage.count(self.cid):
            log.warning("rebuilding the segments of collection %d: they disagree with the stored rows", self.cid)
            for sg in self.segments:
                sg.close()
            self.segments, self.mem = [], self._new_memtable()
            return False
        _manifest.collect_garbage(self.dir, self._referenced())
        return True

    def _reload_range(self, lo: int, hi: int, others: list[Segment]) -> list[Segment]:
        """New segments holding the stored rows with lo <= rowid <= hi that no segment of
        ``others`` holds alive: the rows of a damaged or missing segment (the stored rows after
        the manifest's ``max_rowid`` are the memtable's, so ``hi`` is clipped to it)."""
        def keep(rowids):
            ok = np.ones(len(rowids), bool)
            for sg in others:
                ok &= sg.locate_rowids(rowids) < 0
            return ok

        out: list[Segment] = []
        self._load_rows(after=lo - 1, into_memtable=False, upto=min(hi, self.max_rowid), keep=keep, out=out)
        self.repairs += 1
        return out

    def repair(self, seg: Segment) -> None:
        """Replace a segment found damaged while serving by segments rebuilt from its rows in the
        store, and write a new manifest. The caller holds the write lock."""
        if self.dir is None or not any(sg is seg for sg in self.segments):
            return  # replaced already (another query, a merge)
        log.warning("rebuilding the rows of segment %s of collection %d", seg.name, self.cid)
        others = [sg for sg in self.segments if sg is not seg]
        new = self._reload_range(seg.min_rowid, seg.max_rowid, others)
        self.live -= seg.live
        at = next(i for i, sg in enumerate(self.segments) if sg is seg)
        segments = self.segments[:at] + new + self.segments[at + 1:]
        try:
            self._write_manifest(segments)
        except BaseException:
            self.live += seg.live - sum(sg.live for sg in new)
            for sg in new:
                sg.close()
                _remove(sg.path)
            raise
        self.segments = segments
        self._segments_changed([seg], new)
        seg.close()
        _manifest.collect_garbage(self.dir, self._referenced())

    def _replay(self) -> None:
        """Bring the mapped state up to the database: rows inserted after the manifest's
        ``max_rowid`` into the memtable, deletes logged after its ``seq`` applied."""
        dead = self.storage.deletes_after(self.cid, self.flushed_seq)
        if len(dead):
            self._kill(dead)
        self._load_rows(after=self.max_rowid, into_memtable=True)
        self.seq = self.storage.seq(self.cid)

    def _load_rows(self, after: int, into_memtable: bool, *, upto: int | None = None, keep=None,
                   out: list | None = None) -> None:
        """Stored rows after rowid ``after`` (up to ``upto``; those ``keep(rowids)`` selects) into
        the memtable or into new segments (appended to ``out``, else to the engine's)."""
        cfg = self.cfg
        empty_sig = pack(np.full(cfg.num_perm, 0xFFFFFFFF, np.uint32), np.uint32)
        nan_vec = pack(np.full(cfg.dim, np.nan, np.float32), np.float32) if cfg.dim else None
        pending: list[tuple] = []
        npending = 0
        for rowids, ext_ids, labels, vectors, signatures in self.storage.load_index_data(
                self.cid, after_rowid=after, upto_rowid=upto):
            rowids = np.array(rowids, dtype=np.int64)
            if keep is not None:
                sel = keep(rowids)
                if not sel.all():
                    idx = np.flatnonzero(sel).tolist()
                    rowids = rowids[sel]
                    ext_ids, labels = [ext_ids[i] for i in idx], [labels[i] for i in idx]
                    vectors, signatures = [vectors[i] for i in idx], [signatures[i] for i in idx]
                if not len(rowids):
                    continue
            sigs = unpack(b"".join(s if s is not None else empty_sig for s in signatures), np.uint32)
            sigs = sigs.reshape(len(rowids), cfg.num_perm)
            vecs = None
            if cfg.dim:
                vecs = unpack(b"".join(v if v is not None else nan_vec for v in vectors), np.float32)
                vecs = vecs.reshape(len(rowids), cfg.dim)
            if into_memtable:
                self._append(rowids, list(ext_ids), list(labels), sigs, vecs)
                continue
            pending.append((rowids, list(ext_ids), list(labels), sigs, vecs))
            npending += len(rowids)
            if npending >= REBUILD_ROWS:
                self._flush_rows(pending, out)
                pending, npending = [], 0
        if pending:
            self._flush_rows(pending, out)

    def _flush_rows(self, parts: list[tuple], out: list | None = None) -> None:
        """Rows loaded from the store (a rebuild) straight into a new segment."""
        rowids = np.concatenate([p[0] for p in parts])
        ext_ids = [e for p in parts for e in p[1]]
        labels = [x for p in parts for x in p[2]]
        sigs = np.concatenate([p[3] for p in parts])
        vecs = np.concatenate([p[4] for p in parts]) if self.cfg.dim else None
        keys = self.k.band_keys(sigs, self.b, self.r)
        data = SegmentData.from_rows(rowids, ext_ids, labels, sigs, keys, nonempty(sigs), vecs)
        (self.segments if out is None else out).append(self._make_segment(data))
        self.live += len(rowids)
        self.rows_loaded += len(rowids)
        self.last_rowid = max(self.last_rowid, int(rowids[-1]))

    def _rebuild(self) -> None:
        """Segments from every stored row, and a new manifest (the store's checksums verified)."""
        for seg in self.segments:
            seg.close()
        self.segments, self.mem = [], self._new_memtable()
        self.live = 0
        self.seq = self.storage.seq(self.cid)
        self.last_rowid = 0
        if self.dir is not None:
            _manifest.collect_garbage(self.dir, set())
        self._load_rows(after=0, into_memtable=False)
        self.flushed_seq, self.max_rowid = self.seq, self.last_rowid
        if self.dir is not None:
            self._write_manifest(self.segments)
            _manifest.collect_garbage(self.dir, self._referenced())
            self._prune_deletes()

    # -- segments and manifests --------------------------------------------------------------
    def _make_segment(self, data: SegmentData) -> Segment:
        seg_id = self.next_id
        self.next_id += 1
        header, sections = build_segment(seg_id, data, self.cfg, self.b, self.r, self.k)
        if self.dir is None:
            return segment_in_memory(header, sections)
        name = write_segment(self.dir, header, sections, fsync=self.fsync)
        del sections
        return open_segment(os.path.join(self.dir, name), self.cfg, self.b, self.r, verify=False)

    def _write_manifest(self, segments: list[Segment]) -> None:
        """A new manifest generation over ``segments`` (tombstone files written where a
        segment's removals changed). On failure nothing in memory changes."""
        gen = self.generation + 1
        entries, tombs = [], {}
        for seg in segments:
            tomb = seg.tomb
            if seg.n_dead and (tomb is None or tomb["dead"] != seg.n_dead):
                tomb = _manifest.write_tombstones(self.dir, seg.id, gen, seg.alive, self.fsync)
            elif not seg.n_dead:
                tomb = None
            tombs[seg.id] = tomb
            entries.append({"file": seg.name, "n": seg.n, "tomb": tomb, "min_rowid": seg.min_rowid,
                            "max_rowid": seg.max_rowid})
        _manifest.write_manifest(self.dir, {
            "database": self.storage.uuid(), "cid": self.cid, "generation": gen, "seq": self.flushed_seq,
            "max_rowid": self.max_rowid, "next_id": self.next_id, "segments": entries,
        }, self.fsync)
        for seg in segments:
            seg.tomb = tombs[seg.id]
        self.generation = gen

    def _referenced(self) -> set[str]:
        keep = {_manifest.MANIFEST}
        for name in self._merging:  # a merge writes outside the lock: its output is not garbage
            keep.update((name, name + ".tmp"))
        for seg in self.segments:
            keep.add(seg.name)
            if seg.tomb:
                keep.add(seg.tomb["file"])
        return keep

    def _prune_deletes(self) -> None:
        try:
            self.storage.prune_deletes(self.cid, self.flushed_seq)
        except ResourceExhaustedError:  # the log is only longer; the next flush prunes it
            pass

    # -- writes (the caller holds the write lock) -------------------------------------------
    def _append(self, rowids, ext_ids, labels, sigs, vecs) -> None:
        if not len(rowids):
            return
        keys = self.k.band_keys(sigs, self.b, self.r)
        self.mem.append(rowids, ext_ids, labels, sigs, keys, nonempty(sigs), vecs)
        self.live += len(rowids)
        self.last_rowid = max(self.last_rowid, int(rowids[-1]))

    def _kill(self, rowids: np.ndarray) -> int:
        killed = 0
        for src in self.sources():
            rows = src.locate_rowids(rowids)
            rows = rows[rows >= 0]
            if len(rows):
                src.kill(rows)
                killed += len(rows)
        self.live -= killed
        return killed

    def apply(self, seq: int, removed: np.ndarray, rowids, ext_ids, labels, sigs, vecs) -> None:
        """Reflect a committed write: ``removed`` rowids die, the new rows join the memtable."""
        if len(removed):
            self._kill(np.asarray(removed, np.int64))
        self._append(np.asarray(rowids, np.int64), ext_ids, labels, sigs, vecs)
        self.seq = seq

    def stats(self) -> dict:
        """Live documents, segments, bytes of this collection's segment files, and the heap bytes
        the engine holds (the memtable, segment vectors copied for flat scans, the shingle-set
        cache; mapped segment pages are file-backed and not counted). The caller holds the lock."""
        on_disk = None
        if self.dir is not None:
            on_disk = 0
            try:
                names = os.listdir(self.dir)
            except OSError:
                names = []
            for name in names:
                try:
                    on_disk += os.stat(os.path.join(self.dir, name)).st_size
                except OSError:  # collected meanwhile
                    pass
        return {"documents": self.live, "segments": len(self.segments), "bytes_on_disk": on_disk,
                "bytes_in_memory": self.mem.nbytes() + self._flat_bytes + self._shingle_bytes}

    def flush_if_full(self) -> None:
        if len(self.mem) >= MEMTABLE_ROWS:
            self.flush()

    def flush_beside(self) -> _FlushBeside | None:
        """When the memtable is full, start its flush on a thread of its own (see
        :class:`_FlushBeside`); None when no flush is due (or, in memory, it was done here). The caller holds the write
        lock and touches nothing of the engine until ``wait()`` has returned: it runs a storage
        write meanwhile (a pipelined upsert; the memtable holds none of its rows), calls ``wait()``
        before its commit, so that a failed flush (a full disk: ResourceExhaustedError, everything
        as it was) fails the write, and ``finish()`` after it."""
        if len(self.mem) < MEMTABLE_ROWS:
            return None
        if self.dir is None:  # in memory: no file to write, flushed here
            self.flush()
            return None
        return _FlushBeside(self)

    def _flush_pool(self):
        """The one thread that runs flushes beside writes (one thread, so that what it reads from
        the storage goes through one connection), made on first use and shut down by close."""
        if self._flusher is None:
            from concurrent.futures import ThreadPoolExecutor

            self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"simsearch-flush-c{self.cid}")
        return self._flusher

    def flush(self) -> None:
        """The memtable becomes a segment and a new manifest is the commit point. A full disk
        raises ResourceExhaustedError and leaves everything as it was (still served)."""
        if self._flush_segment():
            self._after_flush()

    def _flush_segment(self) -> bool:
        """:meth:`flush` up to its bookkeeping: the segment and the manifest written, the new
        segment in the list and a new memtable in place (True); False with an empty memtable."""
        if not len(self.mem):
            return False
        data = self.mem.to_segment_data()
        seg = None
        try:
            seg = self._make_segment(data) if len(data) else None
            if self.dir is not None:
                old_seq, old_max = self.flushed_seq, self.max_rowid
                self.flushed_seq, self.max_rowid = self.seq, self.last_rowid
                try:
                    self._write_manifest(self.segments + ([seg] if seg is not None else []))
                except BaseException:
                    self.flushed_seq, self.max_rowid = old_seq, old_max
                    raise
        except OSError as exc:
            if seg is not None and seg.path is not None:
                seg.close()
                _remove(seg.path)
            if _is_full(exc):
                raise ResourceExhaustedError(
                    f"the disk holding the index is full: could not flush collection {self.cid}'s recent writes "
                    f"to a segment; this write was not applied (free space and retry)") from None
            raise
        if self.dir is None:
            self.flushed_seq, self.max_rowid = self.seq, self.last_rowid
        if seg is not None:
            self.segments.append(seg)
            self._segments_changed([], [seg])
        self.mem = self._new_memtable()
        return True

    def _after_flush(self) -> None:
        if self.dir is not None:
            _manifest.collect_garbage(self.dir, self._referenced())
            self._prune_deletes()
            self._merge_wake.set()
        else:
            while self._merge_once_in_memory():
                pass

    def snapshot_into(self, dest_index: str, database: str) -> None:
        """Copy the current manifest's files into the index at ``dest_index`` (hard links where
        possible: the files are immutable), with a manifest naming the copy's ``database``. The
        caller holds the write lock. Without a manifest nothing is copied (the copy rebuilds)."""
        if self.dir is None:
            return
        body = _manifest.read_manifest(self.dir)
        if body is None:
            return
        dest = segments_dir(dest_index, self.cid)
        os.makedirs(dest, exist_ok=True)
        for name in _manifest.referenced(body) - {_manifest.MANIFEST}:
            src, dst = os.path.join(self.dir, name), os.path.join(dest, name)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        _manifest.write_manifest(dest, dict(body, database=database), self.fsync)

    def flush_on_close(self) -> None:
        """Flush the memtable so the next open replays nothing (best effort: a failure only
        means that open replays these rows from SQLite)."""
        if self.dir is None:
            return
        try:
            self.flush()
        except (OSError, ResourceExhaustedError, StorageCorruptionError) as exc:
            log.warning("could not flush collection %d on close (%s); the next open replays it", self.cid, exc)

    # -- merges ------------------------------------------------------------------------------
    def _pick_merge(self) -> list[Segment]:
        """MERGE_FACTOR segments of one size tier, or one segment a quarter removed; else []."""
        tiers: dict[int, list[Segment]] = {}
        for seg in self.segments:
            if seg.n_dead and 4 * seg.n_dead >= seg.n:
                return [seg]
            t = int(np.log(max(seg.live, 1) / max(MEMTABLE_ROWS, 1)) / np.log(MERGE_FACTOR)) if seg.live else 0
            tiers.setdefault(max(t, 0), []).append(seg)
        for t in sorted(tiers):
            if len(tiers[t]) >= MERGE_FACTOR and sum(s.live for s in tiers[t][:MERGE_FACTOR]) <= MAX_MERGE_ROWS:
                return tiers[t][:MERGE_FACTOR]
        return []

    def _merged_data(self, parts) -> SegmentData:
        return SegmentData.merged(parts, lambda s: self.k.band_keys(s, self.b, self.r))

    def _merge_once_in_memory(self) -> bool:
        pick = self._pick_merge()
        if not pick:
            return False
        data = self._merged_data([(s, s.alive) for s in pick])
        merged = self._make_segment(data) if len(data) else None
        self.segments = self._replace(pick, merged)
        self._segments_changed(pick, [merged] if merged is not None else [])
        return True

    def _segments_changed(self, removed: list[Segment], added: list[Segment]) -> None:
        hook = self.on_segments
        if hook is not None:
            try:
                hook(removed, added)
            except Exception:  # a derived structure; never fail the flush or merge for it
                log.exception("the segment hook of collection %d failed", self.cid)

    def _replace(self, pick: list[Segment], merged: Segment | None) -> list[Segment]:
        at = self.segments.index(pick[0])
        rest = [s for s in self.segments if not any(s is p for p in pick)]
        return rest[:at] + ([merged] if merged is not None else []) + rest[at:]

    def merge_once(self) -> bool:
        """One background merge step; True when it merged something. The inputs stay mapped and
        served until the new manifest names the merged segment instead. Merges run one at a time."""
        with self._merge_mutex:
            if self._merge_stop and threading.current_thread().name.startswith("simsearch-merge"):
                return False
            return self._merge_step()

    def _merge_step(self) -> bool:
        with self.lock.read():
            pick = self._pick_merge()
            if not pick:
                return False
            parts = [(s, s.alive.copy()) for s in pick]
        try:
            data = self._merged_data(parts)
        except SegmentDamaged as exc:  # an input fails a block checksum: rebuild its rows instead
            with self.lock.write():
                self.repair(exc.segment)
            return True
        merged = None
        try:
            with self.lock.write():  # ids are allotted under the lock; the write below is outside it
                seg_id = self.next_id
                self.next_id += 1
                self._merging.add(segment_file(seg_id))
            if len(data):
                header, sections = build_segment(seg_id, data, self.cfg, self.b, self.r, self.k)
                name = write_segment(self.dir, header, sections, fsync=self.fsync)
                del sections
                merged = open_segment(os.path.join(self.dir, name), self.cfg, self.b, self.r, verify=False)
            with self.lock.write():
                if any(not any(s is p for s in self.segments) for p, _ in parts):
                    # an input was repaired meanwhile: abandon this merge (the next one picks again)
                    if merged is not None:
                        merged.close()
                        _remove(merged.path)
                    return True
                if merged is not None:
                    for seg, snap in parts:  # rows removed while the merge ran
                        newly = np.flatnonzero(snap & ~seg.alive)
                        if len(newly):
                            rows = merged.locate_rowids(seg.rowids[newly])
                            merged.kill(rows[rows >= 0])
                segments = self._replace([p for p, _ in parts], merged)
                self._write_manifest(segments)
                self.segments = segments
                self._segments_changed([p for p, _ in parts], [merged] if merged is not None else [])
                _manifest.collect_garbage(self.dir, self._referenced())
        except OSError as exc:
            if merged is not None:
                merged.close()
                _remove(merged.path)
            log.warning("a merge of collection %d failed (%s); serving the last good manifest", self.cid, exc)
            self.merge_error = exc
            return False
        finally:
            with self.lock.write():
                self._merging.clear()
        return True

    def _start_merger(self) -> None:
        def run():
            while not self._merge_stop:
                self._merge_wake.wait(timeout=30)
                self._merge_wake.clear()
                while not self._merge_stop and self.merge_once():
                    pass

        # A merge due at open waits for the first timer tick (or the next flush): the first
        # queries after a restart should not compete with it.
        self._merger = threading.Thread(target=run, name=f"simsearch-merge-c{self.cid}", daemon=True)
        self._merger.start()

    def _start_verifier(self) -> None:
        """A background pass that verifies every block of the segments not yet read by a query
        (a damaged one is rebuilt from its rows), so that queries soon stop checking blocks."""
        if all(sg.verified for sg in self.segments):
            return

        def run():
            background_priority()  # catch-up work: the queries verify the blocks they read themselves
            while not self._merge_stop:
                todo = [sg for sg in self.segments if not sg.verified]
                if not todo:
                    return
                for seg in todo:
                    try:
                        while not self._merge_stop and seg.path is not None:
                            self.foreground.give_way()
                            if not seg.verify_some(16):
                                break
                    except SegmentDamaged as exc:
                        with self.lock.write():
                            if not self._merge_stop:
                                self.repair(exc.segment)
                    except (ValueError, TypeError, AttributeError):  # closed by a merge meanwhile
                        pass

        self._verifier = threading.Thread(target=run, name=f"simsearch-verify-c{self.cid}", daemon=True)
        self._verifier.start()

    def wait_verified(self) -> None:
        """Wait for the background verification pass (tests, benchmarks)."""
        self.foreground.release()
        if self._verifier is not None:
            self._verifier.join()

    def wait_merges(self) -> None:
        """Run merges until none is due (tests, benchmarks)."""
        if self.dir is None:
            return
        while self.merge_once():
            pass

    def stop_merger(self) -> None:
        """Stop the background merges (after the one in progress); :meth:`merge_once` still works."""
        self._merge_stop = True
        self._merge_wake.set()
        if self._merger is not None and self._merger is not threading.current_thread():
            self._merger.join()
        self._merger = None

    def close(self, *, remove: bool = False) -> None:
        self.foreground.close()  # a catch-up pass waiting for a query stops waiting
        self.stop_merger()
        if self._verifier is not None and self._verifier is not threading.current_thread():
            self._verifier.join(timeout=10)  # it stops after its current block (or its repair)
        for seg in self.segments:
            seg.close()
        with self._shingle_mutex:
            self._copy_queue.clear()
        self.wait_copies()  # stops at its next step: its segment is closed
        if self._flusher is not None:  # idle: a flush beside a write ends within that write
            self._flusher.shutdown(wait=True)
            self._flusher = None
        if remove and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- reads (the caller holds the read lock) ---------------------------------------------
    def locate_ext(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(source index, row) of each alive external id, (-1, -1) when absent."""
        src = np.full(len(ids), -1, np.int64)
        row = np.full(len(ids), -1, np.int64)
        sources = self.sources()
        hashes = hash_ids(ids) if self.segments else None
        for s, source in enumerate(sources):
            todo = np.flatnonzero(src < 0)
            if not len(todo):
                break
            sub = [ids[i] for i in todo.tolist()]
            hit = source.locate_ext(sub, None if hashes is None else hashes[todo])
            ok = hit >= 0
            src[todo[ok]], row[todo[ok]] = s, hit[ok]
        return src, row

    def rowids_of(self, ids: list[str]) -> np.ndarray:
        src, row = self.locate_ext(ids)
        out = np.full(len(ids), -1, np.int64)
        sources = self.sources()
        for s in np.unique(src[src >= 0]).tolist():
            sel = src == s
            out[sel] = sources[s].rowids[row[sel]]
        return out

    def gather(self, src: np.ndarray, row: np.ndarray, what: str):
        """Per (source, row): 'sigs' (n, P) array, 'vecs' (n, dim) (NaN: none), 'ext' or 'labels' lists."""
        sources = self.sources()
        n = len(src)
        if what == "sigs":
            out = np.empty((n, self.cfg.num_perm), np.uint32)
        elif what == "vecs":
            out = np.full((n, self.cfg.dim), np.nan, np.float32)
        else:
            out = [None] * n
        for s in np.unique(src).tolist():
            sel = np.flatnonzero(src == s)
            source, rows = sources[s], row[sel]
            if what == "sigs":
                out[sel] = _sigs_of(source, rows)[rows]
            elif what == "vecs":
                out[sel] = _vectors_of(source, rows, self.cfg.dim)
            else:
                vals = source.ext_ids(rows) if what == "ext" else source.labels(rows)
                for i, v in zip(sel.tolist(), vals):
                    out[i] = v
        return out

    def candidates(self, qsigs: np.ndarray, qkeys: np.ndarray | None = None):
        """(query, source, row) of every LSH candidate of each query signature (``qkeys``: their
        band keys, when the caller has them)."""
        qkeys = self.k.band_keys(qsigs, self.b, self.r) if qkeys is None else qkeys
        qvalid = nonempty(qsigs)
        qs, ss, rs = [], [], []
        for s, src in enumerate(self.sources()):
            if isinstance(src, Segment):
                table = src.probe_table(qkeys, qvalid, whole=not self._bucket_lookup)
                off, rows = self.k.lookup(*table, src.alive, qkeys, qvalid)
            elif len(qsigs) * len(src) > _SCAN_LIMIT:  # a batch of queries: sort the memtable's keys once
                mask = src.lsh_mask()
                off, rows = self.k.lookup(*self.k.bucket_sort(src.keys, mask), mask, qkeys, qvalid)
            else:
                off, rows = self.k.scan(src.keys, src.lsh_mask(), qkeys, qvalid)
            if len(rows):
                qs.append(np.repeat(np.arange(len(qsigs), dtype=np.int64), np.diff(off)))
                ss.append(np.full(len(rows), s, np.int64))
                rs.append(np.asarray(rows, np.int64))
        if not qs:
            e = np.empty(0, np.int64)
            return e, e, e
        return np.concatenate(qs), np.concatenate(ss), np.concatenate(rs)

    def scored_candidates(self, qsigs: np.ndarray):
        """(query, source, row, rowid, estimated Jaccard) of every LSH candidate, in one pass
        over the sources (the lookup and the pair-Jaccard kernel per source)."""
        qkeys = self.k.band_keys(qsigs, self.b, self.r)
        qvalid = nonempty(qsigs)
        parts = []
        nq = len(qsigs)
        for s, src in enumerate(self.sources()):
            if isinstance(src, Segment):
                table = src.probe_table(qkeys, qvalid, whole=not self._bucket_lookup)
                off, rows = self.k.lookup(*table, src.alive, qkeys, qvalid)
            else:
                off, rows = self.k.scan(src.keys, src.lsh_mask(), qkeys, qvalid)
            if len(rows):
                rows = np.asarray(rows, np.int64)
                q = np.repeat(np.arange(nq, dtype=np.int64), np.diff(off)) if nq > 1 else np.zeros(len(rows), np.int64)
                parts.append((q, np.full(len(rows), s, np.int64), rows, src.rowids[rows],
                              self.k.pair_jaccard_sigs(qsigs, _sigs_of(src, rows), q, rows)))
        if not parts:
            e = np.empty(0, np.int64)
            return e, e, e, e, np.empty(0, np.float64)
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(5))

    def estimate(self, qsigs, q, src, rows) -> np.ndarray:
        """Estimated Jaccard of each (query, candidate) pair (the pair-Jaccard kernel)."""
        est = np.zeros(len(q), np.float64)
        for s, source in enumerate(self.sources()):
            sel = np.flatnonzero(src == s)
            if len(sel):
                est[sel] = self.k.pair_jaccard_sigs(qsigs, _sigs_of(source, rows[sel]), q[sel], rows[sel])
        return est

    def rowids_at(self, src, rows) -> np.ndarray:
        out = np.empty(len(src), np.int64)
        for s, source in enumerate(self.sources()):
            sel = src == s
            if sel.any():
                out[sel] = source.rowids[rows[sel]]
        return out

    # -- shingle sets (exact Jaccard) ---------------------------------------------------------
    def cached_shingles(self, rowids: list[int], fetch) -> dict[int, np.ndarray]:
        """rowid -> shingle set, from an LRU cache (rowids are never reused, so an entry never
        goes stale) or ``fetch(missing rowids)``."""
        out, missing = {}, []
        with self._shingle_mutex:
            for r in rowids:
                hit = self._shingles.get(r)
                if hit is None:
                    missing.append(r)
                else:
                    self._shingles.move_to_end(r)
                    out[r] = hit
        if missing:
            got = fetch(missing)
            out.update(got)
            with self._shingle_mutex:
                for r, arr in got.items():
                    if r not in self._shingles and arr.nbytes < SHINGLE_CACHE_BYTES // 16:
                        self._shingles[r] = arr
                        self._shingle_bytes += arr.nbytes
                while self._shingle_bytes > SHINGLE_CACHE_BYTES and self._shingles:
                    _, old = self._shingles.popitem(last=False)
                    self._shingle_bytes -= old.nbytes
        return out

    # -- vectors -----------------------------------------------------------------------------
    def knn(self, queries: np.ndarray, k: int, metric: str, segments: list | None = None, mem_from: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
        """Exact (distances, rowids) of the k nearest alive vectors, ties to the smaller rowid;
        -1 / inf padded. Each segment (of ``segments``, default all) is scanned in blocks (dead
        rows skipped), then the memtable from its row ``mem_from`` on."""
        nq = len(queries)
        qmax = float(np.abs(queries).max()) if queries.size else 0.0
        ds, rs = [], []

        def add(base, amax, bnorm, rowids_of_rows, alive=None):
            n = len(base)
            if not n:
                return
            ndead = 0 if alive is None else int(n - alive.sum())
            if ndead == n:
                return
            if ndead > _GATHER_DEAD:
                keep = np.flatnonzero(alive)
                base, rowids_of_rows, alive, ndead = base[keep], rowids_of_rows[keep], None, 0
                n = len(base)
            fetch = min(n, k + ndead)
            d, i = exact_knn(self.knn_be, base, queries, fetch, metric, max(amax, qmax), bnorm)
            rid = rowids_of_rows[i]
            if alive is not None and ndead:
                bad = ~alive[i]
                d = np.where(bad, np.inf, d)
                rid = np.where(bad, -1, rid)
            ds.append(d)
            rs.append(rid)

        for seg in self.segments if segments is None else segments:
            if seg.vecs is None or not len(seg.vecs):
                continue
            vecs = self._flat_vectors(seg)
            valive = seg.alive[seg.vec_rows]
            vrowids = seg.rowids[seg.vec_rows]
            ndead = len(valive) - int(valive.sum())
            if ndead <= _GATHER_DEAD:  # one scan of the whole segment: fewer calls, fewer thread hand-offs
                add(vecs, *seg.vec_stats, vrowids, valive if ndead else None)
                continue
            for lo, hi, amax, bnorm in seg.vec_blocks:
                a = valive[lo:hi]
                add(vecs[lo:hi], amax, bnorm, vrowids[lo:hi], None if a.all() else a)
        if len(self.mem) > mem_from and self.mem.vecs is not None:
            V, amax, bnorm, ok = self._memtable_vectors()
            if ok is None:  # every row alive with a vector: the buffer itself, no copy
                add(V[mem_from:], amax, bnorm, self.mem.rowids[mem_from:])
            elif ok[mem_from:].any():
                rows = mem_from + np.flatnonzero(ok[mem_from:])
                add(V[rows], amax, bnorm, self.mem.rowids[rows])
        if not ds:
            return np.full((nq, 0), np.inf, np.float32), np.full((nq, 0), -1, np.int64)
        return rank(np.concatenate(ds, axis=1), np.concatenate(rs, axis=1), k)

    def _memtable_vectors(self):
        """(vectors, max |value|, max row norm, rows to scan or None for all) of the memtable. Its rows only
        grow and a row's vector never changes, so the maximum and the rows without a vector are
        kept for the prefix already seen and extended over the new rows only."""
        mem, V = self.mem, self.mem.vecs
        n = len(V)
        cache = self._mem_scan
        if cache is None or cache[0] is not mem or cache[1] > n:
            cache = (mem, 0, 0.0, 0.0, np.zeros(0, bool))
        _, seen, amax, bnorm, nan = cache
        if seen < n:
            new = V[seen:n]
            nan = np.concatenate([nan, np.isnan(new[:, 0])])
            finite = new[~nan[seen:n]]
            if finite.size:
                amax = max(amax, max_abs(finite))
                bnorm = max(bnorm, max_row_norm(finite))
            self._mem_scan = (mem, n, amax, bnorm, nan)
        if not mem.n_dead and not nan[:n].any():
            return V, amax, bnorm, None
        return V, amax, bnorm, mem.alive & ~nan[:n]

    def _flat_vectors(self, seg: Segment) -> np.ndarray:
        """The vectors a flat scan of ``seg`` reads: a heap copy, made on the first scan, while
        the collection's copies stay under FLAT_COPY_BYTES, else the mapping itself. A GEMM over
        a file-backed mapping ran at half the speed of one over (transparently huge-paged) heap
        memory on a quiet benchmark machine (at load 4-6 the two measured within noise, 200k and
        1M x 128); the copy is the only one in memory (512 B per 128-d vector), at most 1 GiB per
        collection, and the rest is scanned from the page cache. Segments with an ANN structure
        are only scanned flat by exact=True, so most collections above 20,000 vectors copy none."""
        copy = seg.flat_copy
        if copy is not None:
            return copy
        vecs = seg.vecs  # its blocks verified
        if seg.path is None or self._flat_bytes + vecs.nbytes > FLAT_COPY_BYTES or not self.flat_copy_ok(seg):
            return vecs
        with self._shingle_mutex:  # one copy per segment even when queries race
            if seg.flat_copy is None and not seg.flat_copying:
                seg.flat_copying = True
                self._flat_bytes += vecs.nbytes
                # made off the query path, one segment at a time by one low-priority thread: the
                # first scans after an open read the mapping, and the queries meanwhile keep a core
                # (one thread per segment took both cores of a 2-core machine: near-duplicate
                # queries during the copies at 10M waited ~4.4 ms for one)
                self._copy_queue.append((seg, vecs))
                if self._copier is None or not self._copier.is_alive():
                    self._copier = threading.Thread(target=self._run_copies, daemon=True,
                                                    name=f"simsearch-flatcopy-c{self.cid}")
                    self._copier.start()
        return vecs

    def _run_copies(self) -> None:
        background_priority()
        try:
            while True:
                with self._shingle_mutex:
                    if not self._copy_queue:
                        self._copier = None
                        return
                    seg, vecs = self._copy_queue.popleft()
                try:
                    _copy_flat(seg, vecs, self.foreground.give_way)
                except Exception:  # the segment is scanned from its mapping instead
                    log.exception("the heap copy of segment %s's vectors failed", seg.name)
        finally:  # a thread that ends in any way is no longer the copier (wait_copies, close)
            with self._shingle_mutex:
                if self._copier is threading.current_thread():
                    self._copier = None

    def wait_copies(self) -> None:
        """Wait for the background heap copies of segment vectors (tests, benchmarks)."""
        self.foreground.release()
        while True:
            with self._shingle_mutex:
                th = self._copier
            if th is None:
                return
            th.join()

    def vector_rows_all(self, require_labels: bool):
        """(rowids, ext ids, vectors, labels) of every alive document with a vector, in rowid order."""
        parts = []
        for source in self.sources():
            if isinstance(source, Segment):
                if source.vecs is None:
                    continue
                vi = np.flatnonzero(source.alive[source.vec_rows])
                rows = source.vec_rows[vi].astype(np.int64)
                vecs = source.vecs[vi]
            else:
                rows, vecs = source.vector_rows()
            if require_labels and len(rows):
                lab = source.labels(rows)
                ok = np.fromiter((x is not None for x in lab), bool, len(lab))
                rows, vecs = rows[ok], vecs[ok]
            parts.append((source.rowids[rows], source, rows, vecs))
        if not parts:
            return np.empty(0, np.int64), [], np.empty((0, self.cfg.dim), np.float32), []
        rowids = np.concatenate([p[0] for p in parts])
        ext = [e for p in parts for e in p[1].ext_ids(p[2])]
        labels = [x for p in parts for x in p[1].labels(p[2])]
        vecs = np.concatenate([p[3] for p in parts])
        order = np.argsort(rowids, kind="stable")
        return rowids[order], [ext[i] for i in order.tolist()], vecs[order], [labels[i] for i in order.tolist()]

    # -- self-join -----------------------------------------------------------------------------
    def candidate_pairs(self) -> np.ndarray:
        """Every pair of alive rowids sharing a band key: int64 (m, 2), a < b, sorted unique."""
        tables = []
        for src in self.sources():
            if isinstance(src, Segment):
                tables.append((src, src.table, src.alive))
            else:
                mask = src.lsh_mask()
                tables.append((src, self.k.bucket_sort(src.keys, mask), mask))
        pairs = []
        for i, (src, table, alive) in enumerate(tables):
            packed = self.k.self_join(table[0], table[1], alive)
            a = (packed >> np.uint64(32)).astype(np.int64)
            b = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
            pairs.append(np.stack([src.rowids[a], src.rowids[b]], axis=1))
            if i + 1 < len(tables):
                keys = self.k.band_keys(src.sigs, self.b, self.r)
                has = nonempty(src.sigs) & alive
                for other, otable, oalive in tables[i + 1:]:
                    off, rows = self.k.lookup(*otable, oalive, keys, has)
                    q = np.repeat(np.arange(len(src.rowids)), np.diff(off))
                    pairs.append(np.stack([src.rowids[q], other.rowids[rows]], axis=1))
        if not pairs:
            return np.empty((0, 2), np.int64)
        out = np.concatenate(pairs)
        out.sort(axis=1)
        out = np.unique(out, axis=0)
        return np.ascontiguousarray(out)

    def locate_rowids(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        src = np.full(len(rowids), -1, np.int64)
        row = np.full(len(rowids), -1, np.int64)
        for s, source in enumerate(self.sources()):
            hit = source.locate_rowids(rowids)
            ok = hit >= 0
            src[ok], row[ok] = s, hit[ok]
        return src, row

    def memory(self) -> dict[str, int]:
        """Heap bytes the engine holds (the mapped files are not counted)."""
        return {"alive": sum(s.alive.nbytes for s in self.segments), "memtable": self.mem.nbytes(),
                "flat_vectors": sum(s.flat_copy.nbytes for s in self.segments if s.flat_copy is not None),
                "shingle_cache": self._shingle_bytes}


def _sigs_of(source, rows: np.ndarray) -> np.ndarray:
    """The signature array of a source, safe to read at ``rows`` (their blocks verified)."""
    return source.sig_rows(rows) if isinstance(source, Segment) else source.sigs


class _FlushBeside:
    """A memtable flush running on a thread of its own (:meth:`Engine.flush_beside`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._future = engine._flush_pool().submit(engine._flush_segment)

    def wait(self) -> None:
        """Wait for the flush; raise what it raised (nothing changed then)."""
        self._future.result()

    def finish(self) -> None:
        """After the caller's commit (or its failure): wait for the flush without raising, and do
        a successful flush's bookkeeping (garbage collection, the delete log, waking the merger),
        which writes to the storage itself."""
        if self._future.exception() is None and self._future.result() is True:
            self._engine._after_flush()


BACKGROUND_NICE = 10  # nice increment of the catch-up threads (block verification, heap copies)


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads one by one; elsewhere a
    no-op): catch-up work yields the cores to the queries and writes that run meanwhile."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        pass


GIVE_WAY_S = float(os.environ.get("SIMSEARCH_GIVE_WAY_S", "2"))
OPEN_GRACE_S = 1.0  # after an open, the catch-up passes wait this long at most for a first answer


class Foreground:
    """The queries in flight in one collection, and the catch-up work that gives way to them.

    After an open, three background passes read the same disk and cores that the first queries
    need: the block verification of the segments, the heap copies of the vectors that flat scans
    read, and the reopening of the saved ANN structures (the checksum of each ``.faiss`` reads it
    whole). Each calls :meth:`give_way` between its steps (16 blocks, 16 MiB), which waits while a
    query runs. A query never waits for them: a segment without its ANN structure yet is scanned
    exactly, and a query verifies the blocks it reads. Measured at 1M documents with the page cache
    cold (RESULTS.md), the first kNN came 0.5-1 s later with the passes competing than without them.

    Giving way is bounded: a thread waits at most GIVE_WAY_S seconds in all over its life, so a
    steady stream of queries delays the passes by that much and never starves them (the queries
    want them done: until a structure is reopened, its segment is scanned).

    The passes start while the collection is still opening (the verifier once the segments are
    mapped, the reopening once the vector index is set up), and until the first query arrives
    nothing is in flight to give way to. So they also wait while the open runs (:meth:`opening`:
    its structural checksums read the same disk) and, after it, until the first query has been
    answered, at most OPEN_GRACE_S after the open ended. Neither wait counts against the budget:
    both end by themselves. The opening thread itself never waits."""

    def __init__(self, budget_s: float | None = None) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._budget = GIVE_WAY_S if budget_s is None else budget_s
        self._left = threading.local()  # seconds of waiting each thread has left
        self._closed = False
        self._opener: int | None = None  # the thread running the open (see opening())
        self._grace_until = 0.0  # until then, after an open, the passes wait for a first answer
        self._answered = True  # no open, or a query has ended since it

    @contextmanager
    def opening(self):
        """The collection's open: the passes wait while it runs, then (OPEN_GRACE_S at most) for
        the first query to end."""
        with self._cond:
            self._opener = threading.get_ident()
            self._answered = False
        try:
            yield
        finally:
            with self._cond:
                self._opener = None
                self._grace_until = time.monotonic() + OPEN_GRACE_S
                self._cond.notify_all()

    def release(self) -> None:
        """End the wait for a first answer (a caller waits for the passes themselves: a
        ``wait_*`` call, which tests and benchmarks make right after an open)."""
        with self._cond:
            self._answered = True
            self._cond.notify_all()

    def _holding(self) -> float:
        """Seconds the passes still wait for the open and its first answer (inf: the open runs)."""
        if self._closed or self._answered:
            return 0.0
        if self._opener is not None:
            return 0.0 if self._opener == threading.get_ident() else math.inf
        return max(0.0, self._grace_until - time.monotonic())

    def close(self) -> None:
        """No more waiting (the collection is closing: its passes stop at their next step)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @contextmanager
    def query(self):
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                first = not self._answered and self._opener is None  # the first answer after an open
                if first:
                    self._answered = True
                if first or not self._running:
                    self._cond.notify_all()

    @property
    def running(self) -> int:
        return self._running

    def give_way(self) -> float:
        """Wait while the open runs and for its first answer (see :meth:`opening`), then while a
        query runs, within this thread's budget; the seconds waited."""
        waited = 0.0
        if not self._answered:
            with self._cond:
                hold = self._holding()
                while hold > 0:
                    t = time.monotonic()
                    self._cond.wait(None if hold == math.inf else hold)
                    waited += time.monotonic() - t
                    hold = self._holding()
        if not self._running or self._closed:  # the common case: no lock taken
            return waited
        left = getattr(self._left, "s", self._budget)
        with self._cond:
            while self._running and left > 0 and not self._closed:
                t = time.monotonic()
                self._cond.wait(left)
                dt = time.monotonic() - t
                left -= dt
                waited += dt
        self._left.s = left
        return waited


COPY_STEP_BYTES = 16 << 20  # a heap copy checks between steps of this size whether to stop


def _copy_flat(seg: Segment, vecs: np.ndarray, give_way) -> None:
    """The heap copy of a segment's (verified) vectors that flat scans read once it is made, in
    steps; a segment closed meanwhile keeps none, and the copy stops at its next step (so that
    Engine.close can wait for it: the file may be changed once the index is closed).
    ``give_way()`` is called before each step (:meth:`Foreground.give_way`)."""
    copy = np.empty_like(vecs)
    step = max(1, COPY_STEP_BYTES // vecs.strides[0])  # rows per step
    for lo in range(0, len(vecs), step):
        give_way()
        if seg._closed:
            return
        copy[lo:lo + step] = vecs[lo:lo + step]
    if not seg._closed:
        seg.flat_copy = copy


def _vectors_of(source, rows: np.ndarray, dim: int) -> np.ndarray:
    if isinstance(source, Segment):
        out = np.full((len(rows), dim), np.nan, np.float32)
        if source.has_vectors() and len(source.vec_rows):
            pos = np.searchsorted(source.vec_rows, rows)
            pos = np.minimum(pos, len(source.vec_rows) - 1)
            ok = source.vec_rows[pos] == rows
            out[ok] = source.vec_rows_at(pos[ok])[pos[ok]]
        return out
    return source.vecs[rows]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
