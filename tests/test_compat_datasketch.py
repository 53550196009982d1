"""simsearch.compat.datasketch.MinHash against the datasketch package itself."""

from __future__ import annotations

import datasketch
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simsearch.compat.datasketch import MinHash
from simsearch.errors import InvalidArgumentError


def _theirs(scheme, **kw):
    return datasketch.MinHash(**kw) if scheme == "affine32" else datasketch.MinHash(scheme=scheme, **kw)


def _tokens(rng, n):
    return [f"tok{int(x)}".encode() for x in rng.integers(0, 5000, n)]


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 17, 1234, 2**32 - 1])
def test_hash_values_are_bit_identical(scheme, seed):
    rng = np.random.default_rng(seed)
    tokens = _tokens(rng, 300)
    theirs = _theirs(scheme, num_perm=128, seed=seed)
    ours = MinHash(num_perm=128, seed=seed, scheme=scheme)
    theirs.update_batch(tokens[:200])
    ours.update_batch(tokens[:200])
    for t in tokens[200:]:
        theirs.update(t)
        ours.update(t)
    assert ours.digest().dtype == theirs.digest().dtype
    assert np.array_equal(ours.digest(), theirs.digest())
    assert ours.count() == pytest.approx(theirs.count(), rel=1e-12)
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_bulk_jaccard_merge_copy_eq(scheme):
    rng = np.random.default_rng(5)
    sets = [_tokens(rng, int(rng.integers(0, 80))) for _ in range(40)]
    theirs = datasketch.MinHash.bulk(sets, num_perm=64, seed=9, **({} if scheme == "affine32" else {"scheme": scheme}))
    ours = MinHash.bulk(sets, num_perm=64, seed=9, scheme=scheme)
    for t, o in zip(theirs, ours):
        assert np.array_equal(t.digest(), o.digest())
    for i in range(0, 40, 2):
        assert ours[i].jaccard(ours[i + 1]) == theirs[i].jaccard(theirs[i + 1])
    m_ours, m_theirs = ours[0].copy(), theirs[0].copy()
    m_ours.merge(ours[1])
    m_theirs.merge(theirs[1])
    assert np.array_equal(m_ours.digest(), m_theirs.digest())
    assert m_ours == m_ours.copy()
    assert (m_ours == ours[0]) == np.array_equal(m_ours.digest(), ours[0].digest())
    assert ours[0].is_empty() == theirs[0].is_empty()


@given(st.lists(st.binary(max_size=20), max_size=40), st.integers(0, 2**32 - 1), st.sampled_from(["affine32", "legacy"]))
def test_any_tokens_any_seed(tokens, seed, scheme):
    theirs = _theirs(scheme, num_perm=32, seed=seed)
    ours = MinHash(num_perm=32, seed=seed, scheme=scheme)
    theirs.update_batch(tokens)
    ours.update_batch(tokens)
    assert np.array_equal(ours.digest(), theirs.digest())


def test_custom_hashfunc_and_incompatible_peers():
    hf = lambda b: len(b) * 2654435761 % (1 << 32)  # noqa: E731
    theirs = datasketch.MinHash(num_perm=16, seed=2, hashfunc=hf)
    ours = MinHash(num_perm=16, seed=2, hashfunc=hf)
    theirs.update_batch([b"a", b"bb", b"ccc"])
    ours.update_batch([b"a", b"bb", b"ccc"])
    assert np.array_equal(ours.digest(), theirs.digest())
    with pytest.raises(ValueError):
        ours.jaccard(MinHash(num_perm=16, seed=3))
    with pytest.raises(ValueError):
        ours.merge(MinHash(num_perm=16, seed=2, scheme="legacy"))
    with pytest.raises(InvalidArgumentError):
        MinHash(num_perm=16, scheme="affine64")
    with pytest.raises(InvalidArgumentError):
        MinHash(hashvalues=np.zeros(4, np.uint32))
