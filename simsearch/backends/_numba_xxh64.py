"""Numba XXH64 for shingles: the scalar function, and a branch-free version that LLVM compiles to
SIMD across many shingles (:func:`hash_ranges`), plus the unaligned-access intrinsics they share.

Every buffer read here must extend ``PAD`` bytes past the last byte hashed: both versions read
whole 8-byte words and drop what lies beyond the end.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types, uint64
from numba.core.extending import intrinsic

from ._hashprims import M32 as _M32
from ._hashprims import P1 as _P1
from ._hashprims import P2 as _P2
from ._hashprims import P3 as _P3
from ._hashprims import P4 as _P4
from ._hashprims import P5 as _P5
from ._hashprims import compile_all

# The shared primitives (simsearch.backends._hashprims), compiled for the CPU.
CPU = compile_all(njit(inline="always"))
_rotl = CPU.rotl64
_round = CPU.xxh64_round
_select = CPU.select64
_avalanche = CPU.xxh64_avalanche
_converge = CPU.xxh64_converge

PAD = 64  # bytes readable past the end of every hashed range


def _unaligned_load(bits):
    @intrinsic
    def load(typingctx, buf, p):
        if not (isinstance(buf, types.Array) and buf.dtype == types.uint8):
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(bits).as_pointer())
            value = builder.load(ptr, align=1)
            return value if bits == 64 else builder.zext(value, ir.IntType(64))

        return types.uint64(buf, types.intp), codegen

    return load


# Little-endian 8 / 4 bytes at any byte offset of a uint8 array: one unaligned load each.
load64 = _unaligned_load(64)
load32 = _unaligned_load(32)


@intrinsic
def store64(typingctx, buf, p, value):
    """Write ``value`` little-endian at any byte offset of a uint8 array."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(args[2], ptr, align=1)
        return context.get_dummy_value()

    return types.void(buf, types.intp, types.uint64), codegen


@intrinsic
def ctz(typingctx, x):
    """Count of trailing zero bits of a uint64; 64 for 0."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(types.uint64), codegen


@njit(cache=True)
def xxh64(buf, start, end):
    """XXH64 with seed 0 of ``buf[start:end]``; ``buf`` (uint8) must extend ``PAD`` bytes past ``end``.

    The 4-byte step and the last 0-3 bytes are computed unconditionally and selected, so a shingle
    costs at most two mispredicted branches (stripe count, 8-byte words) instead of five.
    """
    p = start
    n = end - start
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = uint64(0)
        v4 = uint64(0) - _P1
        limit = end - 32
        while p <= limit:
            v1 = _round(v1, load64(buf, p))
            v2 = _round(v2, load64(buf, p + 8))
            v3 = _round(v3, load64(buf, p + 16))
            v4 = _round(v4, load64(buf, p + 24))
            p += 32
        h = _converge(v1, v2, v3, v4)
    else:
        h = _P5
    h += uint64(n)
    while p + 8 <= end:
        h ^= _round(uint64(0), load64(buf, p))
        h = _rotl(h, 27) * _P1 + _P4
        p += 8
    r = end - p
    four = (r >> 2) & 1
    h = _select(four, _rotl(h ^ (load32(buf, p) * _P1), 23) * _P2 + _P3, h)
    p += 4 * four
    r &= 3
    for j in range(3):
        h = _select(j < r, _rotl(h ^ (uint64(buf[p + j]) * _P5), 11) * _P1, h)
    return _avalanche(h)


HASH_BLOCK = 256  # shingles hashed per vector pass; its lanes (9 x 256 x 8 bytes) stay in L1





@njit(cache=True)
def _xxh64_lanes(lanes, cnt, out, o):
    """XXH64 of ``cnt`` inputs shorter than 64 bytes from their gathered 8-byte words (see
    :func:`hash_ranges`), into ``out[o:o+cnt]``. Branch-free, so it compiles to SIMD over inputs."""
    for i in range(cnt):
        n = lanes[8, i]
        r = n & uint64(31)
        k = r >> uint64(3)
        four = (r >> uint64(2)) & uint64(1)
        rb = r & uint64(3)
        v1 = _round(_P1 + _P2, lanes[0, i])
        v2 = _round(_P2, lanes[1, i])
        v3 = _round(uint64(0), lanes[2, i])
        v4 = _round(uint64(0) - _P1, lanes[3, i])
        hs = _converge(v1, v2, v3, v4)
        h = _select(n >= uint64(32), hs, _P5) + n
        for j in range(3):
            h = _select(k > uint64(j), _rotl(h ^ _round(uint64(0), lanes[4 + j, i]), 27) * _P1 + _P4, h)
        x = lanes[7, i]
        h = _select(four, _rotl(h ^ ((x & _M32) * _P1), 23) * _P2 + _P3, h)
        x = _select(four, x >> uint64(32), x)
        for j in range(3):
            h = _select(rb > uint64(j), _rotl(h ^ (((x >> uint64(8 * j)) & uint64(255)) * _P5), 11) * _P1, h)
        out[o + i] = _avalanche(h)


@njit(cache=True)
def hash_ranges(buf, starts, s0, ends, e0, count, lanes, out):
    """out[i] = XXH64(buf[starts[s0+i]:ends[e0+i]]) for i < count.

    Blocks of inputs are gathered into ``lanes`` (the 8-byte words each one needs: four for the
    32-byte stripe, three for the 8-byte steps, one for the 4-byte step and the last bytes, and the
    length), hashed by the SIMD kernel, and the rare inputs of 64 bytes or more redone serially.
    """
    for base in range(0, count, HASH_BLOCK):
        cnt = min(HASH_BLOCK, count - base)
        longest = 0
        for i in range(cnt):
            s = starts[s0 + base + i]
            e = ends[e0 + base + i]
            n = e - s
            longest = max(longest, n)
            p = e - (n & 31)
            lanes[0, i] = load64(buf, s)
            lanes[1, i] = load64(buf, s + 8)
            lanes[2, i] = load64(buf, s + 16)
            lanes[3, i] = load64(buf, s + 24)
            lanes[4, i] = load64(buf, p)
            lanes[5, i] = load64(buf, p + 8)
            lanes[6, i] = load64(buf, p + 16)
            lanes[7, i] = load64(buf, p + (n & 24))
            lanes[8, i] = uint64(n)
        _xxh64_lanes(lanes, cnt, out, base)
        if longest >= 64:
            for i in range(cnt):
                s = starts[s0 + base + i]
                e = ends[e0 + base + i]
                if e - s >= 64:
                    out[base + i] = xxh64(buf, s, e)
