"""Approximate nearest-neighbour blocks: an immutable faiss index over a block of vectors and rows.

An :class:`AnnBlock` indexes a block of float32 vectors, each with its row number (an int64 the
owner chooses: a collection's rowid), and answers kNN queries restricted to an *allow* bitmap over
its positions (the live rows that pass a filter). It is built once (:meth:`AnnBlock.build`),
written to two files (:meth:`AnnBlock.save`) and opened cheaply (:meth:`AnnBlock.open`): the rows
and vectors are memory-mapped, and the faiss structure is read with faiss's ``IO_FLAG_MMAP_IFC``,
which maps its stored vectors instead of copying them (with faiss 1.15 the HNSW neighbour lists
too; an IVF's lists are read into memory). Nothing is rebuilt on open: the checksums are hashed
through a read-only mapping (:func:`_file_digest`), which leaves the file's pages in the page
cache for faiss's own mapping.

Kinds (:func:`resolve_kind`): ``flat`` (exact scan, no faiss structure), ``hnsw`` (faiss
``IndexHNSWFlat``), ``ivf`` (faiss ``IndexIVFFlat``, k-means trained on a seeded sample), and
``auto``: flat below :data:`AUTO_FLAT_BELOW` vectors, HNSW from there on.

Metrics are those of :mod:`simsearch.distance`: euclidean and sqeuclidean (faiss L2), cosine
(1 - cos: faiss inner product on unit vectors; a zero vector stays zero, at distance 1 from every
vector, as ``distance.py`` has it), and manhattan (faiss ``METRIC_L1``, which both HNSW and IVF
support; IVF still places its centroids by k-means, so its L1 recall at a given nprobe is a
little lower). Every returned distance is recomputed exactly from the block's vectors
(:func:`simsearch.distance.polish`), so the approximate kinds differ from brute force only in
*which* rows they find, never in the distances reported, and ties go to the smaller row.

Filtering (``allow``): the exact kinds simply scan the allowed positions. HNSW and IVF pass the
bitmap to faiss as an ``IDSelectorBitmap`` in the search parameters, so faiss skips disallowed
rows while it searches; when the filter keeps few rows (at most :data:`EXACT_SCAN_MAX`, or less
than :data:`MIN_SELECTIVITY` of the block), a graph or list walk would mostly visit rejected rows,
and an exact scan of the allowed rows is both faster and exact, so that is what runs. HNSW's
``efSearch`` (IVF's ``nprobe``) grows with sqrt(1 / selectivity), at most :data:`MAX_EF_BOOST` times
(measured at 10 %, 40k x 64: recall@10 0.956 unboosted, 0.989 at 2x, 1.0 at 4x and 8x, p50
0.35 / 0.47 / 0.68 / 1.11 ms), so that a filtered
walk still collects enough allowed candidates. :class:`AnnResult.path` says which path ran.

Growing (:meth:`AnnBlock.grown`): a block over a merged set of rows can start from a copy of
another block's faiss structure (a merged segment's largest input's) and add only the vectors that
one lacks. Its faiss labels ("nodes") then no longer equal positions: :attr:`AnnBlock.nodes` maps
each node to its position, -1 for a node whose row is gone (kept in the graph, never returned:
every search passes an ID selector that leaves those nodes out).

File format (version :data:`FORMAT_VERSION`): ``<stem>.ann``: magic, a little-endian u32 format
version and u32 header length, a JSON header (kind, metric, params, sizes, the XXH3-64 checksums
of both files' payloads), then, 64-byte aligned, rows (<i8) and vectors (<f4), and for a grown
block (version 2; others are still written as version 1) its node map (<i8). ``<stem>.faiss``:
faiss's own format (absent for flat). :meth:`AnnBlock.save` writes both to temporary names,
fsyncs and renames them, the ``.ann`` last, so a crash leaves the old block or the new one.
A bad checksum, truncation or a mismatched pair raises StorageCorruptionError on open.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import xxhash

from ..backends import get_knn_backend
from ..distance import check_vectors, exact_knn, max_abs, max_row_norm, normalize_metric, pair_distances, rank, unit_rows
from ..errors import BackendUnavailableError, InvalidArgumentError, StorageCorruptionError, UnsupportedFormatError
from ..validation import VECTOR_INDEX_KINDS, check_int, check_option, check_param

__all__ = [
    "AUTO_FLAT_BELOW",
    "EXACT_SCAN_MAX",
    "FORMAT_VERSION",
    "MAX_EF_BOOST",
    "MIN_SELECTIVITY",
    "VECTOR_INDEX_KINDS",
    "AnnBlock",
    "AnnParams",
    "AnnResult",
    "BuildCancelled",
    "Candidates",
    "check_ann_params",
    "resolve_kind",
    "top_k",
]

AUTO_FLAT_BELOW = 20_000  # auto: a flat scan below this many vectors, HNSW from there on
EXACT_SCAN_MAX = 4096  # a filter keeping at most this many rows is answered by an exact scan
MIN_SELECTIVITY = 0.01  # ... and so is one keeping less than this fraction of the block
MAX_EF_BOOST = 8  # a filtered search raises efSearch / nprobe by sqrt(1/selectivity), at most this much
FORMAT_VERSION = 2  # 2: a block grown from another's structure keeps a node map (others are still written as 1)
MAX_DEAD_NODES = 0.125  # grown(): at most this fraction of a grown structure's nodes may be rows that are gone
_MAGIC = b"SSANNBLK"
_ALIGN = 64
_DIGEST_SLICE = 1 << 24  # bytes hashed per call by _file_digest
_MIN_TRAIN_PER_LIST = 39  # faiss's k-means wants at least this many points per centroid
_BATCH = 4096  # queries per faiss call
SERIAL_QUERIES = 16  # a faiss search of at most this many queries runs on one OpenMP thread
ADD_BATCH = 4096  # vectors per faiss add while building (a stop request is seen between batches)


class BuildCancelled(Exception):
    """A build stopped through its ``should_stop`` callback (nothing was saved)."""


@dataclass(frozen=True)
class AnnParams:
    """The tunables of an approximate index. ``nlist=None``: about 4 * sqrt(n) lists;
    ``nprobe=None``: nlist / 16, at least 8. ``seed`` fixes IVF's training sample and k-means."""

    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int | None = None
    seed: int = 0


def check_ann_params(*, vector_index: str = "auto", hnsw_m: int = 32, ef_construction: int = 80,
                     ef_search: int = 64, nlist: int | None = None, nprobe: int | None = None,
                     func: str = "create_collection") -> tuple[str, AnnParams]:
    """The validated kind and :class:`AnnParams` of a collection's vector index options."""
    kind = check_param("vector_index", vector_index, func=func)
    params = AnnParams(
        hnsw_m=check_param("hnsw_m", hnsw_m, func=func),
        ef_construction=check_param("ef_construction", ef_construction, func=func),
        ef_search=check_param("ef_search", ef_search, func=func),
        nlist=None if nlist is None else check_param("nlist", nlist, func=func),
        nprobe=None if nprobe is None else check_param("nprobe", nprobe, func=func),
    )
    return kind, params


def resolve_kind(kind: str, n: int) -> str:
    """The concrete kind ("flat", "hnsw" or "ivf") of ``kind`` for a block of ``n`` vectors."""
    if kind == "auto":
        return "flat" if n < AUTO_FLAT_BELOW else "hnsw"
    return kind


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailableError(
            f"vector_index='hnsw'/'ivf' needs faiss ({exc}). Install simsearch[cpu] (faiss-cpu) or "
            "simsearch[gpu]; vector_index='flat' works without it."
        ) from exc
    return faiss


def _faiss_metric(faiss, metric: str) -> int:
    if metric == "manhattan":
        return faiss.METRIC_L1
    if metric in ("euclidean", "sqeuclidean"):
        return faiss.METRIC_L2
    return faiss.METRIC_INNER_PRODUCT  # cosine, on unit vectors


@dataclass(frozen=True)
class AnnResult:
    """kNN results of a batch: ``distances`` (nq, k) float32 ascending, exact for the rows found;
    ``rows`` (nq, k) int64, -1 (distance +inf) where fewer than k rows were found or allowed;
    ``path``: "exact" (a scan of every allowed row), "ann" (the faiss index, unfiltered) or
    "ann_filtered" (the faiss index with the allow bitmap as an ID selector)."""

    distances: np.ndarray
    rows: np.ndarray
    path: str


class Candidates(NamedTuple):
    """One block's (or one exact scan's) answer to a batch before the final ranking: ``rows``
    (nq, m) int64, -1 where none; ``dist`` their exact float32 distances (+inf where none), or
    None when they are still to be computed from ``base`` (the block's vectors) at ``pos`` (the
    rows' positions in ``base``, -1 where none). ``path`` as :attr:`AnnResult.path`."""

    path: str
    rows: np.ndarray
    dist: np.ndarray | None
    base: np.ndarray | None = None
    pos: np.ndarray | None = None


def top_k(parts: list[Candidates], queries: np.ndarray, k: int, metric: str,
          backend: Any) -> tuple[np.ndarray, np.ndarray]:
    """The k best of every part's rows per query, (distances, rows) (nq, k), -1 / +inf padded:
    distances not yet computed are computed exactly (:func:`simsearch.distance.pair_distances`),
    then all are ranked once, by (distance, row) (:func:`simsearch.distance.rank`).
    Parts must not share a row."""
    nq = len(queries)
    ds, rs = [], []
    for part in parts:
        if part.rows.shape[1]:
            ds.append(part.dist if part.dist is not None else
                      pair_distances(part.base, queries, part.pos, metric, backend=backend))
            rs.append(part.rows)
    dist = np.full((nq, k), np.inf, np.float32)
    rows = np.full((nq, k), -1, np.int64)
    if not ds:
        return dist, rows
    d, r = rank(np.concatenate(ds, axis=1), np.concatenate(rs, axis=1), k)
    m = d.shape[1]
    dist[:, :m], rows[:, :m] = d, r
    dist[rows < 0] = np.inf
    return dist, rows


@dataclass
class AnnBlock:
    """An immutable kNN index over ``rows`` (int64, ascending, unique) and their ``vectors``."""

    kind: str  # "flat" | "hnsw" | "ivf"
    metric: str
    params: AnnParams
    rows: np.ndarray
    vectors: np.ndarray
    _index: Any = field(default=None, repr=False)  # the faiss structure; labels are positions
    _nlist: int = 0
    _bnorm: float = 0.0
    _amax: float = 0.0
    extra: dict = field(default_factory=dict)  # the owner's identity of the block (kept by save)
    _mapped: str | None = None  # the faiss file the structure is memory-mapped from
    # the block position each faiss node (label) stands for, -1 for a node whose row is gone;
    # None when node i is position i (a block built at once). See grown().
    nodes: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, rows: Any, vectors: Any, *, metric: str = "euclidean", kind: str = "auto",
              params: AnnParams | None = None, should_stop: Callable[[], bool] | None = None) -> AnnBlock:
        """Index ``vectors`` (n, dim) under ``rows`` (n ascending unique int64). ``kind="ivf"`` with
        too few vectors to train its lists (39 per list) builds fewer lists, one at the least.
        ``should_stop`` is polled between batches of :data:`ADD_BATCH` vectors; when it returns
        True the build raises :class:`BuildCancelled` (a background build stopped by a close)."""
        params = params or AnnParams()
        metric = normalize_metric(metric, func="AnnBlock.build")
        kind = check_option(kind, "kind", VECTOR_INDEX_KINDS, func="AnnBlock.build")
        rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        if len(rows):
            vectors = check_vectors(vectors, "vectors", func="AnnBlock.build")
        else:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(0, np.shape(vectors)[-1])
        if vectors.ndim != 2 or len(vectors) != len(rows):
            raise InvalidArgumentError(f"AnnBlock.build needs one vector per row; got {len(rows)} rows and "
                                       f"vectors of shape {vectors.shape}.")
        if len(rows) > 1 and not np.all(np.diff(rows) > 0):
            raise InvalidArgumentError("AnnBlock.build needs ascending, unique rows.")
        kind = resolve_kind(kind, len(rows))
        block = cls(kind, metric, params, rows, vectors)
        block._stats()
        if kind != "flat" and len(rows):
            block._index, block._nlist = _build_faiss(kind, metric, params, vectors, should_stop)
        elif kind != "flat":
            block.kind = "flat"  # nothing to index
        return block

    def _stats(self) -> None:
        v = self.vectors
        self._bnorm = max_row_norm(v) if len(v) else 0.0
        self._amax = max_abs(v)

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: Any, k: int, *, allow: np.ndarray | None = None, live: np.ndarray | None = None,
               exact: bool = False, ef_search: int | None = None, nprobe: int | None = None,
               backend: Any = "auto") -> AnnResult:
        """The k nearest rows of each query among those ``allow`` (a filter) and ``live`` (the
        rows not deleted) keep: bool arrays over the block's positions, None for all. A filter
        that keeps at most EXACT_SCAN_MAX rows (or under MIN_SELECTIVITY of the block) is an
        exact scan; ``live`` alone always goes through the selector. ``exact=True`` scans."""
        q = check_vectors(queries, "queries", dim=self.dim, func="search")
        k = check_int(k, "k", 1, None, func="search")
        be = get_knn_backend(backend)
        part = self.candidates(q, k, allow=allow, live=live, exact=exact, ef_search=ef_search, nprobe=nprobe,
                               backend=be)
        d, r = top_k([part], q, k, self.metric, be)
        return AnnResult(d, r, part.path)

    def candidates(self, q: np.ndarray, k: int, *, allow: np.ndarray | None = None, live: np.ndarray | None = None,
                   exact: bool = False, ef_search: int | None = None, nprobe: int | None = None,
                   backend: Any = None, qmax: float | None = None, xq: np.ndarray | None = None) -> Candidates:
        """:meth:`search` of checked queries ``q`` (float32 (nq, dim)) before the exact re-scoring:
        the rows found, with exact distances where a scan found them, else the positions whose
        distances :func:`top_k` computes, so that a query over many blocks re-scores and sorts
        once (``backend``: a backend object; ``qmax``: max |q|; ``xq``: ``q`` as faiss is asked,
        unit rows for cosine: both computed here when None, or once by a caller with many blocks)."""
        nq, n = len(q), len(self)
        keep, n_keep, bits = self._keep(allow, live)
        use_ann = not exact and self._index is not None
        if use_ann and allow is not None:
            use_ann = n_keep > EXACT_SCAN_MAX and n_keep >= MIN_SELECTIVITY * n
        path = "exact" if not use_ann else ("ann_filtered" if allow is not None else "ann")
        if not nq or not n_keep:
            return Candidates(path, np.full((nq, 0), -1, np.int64), np.full((nq, 0), np.inf, np.float32))
        kk = min(k, n_keep)
        if not use_ann:
            if qmax is None:
                qmax = float(np.abs(q).max()) if q.size else 0.0
            pos = None if n_keep == n else np.flatnonzero(keep)
            base = self.vectors if pos is None else self.vectors[pos]
            d, p = exact_knn(backend, np.ascontiguousarray(base), q, kk, self.metric, max(qmax, self._amax),
                             self._bnorm)
            p = p if pos is None else np.where(p >= 0, pos[np.maximum(p, 0)], -1)
            return Candidates(path, np.where(p >= 0, self.rows[np.maximum(p, 0)], -1), d)
        p = self._faiss_search(q, kk, bits, n_keep / n, allow is not None, ef_search, nprobe, xq=xq)
        if self.nodes is not None:
            p = np.where(p >= 0, self.nodes[np.maximum(p, 0)], -1)
        return Candidates(path, np.where(p >= 0, self.rows[np.maximum(p, 0)], -1), None, self.vectors, p)

    def _keep(self, allow: np.ndarray | None, live: np.ndarray | None) -> tuple:
        """(positions both masks keep or None for all, their number, the little-endian packed
        bits of the faiss nodes to search or None for all), for the last (allow, live) pair by
        identity: the collection passes the same cached arrays on every query until a write, and
        recomputing the AND, the count and the packed selector per query cost O(block) each time."""
        cached = getattr(self, "_keep_cache", None)
        if cached is not None and cached[0] is allow and cached[1] is live:
            return cached[2]
        n = len(self)
        keep = None
        for name, mask in (("allow", allow), ("live", live)):
            if mask is None:
                continue
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (n,):
                raise InvalidArgumentError(f"{name} must be a bool array of {n} positions; got shape {mask.shape}.")
            keep = mask if keep is None else keep & mask
        n_keep = n if keep is None else int(np.count_nonzero(keep))
        nodes = self.nodes
        if nodes is None:
            bits = None if keep is None or n_keep == n else np.packbits(keep, bitorder="little")
        else:  # over the faiss nodes: a node without a row (its row was dropped) is never kept
            at = nodes >= 0
            node_keep = at if keep is None else at & keep[np.maximum(nodes, 0)]
            bits = None if node_keep.all() else np.packbits(node_keep, bitorder="little")
        out = (keep, n_keep, bits)
        if not (isinstance(allow, np.ndarray) or allow is None) or not (isinstance(live, np.ndarray) or live is None):
            return out  # a list or other sequence: not cached (its identity says nothing about its contents)
        self._keep_cache = (allow, live, out)
        return out

    def _faiss_search(self, q: np.ndarray, k: int, bits: np.ndarray | None, selectivity: float, boost: bool,
                      ef_search: int | None, nprobe: int | None, xq: np.ndarray | None = None) -> np.ndarray:
        """Candidate faiss labels (nq, k), -1 where none, from the faiss structure, among the
        nodes ``bits`` keeps (packed little-endian, None for all)."""
        faiss = _faiss()
        _omp_threads(faiss, len(q))
        if self.kind == "hnsw":
            sp = faiss.SearchParametersHNSW()
            ef = max(ef_search or self.params.ef_search, k)
            if boost:
                ef = int(ef * min(MAX_EF_BOOST, max(1.0, math.sqrt(1.0 / max(selectivity, 1e-9)))))
            sp.efSearch = ef
        else:
            sp = faiss.SearchParametersIVF()
            probe = nprobe or self.params.nprobe or max(8, self._nlist // 16)
            if boost:
                probe = int(probe * min(MAX_EF_BOOST, max(1.0, math.sqrt(1.0 / max(selectivity, 1e-9)))))
            sp.nprobe = min(self._nlist, probe)
        if bits is not None:
            sp.sel = faiss.IDSelectorBitmap(self._index.ntotal, faiss.swig_ptr(bits))
        x = xq if xq is not None else unit_rows(q) if self.metric == "cosine" else q
        out = np.empty((len(q), k), np.int64)
        for lo in range(0, len(q), _BATCH):
            _, labels = self._index.search(np.ascontiguousarray(x[lo:lo + _BATCH]), k, params=sp)
            out[lo:lo + _BATCH] = labels
        del bits  # the selector read it during the searches
        return out

    # -- persistence ---------------------------------------------------------------------------
    def save(self, stem: str, *, extra: dict | None = None, data: bool = True) -> None:
        """Write ``<stem>.ann`` (and ``<stem>.faiss`` for hnsw/ivf) atomically; ``extra`` is a
        JSON-able dict kept in the header (the owner's identity of the block), read back by
        :meth:`open` as :attr:`extra`. ``data=False`` leaves the rows and vectors out (the owner
        keeps them, checksummed, e.g. in a segment, and passes them back to :meth:`open`)."""
        faiss_path, ann_path = stem + ".faiss", stem + ".ann"
        faiss_sum = None
        if self._index is not None:
            tmp = faiss_path + ".tmp"
            _faiss().write_index(self._index, tmp)
            faiss_sum = _file_digest(tmp)
            _fsync_rename(tmp, faiss_path)
        rows = self.rows.astype("<i8", copy=False)
        vecs = np.ascontiguousarray(self.vectors, dtype="<f4")
        if not data:
            rows, vecs = rows[:0], vecs[:0]
        nodes = np.zeros(0, "<i8") if self.nodes is None else self.nodes.astype("<i8", copy=False)
        h = xxhash.xxh3_64()
        for part in (rows, vecs, nodes):
            h.update(memoryview(part).cast("B") if part.nbytes else b"")
        header = {
            "kind": self.kind, "metric": self.metric, "params": self.params.__dict__, "n": len(self),
            "dim": self.dim, "nlist": self._nlist, "data_xxh3": h.hexdigest(), "faiss_xxh3": faiss_sum,
            "extra": extra or {}, "external": not data,
        }
        version = 1
        if self.nodes is not None:  # format 2: a node map follows the data (format 1 readers refuse it)
            header["nodes"] = len(nodes)
            version = 2
        hjson = json.dumps(header, sort_keys=True).encode()
        head = _MAGIC + struct.pack("<II", version, len(hjson)) + hjson
        pad = (-len(head)) % _ALIGN
        tmp = ann_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(head + b"\0" * pad)
            for part in (rows, vecs, nodes):
                f.write(memoryview(part).cast("B") if part.nbytes else b"")
            f.flush()
            os.fsync(f.fileno())
        _fsync_rename(tmp, ann_path, sync_file=False)
        if self._index is None and os.path.exists(faiss_path):
            os.unlink(faiss_path)
        self.extra = extra or {}

    @classmethod
    def open(cls, stem: str, *, verify: bool = True, rows: np.ndarray | None = None,
             vectors: np.ndarray | None = None, stats: tuple[float, float] | None = None,
             give_way: Callable[[], None] | None = None) -> AnnBlock:
        """The block :meth:`save` wrote to ``stem``, memory-mapped. ``verify`` checks both files'
        checksums (reading them once); StorageCorruptionError on any mismatch. A block saved with
        ``data=False`` takes its ``rows`` and ``vectors`` from the caller (they must match its size),
        and ``stats``, when the caller knows them, as (max |value|, max row norm) of those vectors
        (else they are computed: a pass over every vector). ``give_way``, when given, is called
        between the slices of the faiss file's checksum (a background reopen waits there for the
        queries in flight, see :class:`~simsearch.index._engine.Foreground`)."""
        ann_path = stem + ".ann"
        try:
            raw = np.memmap(ann_path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as exc:
            raise StorageCorruptionError(f"ANN block {ann_path!r} cannot be read ({exc}).") from None
        head = len(_MAGIC) + 8
        if len(raw) < head or bytes(raw[: len(_MAGIC)]) != _MAGIC:
            raise StorageCorruptionError(f"{ann_path!r} is not an ANN block (bad magic or too short).")
        version, hlen = struct.unpack("<II", bytes(raw[len(_MAGIC):head]))
        if version > FORMAT_VERSION:
            raise UnsupportedFormatError(f"ANN block {ann_path!r} has format version {version}; upgrade simsearch.")
        try:
            h = json.loads(bytes(raw[head:head + hlen]))
            n, dim, kind = int(h["n"]), int(h["dim"]), str(h["kind"])
            params = AnnParams(**h["params"])
            off = head + hlen + (-(head + hlen)) % _ALIGN
            external = bool(h.get("external", False))
            held = 0 if external else n
            n_nodes = int(h.get("nodes", 0))
            end = off + 8 * held + 4 * held * dim
            if end + 8 * n_nodes != len(raw) or kind not in ("flat", "hnsw", "ivf") or n_nodes < 0:
                raise ValueError("section sizes do not add up")
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageCorruptionError(f"ANN block {ann_path!r} is malformed ({exc}).") from None
        if external:
            if rows is None or vectors is None or len(rows) != n or np.shape(vectors) != (n, dim):
                raise StorageCorruptionError(f"ANN block {ann_path!r} indexes {n} vectors of dim {dim}; "
                                             "the rows and vectors given do not match it.")
        else:
            rows = raw[off:off + 8 * n].view("<i8")
            vectors = raw[off + 8 * n:end].view("<f4").reshape(n, dim)
        nodes = raw[end:].view("<i8") if n_nodes else None
        if verify:
            hx = xxhash.xxh3_64()
            hx.update(raw[off:])
            if hx.hexdigest() != h["data_xxh3"]:
                raise StorageCorruptionError(f"ANN block {ann_path!r} failed its checksum.")
        if nodes is not None and (kind == "flat" or (len(nodes) and (int(nodes.max()) >= n or int(nodes.min()) < -1))):
            raise StorageCorruptionError(f"ANN block {ann_path!r}: its node map does not match its rows.")
        block = cls(kind, h["metric"], params, rows, vectors, _nlist=int(h["nlist"]), extra=h.get("extra", {}),
                    nodes=nodes)
        if kind != "flat":
            fpath = stem + ".faiss"
            if not os.path.exists(fpath) or (verify and _file_digest(fpath, give_way) != h["faiss_xxh3"]):
                raise StorageCorruptionError(f"ANN block {stem!r}: its faiss file is missing or fails its checksum.")
            faiss = _faiss()
            try:
                block._index = faiss.read_index(fpath, faiss.IO_FLAG_MMAP_IFC)
                block._mapped = fpath
            except RuntimeError:  # a faiss without mmap support for this index: read it whole
                block._index = faiss.read_index(fpath)
            if block._index.ntotal != (n if nodes is None else len(nodes)) or block._index.d != dim:
                raise StorageCorruptionError(f"ANN block {stem!r}: the faiss file does not match its rows.")
        if stats is None:
            block._stats()
        else:
            block._amax, block._bnorm = float(stats[0]), float(stats[1])
        return block

    @classmethod
    def grown(cls, base: AnnBlock, rows: Any, vectors: Any, *,
              should_stop: Callable[[], bool] | None = None) -> AnnBlock | None:
        """A block over ``rows`` (ascending unique) and their ``vectors`` that starts from a copy of
        ``base``'s faiss structure instead of an empty one: ``base``'s nodes keep their place
        (those whose row is not among ``rows`` stay in the graph as nodes no search returns, the
        way HNSW libraries mark deletions), and only the vectors of the rows ``base`` lacks are
        added. This is how a merged segment's structure grows from its largest input's.
        None (build from scratch) when ``base`` is flat or has no structure, when it covers none
        of ``rows``, or when more than :data:`MAX_DEAD_NODES` of the nodes would be dead rows.
        ``base`` is left as it was (it may still be serving queries). ``should_stop`` as in
        :meth:`build`."""
        if base.kind == "flat" or base._index is None:
            return None
        rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        vectors = check_vectors(vectors, "vectors", dim=base.dim, func="AnnBlock.grown")
        n = len(rows)
        if len(vectors) != n or (n > 1 and not np.all(np.diff(rows) > 0)):
            raise InvalidArgumentError("AnnBlock.grown needs one vector per row and ascending, unique rows.")
        at = np.minimum(np.searchsorted(rows, base.rows), max(n - 1, 0))
        hit = (rows[at] == base.rows) if n else np.zeros(len(base.rows), bool)
        moved = np.where(hit, at, -1)  # base position -> position here
        old = base.nodes if base.nodes is not None else np.arange(len(base), dtype=np.int64)
        nodes = np.where(old >= 0, moved[np.maximum(old, 0)], -1)
        covered = np.zeros(n, bool)
        covered[nodes[nodes >= 0]] = True
        add = np.flatnonzero(~covered)
        dead = int(np.count_nonzero(nodes < 0))
        if not covered.any() or dead > MAX_DEAD_NODES * (len(nodes) + len(add)):
            return None
        faiss = _faiss()
        try:  # a private copy: base's own structure goes on serving while this one grows
            index = faiss.read_index(base._mapped) if base._mapped is not None else None
        except RuntimeError:
            index = None
        if index is None or index.ntotal != len(old):
            index = faiss.deserialize_index(faiss.serialize_index(base._index))
        _add_batches(index, vectors[add], base.metric, should_stop, with_ids=base.kind == "ivf", first=len(old))
        nodes = np.concatenate([nodes, add])
        if not dead and np.array_equal(nodes, np.arange(n)):
            nodes = None  # node i is position i: no map needed
        block = cls(base.kind, base.metric, base.params, rows, vectors, index, base._nlist, nodes=nodes)
        block._stats()
        return block

    def with_params(self, params: AnnParams) -> AnnBlock:
        """The same block searched with other query-time params (ef_search, nprobe)."""
        return replace(self, params=params)


_omp_state = threading.local()


def _omp_threads(faiss, nq: int) -> None:
    """Run faiss's search of ``nq`` queries in this thread on one OpenMP thread when the batch is
    small (at most :data:`SERIAL_QUERIES`), else on its default team. faiss parallelises a search
    over its queries only, so a team for one query is idle threads woken and a visited table per
    thread (measured: see benchmarks/RESULTS.md), and a collection searches its blocks side by
    side itself. OpenMP keeps the count per calling thread: this never changes another thread's
    (an index build's) team."""
    st = _omp_state.__dict__
    if "default" not in st:
        st["default"] = st["now"] = faiss.omp_get_max_threads()
    want = 1 if nq <= SERIAL_QUERIES else st["default"]
    if st["now"] != want:
        faiss.omp_set_num_threads(want)
        st["now"] = want


def _add_batches(index, x: np.ndarray, metric: str, should_stop, with_ids: bool, first: int = 0) -> None:
    """Add ``x`` in batches (cosine rows normalised per batch: no full copy of the vectors); IVF
    ids (``with_ids``) number the rows from ``first``."""
    for lo in range(0, len(x), ADD_BATCH):
        if should_stop is not None and should_stop():
            raise BuildCancelled("the ANN build was stopped")
        chunk = x[lo:lo + ADD_BATCH]
        chunk = unit_rows(chunk) if metric == "cosine" else np.ascontiguousarray(chunk, dtype=np.float32)
        if with_ids:
            index.add_with_ids(chunk, np.arange(first + lo, first + lo + len(chunk), dtype=np.int64))
        else:
            index.add(chunk)


def _build_faiss(kind: str, metric: str, params: AnnParams, vectors: np.ndarray, should_stop=None):
    faiss = _faiss()
    n, dim = vectors.shape
    mt = _faiss_metric(faiss, metric)
    x = vectors
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, mt)
        index.hnsw.efConstruction = params.ef_construction
        _add_batches(index, x, metric, should_stop, with_ids=False)
        return index, 0
    nlist = params.nlist if params.nlist is not None else max(1, round(4 * math.sqrt(n)))
    nlist = int(max(1, min(nlist, n // _MIN_TRAIN_PER_LIST)))
    quantizer = faiss.IndexFlat(dim, mt)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, mt)
    index.cp.seed = params.seed
    index.cp.spherical = metric == "cosine"
    sample = x
    if n > 256 * nlist:
        pick = np.sort(np.random.RandomState(params.seed).choice(n, 256 * nlist, replace=False))
        sample = x[pick]
    index.train(unit_rows(sample) if metric == "cosine" else np.ascontiguousarray(sample, dtype=np.float32))
    _add_batches(index, x, metric, should_stop, with_ids=True)
    return index, nlist


def _file_digest(path: str, between: Callable[[], None] | None = None) -> str:
    """The XXH3-64 of a file, hashed through a read-only mapping in 16 MiB slices: no copy into
    new buffers (a cold 250 MB ``.faiss``: 0.075 s, against 0.18 s reading it in 16 MiB chunks),
    and the pages stay in the page cache for faiss, which maps the same file next. ``between``
    is called before each slice."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
                for lo in range(0, size, _DIGEST_SLICE):
                    if between is not None:
                        between()
                    with view[lo:lo + _DIGEST_SLICE] as part:
                        h.update(part)
    return h.hexdigest()


def _fsync_rename(tmp: str, final: str, *, sync_file: bool = True) -> None:
    if sync_file:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(os.path.dirname(os.path.abspath(final)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
