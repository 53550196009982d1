"""VectorIndex: exact search against brute force, approximate recall against exact=True, mutation,
serialisation and typed errors."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch import distance
from simsearch.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    StorageCorruptionError,
    UnsupportedFormatError,
)
from simsearch.vector_index import FORMAT_VERSION, BatchMatches, Matches, VectorIndex

METRICS = ["euclidean", "sqeuclidean", "manhattan", "cosine", "ip"]


def embeddings(n, dim, seed, nq=0):
    """Low intrinsic dimension plus noise, like real embeddings; queries are noisy base points."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, dim)).astype(np.float32)
    x = rng.standard_normal((n, 8)).astype(np.float32) @ w + 0.2 * rng.standard_normal((n, dim)).astype(np.float32)
    if not nq:
        return x
    q = x[rng.choice(n, nq, replace=False)] + 0.5 * rng.standard_normal((nq, dim)).astype(np.float32)
    return x, q.astype(np.float32)


def recall(approx: BatchMatches, exact: BatchMatches) -> float:
    hits = [len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) for a, e in zip(approx.keys, exact.keys)]
    return sum(hits) / max(1, int((exact.keys >= 0).sum()))


def brute(ids, vectors, queries, k, metric):
    d, rows = distance.knn(vectors, queries, k, metric, backend="numpy")
    return d, np.asarray(ids)[rows]


# -- exact -----------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("backend", ["numpy", "numba", "faiss"])
def test_flat_search_is_brute_force(metric, backend):
    x, q = embeddings(800, 24, 1, nq=30)
    ids = np.random.default_rng(0).permutation(10_000)[:800].astype(np.int64) * 11 + 2**40
    index = VectorIndex(dim=24, metric=metric, backend=backend)
    index.add(ids, x)
    res = index.search(q, 7)
    d, want = brute(ids, x, q, 7, metric)
    np.testing.assert_array_equal(res.keys, want)
    np.testing.assert_allclose(res.distances, d, rtol=1e-6)
    assert res.keys.dtype == np.int64 and res.distances.dtype == np.float32
    np.testing.assert_array_equal(res.counts, 7)


def test_single_query_returns_matches_and_batch_iterates():
    x = embeddings(50, 8, 2)
    index = VectorIndex(dim=8)
    index.add(np.arange(50) + 100, x)
    m = index.search(x[3], 4)
    assert isinstance(m, Matches) and m.keys[0] == 103 and m.distances[0] == 0.0 and len(m) == 4
    assert m.to_list()[0] == (103, 0.0)
    batch = index.search(x[:3].tolist(), 2)
    assert isinstance(batch, BatchMatches) and len(batch) == 3
    assert [mm.keys[0] for mm in batch] == [100, 101, 102]


def test_k_larger_than_collection_pads():
    index = VectorIndex(dim=3, metric="manhattan")
    empty = index.search(np.zeros((2, 3)), 4)
    assert (empty.keys == -1).all() and np.isinf(empty.distances).all() and (empty.counts == 0).all()
    index.add([7, 8], [[0, 0, 1], [0, 0, 3]])
    res = index.search(np.zeros((1, 3)), 4)
    assert res.keys.tolist() == [[7, 8, -1, -1]]
    assert res.distances[0, :2].tolist() == [1.0, 3.0] and np.isinf(res.distances[0, 2:]).all()
    assert res.counts.tolist() == [2] and len(res[0]) == 2


def test_exact_ties_go_to_the_earlier_row():
    index = VectorIndex(dim=2)
    index.add([50, 10, 30, 20], [[1, 1], [1, 1], [0, 0], [1, 1]])
    assert index.search([1, 1], 3).keys.tolist() == [50, 10, 20]


def test_reconstruct():
    x = embeddings(20, 5, 3)
    index = VectorIndex(dim=5)
    index.add(np.arange(20) * 2, x)
    np.testing.assert_array_equal(index.reconstruct(6), x[3])
    np.testing.assert_array_equal(index.reconstruct([6, 0]), x[[3, 0]])
    assert index.reconstruct(np.int64(2)).shape == (5,)
    with pytest.raises(NotFoundError, match="id 7"):
        index.reconstruct(7)


def test_float64_vectors_are_stored_as_float32():
    index = VectorIndex(dim=2)
    index.add([1], np.array([[0.1, 0.2]], np.float64))
    assert index.reconstruct(1).dtype == np.float32
    np.testing.assert_array_equal(index.reconstruct(1), np.float32([0.1, 0.2]))


# -- mutation --------------------------------------------------------------------------------
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 40), min_size=1, max_size=8)), max_size=25))
@settings(max_examples=60, deadline=None)
def test_random_add_remove_matches_a_dict_model(ops):
    """Any history of adds and removes leaves exactly the model's vectors, found exactly."""
    rng = np.random.default_rng(0)
    index = VectorIndex(dim=4, metric="manhattan")
    model: dict[int, np.ndarray] = {}
    for is_add, keys in ops:
        keys = list(dict.fromkeys(keys))
        if is_add:
            fresh = [k for k in keys if k not in model]
            vecs = rng.integers(-3, 4, (len(fresh), 4)).astype(np.float32)
            index.add(fresh, vecs.reshape(len(fresh), 4))
            model.update(zip(fresh, vecs))
        else:
            assert index.remove(keys, missing_ok=True) == sum(k in model for k in keys)
            for k in keys:
                model.pop(k, None)
    assert len(index) == len(model) and sorted(index.ids.tolist()) == sorted(model)
    for k, v in model.items():
        assert k in index
        np.testing.assert_array_equal(index.reconstruct(k), v)
    if model:
        q = np.zeros((1, 4), np.float32)
        res = index.search(q, len(model))
        want = sorted(np.abs(np.stack(list(model.values()))).sum(axis=1).tolist())
        assert res.distances[0].tolist() == want


def test_add_and_remove_errors_are_atomic():
    index = VectorIndex(dim=2)
    index.add([1, 2], [[0, 0], [1, 1]])
    with pytest.raises(AlreadyExistsError, match="id 2"):
        index.add([3, 2], [[2, 2], [3, 3]])
    with pytest.raises(AlreadyExistsError, match="more than once"):
        index.add([4, 4], [[2, 2], [3, 3]])
    with pytest.raises(NotFoundError, match="id 9"):
        index.remove([1, 9])
    assert len(index) == 2 and 3 not in index and 1 in index
    assert index.remove([1, 9], missing_ok=True) == 1
    assert index.ids.tolist() == [2]


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda ix: ix.add([1], [[0.0, 1.0, 2.0]]), InvalidArgumentError, "2 columns"),
        (lambda ix: ix.add([1, 2], [[0.0, 1.0]]), InvalidArgumentError, "2 ids but 1 vectors"),
        (lambda ix: ix.add([1], [[np.nan, 1.0]]), InvalidArgumentError, "finite"),
        (lambda ix: ix.add(["a"], [[0.0, 1.0]]), InvalidTypeError, "dtype"),
        (lambda ix: ix.add([1.5], [[0.0, 1.0]]), InvalidTypeError, "dtype"),
        (lambda ix: ix.add([[1]], [[0.0, 1.0]]), InvalidArgumentError, "1-d"),
        (lambda ix: ix.add(np.array([2**63], np.uint64), [[0.0, 1.0]]), InvalidArgumentError, "int64"),
        (lambda ix: ix.add([-1], [[0.0, 1.0]]), InvalidArgumentError, "2\\*\\*63"),
        (lambda ix: ix.search([[0.0, 1.0, 2.0]], 1), InvalidArgumentError, "2 columns"),
        (lambda ix: ix.search([[np.inf, 1.0]], 1), InvalidArgumentError, "finite"),
        (lambda ix: ix.search([[0.0, 1.0]], 0), InvalidArgumentError, "'k' parameter of search"),
        (lambda ix: ix.search([[0.0, 1.0]], "3"), InvalidTypeError, "'k'"),
    ],
)
def test_bad_inputs_raise_typed_errors(call, err, match):
    index = VectorIndex(dim=2)
    with pytest.raises(err, match=match):
        call(index)
    assert len(index) == 0


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"dim": 0}, InvalidArgumentError, "'dim'"),
        ({"dim": 4, "metric": "hamming"}, InvalidArgumentError, "metric"),
        ({"dim": 4, "kind": "lsh"}, InvalidArgumentError, "kind"),
        ({"dim": 4, "kind": "hnsw", "M": 1}, InvalidArgumentError, "'M'"),
        ({"dim": 4, "backend": "tpu"}, InvalidArgumentError, "backend"),
        ({"dim": 4.0}, InvalidTypeError, "'dim'"),
    ],
)
def test_constructor_validates(kwargs, err, match):
    with pytest.raises(err, match=match):
        VectorIndex(**kwargs)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        VectorIndex(8, "cosine")  # type: ignore[misc]


# -- approximate -----------------------------------------------------------------------------
FLOORS = {"ivf": 0.85, "hnsw": 0.95}
# Maximum inner product is harder for IVF: cells built by L2 k-means do not bound inner products.
FLOOR_IVF_IP = 0.75


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "ip", "manhattan"])
def test_approximate_recall_against_exact(kind, metric, record_property):
    x, q = embeddings(4000, 32, 5, nq=100)
    index = VectorIndex(dim=32, metric=metric, kind=kind, seed=1)
    index.add(np.arange(4000) * 3, x)
    approx = index.search(q, 10)
    exact = index.search(q, 10, exact=True)
    r = recall(approx, exact)
    record_property(f"recall@10 {kind} {metric}", r)
    print(f"recall@10 {kind}/{metric}: {r:.3f}")
    assert index.is_trained
    assert r >= (FLOOR_IVF_IP if (kind, metric) == ("ivf", "ip") else FLOORS[kind])
    # returned distances are exact for the returned ids, rows sorted
    assert np.all(np.diff(approx.distances, axis=1) >= 0)
    rows = {k: i for i, k in enumerate((np.arange(4000) * 3).tolist())}
    some = approx.keys[:5, :3]
    full = distance.pairwise(q[:5], x[[rows[k] for k in some.ravel().tolist()]], metric)
    want = np.array([full[i, 3 * i : 3 * i + 3] for i in range(5)])
    np.testing.assert_allclose(approx.distances[:5, :3], want, rtol=1e-5, atol=1e-6)


def test_ivf_searches_exactly_until_trained():
    x, q = embeddings(300, 16, 6, nq=10)
    index = VectorIndex(dim=16, kind="ivf")
    index.add(np.arange(300), x)
    res = index.search(q, 5)
    assert not index.is_trained
    np.testing.assert_array_equal(res.keys, index.search(q, 5, exact=True).keys)
    with_nlist = VectorIndex(dim=16, kind="ivf", nlist=4, nprobe=4)
    with_nlist.add(np.arange(300), x)
    assert with_nlist.train() and with_nlist.is_trained
    # nprobe == nlist scans everything: exact again
    np.testing.assert_array_equal(with_nlist.search(q, 5).keys, res.keys)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_removed_ids_never_come_back(kind):
    x, q = embeddings(3000, 16, 7, nq=40)
    ids = np.arange(3000) + 10**12
    index = VectorIndex(dim=16, kind=kind, nlist=16, nprobe=16)
    index.add(ids, x)
    index.search(q, 10)  # builds the faiss structure
    gone = ids[::3]
    index.remove(gone[:100])  # HNSW: tombstones
    res = index.search(q, 10)
    assert not np.isin(res.keys, gone[:100]).any() and (res.counts == 10).all()
    index.remove(gone[100:])  # a third removed: HNSW rebuilds, IVF renumbers its labels
    res = index.search(q, 10)
    assert not np.isin(res.keys, gone).any() and (res.counts == 10).all()
    assert len(index._row_of_label) == len(index) == 2000
    assert recall(res, index.search(q, 10, exact=True)) >= 0.9
    index.add(gone[:5], x[::3][:5])  # re-adding works
    assert set(gone[:5].tolist()) <= set(index.search(x[::3][:5], 1).keys.ravel().tolist())


# -- serialisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_bytes_roundtrip(kind):
    x, q = embeddings(2000, 16, 8, nq=20)
    index = VectorIndex(dim=16, metric="cosine", kind=kind, nlist=8, M=8)
    index.add(np.arange(2000) * 5, x)
    before = index.search(q, 5)
    index.remove(np.arange(0, 500) * 5)
    index.add([1, 2], x[:2])  # pending rows, not yet in the faiss structure
    before = index.search(q, 5)
    again = VectorIndex.from_bytes(index.to_bytes())
    assert (again.dim, again.metric, again.kind, len(again)) == (16, "cosine", kind, len(index))
    np.testing.assert_array_equal(again.ids, index.ids)
    np.testing.assert_array_equal(again.vectors, index.vectors)
    after = again.search(q, 5)
    np.testing.assert_array_equal(after.keys, before.keys)
    np.testing.assert_array_equal(after.distances, before.distances)
    assert again.is_trained == index.is_trained
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(clone.search(q, 5).keys, before.keys)


def test_corrupt_truncated_and_future_bytes_are_refused():
    index = VectorIndex(dim=3)
    index.add([1, 2], [[0, 0, 1], [1, 0, 0]])
    data = bytearray(index.to_bytes())
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x40
    with pytest.raises(StorageCorruptionError, match="checksum"):
        VectorIndex.from_bytes(bytes(flipped))
    with pytest.raises(StorageCorruptionError):
        VectorIndex.from_bytes(bytes(data[:-5]))
    with pytest.raises(StorageCorruptionError, match="magic"):
        VectorIndex.from_bytes(b"not an index at all, not at all")
    import hashlib

    future = bytearray(data[:-16])
    struct.pack_into("<I", future, 8, FORMAT_VERSION + 1)
    future += hashlib.blake2b(bytes(future), digest_size=16).digest()
    with pytest.raises(UnsupportedFormatError, match="newer"):
        VectorIndex.from_bytes(bytes(future))
