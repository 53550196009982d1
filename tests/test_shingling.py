"""The fast tokenizers must equal the plain-Python definition exactly, for any Unicode text."""

from __future__ import annotations

import random
import re
import unicodedata

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import simsearch
from simsearch import _unicode
from simsearch.backends import _numba_text as K
from simsearch.errors import InvalidArgumentError, InvalidTypeError
from simsearch.shingling import shingle_hash, shingle_hash_set, shingles, tokenize

# Any code point, surrogates included (Python strs can hold them; they hash via surrogatepass).
any_char = st.characters(codec=None, categories=None)
interesting = st.sampled_from(
    list("aZ09_ \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000.,'-")
    + ["İ", "Σ", "ς", "σ", "ΣΑΣ", "\u0301", "\u0345", "\u00ad", "😀", "👩‍👩‍👧", "ǅ", "Ⅻ", "日本", "ß", "ﬁ", "\ud800"]
)
texts = st.lists(st.one_of(any_char, interesting), max_size=60).map("".join)


def _fast(texts_, ngram, kind, backend="numba"):
    return simsearch.shingle_hashes(texts_, ngram=ngram, shingle=kind, backend=backend)


def _check_equal(batch, ngram, kind, backend="numba"):
    got = _fast(batch, ngram, kind, backend)
    for i, t in enumerate(batch):
        want = shingle_hash_set(t, ngram, kind)
        assert np.array_equal(got[i], want), (t, ngram, kind)


@given(batch=st.lists(texts, min_size=1, max_size=12), ngram=st.integers(1, 7), kind=st.sampled_from(["word", "char"]))
def test_fast_tokenizer_equals_reference_for_any_unicode(batch, ngram, kind):
    _check_equal(batch, ngram, kind)


@given(text=texts, ngram=st.integers(1, 6), kind=st.sampled_from(["word", "char"]))
def test_minhash_from_text_equals_minhash_of_reference_shingles(text, ngram, kind):
    sig_fast = simsearch.minhash([text], ngram=ngram, shingle=kind, backend="numba", num_perm=32)
    ref = [shingle_hash_set(text, ngram, kind)]
    sig_ref = simsearch.minhash(ref, backend="numpy", num_perm=32) if ref[0].size else None
    if sig_ref is None:
        assert (sig_fast == 0xFFFFFFFF).all()
    else:
        assert np.array_equal(sig_fast, sig_ref)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \t\n ",
        "_",
        "__init__ snake_case x_y",
        "İstanbul İİİ",
        "ΟΔΟΣ ΟΔΟΣ. ΣΑΣ Σ AΣ Σa A\u00adΣ A\u0301Σ\u0301 A'Σ'b",
        "e\u0301te\u0301 cafe\u0301 na\u00efve",
        "😀 emoji 👩‍👩‍👧 family 🇫🇷 flag",
        "日本語のテキストと english mixed ١٢٣ arabic digits",
        "ǅ ǆ Ǆ titlecase ß ﬁ ligature",
        "x" * 300,
        "word " * 80,
        "lone \ud800 surrogate \udfff here",
    ],
)
@pytest.mark.parametrize("kind", ["word", "char"])
@pytest.mark.parametrize("ngram", [1, 2, 5])
def test_edge_cases_match_reference(text, kind, ngram):
    _check_equal([text], ngram, kind)


def test_long_shingles_exercise_every_xxh64_path():
    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzäöüλж日") for _ in range(rng.randint(1, 25))) for _ in range(300)]
    batch = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 120))) for _ in range(200)]
    for kind, ngram in [("word", 5), ("word", 9), ("char", 40), ("char", 5)]:
        _check_equal(batch, ngram, kind)


def test_xxh64_kernel_matches_the_xxhash_library():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**63, 512 + 2, dtype=np.uint64)
    buf = words.view(np.uint8)
    for length in list(range(0, 80)) + [127, 128, 1000]:
        start = int(rng.integers(0, 4096 - length))
        want = xxhash.xxh64_intdigest(buf[start : start + length].tobytes())
        assert int(K.xxh64(words, buf, start, start + length)) == want


def test_reference_definition():
    assert tokenize("Hello, World_1 ÉTÉ") == ["hello", "world_1", "été"]
    assert shingles("a b c", 5) == {"a b c"}
    assert shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}
    assert shingles("  ...  ", 5) == set()
    assert shingles("  Ab   cD ", 3, "char") == {"ab ", "b c", " cd"}
    assert shingles("ab", 5, "char") == {"ab"}
    assert shingles(" \t ", 5, "char") == set()
    assert shingle_hash("a b") == xxhash.xxh64_intdigest(b"a b")


def test_batch_layout_is_csr_of_sorted_unique_sets():
    sets = simsearch.shingle_hashes(["a b a b a b", "", "x"], ngram=2)
    assert len(sets) == 3
    assert list(sets.sizes()) == [2, 0, 1]
    assert np.all(np.diff(sets[0].astype(np.float64)) > 0)


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(InvalidTypeError):
        simsearch.shingle_hashes("just one string")
    with pytest.raises(InvalidTypeError):
        simsearch.shingle_hashes(["ok", None])
    with pytest.raises(InvalidArgumentError):
        simsearch.shingle_hashes(["ok"], ngram=0)
    with pytest.raises(InvalidArgumentError):
        simsearch.shingle_hashes(["ok"], shingle="sentence")


def test_tables_agree_with_the_interpreter_for_every_code_point():
    t = _unicode.tables()
    everything = _unicode._all_codepoints()
    word = np.fromiter((bool(re.fullmatch(r"\w", ch)) for ch in everything), dtype=bool, count=len(everything))
    space = np.fromiter((ch.isspace() for ch in everything), dtype=bool, count=len(everything))
    assert np.array_equal((t.flags & _unicode.WORD) > 0, word)
    assert np.array_equal((t.flags & _unicode.SPACE) > 0, space)
    for c in np.nonzero(t.lower != np.arange(len(t.lower)))[0]:
        ch = chr(int(c))
        v = int(t.lower[c])
        got = chr(v) if v >= 0 else "".join(chr(x) for x in t.multi[-v - 1] if x >= 0)
        assert got == ("σ" if ch == "Σ" else ch.lower())
    # where the table says "unchanged", lower() really leaves the character alone
    same = np.nonzero(t.lower == np.arange(len(t.lower)))[0]
    sample = np.random.default_rng(0).choice(same, 20000, replace=False)
    assert all(chr(int(c)).lower() == chr(int(c)) for c in sample)


def test_case_ignorable_and_cased_flags_follow_unicode_properties():
    t = _unicode.tables()
    # spot checks against known Unicode properties
    assert t.flags[ord("A")] & _unicode.CASED and t.flags[ord("a")] & _unicode.CASED
    for ch in ".'\u0301\u00ad\u02b0":
        assert t.flags[ord(ch)] & _unicode.IGNORABLE, unicodedata.name(ch)
    for ch in " 1_-":
        assert not t.flags[ord(ch)] & (_unicode.IGNORABLE | _unicode.CASED)
