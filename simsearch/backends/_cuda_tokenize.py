"""GPU tokenizer: UTF-8 text of a chunk of documents to the XXH64 hashes of their shingles.

Data-parallel throughout, so that a long document is spread over many threads like many short
ones. Each input byte owns ``2**ks`` *slots* (at least :func:`._numba_text.lowered_per_byte`, 1 on
every Unicode version so far; a power of two, so slot arithmetic is shifts); the thread of a code point's lead byte writes its lowered code
point(s) into its own slots and ``-1`` (a *hole*) into the rest, so ``str.lower`` needs no scan.
A thread per slot then decides, from its neighbours (holes skipped, never across a document
start), how many bytes and *units* it emits: in word mode a unit is a ``\\w+`` token and every
token is followed by one space (as in ``_numba_text._word_tokens``); in char mode a unit is a
code point of ``" ".join(text.lower().split())``, a whitespace run being emitted as one space in
front of the next non-space code point. Two ``cumsum`` scans place every byte and unit; a thread
per slot writes them. A thread per unit hashes the byte range of the shingle that starts there.

Char mode marks a space in front of a document's first code point too (leading whitespace);
:func:`_doc_units` drops it, since ``t`` never starts with a space.

All kernels use grid-stride loops (any launch shape gives the same result) and explicit integer
casts, so numba-cuda and numba's CUDA simulator compute the same bits.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import cuda, int32, int64, uint8

from .._unicode import CAPITAL_SIGMA, CASED, IGNORABLE, SPACE, WORD
from . import _device as D
from ._cuda_prims import GPU

__all__ = ["GPU", "DeviceTables", "ShingleStream", "gather_excl", "last", "launch", "scan", "shingle_stream"]

# The shared hash primitives, compiled as device functions (they run on the simulator too).
_xxh64_bytes = GPU.xxh64_bytes

_THREADS = 256  # preferred threads per block of the per-byte and per-unit kernels
_SPACE_BYTE = 32


class DeviceTables(NamedTuple):
    """The code-point tables of :func:`simsearch._unicode.tables` on the device (read-only)."""

    lower: Any  # int32 (0x110000,)
    multi: Any  # int32 (m, 3)
    flags: Any  # uint8 (0x110000,)
    slot_shift: int  # log2 of the slots per input byte


class ShingleStream(NamedTuple):
    """The shingle hashes of a chunk, grouped by document in input order (repeats kept)."""

    offsets: Any  # int64 (ndocs + 1,) device array
    hashes: Any  # uint64 (offsets[-1],) device array
    docs: Any  # int32 document of each hash, or None when not asked for


# -- host helpers -----------------------------------------------------------------------------


def launch(kern: Any, items: int, *args: Any) -> None:
    """Launch a grid-stride kernel over ``items`` work items (nothing to do for none)."""
    if items <= 0:
        return
    block = D.block_for(_THREADS)
    D.launch(kern, D.grid_for(items, block), block, *args)


def scan(x: Any) -> Any:
    """Inclusive int64 prefix sums of a device array, on the thread's stream."""
    out = D.empty(x.shape, np.int64)
    if x.shape[0]:
        D.xp.cumsum(x, dtype=np.int64, out=out)
    return out


def last(x: Any) -> int:
    """The last element of a 1-d device array as a Python int (0 when empty); synchronises."""
    if x.shape[0] == 0:
        return 0
    return int(D.to_host(x[-1:])[0])


# -- device functions -------------------------------------------------------------------------


@D.device_function
def _decode(data, p):
    """The code point starting at byte ``p`` and its length in bytes (UTF-8; surrogates allowed,
    as Python's 'surrogatepass' writes them)."""
    b0 = int64(data[p])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (int64(data[p + 1]) & 0x3F), 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((int64(data[p + 1]) & 0x3F) << 6) | (int64(data[p + 2]) & 0x3F), 3
    c = (
        ((b0 & 0x07) << 18)
        | ((int64(data[p + 1]) & 0x3F) << 12)
        | ((int64(data[p + 2]) & 0x3F) << 6)
        | (int64(data[p + 3]) & 0x3F)
    )
    return c, 4


@D.device_function
def _utf8_len(c):
    if c < 0x80:
        return 1
    if c < 0x800:
        return 2
    if c < 0x10000:
        return 3
    return 4


@D.device_function
def _put_utf8(buf, q, c):
    """Write the UTF-8 bytes of code point ``c`` at ``buf[q]``; returns how many."""
    if c < 0x80:
        buf[q] = uint8(c)
        return 1
    if c < 0x800:
        buf[q] = uint8(0xC0 | (c >> 6))
        buf[q + 1] = uint8(0x80 | (c & 0x3F))
        return 2
    if c < 0x10000:
        buf[q] = uint8(0xE0 | (c >> 12))
        buf[q + 1] = uint8(0x80 | ((c >> 6) & 0x3F))
        buf[q + 2] = uint8(0x80 | (c & 0x3F))
        return 3
    buf[q] = uint8(0xF0 | (c >> 18))
    buf[q + 1] = uint8(0x80 | ((c >> 12) & 0x3F))
    buf[q + 2] = uint8(0x80 | ((c >> 6) & 0x3F))
    buf[q + 3] = uint8(0x80 | (c & 0x3F))
    return 4


@D.device_function
def _final_sigma(data, starts, p, flags):
    """Python's Final_Sigma test for the capital sigma at byte ``p``, on the original code points
    of its document (the same test as ``_numba_text._final_sigma``): a cased code point before it
    and none after it, case-ignorable ones skipped."""
    nbytes = data.shape[0]
    q = p
    c = int64(0)
    found = False
    while q > 0 and starts[q] == 0:
        q -= 1
        while (int64(data[q]) & 0xC0) == 0x80:
            q -= 1
        c, _ = _decode(data, q)
        if (flags[c] & IGNORABLE) == 0:
            found = True
            break
    if not found or (flags[c] & CASED) == 0:
        return False
    q = p + 2
    while q < nbytes and starts[q] == 0:
        c, n = _decode(data, q)
        if (flags[c] & IGNORABLE) == 0:
            return (flags[c] & CASED) == 0
        q += n
    return True


@D.device_function
def _doc_starts_at(starts, ks, t):
    """Whether slot ``t`` is the first slot of a document."""
    return (t & ((int64(1) << ks) - 1)) == 0 and starts[t >> ks] != 0


@D.device_function
def _prev_flags(low, starts, flags, ks, s):
    """Flags of the lowered code point before slot ``s`` in its document (0 when none)."""
    t = s
    while t > 0 and not _doc_starts_at(starts, ks, t):
        t -= 1
        c = low[t]
        if c >= 0:
            return flags[c]
    return uint8(0)


@D.device_function
def _next_flags(low, starts, flags, ks, s):
    """Flags of the lowered code point after slot ``s`` in its document (0 when none)."""
    t = s + 1
    while t < low.shape[0] and not _doc_starts_at(starts, ks, t):
        c = low[t]
        if c >= 0:
            return flags[c]
        t += 1
    return uint8(0)


@D.device_function
def _doc_of(off, ndocs, g):
    """The document whose unit range ``off[d]:off[d + 1]`` holds unit ``g`` (binary search)."""
    lo = int64(0)
    hi = int64(ndocs)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if off[mid] <= g:
            lo = mid
        else:
            hi = mid
    return lo


# -- kernels ----------------------------------------------------------------------------------


@D.kernel
def _mark_starts(offsets, starts):
    """starts[offsets[d]] = 1 for every document d (chunk-relative byte offsets)."""
    i = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    nbytes = starts.shape[0]
    while i < offsets.shape[0] - 1:
        p = offsets[i]
        if p < nbytes:
            starts[p] = 1
        i += stride


@D.kernel
def _lower_slots(data, starts, lower, multi, flags, ks, low):
    """``str.lower`` per code point into its lead byte's slots (``-1`` fills the rest)."""
    p = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while p < data.shape[0]:
        if (int64(data[p]) & 0xC0) != 0x80:
            c, n = _decode(data, p)
            base = p << ks
            m = int64(0)
            if c == CAPITAL_SIGMA:
                low[base] = int32(0x3C2) if _final_sigma(data, starts, p, flags) else int32(0x3C3)
                m = 1
            else:
                v = lower[c]
                if v >= 0:
                    low[base] = v
                    m = 1
                else:
                    row = -v - 1
                    for j in range(multi.shape[1]):
                        x = multi[row, j]
                        if x >= 0:
                            low[base + m] = x
                            m += 1
            while m < (n << ks):
                low[base + m] = -1
                m += 1
        p += stride


@D.kernel
def _word_count(low, starts, flags, ks, nbytes, units):
    """Bytes each slot emits in word mode (a word code point, plus the space after a token's
    last one) and 1 where a token starts."""
    s = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while s < low.shape[0]:
        c = low[s]
        emit = 0
        first = 0
        if c >= 0 and (flags[c] & WORD) != 0:
            emit = _utf8_len(c)
            if (_next_flags(low, starts, flags, ks, s) & WORD) == 0:
                emit += 1
            if (_prev_flags(low, starts, flags, ks, s) & WORD) == 0:
                first = 1
        nbytes[s] = emit
        units[s] = first
        s += stride


@D.kernel
def _word_emit(low, nbytes, pos, units, upos, buf, tstart, tend):
    """Write the token stream: each word code point at its place, the space after each token,
    and every token's first and end byte."""
    s = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while s < low.shape[0]:
        emit = int64(nbytes[s])
        if emit > 0:
            q = pos[s] - emit
            n = _put_utf8(buf, q, low[s])
            tok = upos[s] - 1
            if emit > n:
                buf[q + n] = _SPACE_BYTE
                tend[tok] = q + n
            if units[s] != 0:
                tstart[tok] = q
        s += stride


@D.kernel
def _char_count(low, starts, flags, ks, nbytes, units):
    """Bytes and code points each slot emits in char mode: a non-space code point, after one
    space when whitespace precedes it."""
    s = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while s < low.shape[0]:
        c = low[s]
        emit = 0
        cps = 0
        if c >= 0 and (flags[c] & SPACE) == 0:
            cps = 1
            if (_prev_flags(low, starts, flags, ks, s) & SPACE) != 0:
                cps = 2
            emit = _utf8_len(c) + cps - 1
        nbytes[s] = emit
        units[s] = cps
        s += stride


@D.kernel
def _char_emit(low, nbytes, pos, units, upos, buf, marks):
    """Write the collapsed text and the first byte of each of its code points."""
    s = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while s < low.shape[0]:
        emit = int64(nbytes[s])
        if emit > 0:
            q = pos[s] - emit
            u = upos[s] - int64(units[s])
            if units[s] == 2:
                buf[q] = _SPACE_BYTE
                marks[u] = q
                q += 1
                u += 1
            marks[u] = q
            _put_utf8(buf, q, low[s])
        s += stride


@D.device_function
def _excl(inclusive, offsets, ks, d):
    """The exclusive prefix sum of ``inclusive`` at slot ``offsets[d] << ks``."""
    s = offsets[d] << ks
    return inclusive[s - 1] if s > 0 else int64(0)


@D.kernel
def _doc_units(upos, offsets, ks, ngram, char_mode, buf, marks, off, first, counts):
    """Per document: its unit offsets, its first unit (a char-mode leading space dropped) and its
    shingle count (none without units, one below ``ngram`` units, else units - ngram + 1)."""
    d = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    ndocs = first.shape[0]
    while d <= ndocs:
        lo = _excl(upos, offsets, ks, d)
        off[d] = lo
        if d < ndocs:
            hi = _excl(upos, offsets, ks, d + 1)
            if char_mode and hi > lo and buf[marks[lo]] == _SPACE_BYTE:
                lo += 1
            m = hi - lo
            first[d] = lo
            if m == 0:
                counts[d] = 0
            elif m < ngram:
                counts[d] = 1
            else:
                counts[d] = m - ngram + 1
        d += stride


@D.kernel
def _gather_excl(inclusive, offsets, ks, out):
    """out[d] = the exclusive prefix sum of ``inclusive`` at slot ``offsets[d] << ks``."""
    d = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    while d < offsets.shape[0]:
        out[d] = _excl(inclusive, offsets, ks, d)
        d += stride


@D.kernel
def _hash_shingles(off, first, sh_off, ustart, uend, shift, buf, ngram, want_docs, hashes, docs):
    """One thread per unit g: the shingle of units g..g+n-1 of its document (all of them when the
    document has fewer), hashed from byte ``ustart[g]`` to ``uend[last + shift]``."""
    g = int64(cuda.grid(1))
    stride = int64(cuda.gridsize(1))
    ndocs = first.shape[0]
    while g < ustart.shape[0]:
        d = _doc_of(off, ndocs, g)
        f = first[d]
        m = off[d + 1] - f
        i = g - f
        end = int64(-1)
        if i >= 0:
            if m < ngram:
                if i == 0:
                    end = g + m - 1 + shift
            elif i <= m - ngram:
                end = g + ngram - 1 + shift
        if end >= 0:
            o = sh_off[d] + i
            hashes[o] = _xxh64_bytes(buf, ustart[g], uend[end], 0)
            if want_docs:
                docs[o] = int32(d)
        g += stride


# -- the pipeline -----------------------------------------------------------------------------


def gather_excl(inclusive: Any, offsets: Any, ks: int = 0) -> Any:
    """Exclusive prefix sums of ``inclusive`` at ``offsets << ks``, as an int64 device array."""
    out = D.empty(offsets.shape, np.int64)
    launch(_gather_excl, offsets.shape[0], inclusive, offsets, ks, out)
    return out


def _units(data: Any, offsets: Any, tables: DeviceTables, char_mode: bool):
    """Lower and tokenise a chunk: the emitted bytes, each unit's first (and, in word mode, end)
    byte, and the inclusive scan of units per slot."""
    ks = tables.slot_shift
    nb, slots = data.shape[0], data.shape[0] << tables.slot_shift
    starts = D.zeros(nb, np.uint8)
    launch(_mark_starts, offsets.shape[0] - 1, offsets, starts)
    low = D.empty(slots, np.int32)
    launch(_lower_slots, nb, data, starts, tables.lower, tables.multi, tables.flags, ks, low)
    nbytes = D.empty(slots, np.uint8)
    units = D.empty(slots, np.uint8)
    launch(_char_count if char_mode else _word_count, slots, low, starts, tables.flags, ks, nbytes, units)
    del starts
    pos = scan(nbytes)
    upos = scan(units)
    total_bytes, total_units = last(pos), last(upos)
    buf = D.empty(max(total_bytes, 1), np.uint8)
    if char_mode:
        ustart = uend = D.empty(total_units + 1, np.int64)
        launch(_char_emit, slots, low, nbytes, pos, units, upos, buf, ustart)
        ustart[total_units] = total_bytes
        ustart = ustart[:total_units]
    else:
        ustart = D.empty(total_units, np.int64)
        uend = D.empty(total_units, np.int64)
        launch(_word_emit, slots, low, nbytes, pos, units, upos, buf, ustart, uend)
    return buf, ustart, uend, upos


def shingle_stream(data: Any, offsets: Any, tables: DeviceTables, ngram: int, char_mode: bool, want_docs: bool):
    """The shingle hashes of the documents ``offsets`` delimits in ``data`` (device arrays: UTF-8
    bytes, chunk-relative int64 offsets), grouped by document; with their documents when
    ``want_docs``. Scratch is bounded by the chunk's bytes (see :mod:`._cuda_text`'s plan)."""
    ndocs = offsets.shape[0] - 1
    buf, ustart, uend, upos = _units(data, offsets, tables, char_mode)
    off = D.empty(ndocs + 1, np.int64)
    first = D.empty(ndocs, np.int64)
    counts = D.empty(ndocs, np.int64)
    marks = uend if char_mode else D.empty(1, np.int64)  # read only in char mode
    launch(_doc_units, ndocs + 1, upos, offsets, tables.slot_shift, ngram, char_mode, buf, marks, off, first, counts)
    del upos
    sh_off = D.zeros(ndocs + 1, np.int64)
    if ndocs:
        sh_off[1:] = D.xp.cumsum(counts)
    total = last(sh_off)
    hashes = D.empty(total, np.uint64)
    docs = D.empty(total if want_docs else 1, np.int32)
    shift = 1 if char_mode else 0
    launch(
        _hash_shingles, ustart.shape[0], off, first, sh_off, ustart, uend, shift, buf, ngram, want_docs, hashes, docs
    )
    return ShingleStream(sh_off, hashes, docs if want_docs else None)
