"""MinHash LSH: banding parameters, the :class:`LSHIndex`, and ranked near-duplicate queries.

A signature of ``num_perm`` values is cut into ``b`` bands of ``r`` values. Two documents become
candidates when all ``r`` values of at least one band agree, which for Jaccard similarity ``s``
happens with probability ``P(s) = 1 - (1 - s**r)**b`` (the S-curve).

:func:`lsh_params` picks (b, r) the way datasketch does, minimising
``w_fp * FP + w_fn * FN`` with ``FP = ∫_0^t P(s) ds`` and ``FN = ∫_t^1 (1 - P(s)) ds`` over every
b*r <= num_perm. The integrals are computed in closed form (substitute u = s**r: they are
incomplete beta functions), so the result equals datasketch's numerical quadrature and a call costs
milliseconds; it is cached anyway. :func:`lsh_params_for_recall` is the choice for verified dedup:
the smallest false-positive area among the (b, r) with ``P(threshold) >= min_probability``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ._lsh_storage import Buffer, Segment, build_segment, concat_csr, merge_segments, nonempty
from ._validation import check_array, check_float, check_int, check_option, check_texts
from .backends import get_backend
from .errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)
from .minhash import MAX_NUM_PERM, permutations
from .shingling import SHINGLE_KINDS, ShingleSets, shingle_hashes

__all__ = [
    "lsh_params",
    "lsh_params_for_recall",
    "lsh_probability",
    "lsh_error_areas",
    "plot_s_curve",
    "LSHIndex",
    "Candidates",
    "NearDuplicate",
    "NearDuplicates",
    "BatchNearDuplicates",
]

# ---------------------------------------------------------------------------------------------
# Parameters


def lsh_probability(s, b: int, r: int):
    """P(candidate) = 1 - (1 - s**r)**b for Jaccard similarity ``s`` (float or array)."""
    b = check_int(b, "b", 1, MAX_NUM_PERM, func="lsh_probability")
    r = check_int(r, "r", 1, MAX_NUM_PERM, func="lsh_probability")
    s_arr = np.asarray(s, dtype=np.float64)
    out = 1.0 - (1.0 - s_arr**r) ** b
    return float(out) if out.ndim == 0 else out


def _betainc(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(I_x(a, b), 1 - I_x(a, b)) elementwise, each without cancellation (continued fraction, Lentz)."""
    swap = x > (a + 1.0) / (a + b + 2.0)
    aa, bb, xx = np.where(swap, b, a), np.where(swap, a, b), np.where(swap, 1.0 - x, x)
    lgamma = np.frompyfunc(math.lgamma, 1, 1)
    lbeta = (lgamma(aa) + lgamma(bb) - lgamma(aa + bb)).astype(np.float64)
    with np.errstate(divide="ignore"):
        front = np.exp(aa * np.log(xx) + bb * np.log1p(-xx) - lbeta) / aa
    tiny = 1e-300

    def guard(v):
        return np.where(np.abs(v) < tiny, tiny, v)

    qab, qap, qam = aa + bb, aa + 1.0, aa - 1.0
    c = np.ones_like(xx)
    d = 1.0 / guard(1.0 - qab * xx / qap)
    h = d.copy()
    done = np.zeros(xx.shape, dtype=bool)
    for m in range(1, 100_000):
        m2 = 2.0 * m
        for num in (m * (bb - m) * xx / ((qam + m2) * (aa + m2)), -(aa + m) * (qab + m) * xx / ((aa + m2) * (qap + m2))):
            d = 1.0 / guard(1.0 + num * d)
            c = guard(1.0 + num / c)
            step = d * c
            h = np.where(done, h, h * step)
        done |= np.abs(step - 1.0) < 1e-15
        if done.all():
            break
    out = front * h
    return np.where(swap, 1.0 - out, out), np.where(swap, out, 1.0 - out)


@functools.lru_cache(maxsize=256)
def _grid(threshold: float, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (b, r) with b*r <= num_perm, in datasketch's search order, with its FP and FN areas."""
    b = np.concatenate([np.full(num_perm // bb, bb) for bb in range(1, num_perm + 1)])
    r = np.concatenate([np.arange(1, num_perm // bb + 1) for bb in range(1, num_perm + 1)])
    fp, fn = _areas(threshold, b.astype(np.float64), r.astype(np.float64))
    for arr in (b, r, fp, fn):
        arr.setflags(write=False)
    return b, r, fp, fn


def _areas(t: float, b: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # With u = s^r: ∫_0^t (1 - s^r)^b ds = B(t^r; 1/r, b+1) / r, an incomplete beta function.
    a, c = 1.0 / r, b + 1.0
    lgamma = np.frompyfunc(math.lgamma, 1, 1)
    whole = np.exp((lgamma(a) + lgamma(c) - lgamma(a + c)).astype(np.float64)) / r  # ∫_0^1
    x = np.full_like(a, t) ** r
    frac, rest = _betainc(a, c, x)
    fp, fn = t - whole * frac, whole * rest
    # When b*x is small, t - whole*frac cancels; sum the series of 1 - (1 - u)^b instead:
    # FP = (t / r) * sum_k (-1)^(k+1) C(b, k) x^k / (k + 1/r).
    small = b * x < 0.1
    if small.any():
        bs, xs, rs = b[small], x[small], r[small]
        term, total = np.ones_like(xs), np.zeros_like(xs)
        for k in range(1, 30):
            term = term * (bs - k + 1) / k * xs
            total += (-1) ** (k + 1) * term / (k + 1.0 / rs)
        fp[small] = t / rs * total
    # datasketch integrates with QUADPACK's 21-point rule, which returns exactly 0.0 when the
    # (monotone) integrand rounds to 0.0 at the node nearest the threshold; agreeing on those
    # zeros makes degenerate weights such as (1, 0) and (0, 1) pick the same (b, r).
    node = 0.995657163025808080735527280689003  # outermost Gauss-Kronrod abscissa
    s_fp = 0.5 * t + 0.5 * t * node
    s_fn = 0.5 * (t + 1.0) - 0.5 * (1.0 - t) * node
    fp = np.where(1.0 - (1.0 - s_fp**r) ** b == 0.0, 0.0, np.maximum(fp, 0.0))
    fn = np.where(1.0 - (1.0 - (1.0 - s_fn**r) ** b) == 0.0, 0.0, np.maximum(fn, 0.0))
    return fp, fn


def _check_weights(weights, func: str) -> tuple[float, float]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 2:
        raise InvalidTypeError(
            f"The 'weights' parameter of {func} must be a pair (false_positive_weight, "
            f"false_negative_weight). Got {weights!r} instead."
        )
    fp = check_float(weights[0], "weights[0]", 0.0, 1.0, func=func)
    fn = check_float(weights[1], "weights[1]", 0.0, 1.0, func=func)
    if abs(fp + fn - 1.0) > 1e-9:
        raise InvalidArgumentError(
            f"The 'weights' parameter of {func} must sum to 1.0. Got {weights!r} (sum {fp + fn!r}) instead."
        )
    return fp, fn


def _check_threshold_perm(threshold, num_perm, func):
    threshold = check_float(threshold, "threshold", 0.0, 1.0, func=func)
    num_perm = check_int(num_perm, "num_perm", 1, MAX_NUM_PERM, func=func)
    return threshold, num_perm


def lsh_params(threshold: float, num_perm: int, weights=(0.5, 0.5)) -> tuple[int, int]:
    """(b, r) minimising the weighted false-positive and false-negative areas; equals datasketch's."""
    threshold, num_perm = _check_threshold_perm(threshold, num_perm, "lsh_params")
    return _lsh_params(threshold, num_perm, _check_weights(weights, "lsh_params"))


@functools.lru_cache(maxsize=1024)
def _lsh_params(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    b, r, fp, fn = _grid(threshold, num_perm)
    k = int(np.argmin(fp * weights[0] + fn * weights[1]))  # first minimum, like datasketch's loop
    return int(b[k]), int(r[k])


def lsh_params_for_recall(threshold: float, num_perm: int, min_probability: float = 0.995) -> tuple[int, int]:
    """(b, r) with ``P(threshold) >= min_probability`` and the smallest false-positive area.

    This is the candidate stage of verified dedup: misses cost recall, extra candidates only cost
    a verification each. When no (b, r) reaches ``min_probability`` (tiny thresholds), the one
    with the highest P(threshold) is returned.
    """
    threshold, num_perm = _check_threshold_perm(threshold, num_perm, "lsh_params_for_recall")
    p = check_float(min_probability, "min_probability", 0.0, 1.0, func="lsh_params_for_recall")
    return _recall_params(threshold, num_perm, p)


@functools.lru_cache(maxsize=1024)
def _recall_params(threshold: float, num_perm: int, p: float) -> tuple[int, int]:
    b, r, fp, _ = _grid(threshold, num_perm)
    prob = 1.0 - (1.0 - threshold ** r.astype(np.float64)) ** b
    ok = prob >= p
    k = int(np.argmin(np.where(ok, fp, np.inf))) if ok.any() else int(np.argmax(prob))
    return int(b[k]), int(r[k])


def lsh_error_areas(threshold: float, b: int, r: int) -> tuple[float, float]:
    """(false-positive area, false-negative area) of banding (b, r) at ``threshold``."""
    threshold = check_float(threshold, "threshold", 0.0, 1.0, func="lsh_error_areas")
    b = check_int(b, "b", 1, MAX_NUM_PERM, func="lsh_error_areas")
    r = check_int(r, "r", 1, MAX_NUM_PERM, func="lsh_error_areas")
    fp, fn = _areas(threshold, np.array([float(b)]), np.array([float(r)]))
    return float(fp[0]), float(fn[0])


def plot_s_curve(path: str, threshold: float, b: int, r: int, *, title: str | None = None) -> str:
    """Draw P(s) with the threshold and the FP/FN areas marked, and save it (PNG) to ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendUnavailableError(
            f"Plotting needs matplotlib ({exc}). Install the plot extra: pip install 'simsearch[plot]'."
        ) from exc
    s = np.linspace(0.0, 1.0, 501)
    p = lsh_probability(s, b, r)
    fp, fn = lsh_error_areas(threshold, b, r)
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(s, p, color="C0", lw=2, label=f"P(s) = 1 - (1 - s^{r})^{b}")
    ax.fill_between(s, 0, p, where=s <= threshold, color="C3", alpha=0.3, label=f"false-positive area {fp:.4f}")
    ax.fill_between(s, p, 1, where=s >= threshold, color="C1", alpha=0.3, label=f"false-negative area {fn:.4f}")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    p_t = lsh_probability(threshold, b, r)
    ax.plot([threshold], [p_t], "o", color="k", ms=4, label=f"P(threshold) = {p_t:.3f}")
    ax.set_xlabel("Jaccard similarity s")
    ax.set_ylabel("P(candidate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title or f"LSH S-curve: b={b} bands x r={r} rows")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


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

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class NearDuplicate:
    id: int
    estimated: float
    exact: float | None

    @property
    def score(self) -> float:
        return self.estimated if self.exact is None else self.exact


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
        return NearDuplicate(
            int(self.ids[i]), float(self.estimated[i]), None if self.exact is None else float(self.exact[i])
        )

    def __iter__(self):
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

    def __iter__(self):
        return (self[i] for i in range(len(self)))


# ---------------------------------------------------------------------------------------------
# The index

_SCAN_LIMIT = 1 << 22  # queries x buffered rows above which the buffer is sealed before a query
_LSH_KERNELS = ("band_keys", "bucket_sort", "lookup", "scan", "self_join", "pair_jaccard_sets",
                "pair_jaccard_sigs", "connected_components")


def lsh_kernels(backend: str = "auto"):
    """The backend that runs the LSH table kernels for ``backend``.

    Band tables live in host memory; a backend without these kernels (CuPy, which computes the
    signatures on the GPU) hands them to numba, or to numpy when numba is missing.
    """
    be = get_backend(backend)
    if all(hasattr(be, k) for k in _LSH_KERNELS):
        return be
    for name in ("numba", "numpy"):
        try:
            return get_backend(name)
        except BackendUnavailableError:
            continue
    return get_backend("numpy")  # pragma: no cover - numpy always imports


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
        self.num_perm = check_int(num_perm, "num_perm", 1, MAX_NUM_PERM, func=f)
        self.threshold = check_float(threshold, "threshold", 0.0, 1.0, func=f)
        self.weights = _check_weights(weights, f)
        if params is None:
            self.b, self.r = _lsh_params(self.threshold, self.num_perm, self.weights)
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
        self.seed = check_int(seed, "seed", 0, (1 << 32) - 1, func=f)
        self.ngram = check_int(ngram, "ngram", 1, 1 << 16, func=f)
        self.shingle = check_option(shingle, "shingle", SHINGLE_KINDS, func=f)
        self.store_shingles = bool(store_shingles)
        self.buffer_size = check_int(buffer_size, "buffer_size", 1, 1 << 24, func=f)
        self._be = get_backend(backend)  # signatures of texts
        self._k = lsh_kernels(backend)  # band tables and everything else
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
        sets = shingle_hashes(texts, ngram=self.ngram, shingle=self.shingle, backend=self._be.name)
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

    def query(self, signatures):
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

    def query_near_duplicates(self, queries, *, threshold=None, k=None, exact=False, shingles=None, exclude_ids=None):
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
        threshold = self.threshold if threshold is None else check_float(threshold, "threshold", 0.0, 1.0, func=f)
        if k is not None:
            k = check_int(k, "k", 1, None, func=f)
        if exact and not self.store_shingles:
            raise FailedPreconditionError(f"{f}(exact=True) needs an index built with store_shingles=True.")
        single = False
        if isinstance(queries, (list, tuple)) and (not queries or isinstance(queries[0], str)):
            sets = shingle_hashes(queries, ngram=self.ngram, shingle=self.shingle, backend=self._be.name)
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
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    return ShingleSets(offsets, np.concatenate(arrays) if arrays else np.empty(0, np.uint64))

