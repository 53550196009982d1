"""Numba kernels for text: UTF-8 decoding, exact lowercasing, word/char shingling, XXH64, MinHash.

Everything works on the UTF-8 bytes of a whole batch (``data`` + ``offsets``) and runs in parallel
over chunks of documents, each chunk with its own scratch buffers. The tokenizer reproduces
:mod:`simsearch.shingling` exactly through the tables of :mod:`simsearch._unicode`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint32, uint64

_P1 = uint64(11400714785074694791)
_P2 = uint64(14029467366897019727)
_P3 = uint64(1609587929392839161)
_P4 = uint64(9650029242287828579)
_P5 = uint64(2870177450012600261)
_M32 = uint64(0xFFFFFFFF)

WORD = 1
SPACE = 2
IGNORABLE = 4
CASED = 8


@njit(inline="always")
def _rotl(x, r):
    return (x << uint64(r)) | (x >> uint64(64 - r))


@njit(inline="always")
def _read64(words, p):
    """Little-endian 8 bytes at byte offset p of the uint64 array ``words``: two aligned loads."""
    i = p >> 3
    s = uint64((p & 7) * 8)
    lo = words[i] >> s
    if s == 0:
        return lo
    return lo | (words[i + 1] << (uint64(64) - s))


@njit(inline="always")
def _read32(words, p):
    return _read64(words, p) & _M32


@njit(inline="always")
def _round(acc, inp):
    acc = acc + inp * _P2
    acc = _rotl(acc, 31)
    return acc * _P1


@njit(inline="always")
def _merge(acc, val):
    acc ^= _round(uint64(0), val)
    return acc * _P1 + _P4


@njit(cache=True)
def xxh64(words, buf, start, end):
    """XXH64 with seed 0 of ``buf[start:end]``; ``buf`` is a uint8 view of the uint64 ``words``,
    which must extend at least 8 bytes past ``end``."""
    p = start
    n = end - start
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = uint64(0)
        v4 = uint64(0) - _P1
        limit = end - 32
        while p <= limit:
            v1 = _round(v1, _read64(words, p))
            v2 = _round(v2, _read64(words, p + 8))
            v3 = _round(v3, _read64(words, p + 16))
            v4 = _round(v4, _read64(words, p + 24))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = _P5
    h += uint64(n)
    while p + 8 <= end:
        h ^= _round(uint64(0), _read64(words, p))
        h = _rotl(h, 27) * _P1 + _P4
        p += 8
    if p + 4 <= end:
        h ^= _read32(words, p) * _P1
        h = _rotl(h, 23) * _P2 + _P3
        p += 4
    while p < end:
        h ^= uint64(buf[p]) * _P5
        h = _rotl(h, 11) * _P1
        p += 1
    h ^= h >> uint64(33)
    h *= _P2
    h ^= h >> uint64(29)
    h *= _P3
    h ^= h >> uint64(32)
    return h


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


@njit(cache=True)
def _doc_shingles(data, start, end, ngram, char_mode, lower, multi, flags, cps, low, words, buf, marks, out):
    """Hash every shingle of one document into ``out``; returns how many (repeats included).

    Word mode writes the lowered tokens into ``buf`` separated by one space, so shingle i is the
    contiguous byte range from the start of token i to the end of token i+n-1. Char mode writes
    the whitespace-collapsed text, and shingle i spans code points i..i+n-1.
    """
    m = _decode_lower(data, start, end, lower, multi, flags, cps, low)
    q = 0
    count = 0  # tokens (word mode) or code points (char mode)
    if char_mode:
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
            out[0] = xxh64(words, buf, 0, q)
            return 1
        for i in range(count - ngram + 1):
            out[i] = xxh64(words, buf, marks[i], marks[i + ngram])
        return count - ngram + 1
    # word mode: marks[2t] = start of token t, marks[2t+1] = its end
    in_tok = False
    for i in range(m):
        c = low[i]
        if flags[c] & WORD:
            if not in_tok:
                if count > 0:
                    buf[q] = 32
                    q += 1
                marks[2 * count] = q
                in_tok = True
            q = _put_utf8(buf, q, c)
        elif in_tok:
            marks[2 * count + 1] = q
            count += 1
            in_tok = False
    if in_tok:
        marks[2 * count + 1] = q
        count += 1
    if count == 0:
        return 0
    if count < ngram:
        out[0] = xxh64(words, buf, marks[0], marks[2 * count - 1])
        return 1
    for i in range(count - ngram + 1):
        out[i] = xxh64(words, buf, marks[2 * i], marks[2 * (i + ngram - 1) + 1])
    return count - ngram + 1


@njit(cache=True)
def _scratch(max_bytes):
    # A code point takes >= 1 byte, lowering at most triples the count, UTF-8 needs <= 4 bytes
    # each plus one separator, and every shingle starts at a distinct code point.
    cps = np.empty(max_bytes + 1, np.int32)
    low = np.empty(3 * max_bytes + 1, np.int32)
    words = np.zeros((15 * max_bytes) // 8 + 3, np.uint64)
    buf = words.view(np.uint8)
    marks = np.empty(6 * max_bytes + 8, np.int64)
    out = np.empty(3 * max_bytes + 1, np.uint64)
    return cps, low, words, buf, marks, out


@njit(inline="always")
def _fmix32(h):
    h ^= h >> uint32(16)
    h = uint32(h * uint32(0x85EBCA6B))
    h ^= h >> uint32(13)
    h = uint32(h * uint32(0xC2B2AE35))
    h ^= h >> uint32(16)
    return h


@njit(cache=True)
def _minhash_into(hashes, start, count, a, b, sig, xbuf):
    """sig[k] = min over hashes[start:start+count] of a[k] * fmix32(low32(h)) + b[k] mod 2^32.

    The pre-mixed inputs go to ``xbuf`` first; the main loop then takes four inputs per pass over
    the permutations, so each a[k], b[k], sig[k] load serves four products (SIMD over k).
    """
    k = a.shape[0]
    for t in range(count):
        xbuf[t] = _fmix32(uint32(hashes[start + t] & _M32))
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
            m01 = min(uint32(aj * x0 + bj), uint32(aj * x1 + bj))
            m23 = min(uint32(aj * x2 + bj), uint32(aj * x3 + bj))
            sig[j] = min(sig[j], min(m01, m23))
        t += 4
    while t < count:
        x = xbuf[t]
        for j in range(k):
            sig[j] = min(sig[j], uint32(a[j] * x + b[j]))
        t += 1


def _chunks(n, nthreads):
    """Chunk boundaries: a few per thread so that uneven documents balance out."""
    parts = max(1, min(n, 8 * nthreads))
    return np.linspace(0, n, parts + 1).astype(np.int64)


@njit(cache=True, parallel=True)
def minhash_texts(data, offsets, bounds, ngram, char_mode, lower, multi, flags, a, b):
    """Fused text -> signature for a batch; never materialises the shingle sets."""
    n = offsets.shape[0] - 1
    sigs = np.empty((n, a.shape[0]), np.uint32)
    for c in prange(bounds.shape[0] - 1):
        lo = bounds[c]
        hi = bounds[c + 1]
        longest = 0
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        cps, low, words, buf, marks, out = _scratch(longest)
        xbuf = np.empty(out.shape[0], np.uint32)
        for i in range(lo, hi):
            cnt = _doc_shingles(
                data, offsets[i], offsets[i + 1], ngram, char_mode, lower, multi, flags, cps, low, words, buf, marks, out
            )
            _minhash_into(out, 0, cnt, a, b, sigs[i], xbuf)
    return sigs


@njit(cache=True, parallel=True)
def shingle_counts(data, offsets, bounds, ngram, char_mode, lower, multi, flags):
    """Unique shingle count of every document (first pass of :func:`shingle_sets`)."""
    n = offsets.shape[0] - 1
    counts = np.zeros(n, np.int64)
    for c in prange(bounds.shape[0] - 1):
        lo = bounds[c]
        hi = bounds[c + 1]
        longest = 0
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        cps, low, words, buf, marks, out = _scratch(longest)
        for i in range(lo, hi):
            cnt = _doc_shingles(
                data, offsets[i], offsets[i + 1], ngram, char_mode, lower, multi, flags, cps, low, words, buf, marks, out
            )
            counts[i] = _sort_unique(out, cnt)
    return counts


@njit(cache=True)
def _sort_unique(out, cnt):
    if cnt <= 1:
        return cnt
    out[:cnt].sort()
    u = 1
    for i in range(1, cnt):
        if out[i] != out[u - 1]:
            out[u] = out[i]
            u += 1
    return u


@njit(cache=True, parallel=True)
def shingle_fill(data, offsets, bounds, ngram, char_mode, lower, multi, flags, out_offsets, out_hashes):
    """Second pass: write each document's sorted unique hashes at ``out_offsets[i]``."""
    for c in prange(bounds.shape[0] - 1):
        lo = bounds[c]
        hi = bounds[c + 1]
        longest = 0
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        cps, low, words, buf, marks, out = _scratch(longest)
        for i in range(lo, hi):
            cnt = _doc_shingles(
                data, offsets[i], offsets[i + 1], ngram, char_mode, lower, multi, flags, cps, low, words, buf, marks, out
            )
            u = _sort_unique(out, cnt)
            base = out_offsets[i]
            for j in range(u):
                out_hashes[base + j] = out[j]


@njit(cache=True, parallel=True)
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
