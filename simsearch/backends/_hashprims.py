"""The hash primitives every compiled backend shares, written once as plain Python.

fmix32 (MurmurHash3's finaliser), the affine permutation of MinHash, the XXH64 rounds,
convergence and avalanche, the LSH band hash, and the sorted-set intersection that exact
verification counts with are defined here and nowhere else. :func:`compile_all` compiles
them for one target: ``numba.njit(inline="always")`` for the CPU kernels
(:data:`simsearch.backends._numba_xxh64.CPU`) and ``numba.cuda.jit(device=True)`` for the GPU
kernels, which also run on numba's CUDA simulator. Each compiled function calls the compiled
versions of the others, so a primitive that uses another is still one definition.

Arithmetic is on numba's fixed-width unsigned types and wraps modulo 2**32 or 2**64; written with
explicit casts so that numpy scalars (the simulator) and numba's typing give the same bits.
"""

from __future__ import annotations

import types
from types import SimpleNamespace

from numba import uint32, uint64

P1 = uint64(11400714785074694791)
P2 = uint64(14029467366897019727)
P3 = uint64(1609587929392839161)
P4 = uint64(9650029242287828579)
P5 = uint64(2870177450012600261)
M32 = uint64(0xFFFFFFFF)


def rotl64(x, r):
    """Rotate the uint64 ``x`` left by ``r`` (1..63) bits."""
    return (x << uint64(r)) | (x >> uint64(64 - r))


def xxh64_round(acc, inp):
    """XXH64's accumulator round."""
    acc = uint64(acc + inp * P2)
    acc = rotl64(acc, 31)
    return uint64(acc * P1)


def xxh64_merge(acc, val):
    """XXH64's merge of one accumulator into the converged hash."""
    acc ^= xxh64_round(uint64(0), val)
    return uint64(acc * P1 + P4)


def xxh64_avalanche(h):
    """XXH64's final mix."""
    h ^= h >> uint64(33)
    h = uint64(h * P2)
    h ^= h >> uint64(29)
    h = uint64(h * P3)
    h ^= h >> uint64(32)
    return h


def xxh64_converge(v1, v2, v3, v4):
    """XXH64's converged hash of its four stripe accumulators (inputs of 32 bytes or more)."""
    h = uint64(rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18))
    h = xxh64_merge(h, v1)
    h = xxh64_merge(h, v2)
    h = xxh64_merge(h, v3)
    return xxh64_merge(h, v4)


def sorted_intersection_size(a, p, pe, b, q, qe):
    """How many values the sorted unique runs ``a[p:pe]`` and ``b[q:qe]`` share (a merge walk):
    the heart of exact Jaccard verification on every compiled backend."""
    inter = 0
    while p < pe and q < qe:
        x = a[p]
        y = b[q]
        if x == y:
            inter += 1
            p += 1
            q += 1
        elif x < y:
            p += 1
        else:
            q += 1
    return inter


def select64(cond, x, y):
    """``x if cond else y`` for uint64 values, without a branch."""
    m = uint64(uint64(0) - uint64(cond))
    return (x & m) | (y & ~m)


def fmix32(h):
    """MurmurHash3's 32-bit finaliser of a uint32."""
    h = uint32(h)
    h ^= h >> uint32(16)
    h = uint32(h * uint32(0x85EBCA6B))
    h ^= h >> uint32(13)
    h = uint32(h * uint32(0xC2B2AE35))
    h ^= h >> uint32(16)
    return h


def shingle_x(h):
    """The permutation input of a 64-bit shingle hash: fmix32 of its low 32 bits."""
    return fmix32(uint32(uint64(h) & M32))


def perm32(a, b, x):
    """MinHash's affine permutation ``a * x + b mod 2**32`` of a mixed input ``x``."""
    return uint32(uint32(a) * uint32(x) + uint32(b))


def band_word(sig, i, p):
    """The little-endian 64-bit word of ``sig[i, p]`` and ``sig[i, p + 1]``."""
    return uint64(sig[i, p]) | (uint64(sig[i, p + 1]) << uint64(32))


def band_hash(sig, i, start, r, seed):
    """XXH64 (seeded) of the ``4 * r`` little-endian bytes of ``sig[i, start:start + r]``: the band
    key of the band that starts at ``start``."""
    nw = r // 2
    end = start + 2 * nw
    length = uint64(4 * r)
    seed = uint64(seed)
    p = start
    if length >= uint64(32):
        v1 = uint64(seed + P1 + P2)
        v2 = uint64(seed + P2)
        v3 = seed
        v4 = uint64(seed - P1)
        while p + 8 <= end:
            v1 = xxh64_round(v1, band_word(sig, i, p))
            v2 = xxh64_round(v2, band_word(sig, i, p + 2))
            v3 = xxh64_round(v3, band_word(sig, i, p + 4))
            v4 = xxh64_round(v4, band_word(sig, i, p + 6))
            p += 8
        h = xxh64_converge(v1, v2, v3, v4)
    else:
        h = uint64(seed + P5)
    h = uint64(h + length)
    while p < end:
        h ^= xxh64_round(uint64(0), band_word(sig, i, p))
        h = uint64(rotl64(h, 27) * P1 + P4)
        p += 2
    if r % 2 == 1:
        h ^= uint64(uint64(sig[i, start + r - 1]) * P1)
        h = uint64(rotl64(h, 23) * P2 + P3)
    return xxh64_avalanche(h)


def load_le(buf, p, nbytes):
    """The little-endian unsigned value of the ``nbytes`` (at most 8) bytes ``buf[p:p + nbytes]``
    of a uint8 array, assembled from byte loads (any alignment, no intrinsics)."""
    v = uint64(0)
    for j in range(nbytes):
        v |= uint64(buf[p + j]) << uint64(8 * j)
    return v


def xxh64_bytes(buf, start, end, seed):
    """XXH64 (seeded) of the bytes ``buf[start:end]`` of a uint8 array; reads nothing outside them.

    The GPU's shingle hash (the CPU kernels use the SIMD version in ``_numba_xxh64``)."""
    p = start
    length = uint64(end - start)
    seed = uint64(seed)
    if length >= uint64(32):
        v1 = uint64(seed + P1 + P2)
        v2 = uint64(seed + P2)
        v3 = seed
        v4 = uint64(seed - P1)
        while p + 32 <= end:
            v1 = xxh64_round(v1, load_le(buf, p, 8))
            v2 = xxh64_round(v2, load_le(buf, p + 8, 8))
            v3 = xxh64_round(v3, load_le(buf, p + 16, 8))
            v4 = xxh64_round(v4, load_le(buf, p + 24, 8))
            p += 32
        h = xxh64_converge(v1, v2, v3, v4)
    else:
        h = uint64(seed + P5)
    h = uint64(h + length)
    while p + 8 <= end:
        h ^= xxh64_round(uint64(0), load_le(buf, p, 8))
        h = uint64(rotl64(h, 27) * P1 + P4)
        p += 8
    if p + 4 <= end:
        h ^= uint64(load_le(buf, p, 4) * P1)
        h = uint64(rotl64(h, 23) * P2 + P3)
        p += 4
    while p < end:
        h ^= uint64(uint64(buf[p]) * P5)
        h = uint64(rotl64(h, 11) * P1)
        p += 1
    return xxh64_avalanche(h)


# Callees before their callers.
PRIMITIVES = (
    "rotl64",
    "xxh64_round",
    "xxh64_merge",
    "xxh64_avalanche",
    "xxh64_converge",
    "sorted_intersection_size",
    "select64",
    "fmix32",
    "shingle_x",
    "perm32",
    "band_word",
    "band_hash",
    "load_le",
    "xxh64_bytes",
)


def compile_all(jit) -> SimpleNamespace:
    """Every primitive compiled by ``jit`` (a decorator), each calling the others' compiled versions."""
    done: dict = {}
    for name in PRIMITIVES:
        fn = globals()[name]
        scope = dict(fn.__globals__)
        scope.update(done)
        clone = types.FunctionType(fn.__code__, scope, name, fn.__defaults__, fn.__closure__)
        clone.__doc__, clone.__qualname__, clone.__module__ = fn.__doc__, fn.__qualname__, fn.__module__
        done[name] = jit(clone)
    return SimpleNamespace(**done)
