"""The GPU backend's text kernels: shingle hash sets and MinHash signatures, all on the device.

Texts go up as one UTF-8 buffer plus int64 offsets per chunk of documents
(:func:`simsearch.shingling.encode_texts`, through the thread's pinned staging buffers); the
device lowercases, tokenises and hashes them (:mod:`._cuda_tokenize`), then either takes the
MinHash minimum over each document's shingles (one thread block per document, threads over
permutations, shared-memory tiles of mixed hashes) or sorts and de-duplicates each document's
hashes (a segmented sort: by hash, then stably by document) into the CSR. Results equal the numpy
backend bit for bit.

Memory: a chunk is as many whole documents as a plan from :func:`._device.free_bytes` holds,
counting every device buffer of the chunk (bounded per text byte and per document, the
signatures included); a document larger than the plan gets a chunk of its own. A chunk that
still runs out of memory is split and retried (:func:`._device.split_on_oom`); one document that
cannot fit raises :class:`~simsearch.errors.ResourceExhaustedError`. The Unicode tables
(:func:`simsearch._unicode.tables`, 5.5 MB) go up once per process and device, and are read-only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
from numba import cuda, int64, uint32

from .. import _unicode
from ..errors import ResourceExhaustedError
from .._text import encode_texts
from . import _cuda_tokenize as T
from . import _device as D
from ._cuda_prims import GPU
from ._numba_text import lowered_per_byte

__all__ = ["CudaTextKernels"]

_PLAN_SHARE = 0.5  # of the free device memory that one call's chunks may use
# Device bytes per slot (2**slot_shift slots per text byte) a chunk needs at its peak: bytes,
# slot arrays and scans (22), emitted text (5), unit marks (8), hashes (8) and, for sets, the
# documents of the hashes and the segmented sort's indices and temporaries (about 40 more).
_SLOT_COST = {"minhash": 48, "sets": 96}
_BYTE_COST = 2  # the text bytes and document-start marks
_DOC_COST = 96  # per document: offsets, unit and shingle offsets, counts
_HASH_DOC_COST = 16  # per document of minhash_hashes: offsets
_TILE = 256  # mixed hashes per shared-memory tile of the MinHash kernel
_PERMS_PER_THREAD = 4

_shingle_x = GPU.shingle_x
_perm32 = GPU.perm32

_tables_lock = threading.Lock()
_tables: dict[int, T.DeviceTables] = {}  # device id -> its read-only copy of the tables


def _device_id() -> int:
    return 0 if D.SIM else int(D.xp.cuda.Device().id)


def device_tables() -> T.DeviceTables:
    """The Unicode tables on the calling thread's device, uploaded on first use."""
    key = _device_id()
    got = _tables.get(key)
    if got is not None:
        return got
    with _tables_lock:
        got = _tables.get(key)
        if got is None:
            host = _unicode.tables()
            try:
                with D.on_stream():
                    got = T.DeviceTables(
                        D.to_device(host.lower),
                        D.to_device(host.multi),
                        D.to_device(host.flags),
                        (lowered_per_byte(host.lower, host.multi) - 1).bit_length(),
                    )
                    D.synchronize()  # other threads' streams read them from now on
            except Exception as exc:
                if not D.is_oom(exc):
                    raise
                raise ResourceExhaustedError(
                    f"The GPU has no room for simsearch's Unicode tables "
                    f"({host.lower.nbytes + host.flags.nbytes} bytes): {exc}. Free device memory or "
                    "use backend='numba'."
                ) from None
            _tables[key] = got
    return got


# -- memory plans -----------------------------------------------------------------------------


def _budget() -> int:
    return max(1, int(D.free_bytes() * _PLAN_SHARE))


def cuts(prefix: np.ndarray, per_item: int, per_doc: int, budget: int) -> list[tuple[int, int]]:
    """Consecutive document ranges whose cost ``per_item * items + per_doc * docs`` stays within
    ``budget`` (``prefix``: the int64 item offsets of the documents); a document over the budget
    gets a range of its own."""
    n = len(prefix) - 1
    cost = prefix.astype(np.int64) * per_item + np.arange(n + 1, dtype=np.int64) * per_doc
    out, lo = [], 0
    while lo < n:
        hi = int(np.searchsorted(cost, cost[lo] + budget, side="right")) - 1
        hi = min(n, max(hi, lo + 1))
        out.append((lo, hi))
        lo = hi
    return out


_STEP_CHARS = 1 << 28  # characters encoded per step at most, so that encoding overlaps the device


def _text_steps(texts: list[str], per_byte: int, per_doc: int, budget: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encode the texts a step at a time (at most a plan, and at most ``_STEP_CHARS`` characters,
    so that the host never holds the whole batch encoded): yields each step's UTF-8 bytes and
    offsets."""
    lengths = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=lengths[1:])
    for lo, hi in cuts(lengths, per_byte, per_doc, min(budget, _STEP_CHARS * per_byte)):
        yield encode_texts(texts[lo:hi])


def _prefetched(steps: Iterator) -> Iterator:
    """``steps``, each produced on a helper thread while the caller works on the previous one: the
    host encodes step i + 1 (holding the GIL) while the device works on step i (the caller waits
    on the device without it). At most one step is held ahead; the helper's errors re-raise here."""
    import queue

    q: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in steps:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    worker = threading.Thread(target=produce, name="simsearch-gpu-encode", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _chunked_texts(texts, kind: str, per_doc: int, run: Callable, what: str) -> list:
    """``run(data, offsets)`` (host arrays of one chunk) over chunks of the texts that fit the plan,
    each split further when it runs out of device memory; the results in document order."""
    per_byte = _BYTE_COST + (_SLOT_COST[kind] << device_tables().slot_shift)
    budget = _budget()
    results = []
    steps = _text_steps(texts, per_byte, per_doc, budget)
    if len(texts) > 1 and sum(map(len, texts[:64])) * len(texts) > 64 * _STEP_CHARS:
        steps = _prefetched(steps)  # several steps: encode the next while the device works
    for data, offsets in steps:

        def attempt(lo: int, hi: int, data=data, offsets=offsets):
            b0, b1 = int(offsets[lo]), int(offsets[hi])
            return run(data[b0:b1], offsets[lo : hi + 1] - b0)

        for lo, hi in cuts(offsets, per_byte, per_doc, budget):
            results.extend(D.split_on_oom(attempt, lo, hi, what))
    return results


# -- MinHash ----------------------------------------------------------------------------------


@D.kernel
def _minhash_kernel(off, hashes, a, b, sigs):
    """sigs[d, k] = min over the hashes h of document d of perm32(a[k], b[k], shingle_x(h));
    0xFFFFFFFF for a document without any. One block per document (grid-stride), each thread
    holding the running minima of up to _PERMS_PER_THREAD permutations per pass, the block
    sharing tiles of mixed hashes."""
    tile = cuda.shared.array(_TILE, uint32)
    mins = cuda.local.array(_PERMS_PER_THREAD, uint32)
    ak = cuda.local.array(_PERMS_PER_THREAD, uint32)
    bk = cuda.local.array(_PERMS_PER_THREAD, uint32)
    tid = int64(cuda.threadIdx.x)
    bd = int64(cuda.blockDim.x)
    nperm = a.shape[0]
    d = int64(cuda.blockIdx.x)
    while d < off.shape[0] - 1:
        lo = off[d]
        hi = off[d + 1]
        k0 = int64(0)
        while k0 < nperm:
            for r in range(_PERMS_PER_THREAD):
                k = k0 + r * bd + tid
                mins[r] = uint32(0xFFFFFFFF)
                ak[r] = a[k] if k < nperm else uint32(0)
                bk[r] = b[k] if k < nperm else uint32(0)
            t0 = lo
            while t0 < hi:
                cnt = min(hi - t0, _TILE)
                cuda.syncthreads()  # the previous tile has been read
                j = tid
                while j < cnt:
                    tile[j] = _shingle_x(hashes[t0 + j])
                    j += bd
                cuda.syncthreads()
                for j in range(cnt):
                    x = tile[j]
                    for r in range(_PERMS_PER_THREAD):
                        mins[r] = min(mins[r], _perm32(ak[r], bk[r], x))
                t0 += _TILE
            for r in range(_PERMS_PER_THREAD):
                k = k0 + r * bd + tid
                if k < nperm:
                    sigs[d, k] = mins[r]
            k0 += _PERMS_PER_THREAD * bd
        d += int64(cuda.gridDim.x)


def _minhash_on_device(off, hashes, a, b) -> np.ndarray:
    """Signatures (host uint32 (ndocs, num_perm)) of the CSR hash sets ``off``, ``hashes`` (device
    arrays, any order, repeats allowed) under the device permutations ``a``, ``b``."""
    ndocs, nperm = off.shape[0] - 1, a.shape[0]
    sigs = D.empty((ndocs, nperm), np.uint32)
    if ndocs:
        # one pass over the permutations when they fit: a block smaller than a warp costs the
        # same lanes as a full one, and a larger block than needed would only idle
        block = D.block_for(min(256, -(-nperm // _PERMS_PER_THREAD)))
        D.launch(_minhash_kernel, D.grid_for(ndocs, 1), block, off, hashes, a, b, sigs)
    return D.to_host(sigs)


# -- sorted unique sets -----------------------------------------------------------------------


@D.kernel
def _mark_firsts(h, docs, keep):
    """keep[i] = 1 where (docs[i], h[i]) differs from its predecessor (sorted input)."""
    i = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while i < h.shape[0]:
        keep[i] = 1 if i == 0 or docs[i] != docs[i - 1] or h[i] != h[i - 1] else 0
        i += stride


@D.kernel
def _compact(h, keep, kpos, out):
    i = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while i < h.shape[0]:
        if keep[i] != 0:
            out[kpos[i] - 1] = h[i]
        i += stride


def _sorted_unique(stream: T.ShingleStream) -> tuple[np.ndarray, np.ndarray]:
    """Sort each document's hashes and drop repeats: host (unique counts per document, hashes)."""
    xp, h, docs = D.xp, stream.hashes, stream.docs
    order = xp.argsort(h)  # by hash (ties in any order), then stably by document
    order = order[xp.argsort(docs[order], kind="stable")]
    h, docs = h[order], docs[order]
    del order
    keep = D.empty(h.shape[0], np.uint8)
    T.launch(_mark_firsts, h.shape[0], h, docs, keep)
    kpos = T.scan(keep)
    out = D.empty(T.last(kpos), np.uint64)
    T.launch(_compact, h.shape[0], h, keep, kpos, out)
    uoff = T.gather_excl(kpos, stream.offsets)
    return np.diff(D.to_host(uoff)), D.to_host(out)


# -- the mixin --------------------------------------------------------------------------------


def _perms(a, b, what: str) -> tuple:
    """The permutation parameters on the device (raises ResourceExhaustedError when they do not fit)."""
    try:
        with D.on_stream():
            return D.to_device(np.ascontiguousarray(a, np.uint32)), D.to_device(np.ascontiguousarray(b, np.uint32))
    except Exception as exc:
        if not D.is_oom(exc):
            raise
        raise ResourceExhaustedError(
            f"{what}: {len(a)} permutations need more device memory than the GPU has free ({exc}). Use "
            "fewer permutations or backend='numba'."
        ) from None


def _minhash_csr(offsets: np.ndarray, hashes: np.ndarray, perms: tuple, what: str) -> np.ndarray:
    """Signatures of host CSR hash sets, in chunks that fit the plan; a document over the plan, or
    one that runs out of memory alone, is done in pieces of its hashes whose minima combine."""
    n, nperm, size = len(offsets) - 1, len(perms[0]), hashes.itemsize
    sigs = np.empty((n, nperm), dtype=np.uint32)
    budget = _budget()
    per_doc = _HASH_DOC_COST + 4 * nperm
    step = max(1, (budget - per_doc) // size)

    def run_piece(lo: int, hi: int) -> np.ndarray:  # hashes lo..hi of one document
        with D.on_stream():
            off = D.to_device(np.array([0, hi - lo], np.int64))
            return _minhash_on_device(off, D.to_device(hashes[lo:hi]), *perms)

    def run(lo: int, hi: int) -> np.ndarray:  # documents lo..hi
        h0, h1 = int(offsets[lo]), int(offsets[hi])
        if hi - lo == 1:
            parts = []
            for p in range(h0, max(h1, h0 + 1), step):
                parts.extend(D.split_on_oom(run_piece, p, min(h1, p + step), what))
            return np.minimum.reduce(np.concatenate(parts), axis=0, keepdims=True)
        with D.on_stream():
            off = D.to_device(offsets[lo : hi + 1] - h0)
            return _minhash_on_device(off, D.to_device(hashes[h0:h1]), *perms)

    for lo, hi in cuts(offsets - offsets[0], size, per_doc, budget):
        sigs[lo:hi] = np.concatenate(D.split_on_oom(run, lo, hi, what))
    return sigs


class CudaTextKernels:
    """Text and MinHash kernels of the Backend Protocol on the GPU (see the module docstring)."""

    def shingle_hashes(self, texts, ngram, shingle):
        n = len(texts)
        offsets = np.zeros(n + 1, dtype=np.int64)
        if n == 0:
            return offsets, np.empty(0, np.uint64)
        tables = device_tables()

        def run(data, offs):
            with D.on_stream():
                stream = T.shingle_stream(D.to_device(data), D.to_device(offs), tables, ngram, shingle == "char", True)
                return _sorted_unique(stream)

        parts = _chunked_texts(texts, "sets", _DOC_COST, run, "shingle_hashes")
        np.cumsum(np.concatenate([c for c, _ in parts]), out=offsets[1:])
        return offsets, np.concatenate([h for _, h in parts])

    def minhash_texts(self, texts, ngram, shingle, a, b):
        nperm = len(a)
        if len(texts) == 0:
            return np.empty((0, nperm), np.uint32)
        tables = device_tables()
        perms = _perms(a, b, "minhash_texts")

        def run(data, offs):
            with D.on_stream():
                stream = T.shingle_stream(D.to_device(data), D.to_device(offs), tables, ngram, shingle == "char", False)
                return _minhash_on_device(stream.offsets, stream.hashes, *perms)

        parts = _chunked_texts(texts, "minhash", _DOC_COST + 4 * nperm, run, "minhash_texts")
        return np.ascontiguousarray(np.concatenate(parts))

    def minhash_hashes(self, offsets, hashes, a, b):
        offsets = np.asarray(offsets, dtype=np.int64)
        hashes = np.asarray(hashes)
        if hashes.dtype != np.uint32:
            hashes = hashes.astype(np.uint64, copy=False)
        if len(offsets) <= 1:
            return np.empty((0, len(a)), dtype=np.uint32)
        return _minhash_csr(offsets, hashes, _perms(a, b, "minhash_hashes"), "minhash_hashes")
