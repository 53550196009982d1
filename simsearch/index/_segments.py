"""Immutable, checksummed, memory-mapped segment files: a collection's derived state on disk.

A segment holds a set of documents (rows in rowid order) and everything a query reads about
them, so the process keeps no copy of signatures, vectors or ids on its heap; the page cache holds
them, shared by every process that maps the file. File layout (``seg-<id>.seg``)::

    MAGIC (8 bytes) | header length (u64 LE) | header (JSON) | header XXH3-64 (u64 LE) | pad
    sections, each at a 4096-byte aligned offset, each with its XXH3-64 in the header

The header names the segment format version (:data:`SEGMENT_FORMAT`), the collection's shape
(num_perm, dim, banding) and every section's dtype, shape, offset and checksum. The small,
structural sections (rowids, ids, labels, directory: ~65 bytes a row) carry one XXH3-64 each and
are verified when the segment is opened. The large ones (:data:`LAZY_SECTIONS`: signatures, band
tables, vectors, ~95 % of the bytes) carry one XXH3-64 per :data:`CHECK_BLOCK` bytes, in the
``checks`` section (itself verified at open), and each block is verified on its first read: the
query that first touches it hashes it before using it, and a background pass
(:meth:`Segment.verify_some`) hashes the rest, so an open reads ~5 % of the bytes and no query
ever answers from an unverified block. A block that fails raises :class:`SegmentDamaged`. Sections:

============  =========  ===========================================================
rowids        int64 n    sorted ascending: the storage rowids of the rows
sigs          uint32     (n, num_perm) MinHash signatures (all 0xFFFFFFFF: no text)
skeys/srows   u64/i32    (b, m) per band, sorted band keys and their rows (m = rows with text)
directory     int32      (b, 2**d + 1) bucket starts of the top d key bits
id_hash       uint64 n   sorted XXH64 of the external ids; ``id_row`` the row of each
ext_off/ext   i64/u8     the external ids, UTF-8 (surrogatepass), back to back
lab_off/lab   i64/u8     the labels the same way; ``has_label`` uint8 n
vec_rows      int32 nv   the rows that have a vector; ``vecs`` float32 (nv, dim) their vectors
checks        uint64     the block checksums of the lazily verified sections, in order
============  =========  ===========================================================

Reads are sized to what is verified. A mapping is advised ``MADV_RANDOM``, so a page fault reads
that page and not the kernel's read-around window around it (8 MiB on a disk whose
``read_ahead_kb`` is 8192: a cold band lookup then read 8 MiB for a 64 KiB block), and before a
block is hashed its exact byte range is requested with ``MADV_WILLNEED`` (all of a query's
blocks at once, so the disk serves them side by side); the structural sections are requested the
same way at open. The signatures and vectors keep the default advice (flat scans, merges and
``find_duplicates`` read them in order), and readers of whole sections under the random advice
(a merge's inputs, a self-join's band tables) request them whole first (:meth:`Segment.will_read`).

A file is written to a temporary name, fsynced, and renamed; it is never modified afterwards.
Removed rows are marked in a tombstone bitmap kept in a separate small file per manifest
generation (:mod:`simsearch.index._manifest`), so several processes can map one segment.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from dataclasses import dataclass

import numpy as np
import xxhash

from .._arrays import concat_csr, gather_csr
from .._lsh_storage import nonempty
from .._version import __version__
from ..distance import max_abs
from ..errors import StorageCorruptionError
from ._manifest import atomic_file

__all__ = [
    "SEGMENT_FORMAT",
    "Segment",
    "SegmentDamaged",
    "SegmentData",
    "build_segment",
    "hash_ids",
    "open_segment",
    "segment_in_memory",
    "write_segment",
]

MAGIC = b"SIMSSEG\n"
SEGMENT_FORMAT = 2  # 2: block checksums for the large sections (format 1 segments are rebuilt)
ALIGN = 4096
LAZY_SECTIONS = ("sigs", "skeys", "srows", "vecs")
CHECK_BLOCK = 1 << 16  # bytes per checksummed block of a lazy section
_RANDOM = getattr(mmap, "MADV_RANDOM", None)  # None where the platform has no madvise
_NORMAL = getattr(mmap, "MADV_NORMAL", None)
_WILLNEED = getattr(mmap, "MADV_WILLNEED", None)
_WILLNEED_STEP = 128 << 10  # bytes per MADV_WILLNEED request: the default read-ahead window
_IN_ORDER = ("sigs", "vecs")  # often read whole (flat scans, merges, find_duplicates): default advice


def _advise(mm: mmap.mmap | None, advice: int | None, start: int = 0, length: int | None = None) -> None:
    """``madvise`` over the pages of ``mm[start:start + length]`` (all of it by default); advice
    only, so a platform or a mapping that refuses it changes nothing but the speed."""
    if mm is None or advice is None:
        return
    try:
        size = len(mm)
        lo = start - start % mmap.PAGESIZE
        hi = size if length is None else min(size, start + length)
        if hi <= lo:
            return
        if advice != _WILLNEED:
            mm.madvise(advice, lo, hi - lo)
            return
        # the kernel reads at most one read-ahead window per request (force_page_cache_ra), and
        # faults past it read page by page under MADV_RANDOM: request the span in windows
        for at in range(lo, hi, _WILLNEED_STEP):
            mm.madvise(advice, at, min(_WILLNEED_STEP, hi - at))
    except (OSError, ValueError, OverflowError):  # ValueError: closed meanwhile (a merge replaced it)
        pass


class SegmentDamaged(StorageCorruptionError):
    """A block of a mapped segment failed its checksum when first read; ``segment`` is the
    segment (the engine rebuilds its rows from the store and the query is retried)."""

    def __init__(self, message: str, segment: Segment):
        super().__init__(message)
        self.segment = segment


def _block_checksums(raw) -> np.ndarray:
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(raw[lo : lo + CHECK_BLOCK]) for lo in range(0, len(raw), CHECK_BLOCK)), np.uint64,
                       -(-len(raw) // CHECK_BLOCK))
VEC_BLOCK = 1 << 18  # rows per flat-scan block; its largest |value| and norm are in the header


def hash_ids(ids: list[str]) -> np.ndarray:
    """uint64 XXH64 of each external id's UTF-8 bytes (how segments index ids)."""
    h = xxhash.xxh64_intdigest
    return np.fromiter((h(i.encode("utf-8", "surrogatepass")) for i in ids), np.uint64, len(ids))


def _strings(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    enc = [b"" if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    off = np.zeros(len(enc) + 1, np.int64)
    if enc:
        np.cumsum(np.fromiter((len(e) for e in enc), np.int64, len(enc)), out=off[1:])
    return off, np.frombuffer(b"".join(enc), np.uint8)


@dataclass
class SegmentData:
    """The rows of a segment to be written, in memory, in rowid order (ids and labels as UTF-8
    CSR, vectors only for the rows that have one)."""

    rowids: np.ndarray
    sigs: np.ndarray
    keys: np.ndarray  # (n, b) band keys
    indexable: np.ndarray  # bool n: has a non-empty signature
    id_hash: np.ndarray  # uint64 n, per row
    ext_off: np.ndarray
    ext: np.ndarray
    lab_off: np.ndarray
    lab: np.ndarray
    has_label: np.ndarray
    vec_rows: np.ndarray | None
    vecs: np.ndarray | None

    def __len__(self) -> int:
        return len(self.rowids)

    @classmethod
    def from_rows(cls, rowids, ext_ids, labels, sigs, keys, indexable, vecs) -> SegmentData:
        """From python ids and labels; ``vecs`` (n, dim) has NaN rows for documents without one."""
        ext_off, ext = _strings(ext_ids)
        lab_off, lab = _strings(labels)
        vec_rows = None
        if vecs is not None:
            vec_rows = np.flatnonzero(~np.isnan(vecs[:, 0])) if len(vecs) else np.zeros(0, np.int64)
            vecs = vecs[vec_rows]
        return cls(np.asarray(rowids, np.int64), sigs, keys, indexable, hash_ids(ext_ids), ext_off, ext, lab_off, lab,
                   np.fromiter((x is not None for x in labels), np.uint8, len(labels)), vec_rows, vecs)

    @classmethod
    def merged(cls, parts: list, band_keys) -> SegmentData:
        """The rows alive in ``parts`` ((segment, alive) pairs), in rowid order. ``band_keys``
        recomputes the band keys of signatures."""
        rowids, sigs, hashes, ext, lab, has_label, vec_of_row, vecs = [], [], [], [], [], [], [], []
        nvec = 0
        for seg, alive in parts:
            seg.will_read()  # all of it is read, in order
            rows = np.flatnonzero(alive)
            rowids.append(seg.rowids[rows])
            sigs.append(seg.sigs[rows])
            h = np.empty(seg.n, np.uint64)
            h[seg.id_row] = seg.id_hash
            hashes.append(h[rows])
            ext.append(gather_csr(seg.ext_off, seg.ext, rows))
            lab.append(gather_csr(seg.lab_off, seg.lab, rows))
            has_label.append(seg.has_label[rows])
            if seg.vecs is not None:
                vrow = np.full(seg.n, -1, np.int64)
                vrow[seg.vec_rows] = np.arange(len(seg.vec_rows))
                vr = vrow[rows]
                ok = vr >= 0
                vecs.append(seg.vecs[vr[ok]])
                v = np.full(len(rows), -1, np.int64)
                v[ok] = np.arange(nvec, nvec + int(ok.sum()))
                nvec += int(ok.sum())
                vec_of_row.append(v)
        rowids = np.concatenate(rowids)
        order = np.argsort(rowids, kind="stable")
        sig = np.concatenate(sigs)[order]
        ext_off, ext_b = concat_csr([o for o, _ in ext], [b for _, b in ext])
        ext_off, ext_b = gather_csr(ext_off, ext_b, order)
        lab_off, lab_b = concat_csr([o for o, _ in lab], [b for _, b in lab])
        lab_off, lab_b = gather_csr(lab_off, lab_b, order)
        vec_rows = out_vecs = None
        if vecs:
            vo = np.concatenate(vec_of_row)[order]
            vec_rows = np.flatnonzero(vo >= 0)
            out_vecs = np.concatenate(vecs)[vo[vec_rows]]
        keys = band_keys(sig)
        return cls(rowids[order], sig, keys, nonempty(sig), np.concatenate(hashes)[order], ext_off, ext_b,
                   lab_off, lab_b, np.concatenate(has_label)[order], vec_rows, out_vecs)


def _raw(arr: np.ndarray):
    return memoryview(np.ascontiguousarray(arr)).cast("B") if arr.nbytes else b""


def build_segment(seg_id: int, data: SegmentData, cfg, b: int, r: int, backend) -> tuple[dict, dict]:
    """The header and sections of a segment over ``data`` (band tables sorted here)."""
    n = len(data.rowids)
    skeys, srows, table_dir, d = backend.bucket_sort(data.keys, data.indexable)
    order = np.argsort(data.id_hash, kind="stable")
    sections: dict[str, np.ndarray] = {
        "rowids": np.ascontiguousarray(data.rowids, "<i8"),
        "sigs": np.ascontiguousarray(data.sigs, "<u4"),
        "skeys": np.ascontiguousarray(skeys, "<u8"),
        "srows": np.ascontiguousarray(srows, "<i4"),
        "directory": np.ascontiguousarray(table_dir, "<i4"),
        "id_hash": np.ascontiguousarray(data.id_hash[order], "<u8"),
        "id_row": order.astype("<i4"),
        "ext_off": np.ascontiguousarray(data.ext_off, "<i8"),
        "ext": np.ascontiguousarray(data.ext, np.uint8),
        "lab_off": np.ascontiguousarray(data.lab_off, "<i8"),
        "lab": np.ascontiguousarray(data.lab, np.uint8),
        "has_label": np.ascontiguousarray(data.has_label, np.uint8),
    }
    blocks = []
    if cfg.dim:
        vecs = np.ascontiguousarray(data.vecs, "<f4").reshape(-1, cfg.dim)
        sections["vec_rows"] = np.ascontiguousarray(data.vec_rows, "<i4")
        sections["vecs"] = vecs
        for lo in range(0, len(vecs), VEC_BLOCK):
            blk = vecs[lo : lo + VEC_BLOCK]
            amax = max_abs(blk)
            bnorm = float(np.sqrt(np.einsum("ij,ij->i", blk, blk, dtype=np.float32).max()))
            blocks.append([lo, lo + len(blk), amax, bnorm])
    meta, offset = {}, 0
    for name, arr in sections.items():
        meta[name] = {"offset": offset, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        offset += -(-arr.nbytes // ALIGN) * ALIGN
    header = {
        "format": SEGMENT_FORMAT, "created_by": f"simsearch {__version__}", "id": seg_id, "n": n,
        "num_perm": cfg.num_perm, "dim": cfg.dim, "b": b, "r": r, "d": int(d),
        "min_rowid": int(data.rowids[0]) if n else 0, "max_rowid": int(data.rowids[-1]) if n else 0,
        "vec_blocks": blocks, "sections": meta,
    }
    return header, sections


def segment_in_memory(header: dict, sections: dict) -> Segment:
    """A segment over in-memory sections (an index without a directory)."""
    return Segment(None, header, None, sections)


def segment_file(seg_id: int) -> str:
    """The file name of segment ``seg_id`` in its collection's directory."""
    return f"seg-{seg_id:08d}.seg"


def write_segment(directory: str, header: dict, sections: dict, *, fsync: bool = True) -> str:
    """Write a built segment into ``directory`` (temporary name, fsync, rename); returns the
    file name. Raises OSError (ENOSPC included) with no file left behind."""
    meta, checks, end = {}, [], 0
    for k, v in header["sections"].items():
        raw = _raw(sections[k])
        if k in LAZY_SECTIONS:
            blocks = _block_checksums(raw)
            meta[k] = dict(v, blocks=[sum(len(c) for c in checks), len(blocks)])
            checks.append(blocks)
        else:
            meta[k] = dict(v, xxh3=xxhash.xxh3_64_intdigest(raw))
        end = max(end, v["offset"] + -(-sections[k].nbytes // ALIGN) * ALIGN)
    check_arr = np.ascontiguousarray(np.concatenate(checks) if checks else np.zeros(0, np.uint64), "<u8")
    sections = dict(sections, checks=check_arr)
    meta["checks"] = {"offset": end, "dtype": check_arr.dtype.str, "shape": [len(check_arr)],
                      "xxh3": xxhash.xxh3_64_intdigest(_raw(check_arr))}
    header = dict(header, sections=meta)
    raw = json.dumps(header).encode()
    head = MAGIC + len(raw).to_bytes(8, "little") + raw + xxhash.xxh3_64_intdigest(raw).to_bytes(8, "little")
    base = -(-len(head) // ALIGN) * ALIGN
    name = segment_file(header["id"])
    path = os.path.join(directory, name)
    # the directory is fsynced by the manifest that names the segment (the commit point)
    with atomic_file(path, fsync, sync_dir=False) as fh:
        fh.write(head + b"\0" * (base - len(head)))
        pos = 0
        last = max((k for k in sections if sections[k].nbytes), key=lambda k: meta[k]["offset"], default=None)
        for sec, arr in sections.items():
            fh.write(_raw(arr))
            pos += arr.nbytes
            pad = meta[sec]["offset"] + -(-arr.nbytes // ALIGN) * ALIGN - pos
            if pad and sec != last:  # no padding after the last bytes: every byte of the tail is checked
                fh.write(b"\0" * pad)
                pos += pad
    return name


class Segment:
    """A mapped segment file; ``alive`` (in memory, one byte per row) marks the rows not removed.

    ``sigs``, ``table`` and ``vecs`` verify their whole sections on first use (merges, self-joins,
    flat scans); the query paths read through :meth:`sig_rows`, :meth:`probe_table` and
    :meth:`vec_rows_at`, which verify only the blocks they touch."""

    def __init__(self, path: str | None, header: dict, mm: mmap.mmap | None, arrays: dict[str, np.ndarray],
                 lazy: dict | None = None, offsets: dict[str, int] | None = None):
        self.path = path
        self._offsets = offsets or {}  # file offset of each lazy section (the blocks' prefetch)
        self.name = None if path is None else os.path.basename(path)
        self.header = header
        self.id = int(header["id"])
        self._mm = mm
        self.n = int(header["n"])
        a = arrays
        self.rowids = a["rowids"]
        self._sigs = a["sigs"]
        self._skeys, self._srows, self.directory, self.d = a["skeys"], a["srows"], a["directory"], int(header["d"])
        self.id_hash, self.id_row = a["id_hash"], a["id_row"]
        self.ext_off, self.ext = a["ext_off"], a["ext"]
        self.lab_off, self.lab, self.has_label = a["lab_off"], a["lab"], a["has_label"]
        self.vec_rows = a.get("vec_rows")
        self._vecs = a.get("vecs")
        self.vec_blocks = header["vec_blocks"]
        self.min_rowid, self.max_rowid = int(header["min_rowid"]), int(header["max_rowid"])
        self.alive = np.ones(self.n, dtype=bool)
        self.n_dead = 0
        self.tomb: dict | None = None  # the tombstone file the manifest names for it, if any
        self.flat_copy = None  # a heap copy of ``vecs`` for flat scans (see Engine._flat_vectors)
        self.flat_copying = False  # a background thread is making flat_copy
        self.ann = None  # hook: a per-segment ANN structure over ``vecs`` (simsearch.index._ann)
        # lazily verified sections: name -> (their block checksums, bool per block: verified)
        self._lazy: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._unverified = 0
        self._mark = threading.Lock()  # concurrent readers may verify the same block
        self._closed = False
        for name, (checks, _) in (lazy or {}).items():
            if len(checks):
                self._lazy[name] = (checks, np.zeros(len(checks), bool))
                self._unverified += len(checks)

    # -- lazy verification ---------------------------------------------------------------------
    @property
    def verified(self) -> bool:
        """True once every block of the segment has been verified."""
        return not self._unverified

    def _array(self, name: str) -> np.ndarray:
        return {"sigs": self._sigs, "skeys": self._skeys, "srows": self._srows, "vecs": self._vecs}[name]

    def _check(self, name: str, blocks: np.ndarray) -> None:
        """Verify the given blocks of a lazy section (those not yet verified)."""
        entry = self._lazy.get(name)
        if entry is None:
            return
        checks, done = entry
        blocks = blocks[~done[blocks]]
        if not len(blocks):
            return
        arr = self._array(name)
        if arr is None:  # closed meanwhile (a merge or a repair replaced it)
            return
        blocks = np.unique(blocks)
        self._prefetch(name, blocks)
        raw = memoryview(arr.reshape(-1)).cast("B")
        h = xxhash.xxh3_64_intdigest
        for blk in blocks.tolist():
            if done[blk]:
                continue
            if h(raw[blk * CHECK_BLOCK : (blk + 1) * CHECK_BLOCK]) != int(checks[blk]):
                raise SegmentDamaged(f"segment {self.path}: section {name} fails its checksum (block {blk})", self)
            with self._mark:
                if not done[blk]:
                    done[blk] = True
                    self._unverified -= 1

    def will_read(self, *names: str) -> None:
        """Request the named lazy sections (the whole file: none named) from the disk, ahead of a
        reader that reads them in order (a merge, a self-join)."""
        mm = self._mm
        if not names:
            _advise(mm, _WILLNEED)
        for name in names:
            off, arr = self._offsets.get(name), self._array(name)
            if off is not None and arr is not None:
                _advise(mm, _WILLNEED, off, arr.nbytes)

    def _prefetch(self, name: str, blocks: np.ndarray) -> None:
        """Ask the kernel for the bytes of ``blocks`` (sorted) of a lazy section, one request per
        run of consecutive blocks, before they are hashed (see the module docstring)."""
        off = self._offsets.get(name)
        if off is None or self._mm is None or _WILLNEED is None or not len(blocks):
            return
        cuts = np.flatnonzero(np.diff(blocks) != 1) + 1
        for first, last in zip(blocks[np.r_[0, cuts]].tolist(), blocks[np.r_[cuts - 1, len(blocks) - 1]].tolist()):
            _advise(self._mm, _WILLNEED, off + first * CHECK_BLOCK, (last - first + 1) * CHECK_BLOCK)

    def _check_spans(self, name: str, lo_bytes: np.ndarray, hi_bytes: np.ndarray) -> None:
        """Verify the blocks covering the byte ranges [lo, hi) of a lazy section."""
        if name not in self._lazy:
            return
        ok = hi_bytes > lo_bytes
        first, last = lo_bytes[ok] // CHECK_BLOCK, (hi_bytes[ok] - 1) // CHECK_BLOCK
        if not len(first):
            return
        if (last - first).max() <= 1:
            blocks = np.concatenate([first, last])
        else:
            blocks = np.concatenate([np.arange(a, b + 1) for a, b in zip(first.tolist(), last.tolist())])
        self._check(name, blocks.astype(np.int64))

    def check_all(self, name: str, between=None) -> None:
        """Verify every unverified block of section ``name``; with ``between``, in steps of
        16 MiB with ``between()`` called before each (a background thread giving way)."""
        entry = self._lazy.get(name)
        if entry is None:
            return
        todo = np.flatnonzero(~entry[1])
        if between is None:
            self._check(name, todo)
            return
        step = max(1, (16 << 20) // CHECK_BLOCK)
        for lo in range(0, len(todo), step):
            between()
            self._check(name, todo[lo:lo + step])

    def verify_some(self, max_blocks: int) -> bool:
        """Verify up to ``max_blocks`` unverified blocks (the background pass); True when more remain.
        Raises SegmentDamaged on a bad block."""
        if self._closed:
            return False
        budget = max_blocks
        for name, (_, done) in list(self._lazy.items()):
            if budget <= 0:
                break
            todo = np.flatnonzero(~done)[:budget]
            if len(todo):
                self._check(name, todo)
                budget -= len(todo)
        return self._unverified > 0 and not self._closed

    def _rows_spans(self, name: str, rows: np.ndarray, rowbytes: int) -> None:
        if self._unverified and name in self._lazy and len(rows):
            rows = np.asarray(rows, np.int64)
            self._check_spans(name, rows * rowbytes, (rows + 1) * rowbytes)

    def sig_rows(self, rows: np.ndarray) -> np.ndarray:
        """The signature array, with the blocks holding ``rows`` verified (read only those rows)."""
        self._rows_spans("sigs", rows, self._sigs.shape[1] * 4)
        return self._sigs

    def vec_rows_at(self, pos: np.ndarray) -> np.ndarray:
        """The vector array, with the blocks holding vectors ``pos`` verified (read only those)."""
        if self._vecs is not None and self._vecs.ndim == 2:
            self._rows_spans("vecs", pos, self._vecs.shape[1] * 4)
        return self._vecs

    def probe_table(self, qkeys: np.ndarray, qvalid: np.ndarray, whole: bool = False) -> tuple:
        """The band table (skeys, srows, directory, d), with the blocks that a lookup of
        ``qkeys`` reads verified: per (query, band), the directory bucket of the key and one key
        on each side (``whole``: the entire table, for lookups that binary-search it)."""
        if self._unverified and ("skeys" in self._lazy or "srows" in self._lazy):
            if whole:
                self.check_all("skeys")
                self.check_all("srows")
            else:
                nb, m = self._skeys.shape
                q = np.flatnonzero(qvalid)
                if len(q) and nb and m:
                    u = ((qkeys[q] >> np.uint64(1)) >> np.uint64(63 - self.d)).astype(np.int64)  # (nq, b)
                    band = np.arange(nb)
                    lo = self.directory[band, u].astype(np.int64)
                    hi = self.directory[band, u + 1].astype(np.int64)
                    base = (band * m)[None, :]
                    lo = (base + np.maximum(lo - 1, 0)).ravel()
                    hi = (base + np.minimum(hi + 1, m)).ravel()
                    self._check_spans("skeys", lo * 8, hi * 8)
                    self._check_spans("srows", lo * 4, hi * 4)
        return self._skeys, self._srows, self.directory, self.d

    @property
    def sigs(self) -> np.ndarray:
        self.check_all("sigs")
        return self._sigs

    @property
    def vecs(self) -> np.ndarray | None:
        self.check_all("vecs")
        return self._vecs

    @property
    def table(self) -> tuple | None:
        """The whole band table, verified (a self-join reads it in order: requested whole first)."""
        if self._skeys is None:
            return None
        self.will_read("skeys", "srows")
        self.check_all("skeys")
        self.check_all("srows")
        return self._skeys, self._srows, self.directory, self.d

    def has_vectors(self) -> bool:
        return self._vecs is not None and len(self._vecs) > 0

    @property
    def vec_stats(self) -> tuple[float, float]:
        """(max |value|, max row norm) of the segment's vectors, from the header's per-block
        figures (no pass over the vectors); (0.0, 0.0) without vectors."""
        blocks = self.vec_blocks
        if not blocks:
            return 0.0, 0.0
        return max(b[2] for b in blocks), max(b[3] for b in blocks)

    def __len__(self) -> int:
        return self.n

    @property
    def live(self) -> int:
        return self.n - self.n_dead

    def locate_rowids(self, rowids: np.ndarray) -> np.ndarray:
        """Row of each rowid that this segment holds alive, else -1."""
        if not self.n:
            return np.full(len(rowids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.rowids, rowids), self.n - 1)
        hit = (self.rowids[pos] == rowids) & self.alive[pos]
        return np.where(hit, pos, -1).astype(np.int64)

    def locate_ext(self, ids: list[str], hashes: np.ndarray) -> np.ndarray:
        """Row of each external id alive in this segment, else -1 (hash, then bytes compared)."""
        out = np.full(len(ids), -1, np.int64)
        if not self.n or not len(ids):
            return out
        lo = np.searchsorted(self.id_hash, hashes, side="left")
        hi = np.searchsorted(self.id_hash, hashes, side="right")
        for i in np.flatnonzero(hi > lo).tolist():
            for p in range(int(lo[i]), int(hi[i])):
                row = int(self.id_row[p])
                if self.alive[row] and self.ext_id(row) == ids[i]:
                    out[i] = row
                    break
        return out

    def ext_id(self, row: int) -> str:
        return self.ext[self.ext_off[row] : self.ext_off[row + 1]].tobytes().decode("utf-8", "surrogatepass")

    def ext_ids(self, rows) -> list[str]:
        return [self.ext_id(r) for r in np.asarray(rows).tolist()]

    def labels(self, rows) -> list[str | None]:
        out = []
        for r in np.asarray(rows).tolist():
            if not self.has_label[r]:
                out.append(None)
            else:
                out.append(self.lab[self.lab_off[r] : self.lab_off[r + 1]].tobytes().decode("utf-8", "surrogatepass"))
        return out

    def kill(self, rows: np.ndarray) -> None:
        rows = rows[self.alive[rows]]
        self.alive[rows] = False
        self.n_dead += len(rows)

    def close(self) -> None:
        """Drop the arrays and the mapping (a no-op while numpy views of it are still referenced)."""
        self._closed = True
        for attr in ("rowids", "_sigs", "id_hash", "id_row", "ext_off", "ext", "lab_off", "lab", "has_label",
                     "vec_rows", "_vecs", "flat_copy", "_skeys", "_srows", "directory"):
            setattr(self, attr, None)
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a query still holds a view; the mapping goes with it
                pass


def _bad(path: str, why: str) -> StorageCorruptionError:
    return StorageCorruptionError(f"segment {path}: {why}")


def open_segment(path: str, cfg, b: int, r: int, *, verify: bool = True) -> Segment:
    """Map a segment file and check it: magic, format, header checksum, the collection's shape,
    and (``verify``) the checksums of the structural sections and of the block checksums, the
    large sections' blocks being verified on first read. Any failure raises StorageCorruptionError.
    ``verify=False``: a segment this process just wrote (its bytes come from memory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _bad(path, f"cannot be opened ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        if size < 16:
            raise _bad(path, "is truncated")
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        _advise(mm, _RANDOM)  # before the first read: no read-around anywhere (module docstring)
        if mm[:8] != MAGIC:
            raise _bad(path, "is not a simsearch segment")
        hlen = int.from_bytes(mm[8:16], "little")
        if 16 + hlen + 8 > size:
            raise _bad(path, "is truncated")
        _advise(mm, _WILLNEED, 0, 24 + hlen)
        raw = mm[16 : 16 + hlen]
        if xxhash.xxh3_64_intdigest(raw) != int.from_bytes(mm[16 + hlen : 24 + hlen], "little"):
            raise _bad(path, "fails its header checksum")
        header = json.loads(raw)
        if header.get("format") != SEGMENT_FORMAT:
            raise _bad(path, f"has segment format {header.get('format')}; expected {SEGMENT_FORMAT}")
        if (header["num_perm"], header["dim"], header["b"], header["r"]) != (cfg.num_perm, cfg.dim, b, r):
            raise _bad(path, "does not match the collection's configuration")
        base = -(-(24 + hlen) // ALIGN) * ALIGN
        arrays, arr, offsets = {}, None, {}
        for name, sec in header["sections"].items():
            dt = np.dtype(sec["dtype"])
            count = int(np.prod(sec["shape"])) if sec["shape"] else 1
            start = base + int(sec["offset"])
            if count == 0:
                arrays[name] = np.empty(sec["shape"], dt)
                continue
            if start + count * dt.itemsize > size:
                raise _bad(path, f"is truncated (section {name})")
            arrays[name] = np.frombuffer(mm, dtype=dt, count=count, offset=start).reshape(sec["shape"])
            offsets[name] = start
            if name in _IN_ORDER:
                _advise(mm, _NORMAL, start, count * dt.itemsize)
            elif verify and "xxh3" in sec:
                _advise(mm, _WILLNEED, start, count * dt.itemsize)  # all requested before any is hashed
        if verify:
            for name, sec in header["sections"].items():
                arr = arrays[name]
                if "xxh3" in sec and arr.size and xxhash.xxh3_64_intdigest(_raw(arr)) != sec["xxh3"]:
                    raise _bad(path, f"section {name} fails its checksum")
        n = int(header["n"])
        if arrays["rowids"].shape != (n,) or arrays["sigs"].shape != (n, cfg.num_perm):
            raise _bad(path, "has inconsistent shapes")
        lazy = {}
        checks = arrays["checks"]
        for name in LAZY_SECTIONS:
            sec = header["sections"].get(name)
            if sec is None:
                continue
            first, count = sec["blocks"]
            nbytes = arrays[name].nbytes
            if count != -(-nbytes // CHECK_BLOCK) or first + count > len(checks):
                raise _bad(path, f"has inconsistent block checksums (section {name})")
            lazy[name] = (checks[first : first + count], None)
        return Segment(path, header, mm, arrays, lazy if verify else None,
                       {name: offsets[name] for name in LAZY_SECTIONS if name in offsets})
    except StorageCorruptionError:
        arrays = arr = None
        _close_quietly(mm)
        raise
    except (ValueError, KeyError, TypeError) as exc:
        arrays = arr = None
        _close_quietly(mm)
        raise _bad(path, f"has an unreadable header ({exc})") from None


def _close_quietly(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # a view survives in a traceback; the mapping goes with it
        pass
