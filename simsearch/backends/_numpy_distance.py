"""numpy reference kernels for pairwise distances and exact top-k, plus helpers every backend shares.

Metrics (all "smaller is closer"):

* ``sqeuclidean``  ``‖x − y‖²``
* ``euclidean``    ``‖x − y‖``
* ``manhattan``    ``Σ |x_i − y_i|``
* ``cosine``       ``1 − x·y / (‖x‖ ‖y‖)``; 1.0 when either vector is zero
* ``ip``           ``1 − x·y`` (USearch's inner-product distance; equals cosine on unit vectors)

The L2 / cosine / ip family is computed with one float32 GEMM per block: ranking only needs
``rank = ‖b‖² − 2 q·b`` (L2), ``−q·b`` (ip) or ``−q̂·b̂`` (cosine, unit rows). The queries are
pre-scaled by −2 or −1 (exact), so the GEMM yields ``rank − bterm[j]`` and the selection only adds
``bterm`` (‖b‖² or 0); :func:`to_distance` turns ranks into distances with the per-query term.
Entries where the GEMM form cancels badly (near-identical vectors) are recomputed exactly in
float64 by :func:`exact_pairs`.
"""

from __future__ import annotations

import numpy as np

GEMM_METRICS = ("sqeuclidean", "euclidean", "cosine", "ip")
METRICS = ("sqeuclidean", "euclidean", "manhattan", "cosine", "ip")

# GEMM block sizes: a (QBLOCK x BBLOCK) float32 product stays in the last-level cache.
QBLOCK = 512
BBLOCK = 4096
# Pairs per float64 refinement chunk, and floats per broadcast block of the numpy L1 kernel.
_PAIR_CHUNK = 1 << 15
_L1_ELEMS = 1 << 22
# Relative cancellation beyond which a GEMM-form distance is recomputed directly (see exact_pairs).
_CANCEL = 1.0 / 16.0


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Row-wise squared norms, float32."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float32)


def unit_rows(x: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
    """x with every non-zero row scaled to unit length (a float32 copy; zero rows stay zero).

    float32 arithmetic when every squared norm is comfortably inside float32's range, else
    float64, so that tiny and huge rows normalise exactly too."""
    n2 = sq_norms(x)
    small = n2 <= 1e-30  # zero rows, or rows whose float32 squares underflow
    if np.isfinite(n2).all() and not x[small].any():
        inv = np.zeros_like(n2)
        np.divide(1.0, np.sqrt(n2), out=inv, where=n2 > 0)
        return x * inv[:, None]
    out = np.empty(x.shape, dtype=np.float32)
    for lo in range(0, len(x), chunk):
        a = x[lo : lo + chunk].astype(np.float64)
        n = np.sqrt(np.einsum("ij,ij->i", a, a))
        a /= np.where(n > 0, n, 1.0)[:, None]
        out[lo : lo + chunk] = a
    return out


def cosine_scales(base: np.ndarray) -> np.ndarray | None:
    """float32 1/‖b‖ (0 for zero rows) when every row's squared norm is safely inside float32's
    range, so that ranking by (−q̂ · b) / ‖b‖ needs no unit copy of the base; else None."""
    n2 = sq_norms(base)
    small = n2 <= 1e-30
    if not (np.isfinite(n2).all() and n2.max(initial=0.0) < 1e30) or base[small].any():
        return None
    inv = np.zeros_like(n2)
    np.divide(1.0, np.sqrt(n2), out=inv, where=n2 > 0)
    return inv


def prepare_base(base: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows to multiply, bterm) with rank_ij = bterm[j] + (q'_i . b_j), q' from prepare_queries.

    L2: the raw rows and ‖b‖²; cosine: unit rows and 0; ip: the raw rows and 0.
    """
    if metric in ("sqeuclidean", "euclidean"):
        return base, sq_norms(base)
    if metric == "cosine":
        base = unit_rows(base)
    return base, np.zeros(len(base), np.float32)


def prepare_queries(queries: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(q', the per-query term to_distance needs). q' is −2q for L2 (‖q‖² is the term), −q/‖q‖
    for cosine and −q for ip (no term): scaling by −2 or −1 is exact, so the GEMM yields the
    ranking value directly and the selection only adds bterm."""
    if metric in ("sqeuclidean", "euclidean"):
        return queries * np.float32(-2.0), sq_norms(queries)
    if metric == "cosine":
        queries = unit_rows(queries)
    return -queries, np.zeros(len(queries), np.float32)


def to_distance(rank: np.ndarray, qterm: np.ndarray, metric: str) -> np.ndarray:
    """Turn ranking values (rows = queries) into float32 distances, in place where possible;
    +inf (an unfilled top-k slot) stays +inf."""
    rank = np.asarray(rank, dtype=np.float32)
    if metric in ("sqeuclidean", "euclidean"):
        rank += qterm[:, None]
        np.maximum(rank, 0.0, out=rank)
        if metric == "euclidean":
            np.sqrt(rank, out=rank)
    else:
        rank += 1.0
        if metric == "cosine":
            np.clip(rank, 0.0, 2.0, out=rank, where=np.isfinite(rank))
    return rank


def exact_pairs(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray, metric: str) -> np.ndarray:
    """Distances between x[rows] and y[cols], computed directly in float64 (no cancellation)."""
    out = np.empty(len(rows), dtype=np.float64)
    for lo in range(0, len(rows), _PAIR_CHUNK):
        hi = min(lo + _PAIR_CHUNK, len(rows))
        a = x[rows[lo:hi]].astype(np.float64)
        b = y[cols[lo:hi]].astype(np.float64)
        if metric in ("sqeuclidean", "euclidean"):
            diff = a - b
            d = np.einsum("ij,ij->i", diff, diff)
            out[lo:hi] = np.sqrt(d) if metric == "euclidean" else d
        elif metric == "manhattan":
            out[lo:hi] = np.abs(a - b).sum(axis=1)
        elif metric == "ip":
            out[lo:hi] = 1.0 - np.einsum("ij,ij->i", a, b)
        else:  # cosine as half the squared distance of the unit vectors: accurate near 0
            na = np.linalg.norm(a, axis=1)
            nb = np.linalg.norm(b, axis=1)
            zero = (na == 0) | (nb == 0)
            a /= np.where(na > 0, na, 1.0)[:, None]
            b /= np.where(nb > 0, nb, 1.0)[:, None]
            diff = a - b
            d = np.clip(0.5 * np.einsum("ij,ij->i", diff, diff), 0.0, 2.0)
            out[lo:hi] = np.where(zero, 1.0, d)
    return out


def _gemm_pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    y_used, bterm = prepare_base(y, metric)
    x_used, qterm = prepare_queries(x, metric)
    out = np.matmul(x_used, y_used.T)
    out += bterm
    return fix_cancellation(x, y, to_distance(out, qterm, metric), metric)


def fix_cancellation(x: np.ndarray, y: np.ndarray, out: np.ndarray, metric: str) -> np.ndarray:
    """Recompute directly the entries of a GEMM-form distance matrix that lost relative precision
    to cancellation: those much smaller than the terms they are the difference of."""
    if metric in ("sqeuclidean", "euclidean"):
        scale = sq_norms(x)[:, None] + sq_norms(y)[None, :]
        d2 = out if metric == "sqeuclidean" else out * out
        bad = d2 < _CANCEL * scale
    elif metric == "cosine":
        bad = out < _CANCEL
    elif metric == "ip":
        scale = np.sqrt(sq_norms(x))[:, None] * np.sqrt(sq_norms(y))[None, :]
        bad = np.abs(out) < _CANCEL * np.maximum(scale, 1.0)
    else:
        return out
    rows, cols = np.nonzero(bad)
    if len(rows):
        out[rows, cols] = exact_pairs(x, y, rows, cols, metric)
    return out


def _l1_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Manhattan distances of all x rows to all y rows, broadcasting in bounded blocks."""
    out = np.empty((len(x), len(y)), dtype=np.float32)
    d = max(x.shape[1], 1)
    cols = max(1, min(len(y), _L1_ELEMS // d))
    for c0 in range(0, len(y), cols):
        yb = y[c0 : c0 + cols]
        rows = max(1, _L1_ELEMS // (d * len(yb)))
        for r0 in range(0, len(x), rows):
            diff = x[r0 : r0 + rows, None, :] - yb[None, :, :]
            np.abs(diff, out=diff)
            out[r0 : r0 + rows, c0 : c0 + cols] = diff.sum(axis=2, dtype=np.float32)
    return out


def pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """The full (len(x), len(y)) float32 distance matrix."""
    if len(x) == 0 or len(y) == 0:
        return np.zeros((len(x), len(y)), dtype=np.float32)
    if metric == "manhattan":
        return _l1_rows(x, y)
    return _gemm_pairwise(x, y, metric)


def select_block(vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest (value, column) pairs, ties to the smaller column, sorted."""
    nrow, ncol = vals.shape
    if ncol <= k:
        cols = np.broadcast_to(np.arange(ncol, dtype=np.int64), (nrow, ncol))
        vals = np.asarray(vals)
    else:
        kth = np.partition(vals, k - 1, axis=1)[:, k - 1 : k]
        below = vals < kth
        tied = vals == kth
        need = k - below.sum(axis=1, keepdims=True)
        keep = below | (tied & (np.cumsum(tied, axis=1) <= need))
        cols = np.nonzero(keep)[1].reshape(nrow, k).astype(np.int64)
        vals = np.take_along_axis(vals, cols, axis=1)
    order = np.lexsort((cols, vals), axis=-1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def merge_topk(d1, i1, d2, i2, k):
    """Merge two per-row candidate lists into the k best by (value, index)."""
    d = np.concatenate([d1, d2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    order = np.lexsort((i, d), axis=-1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k in (query block x base block) tiles; memory is bounded by the tile size."""
    nq = len(queries)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    gemm = metric != "manhattan"
    if gemm:
        base, bterm = prepare_base(base, metric)
        queries, qterm = prepare_queries(queries, metric)
        qblock, bblock = QBLOCK, BBLOCK
    else:
        qblock = 64
        bblock = max(k, _L1_ELEMS // (qblock * max(base.shape[1], 1)))
    for q0 in range(0, nq, qblock):
        q1 = min(q0 + qblock, nq)
        best_d, best_i = out_d[q0:q1], out_i[q0:q1]
        for b0 in range(0, len(base), bblock):
            b1 = min(b0 + bblock, len(base))
            if gemm:
                vals = np.matmul(queries[q0:q1], base[b0:b1].T)
                vals += bterm[b0:b1]
            else:
                vals = _l1_rows(queries[q0:q1], base[b0:b1])
            d, i = select_block(vals, k)
            best_d, best_i = merge_topk(best_d, best_i, d, i + b0, k)
        out_d[q0:q1], out_i[q0:q1] = best_d, best_i
    if gemm:
        out_d = to_distance(out_d, qterm, metric)
    return out_d, out_i
