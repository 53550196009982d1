"""The GPU backend's text kernels (``backends._cuda_text``) against the numpy reference, bit for bit.

In the default suite they run on numba's CUDA simulator (tiny inputs: it runs one Python thread
per CUDA thread); under ``-m "gpu or cuda"`` on a GPU host the same bodies run on the device.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda, int64

from simsearch.backends import backend_problem, get_backend
from simsearch.backends._numba_xxh64 import CPU
from simsearch.errors import ResourceExhaustedError
from simsearch.minhash import permutations

REQUIRE_GPU = os.environ.get("SIMSEARCH_REQUIRE_GPU", "") not in ("", "0")
try:  # the device runtime needs CuPy on a device (never under the simulator)
    from simsearch.backends import _cuda_prims, _cuda_text, _cuda_tokenize
    from simsearch.backends import _device as D
except ImportError as exc:
    if REQUIRE_GPU:
        raise
    pytest.skip(f"the GPU backend cannot be imported here: {exc}", allow_module_level=True)

pytestmark = pytest.mark.cuda

REF = get_backend("numpy")
SIM_ONLY = pytest.mark.skipif(not D.SIM, reason="sizes the simulator's memory budget")

# Characters whose lowering, classification or context is special, and every kind of whitespace.
SPECIAL = (
    list("aZq09_ .,:'-")
    + list("éÄßÿµ")  # Latin-1 (µ lowers to itself, ß stays one code point)
    + list("ΣσςΑΩωΌ")  # Greek: the capital sigma in every position
    + ["İ", "ı", "\u212a", "\u2126", "Ⱥ", "ẞ"]  # İ -> i + U+0307; Kelvin, Ohm; Ⱥ grows from 2 to 3 bytes
    + ["\u0301", "\u0307", "\u0345", "\u02b0", "\u00ad", "\u200d"]  # combining / ignorable / cased+ignorable
    + list("日本語한")  # CJK, Hangul
    + ["😀", "𝔘", "𐐀", "\U0001f1ef"]  # astral: emoji, a cased math letter, Deseret capital (lowers)
    + ["\ud800", "\udbff", "\udc00", "\udfff"]  # lone surrogates (surrogatepass)
    + [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000"]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)
CHARS = st.one_of(st.sampled_from(SPECIAL), st.characters(codec=None))
TEXTS = st.lists(st.text(CHARS, max_size=32), min_size=1, max_size=8)

SIGMA = [
    "ΑΣ", "ΑΣ.", "ΑΣ'", "ΑΣ'Α", "Σ", "ΣΑ", "Α'Σ", "a\u00adΣ", "aΣ\u0301", "aΣ\u0301b", "ΑΣ ΑΣ", "ΣΣ",
    "xΣ_", "1Σ", "aΣ1", "ΌΣΟΣ ΟΔΟΣ.", "\u02b0Σ", "Σ\u0345", "a\u0301\u0301Σ\u0301\u0301", "'Σ'", "𝔘Σ",
]  # fmt: skip
DOTTED_I = ["İ", "İx", "xİ", "x İ y", "İİ", "_İ_", "İ\u0301", "aİb İ", "İ1 2İ"]
EDGES = ["", " ", " \t\n\u3000 ", "one two", "_", "a", "  lead", "trail  ", "a  \u2028  b", "日本語 😀 \ud800x"]
HAND = SIGMA + DOTTED_I + EDGES


@pytest.fixture(scope="module")
def gpu():
    """The GPU backend (a skip where it cannot run, a failure under SIMSEARCH_REQUIRE_GPU=1, as
    conftest's require_backend does)."""
    problem = backend_problem("cupy")
    if problem is not None:
        why = f"backend 'cupy' is not available here: {problem}"
        if REQUIRE_GPU:
            pytest.fail(why + " (SIMSEARCH_REQUIRE_GPU=1)")
        pytest.skip(why)
    _cuda_text.device_tables()  # uploaded before any test shrinks the simulated memory
    return get_backend("cupy")


def _same(got, want) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def check(gpu, texts, ngram, kind, num_perm=8, seed=7) -> None:
    """shingle_hashes and minhash_texts of the GPU backend equal numpy's."""
    for got, want in zip(gpu.shingle_hashes(texts, ngram, kind), REF.shingle_hashes(texts, ngram, kind)):
        _same(got, want)
    a, b = permutations(num_perm, seed)
    sigs = gpu.minhash_texts(texts, ngram, kind, a, b)
    _same(sigs, REF.minhash_texts(texts, ngram, kind, a, b))
    assert sigs.flags.c_contiguous


# -- exactness ---------------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(texts=TEXTS, ngram=st.integers(1, 6))
def test_word_mode_equals_numpy_on_unicode(gpu, texts, ngram):
    check(gpu, texts, ngram, "word")


@settings(max_examples=8, deadline=None)
@given(texts=TEXTS, ngram=st.integers(1, 6))
def test_char_mode_equals_numpy_on_unicode(gpu, texts, ngram):
    check(gpu, texts, ngram, "char")


@pytest.mark.parametrize("kind,ngram", [("word", 2), ("word", 5), ("char", 2)])
def test_hand_written_cases(gpu, kind, ngram):
    """Final sigma around case-ignorable characters, 'İ' at token edges, fewer tokens than ngram,
    empty and whitespace-only texts, all in one batch (documents must not leak into each other)."""
    check(gpu, HAND, ngram, kind, num_perm=4)


@pytest.mark.parametrize("kind", ["word", "char"])
def test_two_slots_per_byte_give_the_same_results(gpu, monkeypatch, kind):
    """The slot layout is general: with 2 slots per byte (a future Unicode whose lowering makes
    more code points than bytes) every code point leaves more holes, and nothing changes."""
    one = _cuda_text.device_tables()
    monkeypatch.setattr(_cuda_text, "device_tables", lambda: one._replace(slot_shift=one.slot_shift + 1))
    check(gpu, SIGMA[:8] + DOTTED_I[:4] + EDGES, 2, kind, num_perm=4)


def test_documents_are_independent(gpu):
    """Each document alone gives the row it gives in a batch (no context crosses a document)."""
    texts = ["ΑΣ", "Α", "x İ", "y", "ab ", " cd"]
    a, b = permutations(4, 1)
    batch = gpu.minhash_texts(texts, 2, "char", a, b)
    for i in (0, 2, 4):
        _same(gpu.minhash_texts(texts[i : i + 2], 2, "char", a, b), batch[i : i + 2])


# -- minhash_hashes ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_minhash_hashes_any_order_repeats_and_empty_documents(gpu, dtype):
    rng = np.random.default_rng(3)
    sizes = np.array([0, 5, 1, 0, 40, 3, 0])
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    hashes = rng.integers(0, np.iinfo(dtype).max, int(offsets[-1]), dtype=dtype, endpoint=True)
    hashes[offsets[4] : offsets[4] + 10] = hashes[offsets[4]]  # repeats
    a, b = permutations(12, 5)
    got = gpu.minhash_hashes(offsets, hashes, a, b)
    _same(got, REF.minhash_hashes(offsets, hashes, a, b))
    assert (got[sizes == 0] == 0xFFFFFFFF).all()
    _same(gpu.minhash_hashes(np.zeros(1, np.int64), np.empty(0, dtype), a, b), np.empty((0, 12), np.uint32))


def test_empty_batches(gpu):
    a, b = permutations(4, 1)
    _same(gpu.minhash_texts([], 3, "word", a, b), np.empty((0, 4), np.uint32))
    for got, want in zip(gpu.shingle_hashes([], 3, "char"), REF.shingle_hashes([], 3, "char")):
        _same(got, want)
    check(gpu, ["", "  "], 2, "word")


# -- memory plans ------------------------------------------------------------------------------


def _spy_uploads(monkeypatch) -> list[int]:
    """Sizes of the text chunks (uint8 arrays) copied to the device from now on."""
    sizes: list[int] = []
    real = D.to_device

    def spy(host):
        if host.dtype == np.uint8:
            sizes.append(host.size)
        return real(host)

    monkeypatch.setattr(D, "to_device", spy)
    return sizes


@SIM_ONLY
@pytest.mark.parametrize("kind", ["word", "char"])
def test_small_plans_make_many_chunks_and_a_long_document_its_own(gpu, monkeypatch, kind):
    long_doc = " ".join(f"w{i % 37} Σίσυφος İx" for i in range(40))  # ~900 bytes, over a chunk's plan
    texts = ["alpha beta gamma delta"] * 6 + [long_doc] + ["ΑΣ x", "", "y z"] * 3
    monkeypatch.setattr(D, "SIM_MEMORY", 48 << 10)
    chunks = _spy_uploads(monkeypatch)
    check(gpu, texts, 3, kind, num_perm=4)
    assert len(chunks) >= 6  # at least three chunks for each of the two calls
    assert chunks.count(len(long_doc.encode())) == 2  # the long document went alone


@pytest.mark.parametrize("kind", ["word", "char"])
def test_steps_encoded_ahead_on_a_helper_thread(gpu, monkeypatch, kind):
    """A batch of several encoding steps is encoded one step ahead on a helper thread while the
    device works on the previous step; the results are those of one step."""
    texts = [f"doc {i} alpha beta gamma Σίσυφος {i % 5}" for i in range(24)]
    monkeypatch.setattr(_cuda_text, "_STEP_CHARS", 64)
    names = []
    real = _cuda_text.encode_texts

    def spy(batch):
        names.append(threading.current_thread().name)
        return real(batch)

    monkeypatch.setattr(_cuda_text, "encode_texts", spy)
    check(gpu, texts, 2, kind, num_perm=4)
    assert len(names) >= 8 and set(names) == {"simsearch-gpu-encode"}


def test_an_encoding_error_on_the_helper_thread_reaches_the_caller(gpu, monkeypatch):
    monkeypatch.setattr(_cuda_text, "_STEP_CHARS", 64)
    calls = []

    def failing(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "planted")
        return _cuda_text._text_encode(batch)

    monkeypatch.setattr(_cuda_text, "_text_encode", _cuda_text.encode_texts, raising=False)
    monkeypatch.setattr(_cuda_text, "encode_texts", failing)
    with pytest.raises(UnicodeEncodeError, match="planted"):
        gpu.minhash_texts([f"doc {i} alpha beta gamma" for i in range(24)], 2, "word", *permutations(4, 1))
    assert threading.active_count() < 50 and not [t for t in threading.enumerate() if t.name == "simsearch-gpu-encode"]


@SIM_ONLY
def test_hash_sets_over_the_plan_go_in_pieces(gpu, monkeypatch):
    """minhash_hashes splits one document's hashes safely (the minimum of the pieces' minima)."""
    monkeypatch.setattr(D, "SIM_MEMORY", 16 << 10)
    offsets = np.array([0, 2, 3002, 3002, 3010], np.int64)
    hashes = np.random.default_rng(4).integers(0, 1 << 64, 3010, dtype=np.uint64, endpoint=False)
    uploads: list[int] = []
    real = D.to_device
    monkeypatch.setattr(
        D, "to_device", lambda h: (uploads.append(h.size) if h.dtype == np.uint64 else None, real(h))[1]
    )
    a, b = permutations(4, 9)
    _same(gpu.minhash_hashes(offsets, hashes, a, b), REF.minhash_hashes(offsets, hashes, a, b))
    assert max(uploads) < 1100 and sum(uploads) == hashes.size


@SIM_ONLY
def test_out_of_memory_chunks_are_split_and_retried(gpu, monkeypatch):
    texts = [f"doc {i} " + "word " * 16 for i in range(8)]  # ~700 bytes in all
    monkeypatch.setattr(D, "SIM_MEMORY", 4 << 10)  # one 8-byte-per-slot scan of the batch is 5.6 kB
    monkeypatch.setattr(D, "free_bytes", lambda: 1 << 30)  # the plan believes it all fits
    splits = []
    real = D.release_cached
    monkeypatch.setattr(D, "release_cached", lambda: (splits.append(1), real()))
    check(gpu, texts, 2, "word", num_perm=4)
    assert len(splits) >= 2  # each of minhash_texts and shingle_hashes split at least once
    offsets = np.array([0, 1500], np.int64)  # one document of 1500 hashes, 12 kB: split safely
    hashes = np.arange(1500, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    a, b = permutations(4, 2)
    _same(gpu.minhash_hashes(offsets, hashes, a, b), REF.minhash_hashes(offsets, hashes, a, b))


@SIM_ONLY
def test_one_document_too_large_raises(gpu, monkeypatch):
    monkeypatch.setattr(D, "SIM_MEMORY", 4 << 10)
    a, b = permutations(4, 1)
    with pytest.raises(ResourceExhaustedError, match="minhash_texts"):
        gpu.minhash_texts(["short", "word " * 200], 2, "word", a, b)
    with pytest.raises(ResourceExhaustedError, match="shingle_hashes"):
        gpu.shingle_hashes(["word " * 200], 2, "char")
    a, b = permutations(2048, 1)  # the permutations alone (8 kB each) are over the budget
    with pytest.raises(ResourceExhaustedError, match="minhash_hashes"):
        gpu.minhash_hashes(np.array([0, 1], np.int64), np.ones(1, np.uint64), a, b)


# -- concurrency -------------------------------------------------------------------------------


def test_sixteen_threads_match_a_serial_run(gpu):
    a, b = permutations(8, 3)
    rng = np.random.default_rng(1)
    words = ["Σοφία", "İz", "naïve", "日本", "😀x", "a_b", "ΑΣ."]
    batches = [[" ".join(rng.choice(words, int(rng.integers(0, 5)))) for _ in range(2)] for _ in range(16)]
    offsets = np.array([0, 2, 2, 7], np.int64)

    def job(i):
        texts = batches[i]
        if i % 3 == 0:
            return gpu.shingle_hashes(texts, 2, "char" if i % 2 else "word")
        if i % 3 == 1:
            return (gpu.minhash_texts(texts, 2, "word" if i % 2 else "char", a, b),)
        hashes = rng_hashes[i]
        return (gpu.minhash_hashes(offsets, hashes, a, b),)

    rng_hashes = {i: np.random.default_rng(i).integers(0, 1 << 63, 7, dtype=np.uint64) for i in range(16)}
    serial = [job(i) for i in range(16)]
    start = threading.Barrier(16)

    def together(i):
        start.wait()
        return job(i)

    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(together, range(16)))
    for s, c in zip(serial, concurrent):
        for x, y in zip(s, c):
            _same(y, x)


# -- the xxh64_bytes primitive -----------------------------------------------------------------


@D.kernel
def _xxh64_lengths(buf, starts, out):
    i = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while i < out.shape[0]:
        out[i] = _cuda_prims.GPU.xxh64_bytes(buf, starts[i], starts[i] + i, 0)
        i += stride


def test_xxh64_bytes_equals_xxhash_compiled_and_on_the_gpu_target():
    rng = np.random.default_rng(11)
    buf = rng.integers(0, 256, 6000, dtype=np.uint8)
    starts = rng.integers(0, 5800, 101).astype(np.int64)  # any alignment
    want = np.array([xxhash.xxh64_intdigest(buf[s : s + n].tobytes()) for n, s in enumerate(starts)], np.uint64)
    njit = np.array([CPU.xxh64_bytes(buf, s, s + n, 0) for n, s in enumerate(starts)], np.uint64)
    _same(njit, want)
    assert CPU.xxh64_bytes(buf, 5, 77, 12345) == xxhash.xxh64_intdigest(buf[5:77].tobytes(), seed=12345)
    out = D.empty(101, np.uint64)
    _cuda_tokenize.launch(_xxh64_lengths, 101, D.to_device(buf), D.to_device(starts), out)
    _same(D.to_host(out), want)
