"""The numba backend: parallel CPU kernels, the default where there is no GPU."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np

from .. import _unicode
from .._text import encode_texts
from . import _numba_text as K
from ._numba_lsh import NumbaLSHKernels

# Characters of text per pipeline step: small enough that the encoded bytes are still in cache when
# the kernel reads them and that the allocator reuses their memory, large enough to amortise a
# parallel launch. Step i + 1 is encoded (Python, holding the GIL) while the kernel hashes step i.
_STEP_CHARS = 1 << 22
_PROBE_DOCS = 4096  # documents whose lengths size the first step
_PAR_MIN_BYTES = 1 << 16  # text bytes (or 8 x shingle hashes) below which the kernels run on one thread


@contextmanager
def _num_threads(n: int):
    """Kernels called by this thread meanwhile run on ``n`` numba threads (``set_num_threads``
    is per calling thread, so concurrent callers are not affected)."""
    prev = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(prev)


@contextmanager
def _threads_for(work: int):
    """One thread for small batches: a parallel region must wake every worker, and on a busy
    machine one descheduled worker stalls the whole call (seen: 30-50 ms p90 on single-document
    near-duplicate queries under load, 0.3 ms on one thread)."""
    if work >= _PAR_MIN_BYTES:
        yield
        return
    with _num_threads(1):
        yield


@functools.lru_cache(maxsize=1)
def _tables():
    t = _unicode.tables()
    asc = K.ascii_word_table(t.lower, t.flags)
    return t, asc, K.swar_matches(asc), K.lowered_per_byte(t.lower, t.multi)


def _pipeline(texts: list[str], run) -> None:
    """Call ``run(lo, hi, data, offsets)`` on consecutive steps of about ``_STEP_CHARS`` characters
    of encoded text, in order, each on as many numba threads as its size calls for
    (:func:`_threads_for`). The calls run in one worker thread (the kernels release the GIL) while
    this thread encodes the next step; step sizes follow the bytes per document seen so far, so no
    pass over all the texts is needed before the first kernel starts."""
    n = len(texts)
    head = np.cumsum(np.fromiter(map(len, texts[:_PROBE_DOCS]), dtype=np.int64, count=min(n, _PROBE_DOCS)))
    hi = max(1, min(n, int(np.searchsorted(head, _STEP_CHARS, side="right")))) if n else 0
    encoded = encode_texts(texts[:hi])
    if hi == n:
        if n:
            with _threads_for(len(encoded[0])):
                run(0, n, *encoded)
        return
    nthreads = numba.get_num_threads()  # a per-thread setting: carry it over to the worker

    def work(lo, hi, data, offsets):
        numba.set_num_threads(nthreads)
        with _threads_for(len(data)):
            run(lo, hi, data, offsets)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simsearch-text") as pool:
        lo, done_bytes, pending = 0, 0, None
        while True:
            if pending is not None:
                pending.result()
            pending = pool.submit(work, lo, hi, *encoded)
            if hi == n:
                break
            done_bytes += int(encoded[1][-1])
            step = max(1, int(_STEP_CHARS * hi / max(done_bytes, 1)))
            lo, hi = hi, min(n, hi + step)
            encoded = encode_texts(texts[lo:hi])
        pending.result()


class NumbaBackend(NumbaLSHKernels):
    name = "numba"

    @property
    def device(self) -> str:
        return f"CPU ({numba.get_num_threads()} threads)"

    @property
    def host(self) -> "NumbaBackend":
        """The backend for host-resident data: this one."""
        return self

    def sharing_cores(self, busy: int = 1):
        """Kernels called by this thread meanwhile leave ``busy`` cores to work that runs beside
        them (at least one thread is kept): a pipelined upsert hashes chunk i + 1 while a worker
        inserts chunk i, and hashing on every core then oversubscribed them (2 cores: 39-41k docs/s
        with both threads hashing, 43-45k with one, paired runs)."""
        return _num_threads(max(1, numba.get_num_threads() - busy))

    def shingle_hashes(self, texts, ngram, shingle):
        t, asc, swar, per_byte = _tables()
        char_mode = shingle == "char"
        out_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        hashes = np.empty(0, dtype=np.uint64)

        def run(lo, hi, data, offsets):
            # One pass: each chunk stages its sorted unique sets, then they are packed into the CSR.
            nonlocal hashes
            bounds = K.bounds(offsets, numba.get_num_threads())
            stage_at = np.zeros(hi - lo + 1, dtype=np.int64)
            np.cumsum(K.stage_bounds(offsets, char_mode, per_byte), out=stage_at[1:])
            stage_at = stage_at[bounds]
            stage = np.empty(int(stage_at[-1]), dtype=np.uint64)
            counts = out_offsets[lo + 1 : hi + 1]
            K.shingle_sets(
                data, offsets, bounds, ngram, char_mode, asc, swar, t.lower, t.multi, t.flags, stage, stage_at, counts
            )
            base = int(out_offsets[lo])
            np.cumsum(counts, out=counts)
            counts += base
            hashes = _room(hashes, base, int(counts[-1]), hi, len(texts))
            K.compact(stage, stage_at, bounds, out_offsets[lo : hi + 1], hashes[base:], base)

        _pipeline(texts, run)
        total = int(out_offsets[-1])
        return out_offsets, hashes[:total] if hashes.size - total <= total // 16 else hashes[:total].copy()

    def minhash_texts(self, texts, ngram, shingle, a, b):
        t, asc, swar, _ = _tables()
        char_mode = shingle == "char"
        sigs = np.empty((len(texts), len(a)), dtype=np.uint32)

        def run(lo, hi, data, offsets):
            bounds = K.bounds(offsets, numba.get_num_threads())
            K.minhash_texts(
                data, offsets, bounds, ngram, char_mode, asc, swar, t.lower, t.multi, t.flags, a, b, sigs[lo:hi]
            )

        _pipeline(texts, run)
        return sigs

    def minhash_hashes(self, offsets, hashes, a, b):
        with _threads_for(8 * len(hashes)):
            bounds = K.bounds(offsets, numba.get_num_threads())
            return K.minhash_csr(offsets, hashes, bounds, a, b)

    def pairwise(self, x, y, metric):
        from . import _numba_distance

        return _numba_distance.pairwise(x, y, metric)

    def knn(self, base, queries, k, metric, cache_key=None):
        from . import _numba_distance

        return _numba_distance.knn(base, queries, k, metric)

    def unit_rows(self, x):
        from . import _numpy_distance

        return _numpy_distance.unit_rows(x)

    def exact_pairs(self, x, y, rows, cols, metric):
        from . import _numba_distance

        return _numba_distance.exact_pairs(x, y, rows, cols, metric)


def _room(hashes: np.ndarray, used: int, need: int, docs_done: int, docs: int) -> np.ndarray:
    """``hashes`` with room for ``need`` values, the first ``used`` kept; grown to a projection of
    the whole batch from the documents done so far, so that it is rarely copied."""
    if need <= hashes.size:
        return hashes
    projected = int(need * docs / max(docs_done, 1) * 1.05) + 1024
    grown = np.empty(max(projected, need, hashes.size * 3 // 2), dtype=np.uint64)
    grown[:used] = hashes[:used]
    return grown


def create() -> NumbaBackend:
    return NumbaBackend()
