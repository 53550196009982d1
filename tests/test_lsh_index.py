"""LSHIndex: candidates equal a brute-force band oracle through inserts, removes, merges and re-inserts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simsearch
from simsearch import LSHIndex
from simsearch.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)

EMPTY = np.full(32, 0xFFFFFFFF, dtype=np.uint32)


class Oracle:
    """The index's contract in plain Python: id -> signature, candidates by band equality."""

    def __init__(self, b, r):
        self.b, self.r, self.docs = b, r, {}

    def bands(self, sig):
        return [sig[j * self.r : (j + 1) * self.r].tobytes() for j in range(self.b)]

    def query(self, sig):
        if (sig == 0xFFFFFFFF).all():
            return []
        qb = self.bands(sig)
        return sorted(i for i, s in self.docs.items()
                      if not (s == 0xFFFFFFFF).all() and any(x == y for x, y in zip(qb, self.bands(s))))

    def pairs(self):
        buckets = {}
        for i, s in self.docs.items():
            if not (s == 0xFFFFFFFF).all():
                for j, key in enumerate(self.bands(s)):
                    buckets.setdefault((j, key), []).append(i)
        return sorted({(min(a, c), max(a, c)) for ids in buckets.values() for a in ids for c in ids if a != c})


def _sigs(rng, n, num_perm=32, alphabet=2):
    return rng.integers(0, alphabet, (n, num_perm)).astype(np.uint32)


def _check(index, oracle, rng, num_perm=32):
    queries = np.concatenate([_sigs(rng, 20, num_perm), np.stack(list(oracle.docs.values()))[:20]
                              if oracle.docs else np.empty((0, num_perm), np.uint32)])
    got = index.query(queries)
    assert [got[i].tolist() for i in range(len(queries))] == [oracle.query(q) for q in queries]
    assert len(index) == len(oracle.docs)
    assert [tuple(p) for p in index.candidate_pairs().tolist()] == oracle.pairs()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(seed=st.integers(0, 2**32 - 1), buffer_size=st.sampled_from([1, 3, 16, 1000]),
       steps=st.lists(st.sampled_from(["insert", "insert_big", "remove", "reinsert", "empty"]), min_size=1, max_size=8))
def test_random_operations_match_oracle(backend, seed, buffer_size, steps):
    rng = np.random.default_rng(seed)
    index = LSHIndex(num_perm=32, params=(8, 4), buffer_size=buffer_size, backend=backend)
    oracle = Oracle(8, 4)
    next_id = 0
    for step in steps:
        if step in ("insert", "insert_big", "empty"):
            n = {"insert": 3, "insert_big": 25, "empty": 2}[step]
            ids = np.arange(next_id, next_id + n) * 7 - 50  # negative ids too
            next_id += n
            sigs = _sigs(rng, n) if step != "empty" else np.stack([EMPTY] * n)
            index.insert(ids, sigs)
            oracle.docs.update(zip(ids.tolist(), sigs))
        elif oracle.docs:
            ids = rng.choice(sorted(oracle.docs), size=min(len(oracle.docs), 4), replace=False)
            index.remove(ids)
            for i in ids.tolist():
                del oracle.docs[i]
            if step == "reinsert":  # same ids, new signatures: the old ones must leave no ghost
                sigs = _sigs(rng, len(ids))
                index.insert(ids, sigs)
                oracle.docs.update(zip(ids.tolist(), sigs))
    _check(index, oracle, rng)
    index.compact()
    _check(index, oracle, rng)


def test_removed_id_never_returned_and_reinsert_has_no_ghost(backend):
    rng = np.random.default_rng(0)
    index = LSHIndex(num_perm=32, params=(8, 4), buffer_size=4, backend=backend)
    a, c = rng.integers(0, 1 << 32, (2, 32), dtype=np.uint64).astype(np.uint32)
    index.insert(np.arange(10), rng.integers(0, 1 << 32, (10, 32), dtype=np.uint64).astype(np.uint32))
    index.insert([42], a[None])
    index.flush()
    assert 42 in index and index.query(a).tolist() == [42]
    index.remove([42])
    assert 42 not in index and index.query(a).tolist() == []
    index.insert([42], c[None])
    assert index.query(a).tolist() == [] and index.query(c).tolist() == [42]
    np.testing.assert_array_equal(index.get_signatures([42]), c[None])


def test_empty_signatures_are_nobodys_candidate(backend):
    index = LSHIndex(num_perm=32, params=(8, 4), backend=backend)
    sig = np.arange(32, dtype=np.uint32)
    index.insert([1, 2, 3], np.stack([EMPTY, EMPTY, sig]))
    assert len(index) == 3 and 1 in index
    assert index.query(EMPTY).tolist() == [] and index.query(sig).tolist() == [3]
    assert index.candidate_pairs().shape == (0, 2)
    index.remove([1])
    assert len(index) == 2


def test_errors(backend):
    index = LSHIndex(num_perm=32, params=(8, 4), backend=backend)
    index.insert([1, 2], np.zeros((2, 32), np.uint32))
    with pytest.raises(AlreadyExistsError, match="already in the index"):
        index.insert([2, 3], np.zeros((2, 32), np.uint32))
    with pytest.raises(AlreadyExistsError, match="repeats ids"):
        index.insert([5, 5], np.zeros((2, 32), np.uint32))
    with pytest.raises(NotFoundError, match="nothing was removed"):
        index.remove([1, 99])
    assert len(index) == 2 and 1 in index  # atomic
    with pytest.raises(InvalidArgumentError, match=r"shape \(1, 32\)"):
        index.insert([7], np.zeros((1, 16), np.uint32))
    with pytest.raises(InvalidTypeError, match="dtype kind"):
        index.insert([7], np.zeros((1, 32), np.float32))
    with pytest.raises(InvalidArgumentError, match="uint32 values"):
        index.insert([7], np.full((1, 32), 1 << 40, np.uint64))
    with pytest.raises(InvalidArgumentError, match="did you forget num_perm|Did you forget num_perm"):
        LSHIndex(num_perm=32, params=(9, 4))
    with pytest.raises(FailedPreconditionError, match="store_shingles"):
        index.query_near_duplicates(np.zeros((1, 32), np.uint32), exact=True)
    with pytest.raises(InvalidArgumentError, match="pass shingles"):
        LSHIndex(num_perm=32, store_shingles=True).insert([1], np.zeros((1, 32), np.uint32))


def test_params_from_threshold_equal_lsh_params():
    index = LSHIndex(threshold=0.7, num_perm=128, weights=(0.3, 0.7))
    assert index.params == simsearch.lsh_params(0.7, 128, (0.3, 0.7))
    assert "params=" in repr(index)


def test_memory_below_signatures_plus_16_bytes_per_band(backend):
    rng = np.random.default_rng(0)
    n, num_perm = 20_000, 128
    for threshold in (0.5, 0.8, 0.9):
        index = LSHIndex(threshold=threshold, num_perm=num_perm, backend=backend)
        sigs = rng.integers(0, 1 << 32, (n, num_perm), dtype=np.uint64).astype(np.uint32)
        index.insert(rng.permutation(n) * 3, sigs)
        assert index.b >= 3
        assert index.nbytes < n * (4 * num_perm + 16 * index.b), (threshold, index.memory_usage())


def test_batched_insert_and_query_agree_with_one_at_a_time(backend):
    rng = np.random.default_rng(3)
    sigs = _sigs(rng, 300, alphabet=3)
    bulk = LSHIndex(num_perm=32, params=(8, 4), backend=backend)
    bulk.insert(np.arange(300), sigs)
    single = LSHIndex(num_perm=32, params=(8, 4), buffer_size=7, backend=backend)
    for i in range(300):
        single.insert([i], sigs[i : i + 1])
    got_bulk, got_single = bulk.query(sigs), single.query(sigs)
    np.testing.assert_array_equal(got_bulk.offsets, got_single.offsets)
    np.testing.assert_array_equal(got_bulk.ids, got_single.ids)
    np.testing.assert_array_equal(bulk.candidate_pairs(), single.candidate_pairs())


def _texts(rng, n=200, words=40, vocab=400):
    return [" ".join(f"w{x}" for x in rng.integers(0, vocab, words)) for _ in range(n)]


def test_query_near_duplicates_ranked_exact_and_estimated(backend):
    rng = np.random.default_rng(7)
    texts = _texts(rng)
    variants = [t + " " + " ".join(f"x{i}" for i in range(k)) for k, t in enumerate(texts[:20])]
    corpus = texts + variants
    index = LSHIndex(threshold=0.5, num_perm=64, ngram=3, store_shingles=True, buffer_size=64, backend=backend)
    index.insert_texts(np.arange(len(corpus)), corpus)
    res = index.query_near_duplicates(texts[:20], exact=True, threshold=0.5)
    sets = [simsearch.shingles(t, 3) for t in corpus]
    for q in range(20):
        r = res[q]
        assert len(r) >= 1 and r.ids[0] == q and r.exact[0] == 1.0
        assert (np.diff(r.scores) <= 0).all() and (r.scores >= 0.5).all()
        qs = simsearch.shingles(texts[q], 3)
        for item in r:
            want = len(qs & sets[item.id]) / len(qs | sets[item.id])
            assert item.exact_jaccard == want and item.jaccard == item.exact_jaccard
        sig = simsearch.minhash([texts[q]], num_perm=64, ngram=3)
        np.testing.assert_array_equal(
            r.estimated, simsearch.jaccard(np.repeat(sig, len(r), 0), index.get_signatures(r.ids)))
        brute = {i for i, other in enumerate(sets) if len(qs & other) >= 0.5 * len(qs | other)}
        assert set(r.ids.tolist()) <= brute and 200 + q in brute
    top1 = index.query_near_duplicates(texts[:20], exact=True, k=1, exclude_ids=np.arange(20))
    assert all(len(top1[q]) <= 1 and q not in top1[q].ids for q in range(20))
    est = index.query_near_duplicates(simsearch.minhash(texts[:5], num_perm=64, ngram=3), threshold=0.9)
    assert est.exact is None and all(r.ids[0] == q and (r.estimated >= 0.9).all() for q, r in enumerate(est))
    one = index.query_near_duplicates(simsearch.minhash(texts[:1], num_perm=64, ngram=3)[0])
    assert isinstance(one, simsearch.NearDuplicates) and one.ids[0] == 0


def test_backends_congruent(fast_backend):
    rng = np.random.default_rng(11)
    sigs = _sigs(rng, 500, alphabet=3)
    out = []
    for be in ("numpy", fast_backend):
        index = LSHIndex(num_perm=32, params=(8, 4), buffer_size=50, backend=be)
        for start in range(0, 500, 60):
            index.insert(np.arange(start, min(500, start + 60)), sigs[start : start + 60])
        index.remove(np.arange(0, 500, 9))
        c = index.query(sigs[:100])
        out.append((c.offsets, c.ids, index.candidate_pairs()))
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
