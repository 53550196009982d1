"""VectorIndex: a mutable collection of int64-keyed float32 vectors with exact and approximate kNN.

Ids are non-negative int64 (the durable index maps its string ids to them); -1 marks an empty
result slot.

>>> index = VectorIndex(dim=128, metric="cosine", kind="hnsw")
>>> index.add(ids, vectors)
>>> matches = index.search(queries, k=10)               # BatchMatches (or Matches for one query)
>>> oracle = index.search(queries, k=10, exact=True)    # brute force over the same vectors

Kinds:

* ``"flat"``: every search is exact, on the chosen ``backend`` (see :mod:`simsearch.distance`).
* ``"ivf"``: faiss ``IndexIVFFlat``. It trains itself (k-means, seeded) at the first approximate
  search that finds at least ``39 * nlist`` vectors (``nlist=None``: about ``4 * sqrt(n)``, and at
  least 1,024 vectors); until then, and for ``exact=True``, searches are exact. It retrains when the
  collection has grown 4x past its training size (only with ``nlist=None``). ``nprobe`` (default
  ``nlist // 16``, at least 8) trades speed for recall.
* ``"hnsw"``: faiss ``IndexHNSWFlat`` (``M``, ``ef_construction``, ``ef_search``). faiss cannot
  delete from HNSW, so removed vectors become tombstones filtered out of results; the graph is
  rebuilt from the stored vectors when tombstones pass a quarter of it. faiss builds the graph with
  several threads, so two builds may differ slightly.

Metrics are those of :mod:`simsearch.distance`. For the faiss kinds, L2 metrics use faiss's L2,
``ip`` its inner product, and ``cosine`` the inner product of unit vectors (zero vectors stay
zero: distance 1.0). **manhattan (L1) is supported by both approximate kinds**: faiss's HNSW and
IVF accept METRIC_L1 (IVF still places its centroids by k-means, i.e. L2 means, so its L1 recall
at a given nprobe is a little lower). Where the installed faiss rejects L1 for a kind, the
constructor raises :class:`~simsearch.errors.InvalidArgumentError`; there is no silent fallback
to exact search.

Every distance returned, approximate kinds included, is recomputed exactly from the stored
vectors, and each result row is sorted by (distance, row). Rows are insertion order, except that
removing a vector moves the newest one into its slot; exact ties go to the earlier row.

The whole state serialises to bytes (:meth:`VectorIndex.to_bytes`, :meth:`VectorIndex.from_bytes`)
in a versioned format with a checksum. An index is not thread-safe: approximate searches bring
the faiss structure up to date lazily (training, insertions), so serialise calls with a lock.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .validation import check_array, check_int, check_option, check_param
from .backends import KNN_BACKEND_NAMES, get_knn_backend
from .distance import _vectors, exact_knn, max_abs, max_row_norm, normalize_metric, polish, unit_rows
from .errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    InvalidArgumentError,
    NotFoundError,
    StorageCorruptionError,
    UnsupportedFormatError,
)

__all__ = ["VectorIndex", "Matches", "BatchMatches", "KINDS"]

KINDS = ("flat", "ivf", "hnsw")
FORMAT_VERSION = 1
_MAGIC = b"SSVECIDX"
_DIGEST = 16  # blake2b digest bytes at the end of the serialised form
_BATCH = 8192  # queries per search batch
_MIN_TRAIN = 1024  # vectors before an auto-nlist IVF trains


@dataclass(frozen=True)
class Matches:
    """The neighbours of one query: ``keys`` (int64 ids) and ascending ``distances`` (float32)."""

    keys: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def to_list(self) -> list[tuple[int, float]]:
        return [(int(k), float(d)) for k, d in zip(self.keys, self.distances)]


@dataclass(frozen=True)
class BatchMatches:
    """Neighbours of a batch: (nq, k) ``keys`` and ``distances``; row i holds ``counts[i]`` real
    matches, padded with key -1 and distance +inf (fewer vectors than k, or an IVF probe that
    found fewer)."""

    keys: np.ndarray
    distances: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Matches:
        c = int(self.counts[i])
        return Matches(self.keys[i, :c], self.distances[i, :c])

    def __iter__(self) -> Iterator[Matches]:
        return (self[i] for i in range(len(self)))


def _one_row(x: Any) -> Any:
    """A 1-d vector as a (1, dim) array; anything else unchanged (check_vectors judges it)."""
    try:
        return np.reshape(x, (1, -1)) if np.ndim(x) == 1 else x
    except ValueError:  # ragged nested lists
        return x


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailableError(
            f"kind='ivf'/'hnsw' needs faiss ({exc}). Install one of the extras simsearch[cpu] (faiss-cpu) "
            "or simsearch[gpu] (faiss-gpu); kind='flat' works without it."
        ) from exc
    return faiss


@functools.lru_cache(maxsize=None)
def _faiss_accepts(kind: str, metric: str) -> bool:
    """Whether the installed faiss builds and searches a tiny ``kind`` index for ``metric``."""
    try:
        index = _new_ann(kind, 4, metric, nlist=1, M=4, seed=0)
        x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
        if not index.is_trained:
            index.train(x)
        if kind == "ivf":
            index.add_with_ids(x, np.arange(64, dtype=np.int64))
        else:
            index.add(x)
        index.search(x[:1], 2)
    except RuntimeError:
        return False
    return True


def _new_ann(kind: str, dim: int, metric: str, *, nlist: int, M: int, seed: int):
    faiss = _faiss()
    mt = {"manhattan": faiss.METRIC_L1, "sqeuclidean": faiss.METRIC_L2, "euclidean": faiss.METRIC_L2}.get(
        metric, faiss.METRIC_INNER_PRODUCT
    )
    if kind == "hnsw":
        return faiss.IndexHNSWFlat(dim, M, mt)
    quantizer = faiss.IndexFlat(dim, mt)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, mt)  # faiss's wrapper keeps quantizer alive
    index.cp.seed = seed
    index.cp.spherical = metric == "cosine"
    return index


_KEYS = itertools.count()  # process-unique names of VectorIndex objects (for device-resident caches)

class VectorIndex:
    """Int64-keyed float32 vectors with exact (``flat``) or faiss IVF / HNSW approximate search.

    All arguments are keyword-only. ``backend`` runs the exact searches ("auto", "numpy", "numba",
    "cupy" or "faiss"); ``seed`` fixes IVF's training sample and k-means.
    """

    def __init__(
        self,
        *,
        dim: int,
        metric: str = "euclidean",
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int | None = None,
        M: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        backend: str = "auto",
        seed: int = 0,
    ) -> None:
        f = "VectorIndex"
        self.dim = check_int(dim, "dim", 1, 1 << 16, func=f)
        self.metric = normalize_metric(metric, func=f)
        self.kind = check_option(kind, "kind", KINDS, func=f)
        self.nlist = None if nlist is None else check_int(nlist, "nlist", 1, 1 << 20, func=f)
        self.nprobe = None if nprobe is None else check_int(nprobe, "nprobe", 1, 1 << 20, func=f)
        self.M = check_int(M, "M", 2, 512, func=f)
        self.ef_construction = check_int(ef_construction, "ef_construction", 1, 1 << 16, func=f)
        self.ef_search = check_int(ef_search, "ef_search", 1, 1 << 16, func=f)
        if isinstance(backend, str):
            check_option(backend, "backend", ("auto",) + KNN_BACKEND_NAMES, func=f)
        self._be = get_knn_backend(backend)  # resolved once; its name is what to_bytes records
        self.backend = backend if isinstance(backend, str) else self._be.name
        self.seed = check_param("seed", seed, func=f)
        if self.kind != "flat" and not _faiss_accepts(self.kind, self.metric):
            raise InvalidArgumentError(
                f"The installed faiss cannot build kind={self.kind!r} for metric={self.metric!r}. "
                f"Use kind='flat' (exact) or another kind for this metric."
            )
        self._vectors = np.empty((0, self.dim), np.float32)
        self._ids = np.empty(0, np.int64)
        self._n = 0
        self._row: dict[int, int] = {}
        self._amax = 0.0
        self._bnorm = 0.0  # an upper bound of stored row norms (exact_knn's error bound)
        self._key = next(_KEYS)  # with _version: names the stored vectors for a device-resident copy
        self._version = 0
        self._reset_ann()

    # -- state -----------------------------------------------------------------------------
    def _reset_ann(self) -> None:
        self._ann = None  # the faiss index, keyed by labels
        self._label_of_row = np.full(len(self._ids), -1, np.int64)
        self._row_of_label = np.empty(0, np.int64)  # -1: removed (an HNSW tombstone)
        self._tombstones = 0
        self._trained_n = 0
        self._ann_nlist = 0

    def __len__(self) -> int:
        return self._n

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def ids(self) -> np.ndarray:
        """The stored ids, in row order (a copy)."""
        return self._ids[: self._n].copy()

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors, in row order (a read-only view)."""
        v = self._vectors[: self._n]
        v.flags.writeable = False
        return v

    @property
    def is_trained(self) -> bool:
        """True when the approximate structure exists (always True for ``flat``)."""
        return self.kind == "flat" or self._ann is not None

    def __contains__(self, key: Any) -> bool:
        try:
            return int(key) in self._row
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, ntotal={self._n})"

    def _check_ids(self, ids: Any, func: str) -> np.ndarray:
        arr = check_array(ids, "ids", dtype=np.int64, allowed_kinds="iu", func=func)
        raw = np.asarray(ids)
        if raw.dtype.kind == "u" and raw.size and raw.max() > np.iinfo(np.int64).max:
            raise InvalidArgumentError(f"The 'ids' parameter of {func} must fit in int64. Got {raw.max()}.")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise InvalidArgumentError(f"The 'ids' parameter of {func} must be 1-d. Got shape {arr.shape} instead.")
        if arr.size and arr.min() < 0:
            raise InvalidArgumentError(
                f"The 'ids' parameter of {func} must hold ids in [0, 2**63 - 1] (-1 marks 'no match' in "
                f"results). Got {int(arr.min())}."
            )
        return arr

    def _grow(self, need: int) -> None:
        cap = len(self._ids)
        if need <= cap:
            return
        cap = max(need, 2 * cap, 64)
        vectors = np.empty((cap, self.dim), np.float32)
        vectors[: self._n] = self._vectors[: self._n]
        ids = np.empty(cap, np.int64)
        ids[: self._n] = self._ids[: self._n]
        labels = np.full(cap, -1, np.int64)
        labels[: self._n] = self._label_of_row[: self._n]
        self._vectors, self._ids, self._label_of_row = vectors, ids, labels

    # -- mutation --------------------------------------------------------------------------
    def add(self, ids: Any, vectors: Any) -> None:
        """Add vectors under new int64 ids. All-or-nothing: a duplicate id (in the batch or
        already stored) raises AlreadyExistsError and adds nothing; remove an id to replace it."""
        keys = self._check_ids(ids, "add")
        vecs = _one_row(vectors) if len(keys) == 1 else vectors
        vecs, amax = _vectors(vecs, "vectors", dim=self.dim, func="add")
        if len(vecs) != len(keys):
            raise InvalidArgumentError(
                f"add got {len(keys)} ids but {len(vecs)} vectors; pass one id per vector."
            )
        uniq, counts = np.unique(keys, return_counts=True)
        if len(uniq) != len(keys):
            raise AlreadyExistsError(f"add got id {int(uniq[counts > 1][0])} more than once in one batch.")
        present = [k for k in keys.tolist() if k in self._row]
        if present:
            raise AlreadyExistsError(
                f"id {present[0]} is already in the index ({len(present)} of the batch are); remove it first."
            )
        n0, m = self._n, len(keys)
        self._grow(n0 + m)
        self._vectors[n0 : n0 + m] = vecs
        self._ids[n0 : n0 + m] = keys
        self._label_of_row[n0 : n0 + m] = -1
        self._row.update(zip(keys.tolist(), range(n0, n0 + m)))
        self._n = n0 + m
        self._version += 1
        self._amax = max(self._amax, amax)  # an upper bound of stored magnitudes (for ranking_scale)
        self._bnorm = max(self._bnorm, max_row_norm(vecs))

    def remove(self, ids: Any, *, missing_ok: bool = False) -> int:
        """Remove vectors by id and return how many were removed. Unknown ids raise NotFoundError
        (nothing is removed) unless ``missing_ok``."""
        keys = np.unique(self._check_ids(ids, "remove")).tolist()
        missing = [k for k in keys if k not in self._row]
        if missing and not missing_ok:
            raise NotFoundError(f"id {missing[0]} is not in the index ({len(missing)} of the batch are not).")
        gone_labels = []
        removed = 0
        for key in keys:
            row = self._row.pop(key, None)
            if row is None:
                continue
            removed += 1
            label = self._label_of_row[row]
            if label >= 0:
                gone_labels.append(label)
                self._row_of_label[label] = -1
            last = self._n - 1
            if row != last:  # move the newest row into the freed slot
                self._vectors[row] = self._vectors[last]
                self._ids[row] = self._ids[last]
                moved_label = self._label_of_row[last]
                self._label_of_row[row] = moved_label
                if moved_label >= 0:
                    self._row_of_label[moved_label] = row
                self._row[int(self._ids[row])] = row
            self._label_of_row[last] = -1
            self._n = last
            self._version += 1
        if gone_labels and self.kind == "ivf":
            self._ann.remove_ids(_faiss().IDSelectorBatch(np.asarray(gone_labels, dtype=np.int64)))
        self._tombstones += len(gone_labels)  # HNSW: still in the graph; IVF: unused labels
        if len(self._ids) > 1024 and self._n < len(self._ids) // 4:
            self._shrink()
        return removed

    def _shrink(self) -> None:
        cap = max(2 * self._n, 64)
        self._vectors = self._vectors[:cap].copy()
        self._ids = self._ids[:cap].copy()
        self._label_of_row = self._label_of_row[:cap].copy()

    def reconstruct(self, ids: Any) -> np.ndarray:
        """The stored vector of one id (shape (dim,)) or of several (shape (n, dim)), as a copy."""
        scalar = np.ndim(ids) == 0
        keys = self._check_ids(ids, "reconstruct").tolist()
        rows = []
        for key in keys:
            row = self._row.get(key)
            if row is None:
                raise NotFoundError(f"id {key} is not in the index.")
            rows.append(row)
        out = self._vectors[np.asarray(rows, dtype=np.int64)]
        return out[0] if scalar else out

    # -- approximate structure -------------------------------------------------------------
    def _to_ann(self, x: np.ndarray) -> np.ndarray:
        if self.metric != "cosine":
            return x
        return unit_rows(x)

    def _auto_nlist(self, n: int) -> int:
        return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))

    def train(self) -> bool:
        """Build the approximate structure now (IVF: train k-means; HNSW: build the graph) from
        the stored vectors. Returns False when an IVF index has too few vectors to train."""
        if self.kind == "flat":
            return True
        n = self._n
        if self.kind == "ivf":
            nlist = self.nlist if self.nlist is not None else self._auto_nlist(n)
            if n < 39 * nlist or (self.nlist is None and n < _MIN_TRAIN):
                return False
        else:
            nlist = 0
        index = _new_ann(self.kind, self.dim, self.metric, nlist=nlist, M=self.M, seed=self.seed)
        if self.kind == "hnsw":
            index.hnsw.efConstruction = self.ef_construction
        else:
            sample = self._vectors[:n]
            if n > 256 * nlist:
                pick = np.random.RandomState(self.seed).choice(n, 256 * nlist, replace=False)
                sample = sample[np.sort(pick)]
            index.train(self._to_ann(np.ascontiguousarray(sample)))
        self._reset_ann()
        self._ann, self._trained_n, self._ann_nlist = index, n, nlist
        self._sync()
        return True

    def _sync(self) -> None:
        """Bring the faiss structure up to date: (re)build when due, then add pending rows."""
        if self.kind == "ivf" and self._ann is not None and 4 * self._tombstones > len(self._row_of_label):
            self._ann.reset()  # renumber the labels densely; the trained centroids stay
            self._row_of_label = np.empty(0, np.int64)
            self._label_of_row[:] = -1
            self._tombstones = 0
        if self._ann is None or (
            self.kind == "hnsw" and 4 * self._tombstones > max(len(self._row_of_label), 1)
        ) or (self.kind == "ivf" and self.nlist is None and self._n > 4 * self._trained_n):
            if not self.train():
                return
        pending = np.nonzero(self._label_of_row[: self._n] < 0)[0]
        if len(pending) == 0:
            return
        start = len(self._row_of_label)
        labels = np.arange(start, start + len(pending), dtype=np.int64)
        x = self._to_ann(np.ascontiguousarray(self._vectors[pending]))
        if self.kind == "ivf":
            self._ann.add_with_ids(x, labels)
        else:
            self._ann.add(x)  # HNSW labels are sequential: ntotal == start
        self._row_of_label = np.concatenate([self._row_of_label, pending.astype(np.int64)])
        self._label_of_row[pending] = labels

    def _ann_search(self, q: np.ndarray, k: int) -> np.ndarray:
        """Rows (nq, k) of approximate neighbours, -1 where none."""
        faiss = _faiss()
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = min(self._ann_nlist, self.nprobe or max(8, self._ann_nlist // 16))
            keep = None
        else:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
            keep = None
            if self._tombstones:  # HNSW only: IVF removes for real
                keep = np.packbits(self._row_of_label >= 0, bitorder="little")
                params.sel = faiss.IDSelectorBitmap(len(self._row_of_label), faiss.swig_ptr(keep))
        _, labels = self._ann.search(self._to_ann(q), k, params=params)
        del keep  # the selector read it during search
        rows = np.full(labels.shape, -1, np.int64)
        ok = labels >= 0
        rows[ok] = self._row_of_label[labels[ok]]
        return rows

    # -- search ----------------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, *, exact: bool = False) -> Matches | BatchMatches:
        """The k nearest stored vectors of each query: :class:`Matches` for one query vector (1-d),
        :class:`BatchMatches` for a 2-d batch. ``exact=True`` is brute force (the oracle)."""
        k = check_param("k", k, func="search")
        q = _one_row(queries)
        single = q is not queries
        q, qmax = _vectors(q, "queries", dim=self.dim, func="search")
        kk = min(k, self._n)
        keys = np.full((len(q), k), -1, np.int64)
        dist = np.full((len(q), k), np.inf, np.float32)
        if kk > 0 and len(q):
            approx = not exact and self.kind != "flat"
            if approx:
                self._sync()
                approx = self._ann is not None
            base = self._vectors[: self._n]
            for lo in range(0, len(q), _BATCH):
                qb = q[lo : lo + _BATCH]
                if approx:
                    d, rows = polish(base, qb, self._ann_search(qb, kk), self.metric, backend=self._be)
                else:
                    d, rows = exact_knn(self._be, base, qb, kk, self.metric, max(qmax, self._amax), self._bnorm,
                                        cache_key=(self._key, self._version))
                dist[lo : lo + len(qb), :kk] = d
                keys[lo : lo + len(qb), :kk] = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], -1)
        counts = (keys >= 0).sum(axis=1).astype(np.int64)
        out = BatchMatches(keys, dist, counts)
        return out[0] if single else out

    # -- serialisation ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The whole index (vectors, ids, faiss structure) as bytes: magic, format version, a JSON
        header, little-endian arrays, and a blake2b checksum over everything before it."""
        n = self._n
        ann = b""
        if self._ann is not None:
            ann = _faiss().serialize_index(self._ann).tobytes()
        header = {
            "dim": self.dim,
            "metric": self.metric,
            "kind": self.kind,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "backend": self.backend,
            "seed": self.seed,
            "n": n,
            "labels": len(self._row_of_label),
            "tombstones": self._tombstones,
            "trained_n": self._trained_n,
            "ann_nlist": self._ann_nlist,
            "ann_bytes": len(ann),
        }
        hjson = json.dumps(header, sort_keys=True).encode()
        parts = [
            _MAGIC,
            struct.pack("<II", FORMAT_VERSION, len(hjson)),
            hjson,
            self._ids[:n].astype("<i8").tobytes(),
            self._vectors[:n].astype("<f4").tobytes(),
            self._label_of_row[:n].astype("<i8").tobytes(),
            self._row_of_label.astype("<i8").tobytes(),
            ann,
        ]
        body = b"".join(parts)
        return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> VectorIndex:
        """Rebuild an index written by :meth:`to_bytes`. A bad checksum or truncated data raises
        StorageCorruptionError; a newer format version raises UnsupportedFormatError."""
        data = bytes(data)
        head = len(_MAGIC) + 8
        if len(data) < head + _DIGEST or data[: len(_MAGIC)] != _MAGIC:
            raise StorageCorruptionError("not a serialised VectorIndex (bad magic or too short).")
        body, digest = data[:-_DIGEST], data[-_DIGEST:]
        if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
            raise StorageCorruptionError("VectorIndex bytes failed their checksum; the data is corrupt.")
        version, hlen = struct.unpack_from("<II", body, len(_MAGIC))
        if version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"VectorIndex format version {version} is newer than this simsearch reads "
                f"({FORMAT_VERSION}); upgrade simsearch."
            )
        try:
            h = json.loads(body[head : head + hlen])
            n, dim, nl = int(h["n"]), int(h["dim"]), int(h["labels"])
            sizes = [8 * n, 4 * n * dim, 8 * n, 8 * nl, int(h["ann_bytes"])]
            if head + hlen + sum(sizes) != len(body):
                raise ValueError("section sizes do not add up")
            off = head + hlen
            arrays = []
            for size, dt in zip(sizes[:4], ("<i8", "<f4", "<i8", "<i8")):
                arrays.append(np.frombuffer(body, dtype=dt, count=size // np.dtype(dt).itemsize, offset=off))
                off += size
            ann = body[off : off + sizes[4]]
            index = cls(
                dim=dim, metric=h["metric"], kind=h["kind"], nlist=h["nlist"], nprobe=h["nprobe"], M=h["M"],
                ef_construction=h["ef_construction"], ef_search=h["ef_search"], backend=h["backend"],
                seed=h["seed"],
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise StorageCorruptionError(f"VectorIndex bytes are malformed ({exc}).") from None
        ids, vectors, label_of_row, row_of_label = arrays
        index._grow(n)
        index._vectors[:n] = vectors.reshape(n, dim)
        index._ids[:n] = ids
        index._n = n
        index._row = dict(zip(ids.tolist(), range(n)))
        index._amax = max_abs(index._vectors[:n])
        index._bnorm = max_row_norm(index._vectors[:n])
        if len(index._row) != n:
            raise StorageCorruptionError("VectorIndex bytes hold duplicate ids.")
        if ann:
            index._ann = _faiss().deserialize_index(np.frombuffer(ann, dtype=np.uint8))
            index._label_of_row[:n] = label_of_row
            index._row_of_label = row_of_label.astype(np.int64)
            index._tombstones = int(h["tombstones"])
            index._trained_n = int(h["trained_n"])
            index._ann_nlist = int(h["ann_nlist"])
        return index

    def __getstate__(self) -> dict:
        return {"data": self.to_bytes()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(VectorIndex.from_bytes(state["data"]).__dict__)
