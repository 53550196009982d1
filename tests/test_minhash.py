"""MinHash: backends bit-equal to numpy, datasketch-equal scheme, accuracy, edge cases, errors."""

from __future__ import annotations

import datasketch
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import simsearch
from simsearch.errors import InvalidArgumentError, InvalidTypeError
from simsearch.shingling import shingle_hash, shingles


def _corpus(seed: int, n: int = 300) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(500)] + ["İx", "Σσ", "日本", "naïve", "😀"]
    docs = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 250)))) for _ in range(n)]
    docs[0] = ""
    docs[1] = "   "
    return docs


@pytest.mark.parametrize("seed", [1, 2, 99])
@pytest.mark.parametrize("kind,ngram", [("word", 5), ("word", 1), ("char", 5)])
def test_backends_are_bit_equal_to_numpy(fast_backend, seed, kind, ngram):
    docs = _corpus(seed)
    want = simsearch.minhash(docs, seed=seed, shingle=kind, ngram=ngram, backend="numpy")
    got = simsearch.minhash(docs, seed=seed, shingle=kind, ngram=ngram, backend=fast_backend)
    assert got.dtype == np.uint32 and got.flags.c_contiguous
    assert np.array_equal(got, want)


def test_shingle_hashes_bit_equal(fast_backend):
    docs = _corpus(5)
    a = simsearch.shingle_hashes(docs, backend="numpy")
    b = simsearch.shingle_hashes(docs, backend=fast_backend)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.hashes, b.hashes)


def test_from_precomputed_hashes_equals_from_text(backend):
    docs = _corpus(7, 100)
    sets = simsearch.shingle_hashes(docs)
    as_list = [sets[i] for i in range(len(sets))]
    want = simsearch.minhash(docs, backend="numpy", num_perm=64)
    assert np.array_equal(simsearch.minhash(sets, backend=backend, num_perm=64), want)
    assert np.array_equal(simsearch.minhash(as_list, backend=backend, num_perm=64), want)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 + 5])
@pytest.mark.parametrize("num_perm", [1, 16, 128, 257])
def test_native_scheme_equals_datasketch_affine32_with_the_shingle_hash(seed, num_perm):
    text = _corpus(seed % 1000, 3)[2]
    ours = simsearch.minhash([text], seed=seed, num_perm=num_perm)[0]
    theirs = datasketch.MinHash(
        num_perm=num_perm, seed=seed, hashfunc=lambda b: shingle_hash(b.decode("utf-8", "surrogatepass")) & 0xFFFFFFFF
    )
    theirs.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles(text)])
    assert np.array_equal(ours, theirs.digest())


def _set_pair(rng, size_a, size_b, overlap):
    universe = rng.choice(2**62, size=size_a + size_b - overlap, replace=False).astype(np.uint64)
    a = universe[:size_a]
    b = np.concatenate([universe[:overlap], universe[size_a:]])
    return a, b, overlap / (size_a + size_b - overlap)


@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_estimate_stays_within_four_sigma_of_true_jaccard(num_perm):
    rng = np.random.default_rng(num_perm)
    for trial in range(150):
        size = int(rng.integers(20, 2000))
        overlap = int(rng.integers(0, size + 1))
        a, b, j = _set_pair(rng, size, int(rng.integers(max(overlap, 1), 2 * size + 1)), overlap)
        sigs = simsearch.minhash([a, b], num_perm=num_perm, seed=trial)
        est = simsearch.jaccard(sigs[0], sigs[1])
        bound = 4 * np.sqrt(j * (1 - j) / num_perm) + 1e-12
        assert abs(est - j) <= bound, (trial, j, est)


def test_empty_document_signature_and_similarity():
    sigs = simsearch.minhash(["", "   ", "!!!", "real words here"], num_perm=32)
    assert (sigs[:3] == 0xFFFFFFFF).all()
    from simsearch.minhash import is_empty

    assert list(is_empty(sigs)) == [True, True, True, False]
    assert simsearch.jaccard(sigs[0], sigs[1]) == 0.0
    assert simsearch.jaccard(sigs[3], sigs[3]) == 1.0
    assert list(simsearch.jaccard(sigs[:2], sigs[2:])) == [0.0, 0.0]


def test_minhash_object_incremental_merge_and_jaccard():
    sh = sorted(shingles("the quick brown fox jumps over the lazy dog again and again", 3))
    whole = simsearch.MinHash(num_perm=64, seed=3)
    whole.update(*sh)
    left, right = simsearch.MinHash(num_perm=64, seed=3), simsearch.MinHash(num_perm=64, seed=3)
    left.update(*sh[:4])
    right.update(np.array([shingle_hash(s) for s in sh[4:]], dtype=np.uint64))
    left.merge(right)
    assert left == whole
    batch = simsearch.minhash(["the quick brown fox jumps over the lazy dog again and again"], num_perm=64, seed=3, ngram=3)
    assert np.array_equal(whole.digest(), batch[0])
    assert whole.jaccard(left) == 1.0
    fresh = simsearch.MinHash(num_perm=64, seed=3)
    assert fresh.is_empty() and whole.jaccard(fresh) == 0.0
    with pytest.raises(InvalidArgumentError):
        whole.merge(simsearch.MinHash(num_perm=64, seed=4))
    with pytest.raises(InvalidTypeError):
        whole.update(1.5)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=50), st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_merge_is_the_signature_of_the_union(xs, ys):
    a, b = simsearch.MinHash(num_perm=16), simsearch.MinHash(num_perm=16)
    if xs:
        a.update(*xs)
    if ys:
        b.update(*ys)
    union = simsearch.MinHash(num_perm=16)
    if xs or ys:
        union.update(*(xs + ys))
    a.merge(b)
    assert a == union


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"num_perm": 0}, InvalidArgumentError),
        ({"num_perm": 8193}, InvalidArgumentError),
        ({"num_perm": 1.5}, InvalidTypeError),
        ({"ngram": 0}, InvalidArgumentError),
        ({"shingle": "line"}, InvalidArgumentError),
        ({"seed": -1}, InvalidArgumentError),
        ({"backend": "tpu"}, InvalidArgumentError),
    ],
)
def test_bad_parameters_raise_typed_errors(kwargs, exc):
    with pytest.raises(exc) as info:
        simsearch.minhash(["a b c"], **kwargs)
    assert "minhash" in str(info.value) or "backend" in str(info.value) or "permutations" in str(info.value)


@pytest.mark.parametrize("bad", [None, "one string", [None], ["ok", 3], [b"bytes"], [np.array([1.5, 2.5])]])
def test_bad_inputs_raise_type_errors(bad):
    with pytest.raises(TypeError):
        simsearch.minhash(bad)


def test_max_num_perm_works():
    sig = simsearch.minhash(["a b c d e f"], num_perm=8192)
    assert sig.shape == (1, 8192)
    assert np.array_equal(sig, simsearch.minhash(["a b c d e f"], num_perm=8192, backend="numpy"))


def test_jaccard_shape_mismatch_is_explained():
    with pytest.raises(InvalidArgumentError, match="num_perm"):
        simsearch.jaccard(np.zeros(8, np.uint32), np.zeros(16, np.uint32))
