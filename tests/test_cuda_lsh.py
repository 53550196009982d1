"""The GPU backend's LSH kernels (simsearch.backends._cuda_lsh) against the numpy reference.

Every kernel must return the numpy backend's bits (dtype, shape, values) on small random inputs
with low-entropy signatures (so bands collide), on edge cases, under memory plans small enough
that every input is cut into pieces, when allocations fail (the split-on-OOM path) and from 16
threads at once. In the default suite these run on numba's CUDA simulator; under
``-m "gpu or cuda"`` on a GPU host, on the device.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsearch.backends import _cuda_lsh as L
from simsearch.backends import _device as D
from simsearch.backends import backend_problem, get_backend
from simsearch.errors import InvalidArgumentError, ResourceExhaustedError

pytestmark = pytest.mark.cuda

REF = get_backend("numpy")
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def gpu():
    """The GPU backend. On the simulator it must build (a failure there is a broken install);
    on a host without a usable GPU the tests skip, unless SIMSEARCH_REQUIRE_GPU=1."""
    problem = backend_problem("cupy")
    if problem is not None and not D.SIM and os.environ.get("SIMSEARCH_REQUIRE_GPU", "") in ("", "0"):
        pytest.skip(f"backend 'cupy' is not available here: {problem}")
    return get_backend("cupy")


@pytest.fixture
def launches(monkeypatch):
    """Counts of kernel launches by kernel name, during the test."""
    seen: Counter = Counter()
    real = D.launch

    def spy(kern, *args):
        seen[getattr(kern, "__name__", None) or kern.py_func.__name__] += 1
        return real(kern, *args)

    monkeypatch.setattr(D, "launch", spy)
    return seen


@pytest.fixture
def pieces(monkeypatch):
    """Into how many pieces each kernel cut an input too big to keep whole: [(what, count)]."""
    seen: list = []

    class Spy(L._Pieces):
        def __init__(self, n, size, build, what):
            super().__init__(n, size, build, what)
            seen.append((what, len(self.ranges)))

    monkeypatch.setattr(L, "_Pieces", Spy)
    return seen


@pytest.fixture
def tight(monkeypatch):
    """``tight(nbytes)``: plan for a device of ``nbytes`` (on the simulator its allocations are
    also refused above that)."""

    def set_limit(nbytes: int) -> None:
        monkeypatch.setattr(D, "SIM_MEMORY", nbytes)
        if not D.SIM:
            monkeypatch.setattr(D, "free_bytes", lambda: nbytes)

    return set_limit


@pytest.fixture
def oom(monkeypatch):
    """``oom(nbytes)``: the simulator refuses allocations above ``nbytes`` while plans see 1 GiB,
    so every planned chunk runs out of memory first; returns the count of OOM recoveries."""
    if not D.SIM:
        pytest.skip("forcing out-of-memory errors needs the simulator's memory budget")
    calls = Counter()
    real = D.release_cached

    def spy():
        calls["oom"] += 1
        real()

    def set_limit(nbytes: int) -> Counter:
        monkeypatch.setattr(D, "SIM_MEMORY", nbytes)
        monkeypatch.setattr(D, "free_bytes", lambda: 1 << 30)
        monkeypatch.setattr(D, "release_cached", spy)
        return calls

    return set_limit


def _same(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
        np.testing.assert_array_equal(got, want)
    else:
        assert type(got) is type(want) and got == want


def _sigs(rng, n, num_perm, alphabet=3):
    return rng.integers(0, alphabet, (n, num_perm)).astype(np.uint32)


def _table(rng, n, b=4, r=3, alphabet=3, p_valid=0.9):
    keys = REF.band_keys(_sigs(rng, n, b * r, alphabet), b, r)
    valid = rng.random(n) < p_valid
    return keys, valid


def _queries(rng, keys, nq, b=4, r=3):
    qkeys = REF.band_keys(_sigs(rng, nq, b * r), b, r)
    k = min(nq // 3, keys.shape[0])
    qkeys[:k] = keys[:k]
    return qkeys, rng.random(nq) < 0.85


def _sets(rng, count, universe=30, most=20):
    sets = [np.unique(rng.integers(0, universe, rng.integers(0, most))).astype(np.uint64) for _ in range(count)]
    off = np.zeros(count + 1, np.int64)
    np.cumsum([s.shape[0] for s in sets], out=off[1:])
    return off, np.concatenate(sets)


# -- band keys --------------------------------------------------------------------------------


@FEW
@given(n=st.integers(0, 10), b=st.integers(0, 5), r=st.integers(0, 9), extra=st.integers(0, 2),
       seed=st.integers(0, 2**32 - 1))
def test_band_keys_equal(gpu, n, b, r, extra, seed):
    sigs = np.random.default_rng(seed).integers(0, 1 << 32, (n, b * r + extra), dtype=np.uint64).astype(np.uint32)
    _same(gpu.band_keys(sigs, b, r), REF.band_keys(sigs, b, r))


def test_band_keys_in_row_chunks(gpu, tight, launches):
    sigs = _sigs(np.random.default_rng(1), 40, 33, alphabet=1 << 30)
    want = REF.band_keys(sigs, 4, 8)
    tight(2048)
    _same(gpu.band_keys(sigs, 4, 8), want)
    assert launches["_k_band_keys"] >= 4


def test_band_keys_rejects_narrow_signatures(gpu):
    with pytest.raises(InvalidArgumentError):
        gpu.band_keys(np.zeros((2, 5), np.uint32), 2, 3)


# -- band tables ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_bucket_sort_equal(gpu, seed):
    keys, valid = _table(np.random.default_rng(seed), 90)
    _same(gpu.bucket_sort(keys, valid), REF.bucket_sort(keys, valid))


@pytest.mark.parametrize("n, b, p_valid", [(0, 3, 1.0), (1, 3, 1.0), (12, 3, 0.0), (12, 0, 1.0), (20, 2, 1.0)])
def test_bucket_sort_edges(gpu, n, b, p_valid):
    keys, valid = _table(np.random.default_rng(n), n, b=b, p_valid=p_valid)
    _same(gpu.bucket_sort(keys, valid), REF.bucket_sort(keys, valid))


def test_bucket_sort_ties_keep_row_order(gpu):
    keys = np.zeros((30, 2), np.uint64)  # every key equal: the sort must be stable
    keys[::3, 1] = 7
    valid = np.ones(30, bool)
    valid[5] = False
    _same(gpu.bucket_sort(keys, valid), REF.bucket_sort(keys, valid))


def test_bucket_sort_in_band_chunks(gpu, tight, launches):
    keys, valid = _table(np.random.default_rng(3), 60, b=4)
    want = REF.bucket_sort(keys, valid)
    tight(12000)
    _same(gpu.bucket_sort(keys, valid), want)
    assert launches["_k_directory"] >= 2


# -- lookups and scans ------------------------------------------------------------------------


def _lookup_case(seed, n=80, nq=30):
    rng = np.random.default_rng(seed)
    keys, valid = _table(rng, n)
    mask = valid & (rng.random(n) < 0.8)
    qkeys, qvalid = _queries(rng, keys, nq)
    return keys, valid, mask, qkeys, qvalid


@pytest.mark.parametrize("seed", range(2))
def test_lookup_and_scan_equal(gpu, seed):
    keys, valid, mask, qkeys, qvalid = _lookup_case(seed)
    table = REF.bucket_sort(keys, valid)
    want = REF.lookup(*table, mask, qkeys, qvalid)
    assert want[1].shape[0] > 50  # bands collide
    _same(gpu.lookup(*table, mask, qkeys, qvalid), want)
    _same(gpu.scan(keys, mask, qkeys, qvalid), REF.scan(keys, mask, qkeys, qvalid))


@pytest.mark.parametrize("case", ["empty table", "no queries", "invalid queries", "masked out", "one row"])
def test_lookup_and_scan_edges(gpu, case):
    keys, valid, mask, qkeys, qvalid = _lookup_case(5, n=20, nq=8)
    if case == "empty table":
        valid[:] = False
    elif case == "no queries":
        qkeys, qvalid = qkeys[:0], qvalid[:0]
    elif case == "invalid queries":
        qvalid[:] = False
    elif case == "masked out":
        mask[:] = False
    else:
        keys, valid, mask = keys[:1], valid[:1] | True, mask[:1] | True
        qkeys[0] = keys[0]
    table = REF.bucket_sort(keys, valid)
    _same(gpu.lookup(*table, mask, qkeys, qvalid), REF.lookup(*table, mask, qkeys, qvalid))
    _same(gpu.scan(keys, mask, qkeys, qvalid), REF.scan(keys, mask, qkeys, qvalid))


def test_lookup_and_scan_in_pieces(gpu, tight, launches, pieces):
    """Band pieces of the table, row pieces of the append buffer, and query groups halved when
    their candidates exceed the plan."""
    keys, valid, mask, qkeys, qvalid = _lookup_case(7, n=100, nq=10)
    table = REF.bucket_sort(keys, valid)
    want_l, want_s = REF.lookup(*table, mask, qkeys, qvalid), REF.scan(keys, mask, qkeys, qvalid)
    tight(8000)
    _same(gpu.lookup(*table, mask, qkeys, qvalid), want_l)
    _same(gpu.scan(keys, mask, qkeys, qvalid), want_s)
    cut = dict(pieces)
    assert cut["lookup"] > 1 and cut["scan"] > 1
    assert launches["_k_probe"] > cut["lookup"] and launches["_k_scan_count"] > cut["scan"]  # groups halved


def test_lookup_rejects_mismatched_queries(gpu):
    keys, valid, mask, qkeys, qvalid = _lookup_case(0, n=10, nq=3)
    table = REF.bucket_sort(keys, valid)
    with pytest.raises(InvalidArgumentError):
        gpu.lookup(*table, mask, qkeys[:, :2], qvalid)
    with pytest.raises(InvalidArgumentError):
        gpu.scan(keys, mask, qkeys[:, :2], qvalid)


# -- self-join --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_self_join_equal(gpu, seed):
    rng = np.random.default_rng(seed)
    keys, valid = _table(rng, 70)
    skeys, srows, _, _ = REF.bucket_sort(keys, valid)
    mask = valid & (rng.random(70) < 0.85)
    want = REF.self_join(skeys, srows, mask)
    assert want.shape[0] > 50
    _same(gpu.self_join(skeys, srows, mask), want)


@pytest.mark.parametrize("case", ["no rows", "one row", "all masked", "no bands"])
def test_self_join_edges(gpu, case):
    keys, valid = _table(np.random.default_rng(2), 12)
    mask = valid.copy()
    if case == "no rows":
        valid[:] = False
    elif case == "one row":
        valid[1:] = False
    elif case == "all masked":
        mask[:] = False
    else:
        keys = keys[:, :0]
    skeys, srows, _, _ = REF.bucket_sort(keys, valid)
    _same(gpu.self_join(skeys, srows, mask), REF.self_join(skeys, srows, mask))


def test_self_join_long_run_in_pieces(gpu, tight, launches, pieces):
    """One run of 150 equal keys (11175 pairs) under a plan for ~700 pairs: processed in pieces
    of first rows, none truncated."""
    keys = np.full((150, 1), 42, np.uint64)
    valid = np.ones(150, bool)
    skeys, srows, _, _ = REF.bucket_sort(keys, valid)
    mask = np.ones(150, bool)
    mask[[3, 77]] = False
    want = REF.self_join(skeys, srows, mask)
    tight(64 << 10)
    _same(gpu.self_join(skeys, srows, mask), want)
    assert dict(pieces)["self_join"] == 1  # the band is kept; its pairs come in pieces
    assert launches["_k_emit_pairs"] >= 8


def test_self_join_in_band_pieces(gpu, tight, launches, pieces):
    """A plan that holds one band at a time and a few hundred pairs: bands are prepared again
    for every piece of first rows."""
    rng = np.random.default_rng(4)
    keys, valid = _table(rng, 60, b=4, alphabet=2)
    skeys, srows, _, _ = REF.bucket_sort(keys, valid)
    want = REF.self_join(skeys, srows, valid)
    tight(24000)
    _same(gpu.self_join(skeys, srows, valid), want)
    assert dict(pieces)["self_join"] == 4
    assert launches["_k_emit_pairs"] > 4  # several pieces of first rows, each over the 4 bands


# -- pair Jaccard -----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_pair_jaccard_sets_equal(gpu, shared):
    rng = np.random.default_rng(int(shared))
    off_a, hash_a = _sets(rng, 25)
    off_b, hash_b = (off_a, hash_a) if shared else _sets(rng, 18)
    ia, ib = rng.integers(0, 25, 120), rng.integers(0, off_b.shape[0] - 1, 120)
    _same(gpu.pair_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib),
          REF.pair_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib))


@pytest.mark.parametrize("shared", [True, False])
def test_pair_jaccard_sigs_equal(gpu, shared):
    rng = np.random.default_rng(int(shared))
    sig_a = _sigs(rng, 30, 16)
    sig_a[[2, 9]] = 0xFFFFFFFF
    sig_b = sig_a if shared else _sigs(rng, 12, 16)
    ia, ib = rng.integers(0, 30, 120), rng.integers(0, sig_b.shape[0], 120)
    ia[:3] = 2
    _same(gpu.pair_jaccard_sigs(sig_a, sig_b, ia, ib), REF.pair_jaccard_sigs(sig_a, sig_b, ia, ib))


def test_pair_jaccard_no_pairs_and_bad_ids(gpu):
    off, hashes = _sets(np.random.default_rng(0), 4)
    sigs = np.zeros((4, 8), np.uint32)
    e = np.empty(0, np.int64)
    _same(gpu.pair_jaccard_sets(off, hashes, off, hashes, e, e), REF.pair_jaccard_sets(off, hashes, off, hashes, e, e))
    _same(gpu.pair_jaccard_sigs(sigs, sigs, e, e), REF.pair_jaccard_sigs(sigs, sigs, e, e))
    with pytest.raises(InvalidArgumentError):
        gpu.pair_jaccard_sets(off, hashes, off, hashes, np.array([4]), np.array([0]))
    with pytest.raises(InvalidArgumentError):
        gpu.pair_jaccard_sigs(sigs, sigs, np.array([0]), np.array([-1]))


def _spy_compaction(monkeypatch) -> list:
    """Records, for each pair kernel call, whether its inputs were uploaded per chunk."""
    seen: list = []

    def spy(base):
        class Spy(base):
            def __init__(self, *args):
                super().__init__(*args)
                seen.append(self.whole is None)

        return Spy

    for name in ("_SetPairs", "_SigPairs"):
        monkeypatch.setattr(L, name, spy(getattr(L, name)))
    return seen


@pytest.mark.parametrize("shared", [True, False])
def test_pair_jaccard_compacted_chunks(gpu, tight, launches, monkeypatch, shared):
    """Inputs bigger than half the plan: each chunk of pairs uploads only the sets it reads."""
    compacted = _spy_compaction(monkeypatch)
    rng = np.random.default_rng(9)
    off_a, hash_a = _sets(rng, 60, universe=200, most=60)
    off_b, hash_b = (off_a, hash_a) if shared else _sets(rng, 50, universe=200, most=60)
    sig_a = _sigs(rng, 60, 32, alphabet=2)
    sig_b = sig_a if shared else _sigs(rng, 50, 32, alphabet=2)
    ia, ib = rng.integers(0, 50, 90), rng.integers(0, 50, 90)
    want = (REF.pair_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib), REF.pair_jaccard_sigs(sig_a, sig_b, ia, ib))
    tight(8000)
    _same(gpu.pair_jaccard_sets(off_a, hash_a, off_b, hash_b, ia, ib), want[0])
    _same(gpu.pair_jaccard_sigs(sig_a, sig_b, ia, ib), want[1])
    assert compacted == [True, True]
    assert launches["_k_jaccard_sets"] >= 3 and launches["_k_jaccard_sigs"] >= 3


# -- connected components ---------------------------------------------------------------------


@FEW
@given(n=st.integers(1, 30), m=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_connected_components_equal(gpu, n, m, seed):
    pairs = np.random.default_rng(seed).integers(0, n, (m, 2))
    _same(gpu.connected_components(n, pairs), REF.connected_components(n, pairs))


def test_connected_components_edges(gpu):
    _same(gpu.connected_components(1, np.empty((0, 2), np.int64)), REF.connected_components(1, np.empty((0, 2))))
    _same(gpu.connected_components(1, np.zeros((3, 2), np.int64)), REF.connected_components(1, np.zeros((3, 2), int)))
    chain = np.stack([np.arange(39, 0, -1), np.arange(38, -1, -1)], axis=1)  # 39-38, ..., 1-0
    _same(gpu.connected_components(40, chain), REF.connected_components(40, chain))
    with pytest.raises(InvalidArgumentError):
        gpu.connected_components(3, np.array([[0, 3]]))


def test_connected_components_edge_pieces(gpu, tight, pieces):
    pairs = np.random.default_rng(5).integers(0, 50, (60, 2))
    want = REF.connected_components(50, pairs)
    tight(1200)
    _same(gpu.connected_components(50, pairs), want)
    assert dict(pieces)["connected_components"] > 1


# -- out of memory ----------------------------------------------------------------------------


def test_out_of_memory_splits_chunks(gpu, oom):
    """Plans that trust 1 GiB on a device that holds 4 KiB: each kernel runs out of memory,
    halves its chunks and still returns the reference's bits."""
    rng = np.random.default_rng(11)
    sigs = _sigs(rng, 200, 12)  # 9600 bytes
    keys, valid = _table(rng, 60, alphabet=2)
    table = REF.bucket_sort(keys, valid)
    qkeys, qvalid = _queries(rng, keys, 90)
    off, hashes = _sets(rng, 30)
    ia, ib = rng.integers(0, 30, 600), rng.integers(0, 30, 600)
    pairs = rng.integers(0, 400, (600, 2))  # 4800 bytes a column
    cases = {
        "band_keys": lambda be: be.band_keys(sigs, 4, 3),
        "lookup": lambda be: be.lookup(*table, valid, qkeys, qvalid),
        "self_join": lambda be: be.self_join(*table[:2], valid),
        "pair_jaccard_sets": lambda be: be.pair_jaccard_sets(off, hashes, off, hashes, ia, ib),
        "pair_jaccard_sigs": lambda be: be.pair_jaccard_sigs(sigs, sigs, ia, ia[::-1].copy()),
        "connected_components": lambda be: be.connected_components(400, pairs),
    }
    want = {name: call(REF) for name, call in cases.items()}
    calls = oom(4096)
    for name, call in cases.items():
        before = calls["oom"]
        _same(call(gpu), want[name])
        assert calls["oom"] > before, name


def test_one_item_too_big_raises(gpu, tight):
    keys = np.full((200, 2), 5, np.uint64)
    table = REF.bucket_sort(keys, np.ones(200, bool))
    tight(512)
    with pytest.raises(ResourceExhaustedError):
        gpu.lookup(*table, np.ones(200, bool), keys[:3], np.ones(3, bool))
    with pytest.raises(ResourceExhaustedError):
        gpu.self_join(*table[:2], np.ones(200, bool))
    with pytest.raises(ResourceExhaustedError):
        gpu.connected_components(200, np.array([[0, 1]]))


# -- concurrency ------------------------------------------------------------------------------


def _pipeline(be, seed):
    """Every kernel once, on small inputs drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    sigs = _sigs(rng, 24, 12)
    keys = be.band_keys(sigs, 4, 3)
    valid = rng.random(24) < 0.9
    table = be.bucket_sort(keys, valid)
    qkeys, qvalid = _queries(rng, keys, 6)
    pairs = be.self_join(table[0], table[1], valid)
    ia, ib = (pairs >> np.uint64(32)).astype(np.int64), (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    off, hashes = _sets(rng, 24)
    return (keys, table, be.lookup(*table, valid, qkeys, qvalid), be.scan(keys, valid, qkeys, qvalid), pairs,
            be.pair_jaccard_sets(off, hashes, off, hashes, ia, ib), be.pair_jaccard_sigs(sigs, sigs, ia, ib),
            be.connected_components(24, np.stack([ia, ib], axis=1)))


def test_sixteen_threads_bit_identical(gpu):
    serial = {s: _pipeline(gpu, s) for s in range(4)}
    _same(serial[0], _pipeline(REF, 0))
    results: dict = {}
    errors: list = []
    start = threading.Barrier(16)

    def work(t):
        try:
            start.wait()
            results[t] = _pipeline(gpu, t % 4)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for t in range(16):
        _same(results[t], serial[t % 4])
