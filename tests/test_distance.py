"""Oracle tests for simsearch.distance: every backend against scipy's cdist in float64.

Exact arithmetic cases (small integer coordinates) must give identical ids on every backend, ties
to the smaller index; general float data must give the oracle's distances, and the oracle's ids
wherever the gap to the next candidate is larger than float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cdist

from simsearch import distance
from simsearch.backends import _numba_distance, _numpy_distance, available_backends
from simsearch.errors import InvalidArgumentError, InvalidTypeError, SimsearchError

KNN_BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("numba", id="numba"),
    pytest.param("faiss", id="faiss"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
]
METRICS = ["euclidean", "sqeuclidean", "manhattan", "cosine", "ip"]
SCIPY = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "manhattan": "cityblock", "cosine": "cosine"}


@pytest.fixture(params=KNN_BACKENDS)
def be(request) -> str:
    if request.param == "cupy" and "cupy" not in available_backends():
        pytest.skip("CuPy sees no GPU here")
    return request.param


def oracle(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances of the float32 inputs; zero vectors under cosine are at distance 1."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if metric == "ip":
        return 1.0 - x64 @ y64.T
    if metric != "cosine":
        return cdist(x64, y64, SCIPY[metric])
    nx = np.linalg.norm(x64, axis=1)[:, None]
    ny = np.linalg.norm(y64, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cdist(x64, y64, "cosine")
    return np.where((nx == 0) | (ny == 0), 1.0, out)


def oracle_knn(base, queries, k, metric):
    r = oracle(queries, base, metric)
    cols = np.broadcast_to(np.arange(len(base)), r.shape)
    order = np.lexsort((cols, r), axis=-1)[:, :k]
    return r, order


def assert_knn_matches(base, queries, k, metric, dist, idx, tol=2e-5):
    """Distances equal the oracle's k smallest; ids equal the oracle's where not a near-tie."""
    r, order = oracle_knn(base, queries, k, metric)
    want = np.take_along_axis(r, order, axis=1)
    scale = max(1.0, float(np.abs(want).max()))
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (len(queries), k)
    np.testing.assert_allclose(dist, want, rtol=1e-4, atol=tol * scale)
    # each returned id really is at the returned distance
    got = np.take_along_axis(r, idx, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol * scale)
    assert all(len(set(row)) == k for row in idx.tolist())
    # ids may differ from the oracle only among candidates within rounding of each other
    srt = np.sort(r, axis=1)
    for qi in range(len(queries)):
        kth = srt[qi, k - 1]
        clear = np.nonzero(r[qi] < kth - tol * scale - 1e-4 * abs(kth))[0]
        assert set(clear.tolist()) <= set(idx[qi].tolist())


def data(seed, n, d, nq, scale=1.0):
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((n, d)) * scale).astype(np.float32)
    queries = (rng.standard_normal((nq, d)) * scale).astype(np.float32)
    return base, queries


# -- pairwise -------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 17, 128])
@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_matches_cdist(be, metric, dim, seed):
    x, y = data(seed * 1000 + dim, 70, dim, 45, scale=[1.0, 30.0][seed])
    got = distance.pairwise(x, y, metric, backend=be)
    assert got.dtype == np.float32 and got.shape == (70, 45)
    np.testing.assert_allclose(got, oracle(x, y, metric), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "ip"])
def test_pairwise_near_duplicates_keep_relative_precision(be, metric):
    """GEMM cancellation on near-identical vectors is repaired: still within rel 1e-4."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((20, 32)) * 10 + 50).astype(np.float32)
    eps = rng.standard_normal((20, 32)).astype(np.float32) * 1e-3
    y = np.concatenate([x, x + eps, x * np.float32(1.001)]).astype(np.float32)
    got = distance.pairwise(x, y, metric, backend=be)
    want = oracle(x, y, metric)
    atol = 1e-6 if metric in ("cosine", "ip") else 0.0  # 1 - cos of parallel vectors is ~0 in float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)
    assert (np.diagonal(got[:, :20]) == 0).all() if metric != "ip" else True


def test_pairwise_y_none_is_x_with_x():
    x, _ = data(5, 30, 8, 1)
    np.testing.assert_array_equal(distance.pairwise(x, metric="manhattan"), distance.pairwise(x, x, "manhattan"))


def test_cosine_zero_vector_is_distance_one(be):
    x = np.array([[0, 0, 0], [1, 2, 3], [0, 0, 0]], np.float32)
    y = np.array([[0, 0, 0], [3, 2, 1], [-1, -2, -3]], np.float32)
    got = distance.pairwise(x, y, "cosine", backend=be)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[0], 1.0)
    np.testing.assert_array_equal(got[:, 0], 1.0)
    np.testing.assert_allclose(got[1, 2], 2.0, rtol=1e-6)
    d, i = distance.knn(y, x[:1], 3, "cosine", backend=be)
    np.testing.assert_array_equal(d, [[1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(i, [[0, 1, 2]])


# -- knn ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", [(600, 24, 37, 10), (5000, 16, 3, 7), (50, 5, 600, 50)], ids=["mid", "fewq", "manyq"])
def test_knn_matches_oracle(be, metric, shape):
    n, d, nq, k = shape
    base, queries = data(n + d, n, d, nq)
    dist, idx = distance.knn(base, queries, k, metric, backend=be)
    assert_knn_matches(base, queries, k, metric, dist, idx)


@pytest.mark.parametrize("metric", METRICS)
def test_knn_many_small_blocks(monkeypatch, metric):
    """Force tiny blocks so that block merging, base parts and partial tiles are all exercised."""
    monkeypatch.setattr(_numpy_distance, "QBLOCK", 7)
    monkeypatch.setattr(_numpy_distance, "BBLOCK", 13)
    monkeypatch.setattr(_numba_distance, "_GEMM_QBLOCK", 5)
    monkeypatch.setattr(_numba_distance, "_GEMM_BBLOCK", 11)
    base, queries = data(11, 1000, 9, 23)
    base[500:520] = base[3]  # exact duplicates across block and part boundaries
    queries[0] = base[3]
    for name in ("numpy", "numba"):
        dist, idx = distance.knn(base, queries, 15, metric, backend=name)
        assert_knn_matches(base, queries, 15, metric, dist, idx)
        if metric != "ip":
            assert idx[0, :12].tolist() == [3] + list(range(500, 511))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "manhattan", "ip", "cosine"])
def test_exact_ties_go_to_smaller_index(be, metric):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((300, 12)).astype(np.float32)
    dup = rng.standard_normal(12).astype(np.float32)
    where = np.sort(rng.choice(300, 25, replace=False))
    base[where] = dup
    queries = np.stack([dup, dup + 0.01, rng.standard_normal(12).astype(np.float32) + dup]).astype(np.float32)
    for k in (1, 6, 25):
        dist, idx = distance.knn(base, queries, k, metric, backend=be)
        if metric != "ip":  # under ip the duplicates are not necessarily the nearest
            assert idx[0].tolist() == where[:k].tolist()
        for row_d, row_i in zip(dist, idx):
            same = row_d[1:] == row_d[:-1]
            assert (row_i[1:][same] > row_i[:-1][same]).all()


def _f64_oracle_ids(base, queries, k, metric):
    """Ids of the k smallest float64 distances rounded to float32, ties by index (cosine as half
    the squared distance of the unit vectors, which keeps precision near 0)."""
    if metric == "cosine":
        b = base.astype(np.float64) / np.linalg.norm(base.astype(np.float64), axis=1)[:, None]
        q = queries.astype(np.float64) / np.linalg.norm(queries.astype(np.float64), axis=1)[:, None]
        d = 0.5 * ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    else:
        d = oracle(queries, base, metric)
    d32 = d.astype(np.float32)
    cols = np.broadcast_to(np.arange(len(base)), d32.shape)
    return np.lexsort((cols, d32), axis=-1)[:, :k]


@pytest.mark.parametrize("metric", METRICS)
def test_near_ties_far_below_gemm_rounding_are_still_exact(be, metric):
    """200 rows within 1e-6 of the query: a float32 GEMM ranks them at random (its rounding is
    ~1e-6 of |q|^2, their squared distances ~1e-11), so the fast kernel's first 2k + 16 proposals
    miss the true nearest; exact_knn must notice from the error bound and ask again."""
    rng = np.random.default_rng(11)
    base = rng.standard_normal((3000, 19)).astype(np.float32) * 3
    dup = rng.standard_normal(19).astype(np.float32)
    where = np.sort(rng.choice(3000, 200, replace=False))
    base[where] = dup + (rng.standard_normal((200, 19)) * 1e-6).astype(np.float32)
    queries = np.stack([dup, dup]).astype(np.float32)
    dist, idx = distance.knn(base, queries, 4, metric, backend=be)
    assert_knn_matches(base, queries, 4, metric, dist, idx)
    if metric != "ip":  # 1 - x.y ~ -18 here: float32 rounding of the oracle itself may tie differently
        np.testing.assert_array_equal(idx, _f64_oracle_ids(base, queries, 4, metric))


def test_all_equal_distances_give_first_indices(be):
    base = np.ones((40, 4), np.float32)
    for metric in METRICS:
        d, i = distance.knn(base, np.zeros((2, 4), np.float32), 9, metric, backend=be)
        np.testing.assert_array_equal(i, np.tile(np.arange(9), (2, 1)))
        assert (d == d[:, :1]).all()


int_arrays = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float32, st.tuples(st.just(n), st.integers(1, 6)), elements=st.integers(-3, 3).map(float)),
        st.integers(1, 6),
        st.integers(1, n),
    )
)


@given(case=int_arrays, metric=st.sampled_from(["euclidean", "sqeuclidean", "manhattan", "ip"]))
def test_property_exact_arithmetic_identical_ids_everywhere(case, metric):
    """Small integer coordinates make every distance exact: all backends equal the oracle's
    (distance, index) order exactly, ties included."""
    base, nq, k = case
    queries = np.roll(base, 1, axis=0)[: min(nq, len(base))] + 1
    _, want = oracle_knn(base, queries, k, metric)
    for name in ("numpy", "numba", "faiss"):
        dist, idx = distance.knn(base, queries, k, metric, backend=name)
        np.testing.assert_array_equal(idx, want, err_msg=name)
        np.testing.assert_allclose(dist, np.take_along_axis(oracle(queries, base, metric), want, 1), rtol=1e-6)


@given(
    arrays=st.tuples(st.integers(1, 40), st.integers(1, 9), st.integers(1, 8)).flatmap(
        lambda s: st.tuples(
            hnp.arrays(np.float32, (s[0], s[1]), elements=st.floats(-1e3, 1e3, width=32)),
            hnp.arrays(np.float32, (s[2], s[1]), elements=st.floats(-1e3, 1e3, width=32)),
        )
    ),
    metric=st.sampled_from(METRICS),
    k=st.integers(1, 40),
)
def test_property_knn_distances_match_oracle(arrays, metric, k):
    """Returned distances are the oracle's k smallest, up to the documented ranking error of the
    float32 GEMM form (~1e-7 of ‖q‖² + ‖b‖² for L2, of ‖q‖‖b‖ for ip, absolute for cosine)."""
    base, queries = arrays
    k = min(k, len(base))
    qn = float(np.abs(queries).max()) ** 2 * base.shape[1]
    bn = float(np.abs(base).max()) ** 2 * base.shape[1]
    tol = {"sqeuclidean": 1e-5 * (qn + bn), "euclidean": 1e-5 * (qn + bn), "ip": 1e-5 * np.sqrt(qn * bn),
           "cosine": 1e-5, "manhattan": 0.0}[metric] + 1e-30  # float32 flushes below ~1e-38

    def comparable(d):  # compare L2 in the squared domain, where the ranking error is additive
        return d.astype(np.float64) ** 2 if metric == "euclidean" else d

    want = np.sort(oracle(queries, base, metric), axis=1)[:, :k]
    for name in ("numpy", "numba"):
        dist, idx = distance.knn(base, queries, k, metric, backend=name)
        np.testing.assert_allclose(comparable(dist), comparable(want), rtol=1e-4, atol=tol, err_msg=name)
        assert np.all(np.diff(dist, axis=1) >= 0)
        got = np.take_along_axis(oracle(queries, base, metric), idx, axis=1)
        np.testing.assert_allclose(dist, got, rtol=1e-5, atol=1e-6)  # returned distances are exact


def test_float64_is_accepted_and_equals_float32_of_it(be):
    base, queries = data(9, 200, 10, 20)
    b64 = base.astype(np.float64) + 1e-9
    d64, i64 = distance.knn(b64, queries.astype(np.float64), 5, "euclidean", backend=be)
    d32, i32 = distance.knn(b64.astype(np.float32), queries, 5, "euclidean", backend=be)
    np.testing.assert_array_equal(i64, i32)
    np.testing.assert_array_equal(d64, d32)


def test_metric_aliases_and_case():
    base, queries = data(2, 50, 4, 3)
    for alias, name in [("L2", "euclidean"), ("l1", "manhattan"), ("cityblock", "manhattan"), ("Cosine", "cosine"),
                        ("dot", "ip"), ("l2sq", "sqeuclidean")]:
        assert distance.normalize_metric(alias) == name
        np.testing.assert_array_equal(distance.knn(base, queries, 3, alias)[1], distance.knn(base, queries, 3, name)[1])


def test_blas_threads_restored_after_knn():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    base, queries = data(4, 3000, 16, 40)
    distance.knn(base, queries, 5, "euclidean", backend="numba")
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert after[: len(before)] == before


def test_empty_queries():
    base, _ = data(1, 10, 3, 1)
    d, i = distance.knn(base, np.empty((0, 3), np.float32), 4)
    assert d.shape == i.shape == (0, 4)


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"queries": [[np.nan, 0, 0]]}, InvalidArgumentError, "finite"),
        ({"base": [[0, np.inf, 0]] * 4}, InvalidArgumentError, "finite"),
        ({"queries": [[1e300, 0, 0]]}, InvalidArgumentError, "float32"),
        ({"queries": [[1.0, 2.0]]}, InvalidArgumentError, "3 columns"),
        ({"queries": [1.0, 2.0, 3.0]}, InvalidArgumentError, "2-d"),
        ({"base": np.zeros((0, 3))}, InvalidArgumentError, "at least one"),
        ({"base": np.zeros((4, 0)), "queries": np.zeros((1, 0))}, InvalidArgumentError, "at least one dimension"),
        ({"k": 0}, InvalidArgumentError, "'k' parameter of knn must be an int in \\[1, 4\\]"),
        ({"k": 5}, InvalidArgumentError, "Got 5"),
        ({"k": 2.0}, InvalidTypeError, "'k'"),
        ({"metric": "hamming"}, InvalidArgumentError, "metric"),
        ({"backend": "tpu"}, InvalidArgumentError, "backend"),
        ({"queries": [["a", "b", "c"]]}, InvalidTypeError, "dtype"),
        ({"queries": np.ones((1, 3), complex)}, InvalidTypeError, "dtype"),
        ({"queries": None}, InvalidTypeError, "None"),
    ],
)
def test_knn_bad_inputs_raise_typed_errors(kwargs, err, match):
    args = {"base": np.ones((4, 3), np.float32), "queries": np.ones((1, 3), np.float32), "k": 2, **kwargs}
    with pytest.raises(err, match=match) as info:
        distance.knn(**args)
    assert isinstance(info.value, SimsearchError)
    assert isinstance(info.value, ValueError if err is InvalidArgumentError else TypeError)


def test_pairwise_bad_inputs():
    with pytest.raises(InvalidArgumentError, match="columns"):
        distance.pairwise(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InvalidArgumentError, match="finite"):
        distance.pairwise(np.array([[np.nan]]), np.ones((2, 1)))
    with pytest.raises(InvalidArgumentError, match="metric"):
        distance.pairwise(np.ones((2, 3)), metric="jaccard")


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("metric", METRICS)
def test_cupy_matches_numpy_on_blocks(metric):
    if "cupy" not in available_backends():
        pytest.skip("CuPy sees no GPU here")
    from simsearch.backends import _cuda_distance

    base, queries = data(21, 20_000, 48, 700)
    base[9000:9010] = base[1]
    queries[0] = base[1]
    old = (_cuda_distance.QBLOCK, _cuda_distance.BBLOCK)
    try:
        _cuda_distance.QBLOCK, _cuda_distance.BBLOCK = 256, 4096  # several query and base blocks
        dist, idx = distance.knn(base, queries, 16, metric, backend="cupy")
    finally:
        _cuda_distance.QBLOCK, _cuda_distance.BBLOCK = old
    assert_knn_matches(base, queries, 16, metric, dist, idx)
    ref_d, ref_i = distance.knn(base, queries, 16, metric, backend="numpy")
    np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-6)
    if metric != "ip":
        assert idx[0, :11].tolist() == [1] + list(range(9000, 9010))


@pytest.mark.parametrize("scale", [1e-30, 1e25], ids=["tiny", "huge"])
@pytest.mark.parametrize("metric", METRICS)
def test_far_from_unit_scale_ranks_like_unit_scale(be, metric, scale):
    """float32 squares of these vectors under/overflow; ranking is rescaled exactly, never NaN.
    (sqeuclidean and ip distances themselves saturate in float32 at these scales: 0, inf, 1.)"""
    base, queries = data(31, 300, 16, 9)
    d1, i1 = distance.knn(base, queries, 5, metric, backend=be)
    b64, q64 = base.astype(np.float64) * scale, queries.astype(np.float64) * scale
    d2, i2 = distance.knn(b64, q64, 5, metric, backend=be)
    assert not np.isnan(d2).any()
    if metric in ("euclidean", "manhattan", "cosine"):
        np.testing.assert_array_equal(i2, i1)
    want = np.take_along_axis(oracle(q64.astype(np.float32), b64.astype(np.float32), metric), i2, axis=1)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(d2, want.astype(np.float32), rtol=1e-5, atol=1e-6 if metric in ("cosine", "ip") else 0)
    p = distance.pairwise(q64, b64[:20], metric, backend=be)
    assert not np.isnan(p).any()
    if metric in ("euclidean", "manhattan", "cosine"):
        np.testing.assert_allclose(p, oracle(q64.astype(np.float32), b64[:20].astype(np.float32), metric), rtol=1e-4)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12),
                  elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_max_abs_matches_numpy(x):
    """max_abs (from max and min, no temporary) equals np.abs(x).max(), 0.0 for an empty array."""
    want = float(np.abs(x).max()) if x.size else 0.0
    assert distance.max_abs(x) == want
