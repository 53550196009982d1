"""find_duplicates and its stage functions: contract, verification modes, stages that compose."""

from __future__ import annotations

import numpy as np
import pytest

import simsearch
from simsearch import find_duplicates
from simsearch.banding import choose_params
from simsearch.dedup import (
    candidate_pairs_from_band_keys,
    compute_band_keys,
    compute_signatures,
    connected_components,
    merge_pairs,
    verify_pairs,
)
from simsearch.errors import InvalidArgumentError, InvalidTypeError

BASE = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun by the old mill"


def _corpus():
    return [
        BASE,  # 0
        "something completely different about databases indexes and query planners for analytics",  # 1
        BASE,  # 2: exact copy of 0
        BASE + " today",  # 3: near copy of 0
        "",  # 4: empty
        "",  # 5: empty
        "something completely different about databases indexes and query planners for analytic workloads",  # 6
        "   ",  # 7: empty after tokenising
    ]


def _jaccard(a, b, ngram=3):
    sa, sb = simsearch.shingles(a, ngram), simsearch.shingles(b, ngram)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def test_find_duplicates_contract(backend):
    texts = _corpus()
    res = find_duplicates(texts, threshold=0.7, ngram=3, backend=backend)
    assert res.pairs.dtype == np.int64 and res.pairs.shape[1] == 2
    assert (res.pairs[:, 0] < res.pairs[:, 1]).all()
    assert [tuple(p) for p in res.pairs.tolist()] == sorted(tuple(p) for p in res.pairs.tolist())
    assert {tuple(p) for p in res.pairs.tolist()} == {(0, 2), (0, 3), (2, 3), (1, 6)}
    for (i, j), jac in zip(res.pairs.tolist(), res.jaccard.tolist()):
        assert jac == _jaccard(texts[i], texts[j]) >= 0.7
    np.testing.assert_array_equal(res.clusters, [0, 1, 0, 0, 4, 5, 1, 7])
    np.testing.assert_array_equal(res.keep, [True, True, False, False, True, True, False, True])
    assert res.num_duplicates == 3 and res.verify == "exact" and res.params == choose_params(0.7, 128)
    assert res.stats["candidates"] >= 4 and res.stats["pairs"] == 4


def test_backends_give_identical_results(fast_backend):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, 30)) for _ in range(300)]
    texts += [t + " extra" for t in texts[:100]]
    a = find_duplicates(texts, threshold=0.6, ngram=3, backend="numpy")
    b = find_duplicates(texts, threshold=0.6, ngram=3, backend=fast_backend)
    for x, y in [(a.pairs, b.pairs), (a.jaccard, b.jaccard), (a.clusters, b.clusters), (a.keep, b.keep)]:
        np.testing.assert_array_equal(x, y)
    assert a.pairs.shape[0] >= 100


def test_verify_modes():
    texts = _corpus()
    exact = find_duplicates(texts, threshold=0.7, ngram=3)
    est = find_duplicates(texts, threshold=0.7, ngram=3, verify="estimate")
    none = find_duplicates(texts, threshold=0.7, ngram=3, verify="none")
    sigs = simsearch.minhash(texts, ngram=3)
    for res in (est, none):
        np.testing.assert_array_equal(res.jaccard, simsearch.jaccard(sigs[res.pairs[:, 0]], sigs[res.pairs[:, 1]]))
    assert (est.jaccard >= 0.7).all()
    assert none.params == simsearch.lsh_params(0.7, 128) and est.params == exact.params
    assert {tuple(p) for p in est.pairs.tolist()} <= {tuple(p) for p in none.pairs.tolist()}
    weighted = find_duplicates(texts, threshold=0.7, ngram=3, weights=(0.2, 0.8))
    assert weighted.params == simsearch.lsh_params(0.7, 128, (0.2, 0.8))
    explicit = find_duplicates(texts, threshold=0.7, ngram=3, params=(32, 4))
    assert explicit.params == (32, 4)


def test_empty_and_trivial_inputs():
    res = find_duplicates([])
    assert res.pairs.shape == (0, 2) and res.clusters.shape == (0,)
    res = find_duplicates(["", "", ""])
    assert res.pairs.shape == (0, 2) and res.keep.all()
    res = find_duplicates(["same text here for all of them"] * 4, ngram=2)
    assert res.pairs.shape == (6, 2) and (res.jaccard == 1.0).all() and res.clusters.tolist() == [0, 0, 0, 0]


def test_invalid_arguments():
    with pytest.raises(InvalidTypeError, match="not a single str"):
        find_duplicates("one text")
    with pytest.raises(InvalidArgumentError, match="'verify' parameter of find_duplicates"):
        find_duplicates(["a"], verify="fast")
    with pytest.raises(InvalidArgumentError, match="'threshold' parameter of find_duplicates"):
        find_duplicates(["a"], threshold=1.2)
    with pytest.raises(InvalidArgumentError, match="sum to 1.0"):
        find_duplicates(["a"], weights=(0.9, 0.9))
    with pytest.raises(InvalidArgumentError, match="needs the shingle sets"):
        verify_pairs(np.array([[0, 1]]), threshold=0.5, verify="exact")
    with pytest.raises(InvalidArgumentError, match=r"pair indices must be in \[0, 2\)"):
        connected_components(2, [[0, 2]])


def test_stages_compose_like_find_duplicates(backend):
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(200)]
    texts = [" ".join(rng.choice(words, 25)) for _ in range(200)]
    texts += [t + " z" for t in texts[:60]]
    b, r = choose_params(0.6, 64)
    sets = simsearch.shingle_hashes(texts, ngram=3, backend=backend)
    sigs = compute_signatures(sets, num_perm=64, backend=backend)
    np.testing.assert_array_equal(sigs, compute_signatures(texts, num_perm=64, ngram=3, backend=backend))
    keys, valid = compute_band_keys(sigs, b, r, backend=backend)
    cand = candidate_pairs_from_band_keys(keys, valid, backend=backend)
    # bands are independent: split them across "workers" and unite the pairs
    halves = [candidate_pairs_from_band_keys(keys[:, cols], valid, backend=backend)
              for cols in (slice(0, b // 2), slice(b // 2, b))]
    np.testing.assert_array_equal(merge_pairs(halves), cand)
    # rows can be chunks of a bigger corpus, addressed by global ids
    ids = np.arange(len(texts)) * 10 + 7
    np.testing.assert_array_equal(candidate_pairs_from_band_keys(keys, valid, doc_ids=ids, backend=backend), ids[cand])
    pairs, jac = verify_pairs(cand, threshold=0.6, shingles=sets, backend=backend)
    clusters = connected_components(len(texts), pairs, backend=backend)
    res = find_duplicates(texts, threshold=0.6, num_perm=64, ngram=3, backend=backend)
    np.testing.assert_array_equal(res.pairs, pairs)
    np.testing.assert_array_equal(res.jaccard, jac)
    np.testing.assert_array_equal(res.clusters, clusters)


def test_merge_pairs_orders_and_dedupes():
    got = merge_pairs([np.array([[3, 1], [1, 3], [2, 2]]), np.array([[0, 5]])])
    np.testing.assert_array_equal(got, [[0, 5], [1, 3]])
    assert merge_pairs([]).shape == (0, 2)


def test_choose_params():
    assert choose_params(0.8, 128) == simsearch.lsh_params_for_recall(0.8, 128)
    assert simsearch.lsh_probability(0.8, *choose_params(0.8, 128)) >= 0.99
    assert choose_params(0.8, 128, "none") == simsearch.lsh_params(0.8, 128)
    assert choose_params(0.8, 128, weights=(0.3, 0.7)) == simsearch.lsh_params(0.8, 128, (0.3, 0.7))


class _Recording:
    """A backend object that forwards every kernel to numpy and records which ones ran."""

    def __init__(self):
        self._real = simsearch.get_backend("numpy")
        self.name, self.device, self.calls = "recording", "CPU", []

    @property
    def host(self):
        return self

    def __getattr__(self, kernel):
        fn = getattr(self._real, kernel)

        def call(*args, **kwargs):
            self.calls.append(kernel)
            return fn(*args, **kwargs)

        return call


def test_a_backend_object_runs_every_stage():
    """find_duplicates and LSHIndex take a resolved backend object and call every kernel on it
    (no stage resolves a name again or falls back to another backend)."""
    texts = _corpus()
    rec = _Recording()
    got = find_duplicates(texts, threshold=0.7, ngram=3, backend=rec)
    want = find_duplicates(texts, threshold=0.7, ngram=3, backend="numpy")
    np.testing.assert_array_equal(got.pairs, want.pairs)
    np.testing.assert_array_equal(got.clusters, want.clusters)
    assert got.stats["backend"] == "recording"
    assert {"minhash_texts", "band_keys", "bucket_sort", "self_join", "shingle_hashes", "pair_jaccard_sets",
            "connected_components"} <= set(rec.calls)
    rec.calls.clear()
    index = simsearch.LSHIndex(num_perm=64, threshold=0.5, ngram=3, backend=rec)
    index.insert_texts(np.arange(len(texts)), texts)
    assert index.query(simsearch.minhash(texts[:1], num_perm=64, ngram=3)[0]).tolist() == [0, 2, 3]
    assert {"minhash_texts", "band_keys"} <= set(rec.calls) and index.backend == "recording"


def test_chunked_stages_give_the_same_result(monkeypatch):
    import simsearch.dedup._core as dedup_core

    rng = np.random.default_rng(9)
    words = [f"w{i}" for i in range(100)]
    texts = [" ".join(rng.choice(words, 20)) for _ in range(60)]
    texts += [t + " q" for t in texts[:30]] + [""]
    want = find_duplicates(texts, threshold=0.6, ngram=3)
    monkeypatch.setattr(dedup_core, "_CHUNK", 7)
    got = find_duplicates(texts, threshold=0.6, ngram=3)
    for x, y in [(want.pairs, got.pairs), (want.jaccard, got.jaccard), (want.clusters, got.clusters)]:
        np.testing.assert_array_equal(x, y)
    assert want.pairs.shape[0] >= 30
