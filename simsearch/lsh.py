"""MinHash LSH: the :class:`LSHIndex` and ranked near-duplicate queries.

The banding (b bands of r values, chosen by :mod:`simsearch.banding`) makes two documents
candidates when all r values of some band agree. The index keeps band tables in sorted runs plus
an append buffer (:mod:`simsearch._lsh_storage`) in host memory, so its table kernels run on the
backend's host twin (``backend.host``: numba or numpy, itself on the CPU), while signatures of
texts are computed on the backend itself (the GPU, where it is one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._arrays import concat_csr, offsets_from_sizes
from ._lsh_storage import Buffer, Segment, build_segment, merge_segments, nonempty
from .validation import check_array, check_int, check_param, check_texts
from .backends import get_backend
from .banding import check_weights, lsh_params
from .errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)
from .minhash import MAX_NUM_PERM, permutations
from .shingling import ShingleSets, shingle_hashes

__all__ = [
    "LSHIndex",
    "Candidates",
    "NearDuplicate",
    "NearDuplicates",
    "BatchNearDuplicates",
]

# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Candidates:
    """LSH candidates of a batch of queries in CSR form: query i's ids are ``ids[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64 (nq + 1,)
    ids: np.ndarray  # int64, ascending within each query

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class NearDuplicate:
    """One near-duplicate hit, the same type for :class:`LSHIndex` (int ``id``) and for collections
    (str ``id``): ``jaccard`` is the ranking score, the exact Jaccard when it was computed, else the
    estimate from the signatures."""

    id: int | str
    jaccard: float
    estimated_jaccard: float
    exact_jaccard: float | None = None


@dataclass(frozen=True)
class NearDuplicates:
    """One query's near-duplicates, best first: ids, estimated Jaccard and (exact=True) exact Jaccard."""

    ids: np.ndarray  # int64 (k,)
    estimated: np.ndarray  # float64 (k,), from the signatures
    exact: np.ndarray | None  # float64 (k,), from the stored shingle sets, when asked for

    @property
    def scores(self) -> np.ndarray:
        """The ranking score: exact Jaccard when computed, else the estimate."""
        return self.estimated if self.exact is None else self.exact

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> NearDuplicate:
        exact = None if self.exact is None else float(self.exact[i])
        est = float(self.estimated[i])
        return NearDuplicate(int(self.ids[i]), est if exact is None else exact, est, exact)

    def __iter__(self) -> Iterator[NearDuplicate]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class BatchNearDuplicates:
    """Near-duplicates of a batch of queries (CSR); ``result[i]`` is a :class:`NearDuplicates`."""

    offsets: np.ndarray
    ids: np.ndarray
    estimated: np.ndarray
    exact: np.ndarray | None

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def __getitem__(self, i: int) -> NearDuplicates:
        sl = slice(self.offsets[i], self.offsets[i + 1])
        return NearDuplicates(self.ids[sl], self.estimated[sl], None if self.exact is None else self.exact[sl])

    def __iter__(self) -> Iterator[NearDuplicates]:
        return (self[i] for i in range(len(self)))


# ---------------------------------------------------------------------------------------------
# The index

_SCAN_LIMIT = 1 << 22  # queries x buffered rows above which the buffer is sealed before a query


def _check_ids(ids, func: str) -> np.ndarray:
    arr = check_array(ids, "ids", dtype=np.int64, ndim=1, allowed_kinds="iu", func=func)
    if np.asarray(ids).dtype == np.uint64 and arr.size and (np.asarray(ids) > np.iinfo(np.int64).max).any():
        raise InvalidArgumentError(f"The 'ids' parameter of {func} must fit in int64.")
    return arr


class LSHIndex:
    """A MinHash LSH index over int64 ids: batched insert, remove, query and self-join.

    The banding is ``threshold`` + ``weights`` (see :func:`lsh_params`) or explicit
    ``params=(b, r)``. ``seed``, ``ngram`` and ``shingle`` are used by :meth:`insert_texts` and by
    text queries. With ``store_shingles=True`` the sorted shingle-hash set of every document is
    kept, and :meth:`query_near_duplicates` can rank by exact Jaccard. The storage layout and its
    memory bound are described in :mod:`simsearch._lsh_storage`. Not thread-safe.
    """

    def __init__(
        self,
        *,
        num_perm: int = 128,
        threshold: float = 0.8,
        weights=(0.5, 0.5),
        params: tuple[int, int] | None = None,
        seed: int = 1,
        ngram: int = 5,
        shingle: str = "word",
        store_shingles: bool = False,
        buffer_size: int = 1024,
        backend: str = "auto",
    ):
        f = "LSHIndex"
        self.num_perm = check_param("num_perm", num_perm, func=f)
        self.threshold = check_param("threshold", threshold, func=f)
        self.weights = check_weights(weights, f)
        if params is None:
            self.b, self.r = lsh_params(self.threshold, self.num_perm, self.weights)
        else:
            if not isinstance(params, (tuple, list)) or len(params) != 2:
                raise InvalidTypeError(f"The 'params' parameter of {f} must be a pair (b, r). Got {params!r} instead.")
            self.b = check_int(params[0], "params[0] (b)", 1, MAX_NUM_PERM, func=f)
            self.r = check_int(params[1], "params[1] (r)", 1, MAX_NUM_PERM, func=f)
            if self.b * self.r > self.num_perm:
                raise InvalidArgumentError(
                    f"b*r must be <= num_perm; got b={self.b}, r={self.r} (b*r={self.b * self.r}) with "
                    f"num_perm={self.num_perm}. Did you forget num_perm?"
                )
        self.seed = check_param("seed", seed, func=f)
        self.ngram = check_param("ngram", ngram, func=f)
        self.shingle = check_param("shingle", shingle, func=f)
        self.store_shingles = bool(store_shingles)
        self.buffer_size = check_int(buffer_size, "buffer_size", 1, 1 << 24, func=f)
        self._be = get_backend(backend)  # signatures of texts
        self._k = self._be.host  # band tables live in host memory
        self._segments: list[Segment] = []
        self._buffer = Buffer(self.num_perm, self.b, self.store_shingles)
        self._count = 0

    @property
    def params(self) -> tuple[int, int]:
        return self.b, self.r

    @property
    def backend(self) -> str:
        return self._be.name

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (
            f"LSHIndex(num_perm={self.num_perm}, threshold={self.threshold}, params=({self.b}, {self.r}), "
            f"size={len(self)}, segments={len(self._segments)}, backend={self.backend!r})"
        )

    def __contains__(self, id_) -> bool:
        if isinstance(id_, bool) or not isinstance(id_, (int, np.integer)):
            return False
        return bool(self.contains(np.array([id_], dtype=np.int64))[0])

    # -- locating ids ------------------------------------------------------------------------

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source, row) of each alive id: source i < len(segments) is a segment, len(segments) the buffer."""
        src = np.full(ids.shape[0], -1, dtype=np.int64)
        row = np.full(ids.shape[0], -1, dtype=np.int64)
        for s, seg in enumerate(self._segments):
            hit = seg.locate(ids)
            found = hit >= 0
            src[found], row[found] = s, hit[found]
        if len(self._buffer):
            hit = self._buffer.locate(ids)
            found = hit >= 0
            src[found], row[found] = len(self._segments), hit[found]
        return src, row

    def contains(self, ids) -> np.ndarray:
        """Vectorised membership: a bool per id."""
        return self._locate(_check_ids(ids, "LSHIndex.contains"))[0] >= 0

    # -- insert / remove ---------------------------------------------------------------------

    def _check_sigs(self, signatures, n: int | None, func: str) -> np.ndarray:
        raw = np.asarray(signatures) if not isinstance(signatures, np.ndarray) else signatures
        sigs = check_array(raw, "signatures", dtype=np.uint32, ndim=2, allowed_kinds="ui", func=func)
        if sigs.shape[1] != self.num_perm or (n is not None and sigs.shape[0] != n):
            want = f"({'n' if n is None else n}, {self.num_perm})"
            raise InvalidArgumentError(
                f"The 'signatures' parameter of {func} must have shape {want}. Got shape {sigs.shape} instead."
            )
        if raw.dtype != np.uint32 and raw.size and (raw.min() < 0 or raw.max() > 0xFFFFFFFF):
            raise InvalidArgumentError(f"The 'signatures' parameter of {func} must hold uint32 values.")
        return sigs

    def _check_shingles(self, shingles, n: int, func: str) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        if shingles is None:
            return None, None
        if not isinstance(shingles, ShingleSets):
            shingles = _as_shingle_sets(shingles, func)
        if len(shingles) != n:
            raise InvalidArgumentError(f"{func} got {len(shingles)} shingle sets for {n} documents.")
        return shingles.offsets, shingles.hashes

    def insert(self, ids, signatures, *, shingles=None) -> None:
        """Insert documents: int64 ``ids`` (new, unique) and their (n, num_perm) uint32 signatures.

        With ``store_shingles=True``, ``shingles`` (a :class:`ShingleSets` or a list of sorted
        uint64 arrays) must be given too; :meth:`insert_texts` computes both from texts.
        """
        f = "LSHIndex.insert"
        ids = _check_ids(ids, f)
        sigs = self._check_sigs(signatures, ids.shape[0], f)
        off, hashes = self._check_shingles(shingles, ids.shape[0], f)
        if self.store_shingles and off is None:
            raise InvalidArgumentError(
                "This LSHIndex stores shingle sets (store_shingles=True); pass shingles= or use insert_texts()."
            )
        if ids.shape[0] == 0:
            return
        if _has_repeats(ids):
            raise AlreadyExistsError(f"{f}: the batch repeats ids (e.g. {_first_repeat(ids)}); ids must be unique.")
        present = self._locate(ids)[0] >= 0
        if present.any():
            raise AlreadyExistsError(
                f"{f}: {int(present.sum())} id(s) already in the index (e.g. {int(ids[present][0])}); remove them first."
            )
        keys = self._k.band_keys(sigs, self.b, self.r)
        indexable = nonempty(sigs)
        if not self.store_shingles:
            off = hashes = None
        if ids.shape[0] >= self.buffer_size:
            self._seal(extra=(ids, sigs, keys, indexable, off, hashes))
        else:
            self._buffer.append(ids, sigs, keys, indexable, off, hashes)
            if len(self._buffer) >= self.buffer_size:
                self._seal()
        self._count += ids.shape[0]

    def insert_texts(self, ids, texts) -> None:
        """Insert documents from their texts, shingled and signed with this index's settings."""
        if not self.store_shingles:  # the fused kernel never materialises the shingle sets
            a, b = permutations(self.num_perm, self.seed)
            texts = check_texts(texts, func="LSHIndex.insert_texts")
            sigs = self._be.minhash_texts(texts, self.ngram, self.shingle, a, b) if texts else \
                np.empty((0, self.num_perm), np.uint32)
            self.insert(ids, sigs)
            return
        sets = shingle_hashes(texts, ngram=self.ngram, shingle=self.shingle, backend=self._be)
        self.insert(ids, self._signatures_of(sets), shingles=sets)

    def _signatures_of(self, sets: ShingleSets) -> np.ndarray:
        a, b = permutations(self.num_perm, self.seed)
        return self._be.minhash_hashes(sets.offsets, sets.hashes, a, b)

    def remove(self, ids) -> None:
        """Remove documents by id. Every id must be present; otherwise nothing is removed."""
        ids = _check_ids(ids, "LSHIndex.remove")
        if ids.shape[0] == 0:
            return
        uniq = np.unique(ids)
        src, row = self._locate(uniq)
        if (src < 0).any():
            missing = uniq[src < 0]
            raise NotFoundError(
                f"LSHIndex.remove: {missing.shape[0]} id(s) not in the index (e.g. {int(missing[0])}); nothing was removed."
            )
        nseg = len(self._segments)
        in_buf = src == nseg
        if in_buf.any():
            self._buffer.kill(row[in_buf])
        for s in np.unique(src[~in_buf]).tolist():
            seg = self._segments[s]
            rows = row[src == s]
            seg.alive[rows] = False
            seg.n_dead += rows.shape[0]
        self._count -= uniq.shape[0]
        for s in reversed(range(nseg)):  # rebuild segments that are a quarter dead
            seg = self._segments[s]
            if seg.n_dead and 4 * seg.n_dead >= len(seg):
                rebuilt = merge_segments(self._k, [seg])
                if len(rebuilt):
                    self._segments[s] = rebuilt
                else:
                    del self._segments[s]

    def flush(self) -> None:
        """Seal the append buffer into a segment (queries do this themselves when it pays off)."""
        if len(self._buffer):
            self._seal()

    def compact(self) -> None:
        """Merge everything into one segment without removed rows (the most compact layout)."""
        self.flush()
        if self._segments and (len(self._segments) > 1 or self._segments[0].n_dead):
            merged = merge_segments(self._k, self._segments)
            self._segments = [merged] if len(merged) else []

    def _seal(self, extra=None) -> None:
        parts = []
        if len(self._buffer):
            parts.append(self._buffer.take_alive())
            self._buffer = Buffer(self.num_perm, self.b, self.store_shingles)
        if extra is not None:
            parts.append(extra)
        parts = [p for p in parts if p[0].shape[0]]
        if not parts:
            return
        if len(parts) == 1:  # a big batch on its own: build_segment copies what the caller owns
            ids, sigs, keys, indexable, off, hashes = parts[0]
            owned = extra is None
        else:
            ids, sigs, keys, indexable = (np.concatenate([p[i] for p in parts]) for i in range(4))
            off = hashes = None
            if self.store_shingles:
                off, hashes = concat_csr([p[4] for p in parts], [p[5][p[4][0] : p[4][-1]] for p in parts])
            owned = True
        self._segments.append(build_segment(self._k, ids, sigs, keys, indexable, off, hashes, copy=not owned))
        while len(self._segments) >= 2 and len(self._segments[-2]) <= 2 * len(self._segments[-1]):
            merged = merge_segments(self._k, self._segments[-2:])
            self._segments[-2:] = [merged] if len(merged) else []

    # -- queries -----------------------------------------------------------------------------

    def _sources(self, nq: int) -> list:
        if len(self._buffer) and nq * len(self._buffer) > _SCAN_LIMIT:
            self._seal()
        return list(self._segments) + ([self._buffer] if len(self._buffer) else [])

    def _lookups(self, qsigs: np.ndarray):
        """Per source with hits: (source index, CSR offsets, rows, ids); and the sources."""
        nq = qsigs.shape[0]
        qkeys = self._k.band_keys(qsigs, self.b, self.r)
        qvalid = nonempty(qsigs)
        sources = self._sources(nq)
        hits = []
        for s, src in enumerate(sources):
            if isinstance(src, Segment):
                off, rows = self._k.lookup(*src.table, src.alive, qkeys, qvalid)
                ids = src.ids[rows]
            else:
                off, rows = self._k.scan(src.keys.view, src.live.view, qkeys, qvalid)
                ids = src.ids.view[rows]
            if rows.shape[0]:
                hits.append((s, off, rows, ids))
        return hits, sources

    def _raw_candidates(self, qsigs: np.ndarray, looked_up=None):
        """(qidx, source index, row, id) of every candidate, sorted by (query, id)."""
        nq = qsigs.shape[0]
        hits, sources = self._lookups(qsigs) if looked_up is None else looked_up
        if not hits:
            e = np.empty(0, dtype=np.int64)
            return e, e, e, e, sources
        parts = [(np.repeat(np.arange(nq, dtype=np.int64), np.diff(off)), np.full(rows.shape[0], s, dtype=np.int64),
                  rows, ids) for s, off, rows, ids in hits]
        q, s, rows, ids = (np.concatenate([p[i] for p in parts]) for i in range(4))
        if len(parts) > 1 or not isinstance(sources[int(s[0])], Segment):  # buffer rows are not id-sorted
            order = np.lexsort((ids, q))
            q, s, rows, ids = q[order], s[order], rows[order], ids[order]
        return q, s, rows, ids, sources

    def _query_sigs(self, signatures, func: str) -> tuple[np.ndarray, bool]:
        arr = np.asarray(signatures)
        single = arr.ndim == 1
        sigs = self._check_sigs(arr[None, :] if single else arr, None, func)
        return sigs, single

    def query(self, signatures) -> Candidates | np.ndarray:
        """Candidates of each query signature: a :class:`Candidates` for (nq, num_perm) input,
        or an int64 array of ids for one (num_perm,) signature. Ids ascend within a query."""
        sigs, single = self._query_sigs(signatures, "LSHIndex.query")
        hits, sources = self._lookups(sigs)
        if len(hits) == 1 and isinstance(sources[hits[0][0]], Segment):  # rows of a segment are id-sorted
            offsets, ids = hits[0][1], hits[0][3]
        else:
            q, _, _, ids, _ = self._raw_candidates(sigs, (hits, sources))
            offsets = np.searchsorted(q, np.arange(sigs.shape[0] + 1)).astype(np.int64)
        if single:
            return ids
        return Candidates(offsets, ids)

    def candidate_pairs(self) -> np.ndarray:
        """Every pair of indexed ids sharing a band key: int64 (m, 2), a < b, rows sorted."""
        self.flush()
        segs = self._segments
        pairs = []
        for i, seg in enumerate(segs):
            packed = self._k.self_join(seg.table[0], seg.table[1], seg.alive)
            a = (packed >> np.uint64(32)).astype(np.int64)
            b = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
            pairs.append(np.stack([seg.ids[a], seg.ids[b]], axis=1))
            if i + 1 < len(segs):
                keys, has = seg.band_keys_by_row()
                for other in segs[i + 1 :]:
                    off, rows = self._k.lookup(*other.table, other.alive, keys, has & seg.alive)
                    q = np.repeat(np.arange(len(seg)), np.diff(off))
                    pairs.append(np.stack([seg.ids[q], other.ids[rows]], axis=1))
        if not pairs:
            return np.empty((0, 2), dtype=np.int64)
        out = np.concatenate(pairs)
        out.sort(axis=1)
        order = np.lexsort((out[:, 1], out[:, 0]))
        return np.ascontiguousarray(out[order])

    def get_signatures(self, ids) -> np.ndarray:
        """The stored (n, num_perm) signatures of ``ids``."""
        ids = _check_ids(ids, "LSHIndex.get_signatures")
        src, row = self._locate(ids)
        if (src < 0).any():
            raise NotFoundError(f"LSHIndex.get_signatures: id {int(ids[src < 0][0])} is not in the index.")
        out = np.empty((ids.shape[0], self.num_perm), dtype=np.uint32)
        for s, source in enumerate(self._sources(0)):
            sel = src == s
            sigs = source.sigs if isinstance(source, Segment) else source.sigs.view
            out[sel] = sigs[row[sel]]
        return out

    def query_near_duplicates(self, queries, *, threshold=None, k=None, exact=False, shingles=None,
                              exclude_ids=None) -> BatchNearDuplicates | NearDuplicates:
        """Ranked near-duplicates of each query, filtered by ``threshold`` (default: the index's).

        ``queries`` is a list of texts (shingled and signed with this index's settings), a
        (nq, num_perm) signature array, or one (num_perm,) signature. With ``exact=True`` the
        score is the exact Jaccard of the shingle sets (the index needs ``store_shingles=True``;
        signature queries need ``shingles=``). Candidates come from the banding, so recall
        below the index's own threshold follows its S-curve. ``exclude_ids`` (one id per query)
        drops a query's own document. Returns :class:`BatchNearDuplicates`, or
        :class:`NearDuplicates` for a single signature.
        """
        f = "LSHIndex.query_near_duplicates"
        threshold = self.threshold if threshold is None else check_param("threshold", threshold, func=f)
        if k is not None:
            k = check_int(k, "k", 1, None, func=f)
        if exact and not self.store_shingles:
            raise FailedPreconditionError(f"{f}(exact=True) needs an index built with store_shingles=True.")
        single = False
        if isinstance(queries, (list, tuple)) and (not queries or isinstance(queries[0], str)):
            sets = shingle_hashes(queries, ngram=self.ngram, shingle=self.shingle, backend=self._be)
            qsigs = self._signatures_of(sets)
            q_off, q_hash = sets.offsets, sets.hashes
        else:
            qsigs, single = self._query_sigs(queries, f)
            q_off, q_hash = self._check_shingles(shingles, qsigs.shape[0], f)
            if exact and q_off is None:
                raise InvalidArgumentError(f"{f}(exact=True) with signature queries needs their shingles= too.")
        q, s, rows, ids, sources = self._raw_candidates(qsigs)
        if exclude_ids is not None:
            ex = _check_ids(exclude_ids, f)
            if ex.shape[0] != qsigs.shape[0]:
                raise InvalidArgumentError(f"{f}: exclude_ids needs one id per query; got {ex.shape[0]} for {qsigs.shape[0]}.")
            keep = ids != ex[q]
            q, s, rows, ids = q[keep], s[keep], rows[keep], ids[keep]
        est = np.zeros(q.shape[0], dtype=np.float64)
        exa = np.zeros(q.shape[0], dtype=np.float64) if exact else None
        for i, src in enumerate(sources):
            sel = np.flatnonzero(s == i)
            if not sel.shape[0]:
                continue
            seg = isinstance(src, Segment)
            est[sel] = self._k.pair_jaccard_sigs(qsigs, src.sigs if seg else src.sigs.view, q[sel], rows[sel])
            if exact:
                off, hashes = (src.shingle_offsets, src.shingle_hashes) if seg else src.shingle_csr()
                exa[sel] = self._k.pair_jaccard_sets(q_off, q_hash, off, hashes, q[sel], rows[sel])
        score = exa if exact else est
        keep = score >= threshold
        q, ids, est, score = q[keep], ids[keep], est[keep], score[keep]
        exa = exa[keep] if exact else None
        order = np.lexsort((ids, -score, q))
        q, ids, est = q[order], ids[order], est[order]
        exa = exa[order] if exact else None
        if k is not None:
            starts = np.searchsorted(q, q, side="left")
            rank = np.arange(q.shape[0]) - starts
            sel = rank < k
            q, ids, est = q[sel], ids[sel], est[sel]
            exa = exa[sel] if exact else None
        offsets = np.searchsorted(q, np.arange(qsigs.shape[0] + 1)).astype(np.int64)
        batch = BatchNearDuplicates(offsets, ids, est, exa)
        return batch[0] if single else batch

    # -- memory ------------------------------------------------------------------------------

    def memory_usage(self, shingles: bool = False) -> dict[str, int]:
        """Bytes held, by component (shingle sets only when ``shingles=True``)."""
        out: dict[str, int] = {}
        for seg in self._segments:
            for key, val in seg.nbytes(shingles).items():
                out[key] = out.get(key, 0) + val
        out["buffer"] = self._buffer.nbytes()
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of signatures, ids and band tables (shingle sets excluded)."""
        return sum(self.memory_usage().values())


def _has_repeats(ids: np.ndarray) -> bool:
    if ids.shape[0] < 2 or (ids[1:] > ids[:-1]).all():
        return False
    s = np.sort(ids)
    return bool((s[1:] == s[:-1]).any())


def _first_repeat(ids: np.ndarray) -> int:
    s = np.sort(ids)
    return int(s[np.flatnonzero(s[1:] == s[:-1])[0]])


def _as_shingle_sets(shingles, func: str) -> ShingleSets:
    if not isinstance(shingles, (list, tuple)):
        raise InvalidTypeError(
            f"The 'shingles' parameter of {func} must be a ShingleSets or a list of uint64 arrays. "
            f"Got {type(shingles).__name__} instead."
        )
    arrays = []
    for i, arr in enumerate(shingles):
        a = np.asarray(arr)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "ui"):
            raise InvalidTypeError(f"{func}: shingle set {i} must be a 1-d array of unsigned ints.")
        arrays.append(np.unique(a.astype(np.uint64)))
    offsets = offsets_from_sizes(a.shape[0] for a in arrays)
    return ShingleSets(offsets, np.concatenate(arrays) if arrays else np.empty(0, np.uint64))

