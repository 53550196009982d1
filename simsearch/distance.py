"""Pairwise distances and exact k-nearest neighbours of float vectors, on any backend.

>>> d = pairwise(X, Y, "cosine")                       # (len(X), len(Y)) float32
>>> dist, idx = knn(base, queries, k=10, metric="manhattan")

Metrics (smaller is closer; aliases in parentheses):

* ``"euclidean"`` (``"l2"``): ``‖x − y‖``
* ``"sqeuclidean"`` (``"l2sq"``): ``‖x − y‖²``
* ``"manhattan"`` (``"l1"``, ``"cityblock"``): ``Σ |x_i − y_i|``
* ``"cosine"`` (``"cos"``): ``1 − x·y / (‖x‖ ‖y‖)``. **A zero vector has cosine distance 1.0 to
  every vector, itself and other zero vectors included** (its similarity is taken as 0, as in
  scikit-learn), so the result is never NaN.
* ``"ip"`` (``"dot"``, ``"inner_product"``): ``1 − x·y``, USearch's inner-product distance
  (equal to cosine on unit vectors; may be negative).

Rules every backend follows:

* float32 is the working type; float64 (and integer) input is converted. NaN or infinity, a
  dimension mismatch, or a non-2-d array raise :class:`~simsearch.errors.InvalidArgumentError`.
* ``knn`` ranks candidates with the backend's fast kernel (a float32 GEMM for the L2 / cosine / ip
  family), then recomputes the k returned distances exactly (in float64, rounded to float32) and
  sorts each row by ``(distance, index)``. **Equal distances are ordered by the smaller base
  index**, deterministically. Candidates whose float32 ranking values differ by less than the
  GEMM's rounding (about 1e-6 of ‖q‖² + ‖b‖²) are near-ties whose order may differ between
  backends; exact duplicates always tie.
* Vectors far from unit scale (largest row norm outside 2^-30 .. 2^30) are ranked after an exact
  power-of-two rescale, so float32 squares neither overflow nor underflow; distances returned
  are those of the original vectors.
* ``pairwise`` uses the same GEMM and recomputes directly the entries where the GEMM form loses
  relative precision to cancellation (near-identical vectors), so every entry is within a
  relative 1e-5 or so of the float64 distance of the float32 inputs.

Backends: ``"numpy"`` (the reference), ``"numba"`` (parallel CPU), ``"cupy"`` (GPU), ``"faiss"``
(``IndexFlat``: L2, L1, inner product, cosine through unit vectors; faiss-gpu when it sees a GPU),
and ``"auto"`` (CuPy with a GPU, else numba). All are exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .validation import check_array, check_finite, check_int, check_option
from .backends import get_knn_backend
from .errors import InvalidArgumentError

__all__ = [
    "METRICS",
    "normalize_metric",
    "pairwise",
    "knn",
    "check_vectors",
    "ranking_scale",
    "polish",
    "pair_distances",
    "rank",
    "exact_knn",
    "max_abs",
    "max_row_norm",
    "unit_rows",
]

METRICS = ("euclidean", "sqeuclidean", "manhattan", "cosine", "ip")
# Largest row norms inside this range keep float32 squares and sums far from overflow/underflow.
_SAFE = (2.0**-30, 2.0**30)
_ALIASES = {
    "l2": "euclidean",
    "l2sq": "sqeuclidean",
    "l1": "manhattan",
    "cityblock": "manhattan",
    "cos": "cosine",
    "dot": "ip",
    "inner_product": "ip",
}


def normalize_metric(metric: Any, *, func: str | None = None) -> str:
    """The canonical name of ``metric`` (case-insensitive, aliases accepted)."""
    name = metric.lower() if isinstance(metric, str) else metric
    name = _ALIASES.get(name, name)
    if name not in METRICS:
        check_option(metric, "metric", METRICS + tuple(_ALIASES), func=func)  # raises with the options
    return name


def check_vectors(value: Any, name: str, *, dim: int | None = None, func: str | None = None) -> np.ndarray:
    """A C-contiguous finite float32 (n, dim) array; raises InvalidArgumentError/InvalidTypeError."""
    return _vectors(value, name, dim=dim, func=func)[0]


def _vectors(value: Any, name: str, *, dim: int | None, func: str | None) -> tuple[np.ndarray, float]:
    """check_vectors, plus the largest magnitude (one max/min pass that also catches NaN/inf)."""
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
        arr = check_array(value, name, dtype=np.float32, ndim=2, allowed_kinds="fiu", func=func)
    if arr.shape[1] == 0:
        raise InvalidArgumentError(
            f"The '{name}' parameter of {func} must have at least one dimension. Got shape {arr.shape} instead."
        )
    if dim is not None and arr.shape[1] != dim:
        raise InvalidArgumentError(
            f"The '{name}' parameter of {func} must have {dim} columns (the dimension of the other "
            f"operand). Got shape {arr.shape} instead."
        )
    amax = float(max(arr.max(), -arr.min())) if arr.size else 0.0
    if not math.isfinite(amax):  # NaN propagates through max
        check_finite(np.asarray(value), name, func=func)  # names the first NaN or inf
        raise InvalidArgumentError(
            f"The '{name}' parameter of {func} must fit in float32 (|x| < 3.4e38); some values overflow."
        )
    return arr, amax


def ranking_scale(amax: float, dim: int) -> float:
    """A power of two bringing the largest row norm near 1 when float32 squares of vectors this
    large (or this small) would overflow (or underflow); else 1.0. Rankings do not change."""
    m = amax * math.sqrt(dim)
    if m == 0 or _SAFE[0] <= m <= _SAFE[1]:
        return 1.0
    return 2.0 ** -math.ceil(math.log2(m))


def _scaled(x: np.ndarray, s: float) -> np.ndarray:
    return x if s == 1.0 else (x.astype(np.float64) * s).astype(np.float32)


def pairwise(X: Any, Y: Any = None, metric: str = "euclidean", *, backend: str = "auto") -> np.ndarray:
    """The (len(X), len(Y)) float32 matrix of distances from every row of X to every row of Y.

    ``Y=None`` means ``Y = X``. See the module docstring for metrics, rules and backends.
    """
    metric = normalize_metric(metric, func="pairwise")
    be = get_knn_backend(backend)
    x, ax = _vectors(X, "X", dim=None, func="pairwise")
    y, ay = (x, ax) if Y is None else _vectors(Y, "Y", dim=x.shape[1], func="pairwise")
    s = 1.0 if metric == "cosine" else ranking_scale(max(ax, ay), x.shape[1])
    out = be.pairwise(_scaled(x, s), _scaled(y, s), metric)
    if s == 1.0:
        return out
    out = out.astype(np.float64)
    with np.errstate(over="ignore"):  # true distances beyond float32's range become inf
        if metric == "sqeuclidean":
            return (out / (s * s)).astype(np.float32)
        if metric == "ip":
            return (1.0 - (1.0 - out) / (s * s)).astype(np.float32)
        return (out / s).astype(np.float32)


def knn(
    base: Any, queries: Any, k: int, metric: str = "euclidean", *, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``base`` for each query: ``(distances, indices)``, each (nq, k).

    ``distances`` is float32 and ascending along each row; ``indices`` (int64) are rows of ``base``,
    equal distances ordered by the smaller index. Work goes in (query block x base block) tiles,
    so memory stays bounded whatever the sizes. ``k`` must be in [1, len(base)].
    """
    metric = normalize_metric(metric, func="knn")
    be = get_knn_backend(backend)
    b, ab = _vectors(base, "base", dim=None, func="knn")
    q, aq = _vectors(queries, "queries", dim=b.shape[1], func="knn")
    if len(b) == 0:
        raise InvalidArgumentError("The 'base' parameter of knn must hold at least one vector. Got 0 rows.")
    k = check_int(k, "k", 1, len(b), func="knn")
    if len(q) == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return exact_knn(be, b, q, k, metric, max(ab, aq))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """x with every non-zero row scaled to unit length (a float32 copy; zero rows stay zero)."""
    return get_knn_backend("numpy").unit_rows(np.ascontiguousarray(x, dtype=np.float32))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x, dtype=np.float32)


def max_abs(x: np.ndarray) -> float:
    """The largest absolute value of a float array (0.0 when empty), from its max and min: no
    temporary of the array's size as ``np.abs(x).max()`` makes (a 164 MB mapped segment block at
    reopen: 0.03 s against 0.06-0.22 s, the first call also faulting in the temporary)."""
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


def max_row_norm(x: np.ndarray) -> float:
    """The largest row norm of a float32 (n, d) array (0.0 when empty)."""
    return float(np.sqrt(_sq_norms(x).max(initial=0.0)))


def _rank_eps(dim: int) -> float:
    """A bound on the relative rounding error of a float32 dot product (or sum) of ``dim`` terms,
    with a margin: (dim + 8) units in the last place."""
    return (dim + 8) * 2.0**-24


def _lower_bounds(approx: np.ndarray, q: np.ndarray, bnorm: float, metric: str) -> np.ndarray:
    """Per query, a lower bound on the true distance (of the scaled inputs) of every base row that
    the backend ranked after its last returned candidate, whose fast-kernel distance is ``approx``."""
    eps = _rank_eps(q.shape[1])
    if metric == "manhattan":
        return approx * (1.0 - eps)
    qn = np.sqrt(_sq_norms(q)).astype(np.float64)
    a = approx.astype(np.float64)
    if metric in ("sqeuclidean", "euclidean"):
        tol = eps * (qn + bnorm) ** 2
        sq = a * a if metric == "euclidean" else a
        return np.sqrt(np.maximum(sq - tol, 0.0)) if metric == "euclidean" else sq - tol
    if metric == "cosine":
        return a - 8.0 * eps
    return a - eps * (2.0 * qn * bnorm + 1.0)  # ip


def _to_scaled(dist: np.ndarray, s: float, metric: str) -> np.ndarray:
    """Distances of the original inputs as distances of the inputs scaled by ``s``."""
    d = dist.astype(np.float64)
    if s == 1.0:
        return d
    if metric == "sqeuclidean":
        return d * (s * s)
    if metric == "ip":
        return 1.0 - (1.0 - d) * (s * s)
    return d * s


def exact_knn(be: Any, base: np.ndarray, queries: np.ndarray, k: int, metric: str, amax: float,
              bnorm: float | None = None, cache_key: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (distances, rows) of checked inputs, ties to the smaller row, on backend ``be``.

    The backend's fast kernel (a float32 GEMM for the L2 family) only proposes candidates: it is
    asked for ``2k + 16`` of them, whose distances are then recomputed exactly by :func:`polish`.
    Rounding can rank equal (or nearly equal) rows in any order, so a query whose k-th exact
    distance is not clearly below the last proposed candidate's (by the float32 error bound of
    :func:`_rank_eps`) is asked again with four times as many, until the bound clears or every row
    is a candidate. ``bnorm`` is an upper bound of the base rows' norms (computed when None);
    ``cache_key`` names an unchanged base, which a device backend may keep resident.
    """
    n = len(base)
    s = 1.0 if metric == "cosine" else ranking_scale(amax, base.shape[1])
    b_s, q_s = _scaled(base, s), _scaled(queries, s)
    if bnorm is None:
        bnorm = max_row_norm(base)
    bnorm_s = bnorm * s
    out_d = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    todo = np.arange(len(queries))
    fetch = min(n, k + 8 + k // 4)
    while len(todo):
        approx, idx = be.knn(b_s, q_s[todo], fetch, metric, cache_key=None if cache_key is None else (cache_key, s))
        dist, idx = polish(base, queries[todo], np.asarray(idx, dtype=np.int64), metric, backend=be)
        out_d[todo], out_i[todo] = dist[:, :k], idx[:, :k]
        if fetch == n:
            break
        last = np.asarray(approx, dtype=np.float32).max(axis=1)
        lb = _lower_bounds(last, q_s[todo], bnorm_s, metric)
        todo = todo[lb <= _to_scaled(dist[:, k - 1], s, metric)]
        fetch = min(n, 4 * fetch)
    return out_d, out_i


def pair_distances(base: np.ndarray, queries: np.ndarray, idx: np.ndarray, metric: str, *,
                   backend: Any = "auto") -> np.ndarray:
    """Exact float32 distances (nq, k) of each query to its candidate rows ``idx`` of ``base``
    (-1 = none: +inf), by the exact pair kernel of ``backend``'s host twin (host arrays)."""
    nq, k = idx.shape
    cols = idx.reshape(-1)
    valid = cols >= 0
    dist = np.full(nq * k, np.inf, dtype=np.float32)
    if valid.any():
        host = get_knn_backend(backend).host
        rows = np.repeat(np.arange(nq, dtype=np.int64), k)
        with np.errstate(over="ignore"):  # a true distance beyond float32's range is inf
            dist[valid] = host.exact_pairs(queries, base, rows[valid], cols[valid], metric).astype(np.float32)
    return dist.reshape(nq, k)


def rank(dist: np.ndarray, idx: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row of (``dist``, ``idx``) sorted by (distance, index), index -1 last; the first
    ``k`` columns (all when None)."""
    key = np.where(idx >= 0, idx, np.iinfo(np.int64).max)
    order = np.lexsort((key, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def polish(base: np.ndarray, queries: np.ndarray, idx: np.ndarray, metric: str, *,
           backend: Any = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 distances for the candidate rows ``idx`` (-1 = none), each row sorted by
    (distance, index); slots without a candidate get distance +inf and index -1, last. The exact
    pair kernel is the host twin's of ``backend`` (the inputs are host arrays)."""
    return rank(pair_distances(base, queries, idx, metric, backend=backend), idx)
