"""The fast tokenizers must equal the plain-Python definition exactly, for any Unicode text."""

from __future__ import annotations

import os
import random
import re
import string
import unicodedata

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import simsearch
from simsearch import _unicode
from simsearch.backends import _numba_xxh64 as X
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


# Longer, mostly ASCII texts: the branch-free ASCII path, shingles of every XXH64 length class and
# more than one SIMD hashing block per document.
ascii_words = st.text(alphabet=string.ascii_letters + string.digits + "_ .,'-\t\n", max_size=40)
long_texts = st.lists(st.one_of(ascii_words, ascii_words, interesting), max_size=120).map(" ".join)


@given(
    batch=st.lists(long_texts, min_size=1, max_size=6), ngram=st.integers(1, 9), kind=st.sampled_from(["word", "char"])
)
def test_fast_tokenizer_equals_reference_for_long_mostly_ascii_texts(batch, ngram, kind):
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


def test_xxh64_kernels_match_the_xxhash_library():
    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, 4096 + X.PAD, dtype=np.uint8)
    lengths = list(range(0, 80)) + [127, 128, 1000]
    starts = np.array([int(rng.integers(0, 4096 - n)) for n in lengths], dtype=np.int64)
    ends = starts + np.array(lengths, dtype=np.int64)
    want = [xxhash.xxh64_intdigest(buf[s:e].tobytes()) for s, e in zip(starts, ends)]
    assert [int(X.xxh64(buf, s, e)) for s, e in zip(starts, ends)] == want
    # the SIMD path over many ranges at once (blocks of HASH_BLOCK, long inputs redone serially)
    reps = 3 * X.HASH_BLOCK // len(lengths) + 1
    s_all, e_all = np.tile(starts, reps), np.tile(ends, reps)
    out = np.empty(len(s_all), dtype=np.uint64)
    X.hash_ranges(buf, s_all, 0, e_all, 0, len(s_all), np.empty((9, X.HASH_BLOCK), np.uint64), out)
    assert [int(h) for h in out] == want * reps


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


@pytest.mark.parametrize("step_chars", [1, 700, 5000])
def test_pipelined_steps_give_the_same_csr_and_signatures(monkeypatch, step_chars):
    from simsearch.backends import _numba

    rng = random.Random(step_chars)
    words = ["alpha", "Beta", "gamma_1", "İx", "ΣΑΣ", "日本", "naïve", "😀", "\ud800", "x"]
    batch = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(150)]
    batch[3] = ""
    batch += ["plain ascii words " * rng.randint(1, 30) for _ in range(50)]
    want = [shingle_hash_set(t, 3, "word") for t in batch]
    monkeypatch.setattr(_numba, "_STEP_CHARS", step_chars)
    got = simsearch.shingle_hashes(batch, ngram=3, backend="numba")
    assert got.hashes.dtype == np.uint64 and len(got) == len(batch)
    assert all(np.array_equal(got[i], w) for i, w in enumerate(want))
    sigs = simsearch.minhash(batch, ngram=3, num_perm=16, backend="numba")
    assert np.array_equal(sigs, simsearch.minhash(batch, ngram=3, num_perm=16, backend="numpy"))


def test_small_batches_run_on_one_thread_large_ones_on_all(monkeypatch):
    import numba

    from simsearch.backends import _numba, _numba_text

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs more than one numba thread")
    seen = []
    kernel = _numba_text.minhash_texts

    def spy(*args):
        seen.append(numba.get_num_threads())
        return kernel(*args)

    monkeypatch.setattr(_numba_text, "minhash_texts", spy)
    simsearch.minhash(["one short query document"], backend="numba")
    simsearch.minhash(["word " * 2000] * 10, backend="numba")
    assert seen == [1, numba.get_num_threads()]
    assert _numba._PAR_MIN_BYTES <= 10 * len("word " * 2000)


@pytest.mark.parametrize(
    "batch", [[], ["", "abc", "", "de"], ["a\ud83d", "\ude00b", "ΣΑΣ", "日本", "x"], ["😀", "", "İ", "plain"]]
)
def test_encode_texts_is_each_text_encoded_back_to_back(batch):
    from simsearch.shingling import encode_texts

    data, offsets = encode_texts(batch)
    encoded = [t.encode("utf-8", "surrogatepass") for t in batch]
    assert data.tobytes() == b"".join(encoded)
    assert offsets.tolist() == [0] + np.cumsum([len(e) for e in encoded]).tolist()



# -- the Unicode tables' cache file -------------------------------------------------------------


@pytest.fixture(scope="module")
def built_tables():
    return _unicode.build()


@pytest.fixture
def cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    _unicode.tables.cache_clear()
    yield tmp_path / "cache"
    _unicode.tables.cache_clear()


def _fresh():
    _unicode.tables.cache_clear()
    return _unicode.tables()


def _same(a, b):
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("lower", "multi", "flags"))


def test_cache_file_is_written_once_then_read_instead_of_built(monkeypatch, cache_dir, built_tables):
    path = _unicode.cache_file()
    assert os.path.dirname(path) == str(cache_dir)
    assert unicodedata.unidata_version in os.path.basename(path)
    first = _fresh()  # nothing there: built, then written
    assert _same(first, built_tables)
    assert [p.name for p in cache_dir.iterdir()] == [os.path.basename(path)]  # no temporary left

    def no_build():
        raise AssertionError("built although a good cache file exists")

    monkeypatch.setattr(_unicode, "build", no_build)
    second = _fresh()
    assert _same(second, built_tables)
    with pytest.raises(ValueError):
        second.lower[0] = 1  # shared by every caller in the process: read-only, like the built ones


def _flip_middle(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


def _empty(path):
    open(path, "wb").close()


def _wrong_table_right_format(path):
    # a well-formed file whose checksum does not match its tables (one mapping changed)
    with np.load(path) as f:
        parts = {k: f[k].copy() for k in f.files}
    parts["lower"][ord("A")] = ord("b")
    np.savez(path, **parts)


def _wrong_shape(path):
    with np.load(path) as f:
        parts = {k: f[k].copy() for k in f.files}
    parts["flags"] = parts["flags"][:-1]
    np.savez(path, **parts)


@pytest.mark.parametrize("damage", [_flip_middle, _truncate, _empty, _wrong_table_right_format, _wrong_shape])
def test_a_damaged_cache_file_is_never_used_and_is_rewritten(cache_dir, built_tables, damage):
    path = _unicode.cache_file()
    _fresh()
    damage(path)
    assert _unicode._read(path) is None
    assert _same(_fresh(), built_tables)
    repaired = _unicode._read(path)
    assert repaired is not None and _same(repaired, built_tables)


def test_an_unusable_cache_directory_still_gives_the_tables(monkeypatch, tmp_path, built_tables):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    monkeypatch.setenv("SIMSEARCH_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    try:
        assert _same(_fresh(), built_tables)
    finally:
        _unicode.tables.cache_clear()
    assert blocker.read_bytes() == b"not a directory"


def test_numba_cache_dir_is_the_fallback_location(monkeypatch, tmp_path):
    monkeypatch.delenv("SIMSEARCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert os.path.dirname(_unicode.cache_file()) == str(tmp_path / "simsearch")
    monkeypatch.setenv("SIMSEARCH_CACHE_DIR", str(tmp_path / "mine"))
    assert os.path.dirname(_unicode.cache_file()) == str(tmp_path / "mine")


def test_concurrent_writers_leave_one_good_file(cache_dir, built_tables):
    import concurrent.futures

    path = _unicode.cache_file()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: _unicode._write(path, built_tables), range(12)))
    assert [p.name for p in cache_dir.iterdir()] == [os.path.basename(path)]
    got = _unicode._read(path)
    assert got is not None and _same(got, built_tables)
