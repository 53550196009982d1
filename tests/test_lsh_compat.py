"""The MinHashLSH facade against datasketch itself: same (b, r), same query results, same errors."""

from __future__ import annotations

import datasketch
import numpy as np
import pytest

import simsearch
from simsearch.compat.datasketch import MinHashLSH


def _minhashes(seed, n, num_perm=128, alphabet=3):
    """datasketch MinHash objects with low-entropy hash values, so that bands collide often."""
    values = np.random.default_rng(seed).integers(0, alphabet, (n, num_perm)).astype(np.uint64)
    return [datasketch.MinHash(num_perm=num_perm, hashvalues=v, scheme="affine32") for v in values]


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.8)])
def test_same_params(threshold, weights):
    ours = MinHashLSH(threshold=threshold, num_perm=128, weights=weights)
    theirs = datasketch.MinHashLSH(threshold=threshold, num_perm=128, weights=weights)
    assert (ours.b, ours.r) == (theirs.b, theirs.r) and ours.params == (theirs.b, theirs.r)
    assert ours.hashranges == theirs.hashranges and ours.h == theirs.h == ours.num_perm
    explicit = MinHashLSH(num_perm=128, params=(16, 8))
    assert (explicit.b, explicit.r) == (16, 8)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_same_query_results_through_sessions_and_removals(threshold):
    mhs = _minhashes(int(threshold * 10), 400)
    ours, theirs = MinHashLSH(threshold=threshold), datasketch.MinHashLSH(threshold=threshold)
    for lsh in (ours, theirs):
        with lsh.insertion_session(buffer_size=64) as session:
            for i, m in enumerate(mhs[:250]):
                session.insert(f"k{i}", m)
        for i in range(250, 300):
            lsh.insert(("tuple", i), mhs[i])
        with lsh.deletion_session() as session:
            for i in range(0, 250, 3):
                session.remove(f"k{i}")
        lsh.remove(("tuple", 260))
    for m in mhs[200:]:
        assert set(ours.query(m)) == set(theirs.query(m))
    assert ("tuple", 260) not in ours and ("tuple", 261) in ours and "k0" not in ours and "k1" in ours
    assert ours.is_empty() == theirs.is_empty() is False
    batch = ours.query_many(mhs[200:260])
    assert [set(b) for b in batch] == [set(theirs.query(m)) for m in mhs[200:260]]


def test_queries_see_inserts_and_removals_at_once():
    mhs = _minhashes(5, 20)
    lsh = MinHashLSH(threshold=0.5)
    with lsh.insertion_session() as session:
        session.insert("a", mhs[0])
        assert lsh.query(mhs[0]) == ["a"]
    with lsh.deletion_session() as session:
        session.remove("a")
        assert "a" not in lsh and lsh.query(mhs[0]) == []
    assert lsh.is_empty()


def test_reinserted_key_has_no_ghost():
    m1, m2 = _minhashes(1, 2, alphabet=1 << 30)
    lsh = MinHashLSH(threshold=0.5)
    lsh.insert("x", m1)
    lsh.remove("x")
    lsh.insert("x", m2)
    assert lsh.query(m1) == [] and lsh.query(m2) == ["x"]


def test_accepts_minhash_like_objects():
    import rensa

    text = "the quick brown fox jumps over the lazy dog again and again"
    ours = simsearch.MinHash.from_text(text, num_perm=64)
    from simsearch.compat.datasketch import MinHash as CompatMinHash

    compat = CompatMinHash(num_perm=64)
    compat.update_batch([w.encode() for w in text.split()])
    r = rensa.RMinHash(64, 42)
    r.update(text.split())
    ds = datasketch.MinHash(num_perm=64)
    ds.update_batch([w.encode() for w in text.split()])
    lean = datasketch.LeanMinHash(ds)
    lsh = MinHashLSH(threshold=0.5, num_perm=64)
    for key, m in [("ours", ours), ("compat", compat), ("rensa", r), ("datasketch", ds), ("lean", lean)]:
        lsh.insert(key, m)
    assert set(lsh.query(ds)) >= {"datasketch", "lean", "compat"} and "rensa" in lsh.query(r)
    assert "ours" in lsh.query(ours)


def test_errors_are_value_errors_like_datasketch():
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    m = _minhashes(0, 1)[0]
    lsh.insert("a", m)
    with pytest.raises(ValueError, match="already exists"):
        lsh.insert("a", m)
    lsh.insert("a", m, check_duplication=False)  # datasketch allows this too
    assert lsh.query(m) == ["a"]
    with pytest.raises(ValueError, match="does not exist"):
        lsh.remove("zz")
    with pytest.raises(ValueError, match="Expecting minhash with length 128, got 64"):
        lsh.query(_minhashes(0, 1, num_perm=64)[0])
    with pytest.raises(ValueError, match="b < 2"):
        MinHashLSH(num_perm=128, params=(1, 8))
    with pytest.raises(ValueError, match="Did you forget to specify num_perm"):
        MinHashLSH(num_perm=64, params=(16, 8))
    with pytest.raises(ValueError, match="threshold"):
        MinHashLSH(threshold=1.5)
    with pytest.raises(ValueError, match="sum to 1.0"):
        MinHashLSH(weights=(0.2, 0.2))
    with pytest.raises(TypeError, match="hashvalues"):
        lsh.insert("b", [1, 2, 3])


def test_empty_minhash_is_stored_but_matches_nothing():
    """The one deliberate difference from datasketch: empty sets are similar to nothing."""
    empty = datasketch.MinHash(num_perm=128)
    ours, theirs = MinHashLSH(threshold=0.5), datasketch.MinHashLSH(threshold=0.5)
    for lsh in (ours, theirs):
        lsh.insert("e1", empty)
        lsh.insert("e2", empty)
    assert set(theirs.query(empty)) == {"e1", "e2"}
    assert ours.query(empty) == [] and "e1" in ours and not ours.is_empty()
