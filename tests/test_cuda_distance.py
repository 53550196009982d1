"""The GPU distance kernels (simsearch.backends._cuda_distance) against the numpy reference.

In the default suite they run on numba's CUDA simulator (tiny inputs), under ``-m "gpu or cuda"``
on a device. Pairwise distances agree within float tolerance (identical for small-integer data,
where every float32 operation is exact); kNN through :func:`simsearch.distance.knn` gives the same
ids and distances as numpy, ties to the smaller index, whatever the block sizes, memory plans,
parts, k, or threads.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch import distance
from simsearch.backends import _cuda_distance as C
from simsearch.backends import _device as D
from simsearch.backends import backend_problem, get_backend
from simsearch.errors import ResourceExhaustedError

pytestmark = pytest.mark.cuda

METRICS = ["sqeuclidean", "euclidean", "manhattan", "cosine", "ip"]


@pytest.fixture(scope="module")
def cu():
    problem = backend_problem("cupy")
    if problem is not None:
        if os.environ.get("SIMSEARCH_REQUIRE_GPU", "") not in ("", "0"):
            pytest.fail(f"the cupy backend is not available: {problem} (SIMSEARCH_REQUIRE_GPU=1)")
        pytest.skip(f"the cupy backend is not available: {problem}")
    return get_backend("cupy")


@pytest.fixture(scope="module")
def npb():
    return get_backend("numpy")


@pytest.fixture(autouse=True)
def _fresh_cache():
    C.RESIDENT.clear()
    yield
    C.RESIDENT.clear()


def floats(seed: int, n: int, d: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def small_ints(seed: int, n: int, d: int, lo: int = -2, hi: int = 3) -> np.ndarray:
    """Coordinates in [lo, hi): every float32 product and sum is exact, and distances tie a lot."""
    return np.random.default_rng(seed).integers(lo, hi, size=(n, d)).astype(np.float32)


def knn_both(base, queries, k, metric):
    got = distance.knn(base, queries, k, metric, backend="cupy")
    want = distance.knn(base, queries, k, metric, backend="numpy")
    return got, want


def assert_same_knn(got, want):
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64


@pytest.fixture(params=["heaps", "sorted"])
def topk_path(request, monkeypatch):
    """Both selections: per-(query, part) heaps (k <= HEAP_KMAX) and sorted packed keys (larger k)."""
    if request.param == "sorted":
        monkeypatch.setattr(C, "HEAP_KMAX", 0)
    return request.param


def limit_memory(monkeypatch, nbytes: int, free: int | None = None) -> None:
    """A device that cannot allocate more than ``nbytes`` at once and reports ``free`` (default
    ``nbytes``) free to the plans: the simulator's budget, and the same limits on a real device."""
    real = D.empty

    def empty(shape, dtype):
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if want > nbytes:
            raise D.DeviceOutOfMemory(f"{want} bytes asked for, {nbytes} allowed")
        return real(shape, dtype)

    monkeypatch.setattr(D, "SIM_MEMORY", nbytes)
    monkeypatch.setattr(D, "empty", empty)
    monkeypatch.setattr(D, "free_bytes", lambda: nbytes if free is None else free)


def tiny_blocks(monkeypatch, qblock=4, bblock=16, part_min=1):
    """Several query blocks, base blocks and parts per block even on tiny inputs."""
    monkeypatch.setattr(C, "QBLOCK", qblock)
    monkeypatch.setattr(C, "BBLOCK", bblock)
    monkeypatch.setattr(C, "PART_MIN", part_min)


# -- pairwise -----------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    nx=st.integers(1, 12),
    ny=st.integers(1, 40),
    d=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    dup=st.booleans(),
)
def test_pairwise_matches_numpy(cu, npb, metric, nx, ny, d, seed, dup):
    x, y = floats(seed, nx, d), floats(seed + 1, ny, d)
    if dup:  # near-identical rows: the GEMM form cancels and is recomputed exactly
        x[0] = y[-1]
    got = cu.pairwise(x, y, metric)
    want = npb.pairwise(x, y, metric)
    assert got.dtype == np.float32 and got.shape == (nx, ny)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_small_integers_identical(cu, npb, metric):
    x, y = small_ints(1, 9, 7), small_ints(2, 70, 7)
    x[2] = 0.0  # a zero vector: cosine distance 1.0 to everything
    got = cu.pairwise(x, y, metric)
    want = npb.pairwise(x, y, metric)
    if metric == "cosine":  # unit rows are rounded (float64 on the device, float32 in numpy)
        np.testing.assert_allclose(got, want, rtol=0, atol=3e-7)
        assert (got[2] == 1.0).all()
    else:
        np.testing.assert_array_equal(got, want)


def test_pairwise_l1_tile_edges_and_slabs(cu, npb):
    """More than one tile each way (TM = TN = 64) and two dimension slabs (TK = 32)."""
    x, y = small_ints(3, C.TM + 1, C.TK + 1), small_ints(4, C.TN + 1, C.TK + 1)
    np.testing.assert_array_equal(cu.pairwise(x, y, "manhattan"), npb.pairwise(x, y, "manhattan"))


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine"])
def test_pairwise_in_blocks_under_a_small_plan(cu, npb, monkeypatch, metric):
    x, y = floats(5, 7, 6), floats(6, 30, 6)
    limit_memory(monkeypatch, 1024)  # y (840 bytes prepared) is streamed, x goes in blocks
    rows, cols = C._pairwise_plan(len(x), len(y), 6, streamed=True)
    assert rows < len(x) and cols < len(y)
    np.testing.assert_allclose(cu.pairwise(x, y, metric), npb.pairwise(x, y, metric), rtol=2e-5, atol=2e-5)


def test_pairwise_empty(cu):
    assert cu.pairwise(np.ones((0, 3), np.float32), np.ones((4, 3), np.float32), "cosine").shape == (0, 4)
    assert cu.pairwise(np.ones((2, 3), np.float32), np.ones((0, 3), np.float32), "manhattan").shape == (2, 0)


# -- knn through simsearch.distance -------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "path"),
    [(m, "heaps") for m in METRICS] + [(m, "sorted") for m in ("sqeuclidean", "manhattan", "cosine", "ip")],
)
def test_knn_ties_and_duplicates_across_blocks(cu, monkeypatch, metric, path):
    tiny_blocks(monkeypatch)  # 16-row base blocks, 4-query blocks, up to 16 parts per block
    if path == "sorted":
        monkeypatch.setattr(C, "HEAP_KMAX", 0)
    base = small_ints(7, 80, 4)
    queries = small_ints(8, 6, 4)
    dup = [3, 17, 33, 64]  # one copy in each of four other base blocks
    base[dup] = base[50]
    queries[0] = base[50]
    got, want = knn_both(base, queries, 8, metric)
    assert_same_knn(got, want)
    if metric in ("sqeuclidean", "euclidean", "manhattan"):
        same = np.flatnonzero((base == base[50]).all(axis=1))  # dup + [50], and any chance copies
        assert len(same) <= 8 and got[1][0, : len(same)].tolist() == same.tolist()


@pytest.mark.parametrize("k", [3, 20])
@pytest.mark.parametrize("metric", ["sqeuclidean", "manhattan", "ip"])
def test_raw_candidates_break_ties_to_the_smaller_row(cu, npb, monkeypatch, topk_path, metric, k):
    """Small integers rank exactly, so the backend's own candidates (before exact_knn) must equal
    numpy's, tie order included, across base blocks and strided parts."""
    tiny_blocks(monkeypatch)
    base, queries = small_ints(41, 60, 2, -1, 2), small_ints(42, 4, 2, -1, 2)  # 9 distinct rows
    got, want = cu.knn(base, queries, k, metric), npb.knn(base, queries, k, metric)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("metric", METRICS)
def test_knn_floats_match_numpy(cu, metric):
    base, queries = floats(9, 150, 12), floats(10, 11, 12)
    base[77] = queries[3]
    assert_same_knn(*knn_both(base, queries, 10, metric))


@pytest.mark.parametrize("k", [1, 37, 40])
@pytest.mark.parametrize("metric", ["sqeuclidean", "manhattan", "cosine"])
def test_knn_small_and_large_k(cu, topk_path, metric, k):
    """k = 1, k close to n, and k = n (every row is a candidate; one part per query)."""
    base, queries = small_ints(11, 40, 3), small_ints(12, 3, 3)
    assert_same_knn(*knn_both(base, queries, k, metric))


def test_knn_parts_merge_in_two_rounds(cu, npb, monkeypatch):
    """More parts than FANIN: the part lists are merged in two rounds."""
    monkeypatch.setattr(C, "PART_MIN", 1)
    base, queries = small_ints(13, 200, 3), small_ints(14, 2, 3)
    assert C._parts(len(queries), len(base), len(base), 2) > C.FANIN
    got = cu.knn(base, queries, 2, "manhattan")
    want = npb.knn(base, queries, 2, "manhattan")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_knn_cosine_zero_and_tiny_vectors(cu):
    base = floats(15, 60, 5)
    base[[4, 9, 30]] = 0.0
    base[12] *= np.float32(1e-30)  # float32 squares underflow: normalised in float64
    queries = np.vstack([np.zeros((1, 5), np.float32), floats(16, 3, 5), base[12:13] * np.float32(1e20)])
    got, want = knn_both(base, queries, 6, "cosine")
    assert_same_knn(got, want)
    assert (got[0][0] == 1.0).all() and got[1][0].tolist() == list(range(6))  # ties: smallest rows
    assert got[1][-1, 0] == 12


def test_knn_empty_and_single_row(cu):
    d, i = cu.knn(np.ones((5, 2), np.float32), np.ones((0, 2), np.float32), 3, "ip")
    assert d.shape == i.shape == (0, 3)
    assert_same_knn(*knn_both(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 1, "euclidean"))


@settings(max_examples=15, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    n=st.integers(1, 50),
    nq=st.integers(1, 4),
    d=st.integers(1, 6),
    kfrac=st.floats(0.0, 1.0),
    ints=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_knn_matches_numpy_on_open_ended_inputs(cu, metric, n, nq, d, kfrac, ints, seed):
    make = small_ints if ints else floats
    base, queries = make(seed, n, d), make(seed + 1, nq, d)
    k = max(1, round(kfrac * n))
    assert_same_knn(*knn_both(base, queries, k, metric))


# -- memory plans and running out of memory --------------------------------------------------------


@pytest.mark.parametrize(("metric", "path"), [("sqeuclidean", "heaps"), ("manhattan", "heaps"), ("cosine", "sorted")])
def test_knn_under_a_tiny_memory_plan(cu, monkeypatch, metric, path):
    """The base is streamed block by block and queries go a few at a time; same answer."""
    if path == "sorted":
        monkeypatch.setattr(C, "HEAP_KMAX", 0)
    base, queries = floats(17, 30, 5), floats(18, 4, 5)
    limit_memory(monkeypatch, 1200)  # the prepared base (720 bytes) is over half of it
    rows, bn = C._knn_plan(len(queries), len(base), 5, 14, streamed=True)
    assert rows < len(queries) and bn < len(base)
    prepared = []
    real = C._prepare
    monkeypatch.setattr(C, "_prepare", lambda rows_, kind: prepared.append(len(rows_)) or real(rows_, kind))
    got = distance.knn(base, queries, 5, metric, backend="cupy")
    monkeypatch.undo()
    assert prepared and max(prepared) < len(base)  # streamed, never uploaded whole
    assert_same_knn(got, distance.knn(base, queries, 5, metric, backend="numpy"))


def test_knn_splits_blocks_that_run_out_of_memory(cu, monkeypatch, topk_path):
    """A plan that believes in more memory than there is: blocks fail and are split until they fit."""
    base, queries = floats(19, 50, 4), floats(20, 8, 4)
    want = distance.knn(base, queries, 4, "euclidean", backend="numpy")
    limit_memory(monkeypatch, 1000, free=1 << 40)
    calls = []
    real = C._knn_rows
    monkeypatch.setattr(C, "_knn_rows", lambda *a: calls.append(len(a[3])) or real(*a))
    got = distance.knn(base, queries, 4, "euclidean", backend="cupy")
    assert calls[0] == len(queries) and min(calls) < len(queries)  # the first try failed
    assert_same_knn(got, want)


def test_one_query_that_cannot_fit_raises_resource_exhausted(cu, monkeypatch):
    base, queries = floats(21, 30, 4), floats(22, 2, 4)
    limit_memory(monkeypatch, 8)  # not even one query row
    with pytest.raises(ResourceExhaustedError, match="knn"):
        cu.knn(base, queries, 5, "sqeuclidean")
    with pytest.raises(ResourceExhaustedError, match="pairwise"):
        cu.pairwise(queries, base, "manhattan")


# -- the resident-base cache -----------------------------------------------------------------------


def test_cache_hits_on_the_same_key(cu, monkeypatch):
    base, queries = floats(23, 40, 4), floats(24, 3, 4)
    uncached = cu.knn(base, queries, 5, "cosine")
    uploads = []
    real = C._prepare
    monkeypatch.setattr(C, "_prepare", lambda rows_, kind: uploads.append(len(rows_)) or real(rows_, kind))
    first = cu.knn(base, queries, 5, "cosine", cache_key=("index", 1))
    again = cu.knn(base, queries, 5, "cosine", cache_key=("index", 1))
    assert uploads == [40]  # prepared once
    assert (C.RESIDENT.misses, C.RESIDENT.hits, len(C.RESIDENT)) == (1, 1, 1)
    for a, b in ((first, uncached), (again, uncached)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_cache_never_answers_from_a_stale_base(cu):
    base, queries = floats(25, 40, 4), floats(26, 3, 4)
    old = cu.knn(base, queries, 5, "sqeuclidean", cache_key=("index", 1))
    changed = base.copy()
    changed[:20] = floats(27, 20, 4)  # the index changed: a new version
    new = cu.knn(changed, queries, 5, "sqeuclidean", cache_key=("index", 2))
    assert C.RESIDENT.hits == 0
    fresh = cu.knn(changed, queries, 5, "sqeuclidean")
    np.testing.assert_array_equal(new[1], fresh[1])
    assert not np.array_equal(new[1], old[1])
    # the same key with other contents (e.g. rescaled), or another shape, misses too
    scaled = cu.knn(changed * np.float32(0.5), queries, 5, "sqeuclidean", cache_key=("index", 2))
    np.testing.assert_array_equal(scaled[1], cu.knn(changed * np.float32(0.5), queries, 5, "sqeuclidean")[1])
    cu.knn(changed[:30], queries, 5, "sqeuclidean", cache_key=("index", 2))
    assert C.RESIDENT.hits == 0
    # and another metric's preparation (cosine: unit rows) is another entry
    cos = cu.knn(changed, queries, 5, "cosine", cache_key=("index", 2))
    np.testing.assert_array_equal(cos[1], cu.knn(changed, queries, 5, "cosine")[1])
    assert C.RESIDENT.hits == 0


def test_cache_is_bounded_by_bytes(cu, monkeypatch):
    one = C._prepared_bytes(40, 4)
    monkeypatch.setattr(C, "device_bytes", lambda: 1 << 20)
    monkeypatch.setattr(C, "CACHE_FRACTION", 2.5 * one / (1 << 20))  # room for two bases
    queries = floats(28, 2, 4)
    bases = [floats(30 + i, 40, 4) for i in range(4)]
    for i, b in enumerate(bases):
        cu.knn(b, queries, 3, "ip", cache_key=("index", i))
        assert len(C.RESIDENT) <= 2 and C.RESIDENT.nbytes <= C.RESIDENT.budget()
    cu.knn(bases[3], queries, 3, "ip", cache_key=("index", 3))
    assert C.RESIDENT.hits == 1  # the newest stayed
    cu.knn(bases[0], queries, 3, "ip", cache_key=("index", 0))
    assert C.RESIDENT.hits == 1  # the oldest was evicted
    too_big = floats(40, 200, 4)
    cu.knn(too_big, queries, 3, "ip", cache_key=("big", 0))  # larger than the budget: not kept
    assert C.RESIDENT.nbytes <= C.RESIDENT.budget()


# -- concurrency ---------------------------------------------------------------------------------------


def test_sixteen_threads_match_serial_bit_for_bit(cu, monkeypatch):
    monkeypatch.setattr(C, "PART_MIN", 4)  # several parts per query
    shared = floats(50, 20, 3)
    jobs = []
    for t in range(16):
        metric = METRICS[t % len(METRICS)]
        jobs.append((metric, floats(60 + t, 12 + t, 3), floats(80 + t, 3, 3)))

    def work(t: int):
        metric, base, queries = jobs[t]
        return (
            distance.knn(base, queries, 2, metric, backend="cupy"),
            cu.pairwise(queries, base, metric),
            cu.knn(shared, queries, 3, metric, cache_key=("shared", 0)),
        )

    serial = [work(t) for t in range(16)]
    C.RESIDENT.clear()
    results: list = [None] * 16
    errors: list = []
    start = threading.Barrier(16)

    def run(t: int):
        try:
            start.wait()
            results[t] = work(t)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        (gd, gi), gp, (cd, ci) = got
        (wd, wi), wp, (sd, si) = want
        for a, b in ((gd, wd), (gi, wi), (gp, wp), (cd, sd), (ci, si)):
            np.testing.assert_array_equal(a, b)
    assert len(C.RESIDENT) <= len(METRICS)  # one prepared base per preparation of the shared key
