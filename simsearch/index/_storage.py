"""Durable storage of collections and documents: a Protocol and its default, SQLite in WAL mode.

Layout (format version 2), one database file ``simsearch.db`` in the index directory:

* ``meta(key, value)``: ``format_version``, the simsearch version that created the file, and the
  database's ``uuid`` (a copy made by :meth:`SQLiteStorage.backup` gets a new one).
* ``collections(cid, name, config, seq)``: ``config`` is the JSON of :class:`CollectionConfig`;
  ``seq`` is the collection's write sequence number: every committed write to its documents
  increments it by one, in the same transaction; ``ndocs`` is its number of documents, kept by
  the same transaction with ``ndocs_seq = seq``, so an open checks its segments against the rows
  without a COUNT(*) over them. A counter that is missing (a store from before it) or stale
  (``ndocs_seq != seq``: an older simsearch wrote since) is counted again once, on first use.
* ``documents(rowid, cid, ext_id, label, crc_index, crc_doc, signature, vector, metadata, text,
  shingles, seq)``: ``seq`` is the write that inserted the row. The small columns an open reads come first, so SQLite reaches them without walking
  the overflow pages of long texts. ``rowid`` is AUTOINCREMENT, so an id that is re-inserted gets a new internal number
  and stale in-memory entries can never alias it. ``vector`` (float32), ``signature`` (uint32) and
  ``shingles`` (sorted uint64) are packed little-endian BLOBs. ``crc_index`` covers what is loaded
  at open (ext_id, label, vector, signature) and ``crc_doc`` what is read by ``get`` (text,
  metadata, shingles); a mismatch raises :class:`StorageCorruptionError`, never a wrong answer.
* ``deletes(cid, seq, rowid)``: the rows each write removed (a delete, or the old version of a
  re-upserted id), so that the segment files (:mod:`simsearch.index._segments`), which cover the
  writes up to their manifest's ``seq``, are brought up to date by replaying the rows inserted
  after it and the deletes logged after it. Entries at or below a durable manifest's ``seq`` are
  pruned.
* ``models(cid, name, kind, version, payload)``: trained classifiers.

A format-1 store (no ``seq``, no ``deletes``) is upgraded in place once, on open; its segment
files are then built from the rows.

Durability: every write is one transaction; ``synchronous=FULL`` (the default, ``durability=
"full"``) fsyncs the WAL at each commit, so an acknowledged write survives kill -9 and power loss
on storage that honours fsync. ``durability="normal"`` (``synchronous=NORMAL``) survives kill -9
but may lose the last commits on power loss. Checkpoints (WAL -> database file) run on a
background thread, off the commit path (:class:`_Checkpointer`). A full disk (SQLITE_FULL, ENOSPC) fails the write with
:class:`ResourceExhaustedError`; the transaction rolls back, so nothing acknowledged is lost.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .._version import __version__
from ..errors import (
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
    StorageCorruptionError,
    UnsupportedFormatError,
)
from ._types import CollectionConfig

__all__ = ["DB_FILE", "FORMAT_VERSION", "Row", "SQLiteStorage", "Storage", "open_storage"]

FORMAT_VERSION = 2
DB_FILE = "simsearch.db"
PAGE_SIZE = 16384

_DELETES = """
CREATE TABLE IF NOT EXISTS deletes (
    cid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    doc_rowid INTEGER NOT NULL,
    PRIMARY KEY (cid, seq, doc_rowid)
) WITHOUT ROWID
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    cid INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    ndocs INTEGER DEFAULT 0,
    ndocs_seq INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL REFERENCES collections(cid) ON DELETE CASCADE,
    ext_id TEXT NOT NULL,
    label TEXT,
    crc_index INTEGER NOT NULL,
    crc_doc INTEGER NOT NULL,
    signature BLOB,
    vector BLOB,
    metadata TEXT NOT NULL,
    text TEXT,
    shingles BLOB,
    seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (cid, ext_id)
);

CREATE TABLE IF NOT EXISTS models (
    cid INTEGER NOT NULL REFERENCES collections(cid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    crc INTEGER NOT NULL,
    PRIMARY KEY (cid, name)
);
""" + _DELETES + ";"


@dataclass
class Row:
    """One document as stored; arrays are decoded lazily by the caller."""

    rowid: int
    ext_id: str
    text: str | None
    metadata: str
    label: str | None
    vector: bytes | None
    signature: bytes | None
    shingles: bytes | None


_LEN = struct.Struct("<Q").pack


def _crc(*parts: bytes | str | None) -> int:
    """CRC32 over each part's length (8 bytes, little-endian) and bytes (str as UTF-8; None is
    the one byte 0xff), chained part by part."""
    crc = 0
    crc32 = zlib.crc32
    for p in parts:
        if p is None:
            crc = crc32(b"\xff", crc)
            continue
        if isinstance(p, str):
            p = p.encode("utf-8", "surrogatepass")
        crc = crc32(p, crc32(_LEN(len(p)), crc))
    return crc


def crc_index(ext_id: str, label: str | None, vector: bytes | None, signature: bytes | None) -> int:
    """``_crc(ext_id, label, vector, signature)``, written out (called per row at open and read);
    values of another type than expected (a damaged row) go through ``_crc`` itself."""
    crc32, ln = zlib.crc32, _LEN
    try:
        e = ext_id.encode("utf-8", "surrogatepass")
        c = crc32(e, crc32(ln(len(e))))
        if label is None:
            c = crc32(b"\xff", c)
        else:
            lb = label.encode("utf-8", "surrogatepass")
            c = crc32(lb, crc32(ln(len(lb)), c))
        c = crc32(b"\xff", c) if vector is None else crc32(vector, crc32(ln(len(vector)), c))
        return crc32(b"\xff", c) if signature is None else crc32(signature, crc32(ln(len(signature)), c))
    except (AttributeError, TypeError):
        return _crc(ext_id, label, vector, signature)


def crc_doc(text: str | None, metadata: str, shingles: bytes | None) -> int:
    """``_crc(text, metadata, shingles)``, written out (as :func:`crc_index`)."""
    crc32, ln = zlib.crc32, _LEN
    try:
        if text is None:
            d = crc32(b"\xff")
        else:
            tb = text.encode("utf-8", "surrogatepass")
            d = crc32(tb, crc32(ln(len(tb))))
        mb = metadata.encode("utf-8", "surrogatepass")
        d = crc32(mb, crc32(ln(len(mb)), d))
        return crc32(b"\xff", d) if shingles is None else crc32(shingles, crc32(ln(len(shingles)), d))
    except (AttributeError, TypeError):
        return _crc(text, metadata, shingles)


def _insert_params(cid: int, seq: int, rows: list[tuple]) -> list[tuple]:
    """The INSERT parameters of ``rows`` (see :meth:`SQLiteStorage.write`) with both checksums:
    :func:`crc_index` and :func:`crc_doc` written out for a batch (one frame per row; equal to
    ``_crc``, the definition, tested)."""
    crc32, ln, ff = zlib.crc32, _LEN, b"\xff"
    out = []
    add = out.append
    for e, t, m, lab, v, s, sh in rows:
        eb = e.encode("utf-8", "surrogatepass")
        c = crc32(eb, crc32(ln(len(eb))))
        if lab is None:
            c = crc32(ff, c)
        else:
            lb = lab.encode("utf-8", "surrogatepass")
            c = crc32(lb, crc32(ln(len(lb)), c))
        c = crc32(ff, c) if v is None else crc32(v, crc32(ln(len(v)), c))
        c = crc32(ff, c) if s is None else crc32(s, crc32(ln(len(s)), c))
        if t is None:
            d = crc32(ff)
        else:
            tb = t.encode("utf-8", "surrogatepass")
            d = crc32(tb, crc32(ln(len(tb))))
        mb = m.encode("utf-8", "surrogatepass")
        d = crc32(mb, crc32(ln(len(mb)), d))
        d = crc32(ff, d) if sh is None else crc32(sh, crc32(ln(len(sh)), d))
        add((cid, e, t, m, lab, v, s, sh, c, d, seq))
    return out


class Storage(Protocol):
    """What the index needs from a store. Writes are atomic per call."""

    def collections(self) -> list[tuple[int, str, CollectionConfig]]: ...
    def create_collection(self, name: str, config: CollectionConfig) -> int: ...
    def drop_collection(self, cid: int) -> None: ...
    def write_batch(self, cid: int, delete_ext_ids: list[str], rows: list[tuple]) -> tuple[list[int], list[int]]: ...
    def load_index_data(self, cid: int) -> Iterator[tuple]: ...
    def fetch(self, cid: int, rowids: Iterable[int] | None = None, ext_ids: Iterable[str] | None = None) -> list[Row]: ...
    def count(self, cid: int) -> int: ...
    def backup(self, dest_dir: str) -> str: ...
    def close(self) -> None: ...


def _is_full(exc: BaseException) -> bool:
    """True for SQLITE_FULL (database or disk is full) and for ENOSPC / EDQUOT."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "disk is full" in str(exc)


def _corruption(exc: BaseException, where: str) -> StorageCorruptionError:
    return StorageCorruptionError(f"The index storage at {where} is corrupt or not a simsearch database: {exc}")


LOCK_FILE = "LOCK"


def _lock_directory(path: str) -> int | None:
    """An exclusive flock on ``path/LOCK``, held while the index is open: the in-memory LSH and
    vector structures mirror the store, so a second writer (another process, or a second
    ``Index`` on the same directory) would silently diverge from it. The kernel drops the lock
    when the holder exits, crashes included. Returns the descriptor (None where flock is absent)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locking
        return None
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FailedPreconditionError(
            f"the index at {path} is already open (in another process, or another Index in this one); close it first"
        ) from None
    return fd


# The writer never checkpoints inside a commit: a background thread copies the WAL into the
# database (SQLite's PASSIVE checkpoint, on its own connection) after writes, so a commit only
# appends to the WAL and fsyncs it. Should the WAL still pass WAL_LIMIT_BYTES (a checkpoint that
# cannot catch up with a steady stream of writes), the writer checkpoints it itself, under its lock.
WAL_LIMIT_BYTES = 256 << 20
CHECKPOINT_PAUSE_S = 0.05  # at most ~20 background checkpoints a second: bursts of commits coalesce


class _Poked:
    """A daemon thread that runs :meth:`_step` when poked, at most once per ``pause`` seconds
    (pokes meanwhile coalesce), after :meth:`_open` on the thread (False: it exits), and
    :meth:`_close` when it stops. A subclass defines ``_open`` and ``_step``."""

    name = "simsearch-poked"
    pause = 0.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def poke(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
        self._wake.set()

    def _close(self) -> None:
        pass

    def _run(self) -> None:
        import time

        if not self._open():
            return
        try:
            while True:
                self._wake.wait()
                if self._stop:
                    return
                self._wake.clear()
                self._step()
                if self.pause:
                    time.sleep(self.pause)
        finally:
            self._close()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()


class _Checkpointer(_Poked):
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` when poked (durability is the commit's WAL fsync;
    a checkpoint only moves committed pages into the database file)."""

    name = "simsearch-checkpoint"
    pause = CHECKPOINT_PAUSE_S

    def __init__(self, connect) -> None:
        super().__init__()
        self._connect = connect

    def _open(self) -> bool:
        try:
            self._conn = self._connect()
        except sqlite3.Error:  # pragma: no cover - the writer checkpoints by itself past the limit
            return False
        return True

    def _step(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # a full disk, a closing store: the next poke (or the writer) retries
            pass


class _WalWriteback(_Poked):
    """``fdatasync`` of the WAL file when poked: a pipelined write pokes it after each chunk, so
    the WAL pages of a large transaction reach the disk while later chunks are inserted, and the
    commit's own fsync (``synchronous=FULL``) finds little left to write (5,000 documents of 200
    words append ~13 MB; their commit took 50 ms on a disk that syncs ~250 MB/s, 25 ms with this).
    Only an earlier write of the same bytes: SQLite ignores WAL frames past the last commit frame,
    so syncing them early changes nothing on a crash. Any error is ignored (the commit syncs)."""

    name = "simsearch-wal-sync"

    def __init__(self, wal_path: str) -> None:
        super().__init__()
        self._path = wal_path
        self._fd: int | None = None  # opened on the first poke (the WAL exists once a write began)

    def _open(self) -> bool:
        return True

    def _step(self) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY)
            getattr(os, "fdatasync", os.fsync)(self._fd)  # macOS has no fdatasync
        except OSError:
            pass

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SQLiteStorage:
    """SQLite in WAL mode: one writer connection behind a lock, one reader connection per thread."""

    def __init__(self, path: str | None, *, durability: str = "full") -> None:
        self.path = path
        self._sync = {"full": "FULL", "normal": "NORMAL"}[durability]
        self._lock_fd = None
        if path is None:
            # A named shared-cache in-memory database, so every thread's connection sees one DB.
            self._uri = f"file:simsearch-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._where = "memory"
        else:
            os.makedirs(path, exist_ok=True)
            self._lock_fd = _lock_directory(path)
            db = os.path.join(path, DB_FILE)
            self._uri = "file:" + db
            self._where = db
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._checkpointer = None
        self._writeback = None
        self._insert_pool = None
        try:
            self._writer = self._connect()
            if path is not None:
                self._writer.execute("PRAGMA wal_autocheckpoint=0")
                self._writer.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES // 2}")
                self._checkpointer = _Checkpointer(self._connect)
                if self._sync == "FULL":  # with NORMAL a commit does not sync the WAL
                    self._writeback = _WalWriteback(db + "-wal")
            self._init_schema()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # damaged pages can hold bad text
            self.close()
            raise _corruption(exc, self._where) from None

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False, isolation_level=None, timeout=60)
        conn.execute("PRAGMA foreign_keys=ON")
        if self.path is not None:
            # Only takes effect on a new, empty database (before WAL is on): 16 KiB pages hold a
            # ~200-word document with its vector and signature without overflow pages.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":  # pragma: no cover - only on filesystems without shared memory
                raise StorageCorruptionError(f"could not switch {self._where} to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._sync}")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _txn(self):
        """One IMMEDIATE transaction on the writer connection; rolls back on any error."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLITE_FULL (and a few others) roll back by themselves
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _init_schema(self) -> None:
        conn = self._writer
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > FORMAT_VERSION:
                raise UnsupportedFormatError(
                    f"{self._where} has format version {version}, newer than this simsearch supports "
                    f"({FORMAT_VERSION}); upgrade simsearch to open it."
                )
            if version < 1:
                raise StorageCorruptionError(f"{self._where} has no valid format_version; it is not a simsearch index.")
            if conn.execute("SELECT 1 FROM meta WHERE key='uuid'").fetchone() is None:
                with self._write_lock:  # an index made before the uuid existed gets one
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('uuid', ?)", (uuid.uuid4().hex,))
            if version < FORMAT_VERSION:
                self._upgrade_from_1()
            cols = {r[1] for r in conn.execute("PRAGMA table_info(collections)")}
            with self._write_lock:  # counted on first use (count), per collection
                if "ndocs" not in cols:
                    conn.execute("ALTER TABLE collections ADD COLUMN ndocs INTEGER")
                if "ndocs_seq" not in cols:
                    conn.execute("ALTER TABLE collections ADD COLUMN ndocs_seq INTEGER")
            return
        if tables - {"sqlite_sequence"}:
            raise StorageCorruptionError(f"{self._where} is an SQLite database but not a simsearch index.")
        with self._write_lock:
            conn.executescript(
                "BEGIN IMMEDIATE;"
                + _SCHEMA
                + f"INSERT OR IGNORE INTO meta(key, value) VALUES ('format_version', '{FORMAT_VERSION}');"
                + f"INSERT OR IGNORE INTO meta(key, value) VALUES ('created_by', 'simsearch {__version__}');"
                + f"INSERT OR IGNORE INTO meta(key, value) VALUES ('uuid', '{uuid.uuid4().hex}');"
                + "COMMIT;"
            )

    def _upgrade_from_1(self) -> None:
        """Format 1 -> 2, once, in one transaction: the write sequence numbers (existing rows are
        at seq 0) and the delete log. The old close-time cache files are left to the index to remove."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                cols = {r[1] for r in conn.execute("PRAGMA table_info(collections)")}
                if "seq" not in cols:
                    conn.execute("ALTER TABLE collections ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
                cols = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
                if "seq" not in cols:
                    conn.execute("ALTER TABLE documents ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
                conn.execute(_DELETES)
                conn.execute("DELETE FROM meta WHERE key LIKE 'generation:%'")
                conn.execute("UPDATE meta SET value=? WHERE key='format_version'", (str(FORMAT_VERSION),))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except UnicodeDecodeError as exc:  # a damaged page decoded as text
            raise _corruption(exc, self._where) from None
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            if _is_full(exc):
                raise ResourceExhaustedError(
                    f"the disk holding {self._where} is full; the write was not applied (free space and retry)"
                ) from None
            raise _corruption(exc, self._where) from None

    # -- collections -----------------------------------------------------------------------
    def collections(self) -> list[tuple[int, str, CollectionConfig]]:
        def run():
            rows = self._reader().execute("SELECT cid, name, config FROM collections ORDER BY name").fetchall()
            out = []
            for cid, name, cfg in rows:
                try:
                    out.append((cid, name, CollectionConfig.from_json(cfg)))
                except (ValueError, TypeError) as exc:
                    raise StorageCorruptionError(f"collection {name!r} has an unreadable config: {exc}") from None
            return out

        return self._guard(run)

    def create_collection(self, name: str, config: CollectionConfig) -> int:
        def run():
            with self._txn() as c:
                cur = c.execute("INSERT INTO collections(name, config) VALUES (?, ?)", (name, config.to_json()))
                return cur.lastrowid

        return self._guard(run)

    def drop_collection(self, cid: int) -> None:
        def run():
            with self._txn() as c:
                c.execute("DELETE FROM documents WHERE cid=?", (cid,))
                c.execute("DELETE FROM deletes WHERE cid=?", (cid,))
                c.execute("DELETE FROM models WHERE cid=?", (cid,))
                c.execute("DELETE FROM collections WHERE cid=?", (cid,))
                c.execute("DELETE FROM meta WHERE key=?", (f"generation:{cid}",))

        self._guard(run)

    # -- documents -------------------------------------------------------------------------
    def write_batch(self, cid: int, delete_ext_ids: list[str], rows: list[tuple]) -> tuple[list[int], list[int]]:
        """Delete ``delete_ext_ids`` and insert ``rows`` in one transaction (see :meth:`write`)."""
        removed, new_ids, _ = self.write(cid, delete_ext_ids, rows)
        return removed, new_ids

    def write(self, cid: int, delete_ext_ids: list[str], rows: list[tuple]) -> tuple[list[int], list[int], int]:
        """Delete ``delete_ext_ids`` and insert ``rows`` in one transaction, as write ``seq``.

        ``rows`` are (ext_id, text, metadata, label, vector, signature, shingles) tuples. Returns
        the rowids removed, the rowids assigned to the new rows (in order) and the write's
        sequence number (the collection's previous one plus one); the removed rowids are logged
        in ``deletes`` under it.
        """
        return self.write_chunks(cid, delete_ext_ids, [rows], pipelined=False)

    def write_chunks(self, cid: int, delete_ext_ids: list[str], chunks: Iterable[list[tuple]], *,
                     pipelined: bool = True, before_commit=None) -> tuple[list[int], list[int], int]:
        """:meth:`write` with the rows arriving as ``chunks``, from an iterable that may work
        between them (the collection hashes the next chunk). ``pipelined``: each chunk's
        checksums and INSERT run on a worker thread while the iterable makes the next one
        (SQLite and the hashing kernels release the GIL). One transaction either way: an error
        in any chunk, or raised by the iterable or by ``before_commit()`` (called last, inside
        the transaction), rolls it back and nothing is stored."""

        def run():
            with self._txn() as c:
                seq = c.execute("UPDATE collections SET seq = seq + 1 WHERE cid=? RETURNING seq", (cid,)).fetchone()
                if seq is None:
                    raise NotFoundError(f"collection {cid} does not exist in the storage")
                seq = seq[0]
                removed = []
                for i in range(0, len(delete_ext_ids), 500):
                    chunk = delete_ext_ids[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += [
                        r[0]
                        for r in c.execute(
                            f"DELETE FROM documents WHERE cid=? AND ext_id IN ({marks}) RETURNING rowid", (cid, *chunk)
                        )
                    ]
                if removed:
                    c.executemany("INSERT INTO deletes(cid, seq, doc_rowid) VALUES (?,?,?)",
                                  [(cid, seq, r) for r in removed])
                before = c.execute("SELECT seq FROM sqlite_sequence WHERE name='documents'").fetchone()
                before = before[0] if before else 0
                sql = ("INSERT INTO documents(cid, ext_id, text, metadata, label, vector, signature, shingles,"
                       " crc_index, crc_doc, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

                writeback = self._writeback if pipelined else None

                def insert(rows):
                    c.executemany(sql, _insert_params(cid, seq, rows))
                    if writeback is not None:
                        writeback.poke()
                    return [r[0] for r in rows]

                ext_ids: list[str] = []
                if not pipelined:
                    for rows in chunks:
                        ext_ids += insert(rows)
                else:
                    pending = None
                    try:
                        for rows in chunks:
                            if pending is not None:
                                ext_ids += pending.result()
                            pending = self._pool().submit(insert, rows)
                    finally:  # the worker is done with the connection before a commit or a rollback
                        if pending is not None:
                            ext_ids += pending.result()
                c.execute("UPDATE collections SET ndocs = ndocs + ?, ndocs_seq = seq WHERE cid=?",  # see count
                          (len(ext_ids) - len(removed), cid))
                if before_commit is not None:
                    before_commit()
                after = c.execute("SELECT seq FROM sqlite_sequence WHERE name='documents'").fetchone()
                after = after[0] if after else 0
                if after - before == len(ext_ids):
                    # AUTOINCREMENT gave this writer n consecutive rowids, in insertion order
                    new_ids = list(range(before + 1, after + 1))
                else:  # pragma: no cover - not seen with SQLite's allocator, kept for safety
                    found = dict(c.execute(
                        "SELECT ext_id, rowid FROM documents WHERE cid=? AND rowid > ?", (cid, before)
                    ).fetchall())
                    new_ids = [found[e] for e in ext_ids]
                return removed, new_ids, seq

        out = self._guard(run)
        self._after_write()
        return out

    def _pool(self):
        """The one worker thread that runs pipelined INSERTs (made on first use)."""
        if self._insert_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._insert_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simsearch-insert")
        return self._insert_pool

    def _after_write(self) -> None:
        """Hand the WAL to the background checkpointer; checkpoint here if it has fallen behind."""
        if self._checkpointer is None:
            return
        self._checkpointer.poke()
        try:
            wal = os.stat(self._where + "-wal").st_size
        except OSError:
            return
        if wal > WAL_LIMIT_BYTES:
            with self._write_lock:  # no writer appends meanwhile, so the checkpoint can complete
                try:
                    self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # a full disk: the write itself was committed; retried next time
                    pass

    def uuid(self) -> str:
        """The database's uuid: a manifest of segments names it, so a copied database never
        adopts another's segment files."""
        row = self._guard(lambda: self._reader().execute("SELECT value FROM meta WHERE key='uuid'").fetchone())
        return row[0] if row else ""

    def seq(self, cid: int) -> int:
        """The collection's last committed write sequence number (0 before any write)."""
        row = self._guard(lambda: self._reader().execute("SELECT seq FROM collections WHERE cid=?", (cid,)).fetchone())
        return int(row[0]) if row else 0

    def state(self, cid: int) -> tuple[str, int, int]:
        """(database uuid, write seq, document count) of a collection, read in one snapshot."""

        def run():
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                db = conn.execute("SELECT value FROM meta WHERE key='uuid'").fetchone()
                row = conn.execute("SELECT seq, CASE WHEN ndocs_seq IS seq THEN ndocs END FROM collections WHERE cid=?",
                                   (cid,)).fetchone()
            finally:
                conn.execute("COMMIT")
            return (db[0] if db else ""), row

        db, row = self._guard(run)
        if row is None:
            return db, 0, 0
        if row[1] is None:  # a missing or stale counter: count once, then read again
            self.count(cid)
            return self.state(cid)
        return db, int(row[0]), int(row[1])

    def deletes_after(self, cid: int, seq: int) -> np.ndarray:
        """int64 rowids removed by the collection's writes after ``seq``."""
        rows = self._guard(lambda: self._reader().execute(
            "SELECT doc_rowid FROM deletes WHERE cid=? AND seq > ?", (cid, seq)).fetchall())
        return np.array([r[0] for r in rows], dtype=np.int64)

    def prune_deletes(self, cid: int, upto_seq: int) -> None:
        """Forget the delete log at or below ``upto_seq`` (covered by a durable manifest)."""

        def run():
            with self._txn() as c:
                c.execute("DELETE FROM deletes WHERE cid=? AND seq <= ?", (cid, upto_seq))

        self._guard(run)

    def load_index_data(self, cid: int, batch: int = 65536, *, after_rowid: int = 0,
                        upto_rowid: int | None = None) -> Iterator[tuple]:
        """Yield column tuples (rowids, ext_ids, labels, vectors, signatures) of up to ``batch``
        rows each, in rowid order, checksums verified; only rows with ``after_rowid`` < rowid
        (<= ``upto_rowid`` when given)."""
        upto = (1 << 62) if upto_rowid is None else upto_rowid
        # "+cid": walk the rowid range of the table, not the (cid, ext_id) index: with the index
        # SQLite visited (and sorted) every row of the collection, 85-150 ms at 1M, even for a replay of none
        cur = self._guard(
            lambda: self._reader().execute(
                "SELECT rowid, ext_id, label, vector, signature, crc_index FROM documents"
                " WHERE rowid > ? AND rowid <= ? AND +cid=? ORDER BY rowid",
                (after_rowid, upto, cid),
            )
        )
        while True:
            rows = self._guard(cur.fetchmany, batch)
            if not rows:
                return
            rowids, ext_ids, labels, vectors, sigs, crcs = zip(*rows)
            for e, lab, v, s, c in zip(ext_ids, labels, vectors, sigs, crcs):
                if crc_index(e, lab, v, s) != c:
                    raise StorageCorruptionError(f"document {e!r} failed its checksum in {self._where}")
            yield rowids, ext_ids, labels, vectors, sigs

    def fetch(self, cid: int, rowids=None, ext_ids=None, *, with_shingles: bool = False) -> list[Row]:
        """Rows by internal rowid or by external id (missing ones are simply absent)."""
        cols = "rowid, ext_id, text, metadata, label, vector, signature, shingles, crc_index, crc_doc"
        key, values = ("rowid", list(rowids)) if rowids is not None else ("ext_id", list(ext_ids or []))

        def run():
            conn = self._reader()
            out = []
            for i in range(0, len(values), 500):
                chunk = values[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(f"SELECT {cols} FROM documents WHERE cid=? AND {key} IN ({marks})", (cid, *chunk))
            return out

        rows = []
        for r in self._guard(run):
            if crc_index(r[1], r[4], r[5], r[6]) != r[8] or crc_doc(r[2], r[3], r[7]) != r[9]:
                raise StorageCorruptionError(f"document {r[1]!r} failed its checksum in {self._where}")
            rows.append(Row(*r[:8]))
        return rows

    def scan(self, cid: int, after: str | None, limit: int) -> list[Row]:
        """Up to ``limit`` rows with ``ext_id > after`` (None: from the first), in ext_id order
        (SQLite's BINARY collation: UTF-8 byte order), checksums verified; the (cid, ext_id)
        index makes each call a range read."""
        cols = "rowid, ext_id, text, metadata, label, vector, signature, shingles, crc_index, crc_doc"
        sql = f"SELECT {cols} FROM documents WHERE cid=?{'' if after is None else ' AND ext_id > ?'} ORDER BY ext_id LIMIT ?"
        args = (cid, limit) if after is None else (cid, after, limit)
        rows = []
        for r in self._guard(lambda: self._reader().execute(sql, args).fetchall()):
            if crc_index(r[1], r[4], r[5], r[6]) != r[8] or crc_doc(r[2], r[3], r[7]) != r[9]:
                raise StorageCorruptionError(f"document {r[1]!r} failed its checksum in {self._where}")
            rows.append(Row(*r[:8]))
        return rows

    def fetch_shingle_sources(self, cid: int, rowids: list[int]) -> dict[int, tuple[bytes | None, str | None]]:
        """rowid -> (stored shingle blob, text) for the rows that exist, checksums verified.

        A collection that stores its texts keeps no shingle blobs (they are derived from the
        text); one that does not store texts keeps the blobs.
        """

        def run():
            conn = self._reader()
            out = []
            for i in range(0, len(rowids), 500):
                chunk = rowids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(
                    f"SELECT rowid, ext_id, shingles, text, metadata, crc_doc FROM documents"
                    f" WHERE cid=? AND rowid IN ({marks})",
                    (cid, *chunk),
                )
            return out

        found = {}
        for rowid, ext_id, sh, text, meta, crc in self._guard(run):
            if crc_doc(text, meta, sh) != crc:
                raise StorageCorruptionError(f"document {ext_id!r} failed its checksum in {self._where}")
            found[rowid] = (sh, text)
        return found

    def count(self, cid: int) -> int:
        """The collection's number of documents, from the counter its writes keep (counted with a
        COUNT(*) once, the first time, in a store from before the counter)."""
        row = self._guard(lambda: self._reader().execute(
            "SELECT ndocs, ndocs_seq IS seq FROM collections WHERE cid=?", (cid,)).fetchone())
        if row is None:
            return 0
        if row[0] is not None and row[1]:
            return int(row[0])

        def fill():
            with self._txn() as c:
                c.execute("UPDATE collections SET ndocs = (SELECT COUNT(*) FROM documents WHERE cid=?), ndocs_seq = seq"
                          " WHERE cid=? AND (ndocs IS NULL OR ndocs_seq IS NOT seq)", (cid, cid))
                return c.execute("SELECT ndocs FROM collections WHERE cid=?", (cid,)).fetchone()[0]

        return int(self._guard(fill))

    def count_rows(self, cid: int) -> int:
        """COUNT(*) of the collection's rows (a full check of :meth:`count`'s counter)."""
        return self._guard(lambda: self._reader().execute("SELECT COUNT(*) FROM documents WHERE cid=?", (cid,)).fetchone()[0])

    # -- models ----------------------------------------------------------------------------
    def put_model(self, cid: int, name: str, kind: str, version: int, payload: bytes) -> None:
        def run():
            with self._txn() as c:
                c.execute(
                    "INSERT OR REPLACE INTO models(cid, name, kind, version, payload, crc) VALUES (?,?,?,?,?,?)",
                    (cid, name, kind, version, payload, zlib.crc32(payload)),
                )

        self._guard(run)

    def get_model(self, cid: int, name: str) -> tuple[str, int, bytes]:
        row = self._guard(
            lambda: self._reader()
            .execute("SELECT kind, version, payload, crc FROM models WHERE cid=? AND name=?", (cid, name))
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"model {name!r} does not exist")
        if zlib.crc32(row[2]) != row[3]:
            raise StorageCorruptionError(f"model {name!r} failed its checksum in {self._where}")
        return row[0], row[1], row[2]

    def list_models(self, cid: int) -> list[tuple[str, str, int]]:
        return self._guard(
            lambda: self._reader()
            .execute("SELECT name, kind, version FROM models WHERE cid=? ORDER BY name", (cid,))
            .fetchall()
        )

    def delete_model(self, cid: int, name: str) -> bool:
        def run():
            with self._txn() as c:
                return c.execute("DELETE FROM models WHERE cid=? AND name=?", (cid, name)).rowcount > 0

        return self._guard(run)

    # -- maintenance -----------------------------------------------------------------------
    def backup(self, dest_dir: str) -> str:
        """A consistent online copy into ``dest_dir`` (SQLite's backup API), fsynced; returns the
        copy's uuid (a new one: the copy starts a history of its own)."""
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, DB_FILE)
        if os.path.exists(dest):
            from ..errors import AlreadyExistsError

            raise AlreadyExistsError(f"{dest} exists; snapshot into an empty directory")
        tmp = dest + ".tmp"
        target = sqlite3.connect(tmp)
        try:
            self._guard(self._reader().backup, target)
            target.execute("PRAGMA journal_mode=DELETE")
            # a copy starts a history of its own: caches of this index never match it
            new_uuid = uuid.uuid4().hex
            target.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('uuid', ?)", (new_uuid,))
            target.commit()
        finally:
            target.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        dfd = os.open(dest_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return new_uuid

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._writeback is not None:
            self._writeback.stop()
        if self._insert_pool is not None:
            self._insert_pool.shutdown(wait=True)
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:  # pragma: no cover
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def open_storage(path: str | None, *, durability: str = "full") -> SQLiteStorage:
    """The storage factory; SQLite is the only kind today."""
    return SQLiteStorage(path, durability=durability)


def pack(arr: np.ndarray | None, dtype) -> bytes | None:
    return None if arr is None else np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def unpack(blob: bytes | None, dtype) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
