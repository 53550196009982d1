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
kept. On a clean close the columns are written to ``fields/c<cid>.bin`` with the collection's
state (database uuid, generation, count, as the row cache has it); the next open uses them when
the state still matches and the checksums hold, and otherwise (after a crash, a write by another
process) decodes the stored metadata again. The vector index gathers it at its rows, LSH candidates are tested against it. The RowSets
of the last 16 indexed filters are kept until the next write, so a filter repeated across queries
(a tenant, a language) is evaluated once.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from ..errors import SimsearchError
from ._filter import STRING, Column, Filter, build_columns

__all__ = ["FieldStore", "RowSet", "fields_path"]

_MAX_CHUNKS = 8  # merge the chunks when there are more


def fields_path(index_path: str, cid: int) -> str:
    return os.path.join(index_path, "fields", f"c{cid}.bin")


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

    def add(self, rowids: np.ndarray, ext_ids: Sequence[str], labels: Sequence[str | None],
            metadata: Sequence[str | dict | None]) -> None:
        """Index rows just written (rowids ascending, above every row already held)."""
        if not len(rowids):
            return
        self._cache.clear()
        rowids = np.asarray(rowids, dtype=np.int64)
        self._max_rowid = max(self._max_rowid, int(rowids[-1]))
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

    # -- persistence (the columns survive a clean close) -----------------------------------------
    _MAGIC = b"SSFIELDS"

    def save(self, path: str, state: tuple) -> None:
        """Write the live rows' columns to ``path`` (atomically) with the collection's ``state``
        (database uuid, generation, count), which :meth:`load` must find unchanged."""
        if not self.fields:
            return
        if self._chunks:
            self._merge()
        chunk = self._chunks[0] if self._chunks else None
        rowids = chunk.rowids if chunk is not None else np.empty(0, np.int64)
        blobs = [chunk.columns[f].to_bytes() if chunk is not None else Column.from_values([]).to_bytes()
                 for f in self.fields]
        head = json.dumps({"state": list(state), "fields": list(self.fields), "n": len(rowids),
                           "max_rowid": self._max_rowid, "sizes": [len(b) for b in blobs],
                           "rowids_xxh3": xxhash.xxh3_64_hexdigest(rowids.astype("<i8").tobytes())}).encode()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(self._MAGIC + struct.pack("<I", len(head)) + head + rowids.astype("<i8").tobytes())
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, fields: Sequence[str], state: tuple) -> FieldStore | None:
        """The store :meth:`save` wrote, if it is for these fields and this exact ``state`` and
        its checksums hold; None otherwise (the caller rebuilds from the stored metadata)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data[:8] != cls._MAGIC:
                return None
            (hlen,) = struct.unpack_from("<I", data, 8)
            h = json.loads(data[12:12 + hlen])
            if h["state"] != list(state) or h["fields"] != list(fields):
                return None
            off = 12 + hlen
            n = int(h["n"])
            raw = data[off:off + 8 * n]
            if xxhash.xxh3_64_hexdigest(raw) != h["rowids_xxh3"]:
                return None
            rowids = np.frombuffer(raw, "<i8").astype(np.int64)
            off += 8 * n
            cols = {}
            for name, size in zip(fields, h["sizes"]):
                cols[name] = Column.from_bytes(data[off:off + size])
                off += size
                if len(cols[name]) != n:
                    return None
        except (OSError, ValueError, KeyError, TypeError, struct.error, SimsearchError):
            return None
        store = cls(fields)
        store._max_rowid = int(h["max_rowid"])
        if n:
            store._chunks = [_Chunk(rowids, cols)]
        return store

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
