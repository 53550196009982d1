"""Filters applied to a collection's queries: which rows a filter keeps, as a dense row bitmap.

A collection declares ``indexed_fields`` at creation. For those fields, :class:`FieldStore` keeps
typed :class:`~simsearch.index._filter.Column` objects in chunks, one per write batch (merged
when they pile up), each with its rows (rowids, ascending) and a live flag per row; the metadata
JSON is decoded once, when the document is written (or once at open). A filter that reads only
indexed fields (and ``$id`` / ``$label`` when declared) is evaluated with numpy over the columns:
no JSON is parsed per candidate per query. A filter on any undeclared field works too, by a scan:
the metadata of every live document is read from storage and decoded for that query, which costs
one JSON parse per document; :attr:`RowSet.scanned` says so (and the query stats report it).

The result is a :class:`RowSet`: a bool bitmap indexed by rowid (rowids are dense integers, so a
bitmap of ``max rowid + 1`` bits is a few MB at millions of documents) and the count of rows
kept. The columns persist in append-only part files, ``fields/c<cid>/p-<lo>-<hi>.bin``, each
holding the rows with ``lo < rowid <= hi`` live when it was written: a part is written every
4,096 new rows (PART_ROWS) and at a clean close, and older parts are rewritten into it only while they are at
most 4 times larger (each row is rewritten O(log n) times). Rowids are never reused and a row's
metadata never changes (a replacement is a new row), so a part stays right after any later write;
the open applies the liveness the engine knows and decodes the metadata only of the live rows past
the parts (after a kill -9, at most the last part's worth). A part that fails its checksum, is of
another database, collection or fields, or records a write the database does not have, is removed
and its rows decoded again; were a live row within the parts' coverage missing from them, every
row is decoded. The vector index gathers it at its rows, LSH candidates are tested against it. The RowSets
of the last 16 indexed filters are kept until the next write, so a filter repeated across queries
(a tenant, a language) is evaluated once.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from ..errors import SimsearchError
from ._filter import STRING, Column, Filter, build_columns
from ._manifest import atomic_file

__all__ = ["PART_ROWS", "FieldStore", "RowSet", "fields_dir", "fields_path", "remove_fields"]

_MAX_CHUNKS = 8  # merge the chunks when there are more
PART_ROWS = int(os.environ.get("SIMSEARCH_FIELD_PART_ROWS", "4096"))  # a part file per this many new rows
_PART_FACTOR = 4  # a part file is rewritten with the newer ones while at most this many times larger
_PART_MAGIC = b"SSFPART1"


def fields_path(index_path: str, cid: int) -> str:
    """The single file a clean close wrote before the part files (removed at open)."""
    return os.path.join(index_path, "fields", f"c{cid}.bin")


def fields_dir(index_path: str, cid: int) -> str:
    """The directory of the collection's part files (:meth:`FieldStore.persist`)."""
    return os.path.join(index_path, "fields", f"c{cid}")


def remove_fields(index_path: str, cid: int) -> None:
    _remove(fields_path(index_path, cid))
    shutil.rmtree(fields_dir(index_path, cid), ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _read_part(path: str, fields: tuple, owner: dict):
    """(lo, hi, rowids, columns) of a part file, or None when it is damaged or not this store's."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:8] != _PART_MAGIC:
            return None
        (hlen,) = struct.unpack_from("<I", data, 8)
        h = json.loads(data[12:12 + hlen])
        if (h["db"] != owner["db"] or h["cid"] != owner["cid"] or h["fields"] != list(fields)
                or int(h["seq"]) > owner["seq"]):
            return None
        body = data[12 + hlen:]
        if xxhash.xxh3_64_hexdigest(body) != h["xxh3"]:
            return None
        lo, hi, n = int(h["lo"]), int(h["hi"]), int(h["n"])
        rowids = np.frombuffer(body[:8 * n], "<i8").astype(np.int64)
        if len(rowids) != n or (n and (rowids[0] <= lo or rowids[-1] > hi or np.any(np.diff(rowids) <= 0))):
            return None
        off, cols = 8 * n, {}
        for name, size in zip(fields, h["sizes"]):
            cols[name] = Column.from_bytes(body[off:off + size])
            off += size
            if len(cols[name]) != n:
                return None
        if len(cols) != len(fields) or off != len(body):
            return None
    except (OSError, ValueError, KeyError, TypeError, struct.error, SimsearchError):
        return None
    return lo, hi, rowids, cols


@dataclass(frozen=True)
class RowSet:
    """The rows a filter keeps: ``bits[rowid]`` (rowids past the end are not kept), ``count``
    of them, and whether the stored metadata had to be scanned."""

    bits: np.ndarray
    count: int
    scanned: bool

    def has(self, rowids: np.ndarray) -> np.ndarray:
        rowids = np.asarray(rowids, dtype=np.int64)
        ok = rowids < len(self.bits)
        out = np.zeros(len(rowids), dtype=bool)
        out[ok] = self.bits[rowids[ok]]
        return out

    def rowids(self) -> np.ndarray:
        return np.flatnonzero(self.bits).astype(np.int64)


def _concat(columns: Sequence[Column]) -> Column:
    """One Column holding the rows of ``columns`` in order, with one merged string dictionary."""
    strings = sorted(set().union(*(c.strings for c in columns)))
    codes = []
    for c in columns:
        code = c.code.copy()
        if c.strings:
            remap = np.searchsorted(strings, np.asarray(c.strings, dtype=object)).astype(np.int32)
            s = c.kind == STRING
            code[s] = remap[c.code[s]]
        codes.append(code)
    return Column(np.concatenate([c.kind for c in columns]), np.concatenate([c.number for c in columns]),
                  np.concatenate(codes), strings)


class _Chunk:
    __slots__ = ("columns", "live", "rowids")

    def __init__(self, rowids: np.ndarray, columns: dict[str, Column]) -> None:
        self.rowids = rowids
        self.live = np.ones(len(rowids), dtype=bool)
        self.columns = columns


class FieldStore:
    """The typed columns of a collection's indexed fields over its live rows (not thread-safe:
    the collection writes under its writer lock and reads under its reader lock)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self._chunks: list[_Chunk] = []
        self._max_rowid = -1
        self._cache: dict[Filter, RowSet] = {}  # RowSets of indexed filters since the last write
        self._parts: list[dict] = []  # the part files written (lo, hi, n, file), in rowid order
        self._saved_hi = 0  # the rowids up to this are in the part files (those live when written)
        self._unsaved = 0
        self.parts_written = 0
        self.rows_decoded = 0  # rows whose metadata was decoded at open (set by the collection), for tests

    def add(self, rowids: np.ndarray, ext_ids: Sequence[str], labels: Sequence[str | None],
            metadata: Sequence[str | dict | None]) -> None:
        """Index rows just written (rowids ascending, above every row already held)."""
        if not len(rowids):
            return
        self._cache.clear()
        rowids = np.asarray(rowids, dtype=np.int64)
        self._max_rowid = max(self._max_rowid, int(rowids[-1]))
        self._unsaved += len(rowids)
        if not self.fields:
            return
        cols = build_columns(metadata, self.fields, ids=list(ext_ids), labels=list(labels))
        self._chunks.append(_Chunk(rowids.copy(), cols))
        if len(self._chunks) > _MAX_CHUNKS:
            self._merge()

    def remove(self, rowids: np.ndarray) -> None:
        if not self._chunks or not len(rowids):
            return
        self._cache.clear()
        firsts = np.array([c.rowids[0] for c in self._chunks], dtype=np.int64)
        rowids = np.asarray(rowids, dtype=np.int64)
        which = np.searchsorted(firsts, rowids, side="right") - 1
        for ci in np.unique(which[which >= 0]):
            chunk = self._chunks[ci]
            r = rowids[which == ci]
            pos = np.searchsorted(chunk.rowids, r)
            ok = pos < len(chunk.rowids)
            ok[ok] = chunk.rowids[pos[ok]] == r[ok]
            chunk.live[pos[ok]] = False

    def _merge(self) -> None:
        """One chunk of the live rows of all."""
        keep = [np.flatnonzero(c.live) for c in self._chunks]
        rowids = np.concatenate([c.rowids[k] for c, k in zip(self._chunks, keep)])
        cols = {f: _concat([c.columns[f].take(k) for c, k in zip(self._chunks, keep)]) for f in self.fields}
        self._chunks = [_Chunk(rowids, cols)] if len(rowids) else []

    # -- persistence: append-only parts, so an open decodes only the rows written after the last --
    def unsaved(self) -> int:
        """Rows added since the last :meth:`persist` (or the parts loaded at open)."""
        return self._unsaved

    def postpone(self) -> None:
        """After a failed :meth:`persist` (a full disk): try again after another PART_ROWS rows, not
        on every write (the rows stay unsaved: the next part still starts at the last one's end)."""
        self._unsaved = 0

    def _range(self, lo: int, hi: int) -> tuple[np.ndarray, dict[str, Column]]:
        """The live rows with ``lo < rowid <= hi`` and their columns."""
        rowids, cols = [], {f: [] for f in self.fields}
        for c in self._chunks:
            a, b = np.searchsorted(c.rowids, [lo, hi], side="right")
            if a == b:
                continue
            keep = np.flatnonzero(c.live[a:b]) + a
            rowids.append(c.rowids[keep])
            for f in self.fields:
                cols[f].append(c.columns[f].take(keep))
        if not rowids:
            return np.empty(0, np.int64), {f: Column.from_values([]) for f in self.fields}
        return np.concatenate(rowids), {f: _concat(v) for f, v in cols.items()}

    def persist(self, directory: str, owner: dict, fsync: bool) -> None:
        """Write the rows added since the last call as a new part file of ``directory`` (atomically),
        covering the rowids above the parts already written; the last parts are rewritten into it
        while the one before is at most ``_PART_FACTOR`` times larger (a geometric series of parts:
        each row is rewritten O(log n) times, never the whole store per flush). ``owner`` (the
        database uuid, the collection id and its write seq) is recorded for :meth:`load_parts`."""
        if not self.fields or self._max_rowid <= self._saved_hi:
            return
        parts = [dict(p) for p in self._parts] + [{"lo": self._saved_hi, "hi": self._max_rowid, "n": self._unsaved}]
        while len(parts) >= 2 and parts[-2]["n"] <= _PART_FACTOR * parts[-1]["n"]:
            tail = parts.pop()
            parts[-1] = {"lo": parts[-1]["lo"], "hi": tail["hi"], "n": parts[-1]["n"] + tail["n"]}
        last = parts[-1]
        last["file"], last["n"] = self._write_part(directory, last["lo"], last["hi"], owner, fsync)
        for p in self._parts:
            if p["lo"] >= last["lo"] and p["file"] != last["file"]:
                _remove(os.path.join(directory, p["file"]))
        self._parts, self._saved_hi, self._unsaved = parts, self._max_rowid, 0
        self.parts_written += 1

    def _write_part(self, directory: str, lo: int, hi: int, owner: dict, fsync: bool) -> tuple[str, int]:
        """Write the part file of the live rows in (lo, hi]; returns its name and row count."""
        rowids, cols = self._range(lo, hi)
        blobs = [rowids.astype("<i8").tobytes()] + [cols[f].to_bytes() for f in self.fields]
        body = b"".join(blobs)
        head = json.dumps({**owner, "fields": list(self.fields), "lo": lo, "hi": hi, "n": len(rowids),
                           "sizes": [len(b) for b in blobs[1:]], "xxh3": xxhash.xxh3_64_hexdigest(body)}).encode()
        os.makedirs(directory, exist_ok=True)
        name = f"p-{lo:016d}-{hi:016d}.bin"
        with atomic_file(os.path.join(directory, name), fsync) as fh:
            fh.write(_PART_MAGIC + struct.pack("<I", len(head)) + head + body)
        return name, len(rowids)

    def copy_to(self, directory: str, owner: dict, fsync: bool) -> None:
        """One part file of every row held, in ``directory`` (an index's snapshot) for ``owner``."""
        if self.fields and self._max_rowid > 0:
            self._write_part(directory, 0, self._max_rowid, owner, fsync)

    @classmethod
    def load_parts(cls, directory: str, fields: Sequence[str], owner: dict) -> FieldStore:
        """The store of the part files :meth:`persist` wrote that chain from rowid 0 (their rows
        all marked live: the caller applies the liveness it knows with :meth:`keep_live`). A part
        that fails its checksums, is of other fields, another database or collection, or records a
        write seq above ``owner["seq"]`` (the database lost writes it saw) is ignored and removed;
        so are parts the chain does not use (left by a crash between a rewrite and its cleanup)."""
        store = cls(fields)
        found: dict[int, list] = {}
        try:
            names = sorted(n for n in os.listdir(directory) if n.startswith("p-") and n.endswith(".bin"))
        except OSError:
            return store
        for name in names:
            part = _read_part(os.path.join(directory, name), store.fields, owner)
            if part is None:
                _remove(os.path.join(directory, name))
                continue
            found.setdefault(part[0], []).append((name, *part))
        cov, used = 0, set()
        while cov in found:
            name, lo, hi, rowids, cols = max(found[cov], key=lambda p: p[2])
            if hi <= cov:
                break
            if len(rowids):
                store._chunks.append(_Chunk(rowids, cols))
            store._parts.append({"lo": lo, "hi": hi, "n": len(rowids), "file": name})
            used.add(name)
            cov = hi
        for name in names:
            if name not in used:
                _remove(os.path.join(directory, name))
        for name in os.listdir(directory):
            if name.startswith("p-") and name.endswith(".bin.tmp"):  # a write a crash interrupted
                _remove(os.path.join(directory, name))
        store._saved_hi = store._max_rowid = cov
        if len(store._chunks) > _MAX_CHUNKS:
            store._merge()
        return store

    def keep_live(self, live_rowids: np.ndarray) -> np.ndarray:
        """Mark live exactly the held rows in ``live_rowids`` (ascending); returns which of
        ``live_rowids`` the store holds."""
        self._cache.clear()
        held = np.zeros(len(live_rowids), dtype=bool)
        for c in self._chunks:
            pos = np.searchsorted(live_rowids, c.rowids)
            ok = pos < len(live_rowids)
            ok[ok] = live_rowids[pos[ok]] == c.rowids[ok]
            c.live = ok
            held[pos[ok]] = True
        return held

    def covers(self, flt: Filter) -> bool:
        return all(f in self.fields for f in flt.fields)

    def rowset(self, flt: Filter, live: Callable[[], tuple[np.ndarray, list, list]],
               fetch_metadata: Callable[[list[int]], dict[int, str]]) -> RowSet:
        """The live rows ``flt`` keeps. ``live()`` gives (rowids, ext_ids, labels) of the live rows
        and ``fetch_metadata(rowids)`` their metadata JSON (both used only for a scan)."""
        if self.covers(flt):
            hit = self._cache.get(flt)
            if hit is not None:
                return hit
            size = self._max_rowid + 1
            bits = np.zeros(max(size, 0), dtype=bool)
            for c in self._chunks:
                m = flt.mask(c.columns, len(c.rowids)) & c.live
                bits[c.rowids[m]] = True
            out = RowSet(bits, int(np.count_nonzero(bits)), False)
            if len(self._cache) >= 16:
                self._cache.pop(next(iter(self._cache)))
            self._cache[flt] = out
            return out
        rowids, ext_ids, labels = live()
        size = max(self._max_rowid, int(rowids[-1]) if len(rowids) else -1) + 1
        bits = np.zeros(size, dtype=bool)
        if len(rowids):
            need = [f for f in flt.fields if f not in ("$id", "$label")]
            meta = fetch_metadata(rowids.tolist()) if need else {}
            docs = [meta.get(int(r)) for r in rowids]
            cols = build_columns(docs, flt.fields, ids=list(ext_ids), labels=list(labels))
            bits[rowids[flt.mask(cols, len(rowids))]] = True
        return RowSet(bits, int(np.count_nonzero(bits)), True)
