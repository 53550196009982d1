"""AnnBlock (simsearch.index._ann): recall against exact brute force on every metric and kind,
exact distances, the allow bitmap (faiss ID selectors and the exact-scan fallback), persistence."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.distance import knn
from simsearch.errors import InvalidArgumentError, StorageCorruptionError
from simsearch.index import _ann
from simsearch.index._ann import AnnBlock, AnnParams, resolve_kind

pytest.importorskip("faiss")

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
KINDS = ("flat", "hnsw", "ivf")


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around 40 centres (real embeddings are clustered; pure Gaussian noise is the
    hardest case for IVF and not what an index is for)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32) * 4
    return (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    x = _clustered(3000, 16, 0)
    q = _clustered(60, 16, 1)
    rows = np.arange(3000, dtype=np.int64) * 3 + 7  # rows are the owner's numbers, not positions
    return rows, x, q


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_recall_and_exact_distances(data, metric, kind):
    rows, x, q = data
    block = AnnBlock.build(rows, x, metric=metric, kind=kind, params=AnnParams(nprobe=16, ef_search=64))
    assert block.kind == kind
    res = block.search(q, 10)
    truth_d, truth_i = knn(x, q, 10, metric)
    assert res.path == ("exact" if kind == "flat" else "ann")
    recall = _recall(res.rows, rows[truth_i])
    assert recall >= (1.0 if kind == "flat" else 0.9), recall
    # the distances reported are the exact ones of the rows found, ascending
    pos = np.searchsorted(rows, res.rows)
    for i in range(len(q)):
        exact = knn(x[pos[i]], q[i:i + 1], 10, metric)[0][0]
        np.testing.assert_allclose(np.sort(res.distances[i]), exact, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(res.distances[i]) >= 0)
    if kind == "flat":
        np.testing.assert_array_equal(res.rows, rows[truth_i])
        np.testing.assert_allclose(res.distances, truth_d, rtol=1e-6, atol=1e-6)
    oracle = block.search(q, 10, exact=True)
    assert oracle.path == "exact"
    np.testing.assert_array_equal(oracle.rows, rows[truth_i])


def test_auto_kind_threshold():
    assert resolve_kind("auto", _ann.AUTO_FLAT_BELOW - 1) == "flat"
    assert resolve_kind("auto", _ann.AUTO_FLAT_BELOW) == "hnsw"
    assert resolve_kind("ivf", 10) == "ivf"
    x = _clustered(200, 8, 2)
    assert AnnBlock.build(np.arange(200), x, kind="auto").kind == "flat"


def test_cosine_zero_vector_is_at_distance_one():
    x = _clustered(500, 8, 3)
    x[7] = 0.0
    for kind in KINDS:
        block = AnnBlock.build(np.arange(500), x, metric="cosine", kind=kind)
        res = block.search(np.zeros((1, 8), np.float32), 5, exact=(kind == "flat"))
        assert np.all(res.distances[0] == pytest.approx(1.0))
        res = block.search(x[:1], 500, allow=np.arange(500) == 7)
        assert res.rows[0, 0] == 7 and res.distances[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ("hnsw", "ivf"))
@pytest.mark.parametrize("metric", METRICS)
def test_faiss_selector_path(data, kind, metric, monkeypatch):
    """With the exact-scan limits lowered, the filtered search goes through faiss's ID selector:
    only allowed rows come back, and recall against the filtered brute force holds."""
    monkeypatch.setattr(_ann, "EXACT_SCAN_MAX", 100)
    rows, x, q = data
    allow = np.random.default_rng(5).random(len(x)) < 0.3
    block = AnnBlock.build(rows, x, metric=metric, kind=kind, params=AnnParams(nprobe=16))
    res = block.search(q, 10, allow=allow)
    assert res.path == "ann_filtered"
    assert np.isin(res.rows, rows[allow]).all()
    sub = np.flatnonzero(allow)
    truth = rows[sub[knn(x[sub], q, 10, metric)[1]]]
    assert _recall(res.rows, truth) >= 0.85


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), keep=st.floats(0.0, 1.0), k=st.integers(1, 30),
       metric=st.sampled_from(METRICS), kind=st.sampled_from(KINDS))
def test_filtered_exact_path_equals_brute_force(seed, keep, k, metric, kind):
    """A filter keeping at most EXACT_SCAN_MAX rows is an exact scan on every kind: results equal
    brute force over the allowed rows (ties to the smaller row), padded with -1."""
    rng = np.random.default_rng(seed)
    n = 400
    x = np.round(rng.standard_normal((n, 6)), 1).astype(np.float32)  # rounding makes ties
    q = np.round(rng.standard_normal((3, 6)), 1).astype(np.float32)
    rows = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
    allow = rng.random(n) < keep
    block = AnnBlock.build(rows, x, metric=metric, kind=kind)
    res = block.search(q, k, allow=allow)
    assert res.path == "exact"
    sub = np.flatnonzero(allow)
    kk = min(k, len(sub))
    if kk:
        d, i = knn(x[sub], q, kk, metric)
        np.testing.assert_array_equal(res.rows[:, :kk], rows[sub[i]])
        np.testing.assert_allclose(res.distances[:, :kk], d, rtol=1e-6, atol=1e-6)
    assert np.all(res.rows[:, kk:] == -1) and np.all(np.isinf(res.distances[:, kk:]))


@pytest.mark.parametrize("kind", KINDS)
def test_persistence_round_trip(data, tmp_path, kind):
    rows, x, q = data
    block = AnnBlock.build(rows, x, metric="manhattan", kind=kind, params=AnnParams(nprobe=9))
    stem = str(tmp_path / "seg1")
    block.save(stem, extra={"owner": "c1", "upto": 42})
    back = AnnBlock.open(stem)
    assert (back.kind, back.metric, back.params, back.extra) == (kind, "manhattan", block.params,
                                                                 {"owner": "c1", "upto": 42})
    assert isinstance(back.vectors, np.memmap) or isinstance(back.vectors.base, np.memmap)
    a, b = block.search(q, 10), back.search(q, 10)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.distances, b.distances)
    allow = np.arange(len(x)) % 4 == 0
    np.testing.assert_array_equal(block.search(q, 5, allow=allow).rows, back.search(q, 5, allow=allow).rows)
    assert os.path.exists(stem + ".faiss") == (kind != "flat")


@pytest.mark.parametrize("damage", ("flip_data", "flip_faiss", "truncate", "drop_faiss", "bad_magic"))
def test_corrupt_block_is_refused(data, tmp_path, damage):
    rows, x, _ = data
    stem = str(tmp_path / "seg")
    AnnBlock.build(rows, x, kind="hnsw").save(stem)
    ann, fai = stem + ".ann", stem + ".faiss"
    if damage == "flip_data":
        with open(ann, "r+b") as f:
            f.seek(os.path.getsize(ann) - 100)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x40]))
    elif damage == "flip_faiss":
        with open(fai, "r+b") as f:
            f.seek(os.path.getsize(fai) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
    elif damage == "truncate":
        os.truncate(ann, os.path.getsize(ann) - 8)
    elif damage == "drop_faiss":
        os.unlink(fai)
    else:
        with open(ann, "r+b") as f:
            f.write(b"NOTANANN")
    with pytest.raises(StorageCorruptionError):
        AnnBlock.open(stem)


def test_bad_inputs():
    x = _clustered(50, 4, 4)
    with pytest.raises(InvalidArgumentError):
        AnnBlock.build(np.arange(49), x)
    with pytest.raises(InvalidArgumentError):
        AnnBlock.build(np.arange(50)[::-1].copy(), x)
    block = AnnBlock.build(np.arange(50), x)
    with pytest.raises(InvalidArgumentError):
        block.search(x[:1], 3, allow=np.ones(49, bool))
    with pytest.raises(InvalidArgumentError):
        block.search(np.ones((1, 5), np.float32), 3)
    empty = AnnBlock.build(np.empty(0, np.int64), np.empty((0, 4), np.float32), kind="hnsw")
    res = empty.search(x[:2], 3)
    assert np.all(res.rows == -1)


@pytest.mark.parametrize("kind", ("hnsw", "ivf"))
def test_external_data_round_trip_and_mismatch(data, tmp_path, kind):
    """``save(data=False)`` keeps only the header and the faiss file (the owner holds the vectors);
    ``open`` takes them back and refuses rows or vectors of another size."""
    rows, x, q = data
    block = AnnBlock.build(rows, x, kind=kind, params=AnnParams(nprobe=16))
    stem = str(tmp_path / "ext")
    block.save(stem, extra={"seg": 1}, data=False)
    assert os.path.getsize(stem + ".ann") < 4096  # no copy of the vectors
    back = AnnBlock.open(stem, rows=rows, vectors=x)
    assert back.extra == {"seg": 1}
    np.testing.assert_array_equal(back.search(q, 10).rows, block.search(q, 10).rows)
    with pytest.raises(StorageCorruptionError):
        AnnBlock.open(stem)
    with pytest.raises(StorageCorruptionError):
        AnnBlock.open(stem, rows=rows[:-1], vectors=x[:-1])


def test_build_stops_between_batches(data, monkeypatch):
    monkeypatch.setattr(_ann, "ADD_BATCH", 100)
    rows, x, _ = data
    polls = []

    def stop():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(_ann.BuildCancelled):
        AnnBlock.build(rows, x, kind="hnsw", should_stop=stop)
    assert len(polls) == 4  # three batches added, stopped before the fourth


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 60), nq=st.integers(1, 5), k=st.integers(1, 12),
       parts=st.integers(1, 4), metric=st.sampled_from(("sqeuclidean", "manhattan")))
def test_top_k_ranks_every_part_once_like_brute_force(seed, n, nq, k, parts, metric):
    """top_k over parts that split the rows (some with their distances computed, some by the
    exact pair kernel from a base and positions) equals a brute-force ranking of all rows by
    (distance, row). Small integer vectors make ties common and every distance exact."""
    from simsearch.backends import get_knn_backend
    rng = np.random.default_rng(seed)
    dim = 3
    x = rng.integers(-2, 3, (n, dim)).astype(np.float32)
    q = rng.integers(-2, 3, (nq, dim)).astype(np.float32)
    rows = rng.choice(10 * n + 10, n, replace=False).astype(np.int64)
    diff = q[:, None, :].astype(np.float64) - x[None].astype(np.float64)
    full = (diff ** 2).sum(-1) if metric == "sqeuclidean" else np.abs(diff).sum(-1)
    group = rng.integers(0, parts, n)
    cands = []
    for g in range(parts):
        at = np.flatnonzero(group == g)
        pad = int(rng.integers(0, 3))  # slots without a candidate
        if rng.random() < 0.5:  # distances known (an exact scan's answer)
            r = np.concatenate([rows[at], np.full(pad, -1)]).astype(np.int64)
            d = np.concatenate([full[:, at], np.full((nq, pad), np.inf)], axis=1).astype(np.float32)
            cands.append(_ann.Candidates("exact", np.tile(r, (nq, 1)), d))
        else:  # to be re-scored from the block's vectors at these positions
            base = x[at]
            pos = np.concatenate([np.arange(len(at)), np.full(pad, -1)]).astype(np.int64)
            r = np.where(pos >= 0, rows[at][np.maximum(pos, 0)] if len(at) else -1, -1)
            cands.append(_ann.Candidates("ann", np.tile(r, (nq, 1)), None, base, np.tile(pos, (nq, 1))))
    d, r = _ann.top_k(cands, q, k, metric, get_knn_backend("numba"))
    for i in range(nq):
        order = np.lexsort((rows, full[i]))[:k]
        m = len(order)
        assert r[i, :m].tolist() == rows[order].tolist()
        assert d[i, :m].tolist() == full[i, order].astype(np.float32).tolist()
        assert (r[i, m:] == -1).all() and np.isinf(d[i, m:]).all()


def test_small_searches_run_on_one_openmp_thread_of_their_own():
    """A search of a few queries sets faiss's OpenMP team to one thread in its own thread only;
    a large batch gets the default team back, and another thread's team is never changed."""
    import threading

    import faiss
    main_before = faiss.omp_get_max_threads()
    seen = {}

    def worker():
        default = faiss.omp_get_max_threads()
        _ann._omp_threads(faiss, 1)
        seen["small"] = faiss.omp_get_max_threads()
        _ann._omp_threads(faiss, _ann.SERIAL_QUERIES + 1)
        seen["large"] = faiss.omp_get_max_threads()
        seen["default"] = default
        _ann._omp_threads(faiss, 1)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["small"] == 1
    assert seen["large"] == seen["default"]
    assert faiss.omp_get_max_threads() == main_before


def _merged_case(data, drop_every: int):
    """A base block over 2,000 of the data's rows, and a 'merged' set: the base's rows minus
    every drop_every-th, plus 1,000 rows the base lacks, interleaved with them by row."""
    rows, x, q = data
    in_base = np.arange(len(rows)) % 3 != 0
    base_rows, base_x = rows[in_base], x[in_base]
    keep = np.ones(len(rows), bool)
    keep[np.flatnonzero(in_base)[::drop_every]] = False
    return base_rows, base_x, rows[keep], x[keep], rows[~keep], q


@pytest.mark.parametrize("kind", ("hnsw", "ivf"))
@pytest.mark.parametrize("metric", ("euclidean", "cosine"))
def test_grown_block_answers_like_a_fresh_one_and_never_returns_a_dropped_row(data, tmp_path, kind, metric):
    base_rows, base_x, rows, x, dropped, q = _merged_case(data, drop_every=25)
    params = AnnParams(nprobe=16)
    base = AnnBlock.build(base_rows, base_x, metric=metric, kind=kind, params=params)
    before = base.search(q, 10)
    grown = AnnBlock.grown(base, rows, x)
    assert grown is not None and grown.nodes is not None
    assert grown._index.ntotal == len(base_rows) + (len(rows) - (len(base_rows) - len(dropped)))
    assert base._index.ntotal == len(base_rows)  # the base is untouched and answers as before
    np.testing.assert_array_equal(base.search(q, 10).rows, before.rows)
    truth = AnnBlock.build(rows, x, metric=metric, kind="flat").search(q, 10)
    allow = np.arange(len(rows)) % 2 == 0
    truth_f = AnnBlock.build(rows, x, metric=metric, kind="flat").search(q, 10, allow=allow)
    live = np.arange(len(rows)) % 7 != 0

    def check(block):
        res = block.search(q, 10)
        assert res.path == "ann" and _recall(res.rows, truth.rows) >= 0.95
        assert not np.isin(res.rows, dropped).any()
        got = block.search(q, 10, allow=allow, live=live)
        assert np.isin(got.rows[got.rows >= 0], rows[allow & live]).all()
        assert _recall(got.rows, truth_f.rows[:, :5]) >= 0.8  # (the live mask removes 1/7 of the truth)
        exact = block.search(q, 10, exact=True)
        np.testing.assert_array_equal(exact.rows, truth.rows)
        for i in range(len(q)):  # the distances reported are the exact ones
            where = {r: d for r, d in zip(truth.rows[i], truth.distances[i])}
            for r, d in zip(res.rows[i], res.distances[i]):
                if r in where:
                    assert d == pytest.approx(where[r], rel=1e-6, abs=1e-6)
        return res

    first = check(grown)
    for data_in_file in (True, False):
        stem = str(tmp_path / f"g{data_in_file}")
        grown.save(stem, data=data_in_file)
        back = AnnBlock.open(stem) if data_in_file else AnnBlock.open(stem, rows=rows, vectors=x)
        np.testing.assert_array_equal(back.nodes, grown.nodes)
        np.testing.assert_array_equal(check(back).rows, first.rows)
    again = AnnBlock.grown(back, np.concatenate([rows, [10**6]]), np.concatenate([x, x[:1]]))  # grown twice
    assert again is not None and len(again.nodes) == len(grown.nodes) + 1
    assert not np.isin(again.search(q, 10).rows, dropped).any()


def test_grown_refuses_too_many_dead_nodes_and_flat_bases(data):
    base_rows, base_x, rows, x, _, _ = _merged_case(data, drop_every=4)  # a quarter of the base gone
    base = AnnBlock.build(base_rows, base_x, kind="hnsw")
    assert AnnBlock.grown(base, rows, x) is None
    assert AnnBlock.grown(AnnBlock.build(base_rows, base_x, kind="flat"), rows, x) is None
    assert AnnBlock.grown(base, np.arange(5) + 10**6, x[:5]) is None  # covers none of the rows
    same = AnnBlock.grown(base, base_rows, base_x)  # nothing dropped, nothing added: no node map
    assert same is not None and same.nodes is None


def test_grown_block_with_a_damaged_node_map_is_refused(data, tmp_path):
    base_rows, base_x, rows, x, _, _ = _merged_case(data, drop_every=25)
    grown = AnnBlock.grown(AnnBlock.build(base_rows, base_x, kind="hnsw"), rows, x)
    stem = str(tmp_path / "g")
    grown.save(stem, data=False)
    ann = stem + ".ann"
    with open(ann, "r+b") as f:  # the node map is the file's tail
        f.seek(os.path.getsize(ann) - 20)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(StorageCorruptionError):
        AnnBlock.open(stem, rows=rows, vectors=x)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 700), slice_bytes=st.sampled_from([1, 7, 64, 256, 1 << 24]), seed=st.integers(0, 9))
def test_file_digest_is_the_xxh3_of_the_bytes(tmp_path_factory, size, slice_bytes, seed):
    """_file_digest hashes the file through a mapping in slices: the same XXH3-64 as hashing its
    bytes at once, whatever the size against the slice (empty, shorter, exact multiples, a tail)."""
    import xxhash

    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("digest") / "f.bin"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_ann, "_DIGEST_SLICE", slice_bytes)
        assert _ann._file_digest(str(path)) == xxhash.xxh3_64(data).hexdigest()
