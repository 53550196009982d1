"""Numba kernels for text: UTF-8 decoding, exact lowercasing, word/char shingling, XXH64, MinHash.

Everything works on the UTF-8 bytes of a batch (``data`` + ``offsets``) and runs in parallel over
chunks of documents, each chunk with its own scratch buffers. The tokenizer reproduces
:mod:`simsearch.shingling` exactly through the tables of :mod:`simsearch._unicode`; ASCII bytes
take a branch-free path through a 128-entry table (:func:`ascii_word_table`). Shingles are hashed
a block at a time by a branch-free XXH64 that compiles to SIMD across shingles
(:func:`._numba_xxh64.hash_ranges`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint32, uint64

from ._numba_xxh64 import CPU, HASH_BLOCK, PAD, ctz, hash_ranges, load64, store64, xxh64

WORD = 1
SPACE = 2
IGNORABLE = 4
CASED = 8
_M32 = uint64(0xFFFFFFFF)
_perm = CPU.perm32
_shingle_x = CPU.shingle_x


@njit(inline="always")
def _next_cp(data, p):
    """The code point starting at byte p and the offset after it (UTF-8, surrogates allowed,
    as Python's 'surrogatepass' writes them)."""
    b0 = np.int32(data[p])
    if b0 < 0x80:
        return b0, p + 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int32(data[p + 1]) & 0x3F), p + 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((np.int32(data[p + 1]) & 0x3F) << 6) | (np.int32(data[p + 2]) & 0x3F), p + 3
    c = (
        ((b0 & 0x07) << 18)
        | ((np.int32(data[p + 1]) & 0x3F) << 12)
        | ((np.int32(data[p + 2]) & 0x3F) << 6)
        | (np.int32(data[p + 3]) & 0x3F)
    )
    return c, p + 4


@njit(cache=True)
def _decode(data, start, end, cps):
    """Decode ``data[start:end]`` into ``cps``; returns the number of code points."""
    n = 0
    p = start
    while p < end:
        cps[n], p = _next_cp(data, p)
        n += 1
    return n


@njit(cache=True)
def _final_sigma(cps, n, i, flags):
    """Python's Final_Sigma context test for the capital sigma at ``cps[i]``."""
    j = i - 1
    while j >= 0 and (flags[cps[j]] & IGNORABLE):
        j -= 1
    if j < 0 or not (flags[cps[j]] & CASED):
        return False
    j = i + 1
    while j < n and (flags[cps[j]] & IGNORABLE):
        j += 1
    return j == n or not (flags[cps[j]] & CASED)


@njit(cache=True)
def _lower(cps, n, lower, multi, flags, out):
    """``str.lower`` of ``cps[:n]`` into ``out``; returns the new length."""
    m = 0
    for i in range(n):
        c = cps[i]
        if c == 0x3A3:
            out[m] = 0x3C2 if _final_sigma(cps, n, i, flags) else 0x3C3
            m += 1
            continue
        v = lower[c]
        if v >= 0:
            out[m] = v
            m += 1
        else:
            row = -v - 1
            for j in range(multi.shape[1]):
                if multi[row, j] >= 0:
                    out[m] = multi[row, j]
                    m += 1
    return m


@njit(cache=True)
def _decode_lower(data, start, end, lower, multi, flags, cps, low):
    """UTF-8 decode and ``str.lower`` in one pass into ``low``; returns the lowered length.

    The Final_Sigma rule needs the original neighbours of a capital sigma, so a text holding one
    (UTF-8 0xCE 0xA3) is decoded into ``cps`` first and lowered by :func:`_lower`.
    """
    m = 0
    p = start
    while p < end:
        c, p = _next_cp(data, p)
        if c == 0x3A3:
            return _lower(cps, _decode(data, start, end, cps), lower, multi, flags, low)
        v = lower[c]
        if v >= 0:
            low[m] = v
            m += 1
        else:
            row = -v - 1
            for j in range(multi.shape[1]):
                if multi[row, j] >= 0:
                    low[m] = multi[row, j]
                    m += 1
    return m


@njit(inline="always")
def _put_utf8(buf, q, c):
    if c < 0x80:
        buf[q] = c
        return q + 1
    if c < 0x800:
        buf[q] = 0xC0 | (c >> 6)
        buf[q + 1] = 0x80 | (c & 0x3F)
        return q + 2
    if c < 0x10000:
        buf[q] = 0xE0 | (c >> 12)
        buf[q + 1] = 0x80 | ((c >> 6) & 0x3F)
        buf[q + 2] = 0x80 | (c & 0x3F)
        return q + 3
    buf[q] = 0xF0 | (c >> 18)
    buf[q + 1] = 0x80 | ((c >> 12) & 0x3F)
    buf[q + 2] = 0x80 | ((c >> 6) & 0x3F)
    buf[q + 3] = 0x80 | (c & 0x3F)
    return q + 4


def ascii_word_table(lower: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """uint8 (128,): the lowered byte of each ASCII word character, 32 (a space) for the others."""
    low = lower[:128]
    return np.where(flags[low] & WORD, low, 32).astype(np.uint8)


def lowered_per_byte(lower: np.ndarray, multi: np.ndarray) -> int:
    """The most code points ``str.lower`` makes of one UTF-8 byte, rounded up: 1 for every Unicode
    version so far (only U+0130, two bytes, lowers to two code points). Bounds shingle counts."""
    src = np.nonzero(lower < 0)[0]
    if src.size == 0:
        return 1
    produced = (multi[-lower[src] - 1] >= 0).sum(axis=1)
    nbytes = np.select([src < 0x80, src < 0x800, src < 0x10000], [1, 2, 3], 4)
    return max(1, int(np.ceil((produced / nbytes).max())))


def stage_bounds(offsets: np.ndarray, char_mode: bool, per_byte: int) -> np.ndarray:
    """Per document, the most unique shingles it can have: one per lowered code point (char mode),
    or per token, and tokens need a separator between them (word mode)."""
    cps = np.diff(offsets) * per_byte
    return cps if char_mode else (cps + 1) // 2


_H = uint64(0x8080808080808080)
_ONES = uint64(0x0101010101010101)
_LOW7 = uint64(0x7F7F7F7F7F7F7F7F)
_MOVEMASK = uint64(0x0102040810204080)  # gathers the 0x80 bit of each byte into the top byte


def swar_matches(asc: np.ndarray) -> bool:
    """Whether the interpreter's ASCII word characters and lowercasing are [0-9A-Za-z_] and A-Z -> a-z,
    which the 8-bytes-at-a-time classifier of :func:`_word_tokens` hard-codes (true on every
    Python 3; checked rather than assumed)."""
    want = [ord(chr(b).lower()) if chr(b).isalnum() or b == 0x5F else 32 for b in range(128)]
    return bool(np.array_equal(asc, np.array(want, dtype=np.uint8)))


@njit(inline="always")
def _ge(x, c):
    """0x80 in each byte of ``x`` (bytes < 0x80) that is >= c; no carry crosses bytes."""
    return (x + _ONES * uint64(0x80 - c)) & _H


@njit(inline="always")
def _word_bits(x):
    """Bit k set when byte k of the ASCII word ``x`` is [0-9A-Za-z_]."""
    f = x | (_ONES * uint64(0x20))
    letter = _ge(f, 0x61) & ~_ge(f, 0x7B)
    digit = _ge(x, 0x30) & ~_ge(x, 0x3A)
    y = x ^ (_ONES * uint64(0x5F))
    under = ~(((y & _LOW7) + _LOW7) | y) & _H
    return (((letter | digit | under) >> uint64(7)) * _MOVEMASK) >> uint64(56)


@njit(inline="always")
def _lower8(y):
    """ASCII A-Z -> a-z in each byte of ``y``; a byte >= 0x80 garbles only the bytes after it."""
    return y | ((_ge(y, 0x41) & ~_ge(y, 0x5B)) >> uint64(2))


@njit(inline="always")
def _emit(buf, q, ns, ne, in_tok, c, flags, tstart, tend):
    """Tokenizer step for one lowered non-ASCII code point (see :func:`_word_tokens`)."""
    w = uint64(flags[c] & WORD)
    tstart[ns] = q
    tend[ne] = q
    ns += w & ~in_tok
    e = in_tok & ~w
    ne += e
    if w:
        q = uint64(_put_utf8(buf, q, c))
    else:
        buf[q] = 32
        q += e
    return q, ns, ne, w


@njit(cache=True)
def _word_tokens(data, start, end, asc, swar, lower, multi, flags, buf, tstart, tend):
    """Lowered ``\\w+`` tokens of ``data[start:end]`` into ``buf``, each followed by one space, so
    that tokens i..j are the bytes ``buf[tstart[i]:tend[j]]``. Returns the token count, or -1 for a
    text holding a capital sigma (Final_Sigma needs context: see :func:`_word_tokens_slow`).

    All-ASCII 64-byte blocks (``swar``) are classified 8 bytes at a time into a 64-bit word mask,
    and each run of word bytes is copied lowered 8 bytes at a time. Other bytes go one at a time,
    branch-free for ASCII: each writes its lowered form (or a space) at ``q`` and ``q`` to the next
    free token-start and token-end slots; a slot is kept by advancing its counter when a token
    starts or ends there, and ``q`` advances on word bytes and on the first byte after a token.
    Indices are unsigned so that no negative-index wraparound code is generated.
    """
    q = uint64(0)
    ns = uint64(0)
    ne = uint64(0)
    in_tok = uint64(0)
    p = uint64(start)
    stop = uint64(end)
    readable = uint64(data.shape[0])
    while p < stop:
        limit = stop
        if swar and p + uint64(64) <= stop and p + uint64(72) <= readable:
            mask = uint64(0)
            high = uint64(0)
            for k in range(8):
                x = load64(data, p + uint64(8 * k))
                high |= x
                mask |= _word_bits(x) << uint64(8 * k)
            if (high & _H) == 0:
                # a token running in from the previous block may end right here
                closed = in_tok & ~mask & uint64(1)
                tend[ne] = q
                buf[q] = 32
                ne += closed
                q += closed
                rest = mask
                while rest:
                    s = ctz(rest)
                    after = rest + (uint64(1) << s)  # clears the run starting at s, sets its end bit
                    e = ctz(after)
                    rest &= after
                    tstart[ns] = q
                    ns += uint64(1) - (in_tok & uint64(s == 0))
                    n = e - s
                    j = uint64(0)
                    while j < n:
                        store64(buf, q + j, _lower8(load64(data, p + s + j)))
                        j += uint64(8)
                    q += n
                    ended = uint64(e < 64)
                    tend[ne] = q
                    buf[q] = 32
                    ne += ended
                    q += ended
                in_tok = mask >> uint64(63)
                p += uint64(64)
                continue
            limit = p + uint64(64)
        while p < limit:
            byte = data[p]
            if byte < 0x80:
                v = asc[byte]
                w = uint64(v != 32)
                buf[q] = v
                tstart[ns] = q
                tend[ne] = q
                ns += w & ~in_tok
                e = in_tok & ~w
                ne += e
                q += w | e
                in_tok = w
                p += uint64(1)
                continue
            c, after = _next_cp(data, p)
            p = uint64(after)
            if c == 0x3A3:
                return -1
            v = lower[c]
            if v >= 0:
                q, ns, ne, in_tok = _emit(buf, q, ns, ne, in_tok, v, flags, tstart, tend)
            else:
                row = -v - 1
                for j in range(multi.shape[1]):
                    if multi[row, j] >= 0:
                        q, ns, ne, in_tok = _emit(buf, q, ns, ne, in_tok, multi[row, j], flags, tstart, tend)
    tend[ne] = q
    return np.int64(ne + in_tok)


@njit(cache=True)
def _word_tokens_slow(data, start, end, lower, multi, flags, cps, low, buf, tstart, tend):
    """:func:`_word_tokens` for texts with a capital sigma: decode and lower first, then tokenize."""
    m = _decode_lower(data, start, end, lower, multi, flags, cps, low)
    q = uint64(0)
    ns = uint64(0)
    ne = uint64(0)
    in_tok = uint64(0)
    for i in range(m):
        q, ns, ne, in_tok = _emit(buf, q, ns, ne, in_tok, low[i], flags, tstart, tend)
    tend[ne] = q
    return np.int64(ne + in_tok)


@njit(cache=True)
def _char_shingles(data, start, end, ngram, lower, multi, flags, cps, low, buf, marks, lanes, out):
    """Char mode of :func:`_doc_shingles`: the whitespace-collapsed lowered text goes to ``buf``,
    and shingle i spans code points i..i+n-1."""
    m = _decode_lower(data, start, end, lower, multi, flags, cps, low)
    q = 0
    count = 0
    pending = False
    for i in range(m):
        c = low[i]
        if flags[c] & SPACE:
            pending = count > 0
            continue
        if pending:
            marks[count] = q
            count += 1
            q = _put_utf8(buf, q, 32)
            pending = False
        marks[count] = q
        count += 1
        q = _put_utf8(buf, q, c)
    marks[count] = q
    if count == 0:
        return 0
    if count < ngram:
        out[0] = xxh64(buf, 0, q)
        return 1
    hash_ranges(buf, marks, 0, marks, ngram, count - ngram + 1, lanes, out)
    return count - ngram + 1


@njit(cache=True)
def _doc_shingles(data, start, end, ngram, char_mode, asc, swar, lower, multi, flags, cps, low, buf, marks, lanes, out):
    """Hash every shingle of one document into ``out``; returns how many (repeats included).

    Word mode: shingle i is the byte range from the start of token i to the end of token i+n-1.
    """
    if char_mode:
        return _char_shingles(data, start, end, ngram, lower, multi, flags, cps, low, buf, marks, lanes, out)
    half = marks.shape[0] // 2
    tstart = marks[:half]
    tend = marks[half:]
    count = _word_tokens(data, start, end, asc, swar, lower, multi, flags, buf, tstart, tend)
    if count < 0:
        count = _word_tokens_slow(data, start, end, lower, multi, flags, cps, low, buf, tstart, tend)
    if count == 0:
        return 0
    if count < ngram:
        out[0] = xxh64(buf, tstart[0], tend[count - 1])
        return 1
    hash_ranges(buf, tstart, 0, tend, ngram - 1, count - ngram + 1, lanes, out)
    return count - ngram + 1


@njit(cache=True)
def _scratch(max_bytes):
    # A code point takes >= 1 byte, lowering at most triples the count, UTF-8 needs <= 4 bytes
    # each plus one separator, and every shingle starts at a distinct code point.
    cps = np.empty(max_bytes + 1, np.int32)
    low = np.empty(3 * max_bytes + 1, np.int32)
    buf = np.zeros(15 * max_bytes + PAD, np.uint8)
    marks = np.empty(6 * max_bytes + 8, np.int64)
    lanes = np.empty((9, HASH_BLOCK), np.uint64)
    out = np.empty(3 * max_bytes + 1, np.uint64)
    return cps, low, buf, marks, lanes, out


@njit(cache=True)
def _minhash_into(hashes, start, count, a, b, sig, xbuf):
    """sig[k] = min over hashes[start:start+count] of a[k] * fmix32(low32(h)) + b[k] mod 2^32.

    The pre-mixed inputs go to ``xbuf`` first; the main loop then takes four inputs per pass over
    the permutations, so each a[k], b[k], sig[k] load serves four products (SIMD over k).
    """
    k = a.shape[0]
    for t in range(count):
        xbuf[t] = _shingle_x(hashes[start + t])
    for j in range(k):
        sig[j] = uint32(0xFFFFFFFF)
    t = 0
    while t + 4 <= count:
        x0 = xbuf[t]
        x1 = xbuf[t + 1]
        x2 = xbuf[t + 2]
        x3 = xbuf[t + 3]
        for j in range(k):
            aj = a[j]
            bj = b[j]
            m01 = min(_perm(aj, bj, x0), _perm(aj, bj, x1))
            m23 = min(_perm(aj, bj, x2), _perm(aj, bj, x3))
            sig[j] = min(sig[j], min(m01, m23))
        t += 4
    while t < count:
        x = xbuf[t]
        for j in range(k):
            sig[j] = min(sig[j], _perm(a[j], b[j], x))
        t += 1


def bounds(offsets: np.ndarray, nthreads: int) -> np.ndarray:
    """Chunk boundaries over documents, each chunk about the same number of bytes (or hashes) of
    ``offsets``; several chunks per thread, so that dynamic scheduling evens out the rest."""
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros(1, dtype=np.int64)
    if nthreads == 1 or n == 1:  # one chunk: nothing to balance (single-text queries come here)
        return np.array([0, n], dtype=np.int64)
    parts = max(1, min(n, 8 * nthreads))
    targets = np.linspace(offsets[0], offsets[-1], parts + 1)
    cuts = np.searchsorted(offsets, targets, side="right") - 1
    cuts[0] = 0
    cuts[-1] = n
    return np.unique(cuts)


@njit(cache=True, parallel=True, nogil=True)
def minhash_texts(data, offsets, bounds, ngram, char_mode, asc, swar, lower, multi, flags, a, b, sigs):
    """Fused text -> signature for a batch, into ``sigs``; never materialises the shingle sets."""
    for c in prange(bounds.shape[0] - 1):
        lo = bounds[c]
        hi = bounds[c + 1]
        longest = 0
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        cps, low, buf, marks, lanes, out = _scratch(longest)
        xbuf = np.empty(out.shape[0], np.uint32)
        for i in range(lo, hi):
            cnt = _doc_shingles(
                data, offsets[i], offsets[i + 1], ngram, char_mode, asc, swar, lower, multi, flags, cps, low, buf, marks, lanes, out
            )
            _minhash_into(out, 0, cnt, a, b, sigs[i], xbuf)


@njit(cache=True)
def _sort_unique(a, cnt, tmp, counts):
    """Sort ``a[:cnt]`` and squeeze out repeats; returns the unique count.

    The values are XXH64 outputs, uniform, so a counting sort on their top bits (about two buckets
    per value) followed by an insertion sort of the nearly sorted result is O(cnt), 3x faster than
    a comparison sort here. A crowded bucket (crafted input) falls back to that sort.
    """
    if cnt <= 1:
        return cnt
    bits = 1
    while (1 << bits) < cnt and bits < 15:
        bits += 1
    bits += 1
    shift = uint64(64 - bits)
    counts[: (1 << bits) + 1] = 0
    for i in range(cnt):
        counts[(a[i] >> shift) + uint64(1)] += 1
    crowded = 0
    for i in range(1 << bits):
        crowded = max(crowded, counts[i + 1])
        counts[i + 1] += counts[i]
    if crowded > 64:
        a[:cnt].sort()
        tmp[:cnt] = a[:cnt]
    else:
        for i in range(cnt):
            k = a[i] >> shift
            tmp[counts[k]] = a[i]
            counts[k] += 1
        for i in range(1, cnt):
            v = tmp[i]
            j = i - 1
            while j >= 0 and tmp[j] > v:
                tmp[j + 1] = tmp[j]
                j -= 1
            tmp[j + 1] = v
    a[0] = tmp[0]
    u = 1
    for i in range(1, cnt):
        v = tmp[i]
        a[u] = v
        u += np.int64(v != a[u - 1])
    return u


@njit(cache=True, parallel=True, nogil=True)
def shingle_sets(data, offsets, bounds, ngram, char_mode, asc, swar, lower, multi, flags, stage, stage_at, counts):
    """Sorted unique shingle hashes in one pass: chunk c writes those of its documents back to back
    from ``stage[stage_at[c]]`` (room for the bound of :func:`stage_bounds`), and ``counts[i]`` is
    the number of document i; :func:`compact` then packs the chunks into the CSR."""
    for c in prange(bounds.shape[0] - 1):
        lo = bounds[c]
        hi = bounds[c + 1]
        longest = 0
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        cps, low, buf, marks, lanes, out = _scratch(longest)
        tmp = np.empty(out.shape[0], np.uint64)
        buckets = np.empty((1 << 16) + 1, np.int32)
        pos = stage_at[c]
        for i in range(lo, hi):
            cnt = _doc_shingles(
                data, offsets[i], offsets[i + 1], ngram, char_mode, asc, swar, lower, multi, flags, cps, low, buf, marks, lanes, out
            )
            u = _sort_unique(out, cnt, tmp, buckets)
            stage[pos : pos + u] = out[:u]
            pos += u
            counts[i] = u


@njit(cache=True, parallel=True, nogil=True)
def compact(stage, stage_at, bounds, out_offsets, hashes, base):
    """Copy each chunk's run of ``stage`` to ``hashes[out_offsets[lo] - base:]``."""
    for c in prange(bounds.shape[0] - 1):
        lo = out_offsets[bounds[c]] - base
        hi = out_offsets[bounds[c + 1]] - base
        src = stage_at[c]
        hashes[lo:hi] = stage[src : src + hi - lo]


@njit(cache=True, parallel=True, nogil=True)
def minhash_csr(offsets, hashes, bounds, a, b):
    """Signatures from ready hash sets in CSR form (any order, repeats allowed)."""
    n = offsets.shape[0] - 1
    sigs = np.empty((n, a.shape[0]), np.uint32)
    for c in prange(bounds.shape[0] - 1):
        longest = 0
        for i in range(bounds[c], bounds[c + 1]):
            longest = max(longest, offsets[i + 1] - offsets[i])
        xbuf = np.empty(longest, np.uint32)
        for i in range(bounds[c], bounds[c + 1]):
            _minhash_into(hashes, offsets[i], offsets[i + 1] - offsets[i], a, b, sigs[i], xbuf)
    return sigs
