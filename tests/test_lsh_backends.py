"""LSH kernels: every backend bit-equal to the numpy reference, and the reference equal to oracles."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsearch.backends import get_backend
from simsearch.backends._numpy_lsh import bucket_bits, top_bits, unpack_pairs

REF = get_backend("numpy")


def _low_entropy_sigs(rng, n, num_perm, alphabet=3):
    """Signatures drawn from a tiny alphabet, so bands collide often."""
    return rng.integers(0, alphabet, (n, num_perm)).astype(np.uint32)


def _assert_same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
        return
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("r", list(range(1, 18)) + [25, 31, 32, 33, 64])
def test_band_keys_are_xxh64_of_band_bytes(r):
    rng = np.random.default_rng(r)
    b = max(1, 96 // r)
    sigs = rng.integers(0, 1 << 32, (7, b * r + 3), dtype=np.uint64).astype(np.uint32)
    keys = REF.band_keys(sigs, b, r)
    want = [[xxhash.xxh64_intdigest(sigs[i, j * r : (j + 1) * r].astype("<u4").tobytes(), seed=j) for j in range(b)]
            for i in range(7)]
    np.testing.assert_array_equal(keys, np.array(want, dtype=np.uint64))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), b=st.integers(1, 12), r=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_band_keys_backends_equal(backend, n, b, r, seed):
    sigs = np.random.default_rng(seed).integers(0, 1 << 32, (n, b * r), dtype=np.uint64).astype(np.uint32)
    _assert_same(get_backend(backend).band_keys(sigs, b, r), REF.band_keys(sigs, b, r))


def test_bucket_bits_and_top_bits():
    assert [bucket_bits(m) for m in (0, 1, 7, 8, 15, 16, 1 << 20)] == [0, 0, 0, 1, 1, 2, 18]
    keys = np.array([0, 1 << 63, (1 << 64) - 1], dtype=np.uint64)
    np.testing.assert_array_equal(top_bits(keys, 0), [0, 0, 0])
    np.testing.assert_array_equal(top_bits(keys, 1), [0, 1, 1])
    np.testing.assert_array_equal(top_bits(keys, 8), [0, 128, 255])


def _tables(backend, seed, n=600, num_perm=24, b=6, r=4):
    rng = np.random.default_rng(seed)
    sigs = _low_entropy_sigs(rng, n, num_perm)
    keys = REF.band_keys(sigs, b, r)
    valid = rng.random(n) < 0.9
    return rng, sigs, keys, valid


@pytest.mark.parametrize("seed", range(3))
def test_bucket_sort_backends_equal_and_sorted(backend, seed):
    _, _, keys, valid = _tables(backend, seed)
    got = get_backend(backend).bucket_sort(keys, valid)
    _assert_same(got, REF.bucket_sort(keys, valid))
    skeys, srows, directory, d = got
    assert d == bucket_bits(int(valid.sum()))
    for j in range(keys.shape[1]):
        assert (np.diff(skeys[j].astype(object)) >= 0).all()
        np.testing.assert_array_equal(keys[srows[j], j], skeys[j])
        assert sorted(srows[j].tolist()) == np.flatnonzero(valid).tolist()
        np.testing.assert_array_equal(directory[j], np.searchsorted(top_bits(skeys[j], d), np.arange((1 << d) + 1)))


def _brute_candidates(keys, mask, qkeys, qvalid):
    out = []
    for q in range(qkeys.shape[0]):
        hit = (keys == qkeys[q]).any(axis=1) & mask if qvalid[q] else np.zeros(keys.shape[0], bool)
        out.append(np.flatnonzero(hit))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_lookup_and_scan_match_brute_force(backend, seed):
    rng, sigs, keys, valid = _tables(backend, seed)
    be = get_backend(backend)
    table = REF.bucket_sort(keys, valid)
    mask = valid & (rng.random(keys.shape[0]) < 0.8)
    qkeys = REF.band_keys(_low_entropy_sigs(rng, 150, sigs.shape[1]), 6, 4)
    qkeys[:20] = keys[:20]
    qvalid = rng.random(150) < 0.9
    want = _brute_candidates(keys, mask, qkeys, qvalid)
    for got in (be.lookup(*table, mask, qkeys, qvalid), be.scan(keys, mask, qkeys, qvalid)):
        _assert_same(got, REF.lookup(*table, mask, qkeys, qvalid))
        offsets, rows = got
        assert [rows[offsets[i] : offsets[i + 1]].tolist() for i in range(150)] == [w.tolist() for w in want]
    for few in (slice(0, 1), slice(5, 16), slice(20, 23)):  # the few-query latency path
        _assert_same(be.lookup(*table, mask, qkeys[few], qvalid[few]), REF.lookup(*table, mask, qkeys[few], qvalid[few]))


def test_lookup_on_empty_table(backend):
    be = get_backend(backend)
    keys = np.empty((0, 3), np.uint64)
    table = be.bucket_sort(keys, np.empty(0, bool))
    off, rows = be.lookup(*table, np.empty(0, bool), np.ones((4, 3), np.uint64), np.ones(4, bool))
    np.testing.assert_array_equal(off, np.zeros(5))
    assert rows.shape == (0,)


@pytest.mark.parametrize("seed", range(3))
def test_self_join_matches_brute_force(backend, seed):
    rng, _, keys, valid = _tables(backend, seed, n=300)
    be = get_backend(backend)
    skeys, srows, _, _ = REF.bucket_sort(keys, valid)
    mask = valid & (rng.random(300) < 0.85)
    got = be.self_join(skeys, srows, mask)
    _assert_same(got, REF.self_join(skeys, srows, mask))
    pairs = {tuple(p) for p in unpack_pairs(got).tolist()}
    want = {(i, j) for i in range(300) for j in range(i + 1, 300)
            if mask[i] and mask[j] and (keys[i] == keys[j]).any()}
    assert pairs == want and len(want) > 100


def test_pair_jaccard_sets_matches_python_sets(backend):
    rng = np.random.default_rng(0)
    sets = [np.unique(rng.integers(0, 40, rng.integers(0, 30)).astype(np.uint64)) for _ in range(60)]
    offsets = np.zeros(61, np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    hashes = np.concatenate(sets)
    ia, ib = rng.integers(0, 60, 500), rng.integers(0, 60, 500)
    got = get_backend(backend).pair_jaccard_sets(offsets, hashes, offsets, hashes, ia, ib)
    _assert_same(got, REF.pair_jaccard_sets(offsets, hashes, offsets, hashes, ia, ib))
    for k in range(500):
        a, b = set(sets[ia[k]].tolist()), set(sets[ib[k]].tolist())
        assert got[k] == (len(a & b) / len(a | b) if a and b else 0.0)


def test_pair_jaccard_sigs_matches_estimate(backend):
    import simsearch

    rng = np.random.default_rng(1)
    sigs = _low_entropy_sigs(rng, 50, 32)
    sigs[3] = 0xFFFFFFFF
    ia, ib = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    got = get_backend(backend).pair_jaccard_sigs(sigs, sigs, ia, ib)
    _assert_same(got, REF.pair_jaccard_sigs(sigs, sigs, ia, ib))
    np.testing.assert_array_equal(got, simsearch.jaccard(sigs[ia], sigs[ib]))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 60), m=st.integers(0, 80), seed=st.integers(0, 2**32 - 1))
def test_connected_components_smallest_index(backend, n, m, seed):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, (m, 2))
    got = get_backend(backend).connected_components(n, pairs)
    _assert_same(got, REF.connected_components(n, pairs))
    graph = coo_matrix((np.ones(m), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    want = np.array([np.flatnonzero(comp == comp[i]).min() for i in range(n)])
    np.testing.assert_array_equal(got, want)
