"""LSH banding parameters: the S-curve, datasketch's (b, r) choice, the recall-tuned choice.

A signature of ``num_perm`` values is cut into ``b`` bands of ``r`` values. Two documents become
candidates when all ``r`` values of at least one band agree, which for Jaccard similarity ``s``
happens with probability ``P(s) = 1 - (1 - s**r)**b`` (the S-curve).

:func:`lsh_params` picks (b, r) the way datasketch does, minimising
``w_fp * FP + w_fn * FN`` with ``FP = ∫_0^t P(s) ds`` and ``FN = ∫_t^1 (1 - P(s)) ds`` over every
b*r <= num_perm. The integrals are computed in closed form (substitute u = s**r: they are
incomplete beta functions), so the result equals datasketch's numerical quadrature and a call costs
milliseconds; it is cached anyway. :func:`lsh_params_for_recall` is the choice for verified dedup:
the smallest false-positive area among the (b, r) with ``P(threshold) >= min_probability``, and
:func:`choose_params` is the one rule the index and both dedup engines use.

This module sits below :mod:`simsearch.lsh`, :mod:`simsearch.index` and :mod:`simsearch.dedup`,
which all import it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .validation import VERIFY_MODES, check_float, check_int, check_param
from .errors import BackendUnavailableError, InvalidArgumentError, InvalidTypeError
from .minhash import MAX_NUM_PERM

__all__ = [
    "VERIFY_MODES",
    "DEFAULT_MIN_PROBABILITY",
    "lsh_probability",
    "lsh_params",
    "lsh_params_for_recall",
    "lsh_error_areas",
    "choose_params",
    "check_weights",
    "plot_s_curve",
]

DEFAULT_MIN_PROBABILITY = 0.995

def lsh_probability(s, b: int, r: int) -> float | np.ndarray:
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


def check_weights(weights, func: str) -> tuple[float, float]:
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
    threshold = check_param("threshold", threshold, func=func)
    num_perm = check_param("num_perm", num_perm, func=func)
    return threshold, num_perm


def lsh_params(threshold: float, num_perm: int, weights=(0.5, 0.5)) -> tuple[int, int]:
    """(b, r) minimising the weighted false-positive and false-negative areas; equals datasketch's."""
    threshold, num_perm = _check_threshold_perm(threshold, num_perm, "lsh_params")
    return _lsh_params(threshold, num_perm, check_weights(weights, "lsh_params"))


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
    threshold = check_param("threshold", threshold, func="lsh_error_areas")
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


def choose_params(threshold: float, num_perm: int, verify: str = "exact", weights=None,
                  min_probability: float = DEFAULT_MIN_PROBABILITY) -> tuple[int, int]:
    """The banding of verified dedup and of collections: recall-tuned (P(threshold) >=
    ``min_probability``, least false-positive area) unless ``weights`` is given (datasketch's
    rule with those weights) or ``verify="none"`` (datasketch's rule, equal weights)."""
    threshold = check_param("threshold", threshold, func="choose_params")
    num_perm = check_param("num_perm", num_perm, func="choose_params")
    check_param("verify", verify, func="choose_params")
    if weights is not None:
        return _lsh_params(threshold, num_perm, check_weights(weights, "choose_params"))
    if verify == "none":
        return _lsh_params(threshold, num_perm, (0.5, 0.5))
    return _recall_params(threshold, num_perm, float(min_probability))
