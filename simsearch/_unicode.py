"""Code-point tables that let the compiled tokenizer reproduce ``str.lower``, ``re``'s ``\\w`` and
``str.split`` exactly, for the Unicode version of the running Python.

The tables are derived from the interpreter itself (not from a copy of the Unicode database), so
the fast path and the plain-Python reference in :mod:`simsearch.shingling` agree by construction
on every Python version; the test suite re-checks them code point by code point.

* ``lower[c]``: the single code point ``chr(c).lower()`` maps to, or ``-(1 + i)`` when it maps to
  several, which are then ``multi[i]`` (padded with -1).
* ``flags[c]``: bit 0 ``WORD`` (matched by ``re``'s ``\\w``), bit 1 ``SPACE`` (``str.isspace``),
  bit 2 ``IGNORABLE`` (Unicode Case_Ignorable) and bit 3 ``CASED`` (Cased and not Case_Ignorable).
  The last two drive the Final_Sigma rule, the only context-dependent mapping ``str.lower`` has:
  U+03A3 becomes U+03C2 at the end of a word and U+03C3 elsewhere.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["UnicodeTables", "tables", "WORD", "SPACE", "IGNORABLE", "CASED", "CAPITAL_SIGMA"]

WORD = 1
SPACE = 2
IGNORABLE = 4
CASED = 8
CAPITAL_SIGMA = 0x3A3
_N = 0x110000
_BLOCK = 256


@dataclass(frozen=True)
class UnicodeTables:
    lower: np.ndarray  # int32 (0x110000,)
    multi: np.ndarray  # int32 (m, 3)
    flags: np.ndarray  # uint8 (0x110000,)


def _codepoints(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


def _all_codepoints() -> str:
    return np.arange(_N, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def _lower_table(everything: str) -> tuple[np.ndarray, np.ndarray]:
    lower = np.arange(_N, dtype=np.int32)
    multi: list[list[int]] = []
    for start in range(0, _N, _BLOCK):
        block = everything[start : start + _BLOCK]
        low = block.lower()
        if len(low) == _BLOCK:  # lowering never shortens a character, so this is 1:1
            lower[start : start + _BLOCK] = _codepoints(low)
            continue
        for c in range(start, start + _BLOCK):
            m = chr(c).lower()
            if len(m) == 1:
                lower[c] = ord(m)
            else:
                multi.append([ord(x) for x in m] + [-1] * (3 - len(m)))
                lower[c] = -len(multi)
    # The Final_Sigma rule is applied by the tokenizer itself; the table holds the plain mapping.
    lower[CAPITAL_SIGMA] = 0x3C3
    multi_arr = np.array(multi, dtype=np.int32).reshape(-1, 3) if multi else np.full((1, 3), -1, np.int32)
    return lower, multi_arr


def _mark(flags: np.ndarray, pattern: str, text: str, bit: int) -> None:
    for m in re.finditer(pattern, text):
        flags[m.start() : m.end()] |= bit


def _sigma_probe(lower: np.ndarray, multi_len: np.ndarray, prefix: str) -> np.ndarray:
    """Lower ``prefix + c + 'Σ' + ' '`` for every code point c at once; True where Σ became ς.

    The space isolates the blocks: it is neither cased nor case-ignorable, so no Final_Sigma scan
    crosses it. Block lengths after lowering are known from the lower table, which locates each Σ.
    """
    width = len(prefix) + 3
    cps = np.empty((_N, width), dtype=np.uint32)
    for j, ch in enumerate(prefix):
        cps[:, j] = ord(ch)
    cps[:, -3] = np.arange(_N, dtype=np.uint32)
    cps[:, -2] = CAPITAL_SIGMA
    cps[:, -1] = 0x20
    text = cps.tobytes().decode("utf-32-le", "surrogatepass").lower()
    out = _codepoints(text)
    lens = np.where(lower >= 0, 1, multi_len[np.maximum(-lower - 1, 0)]) + width - 1
    ends = np.cumsum(lens)
    return out[ends - 2] == 0x3C2


@functools.lru_cache(maxsize=1)
def tables() -> UnicodeTables:
    """Build (once per process, ~0.4 s) the tables for this interpreter's Unicode version."""
    everything = _all_codepoints()
    lower, multi = _lower_table(everything)
    flags = np.zeros(_N, dtype=np.uint8)
    _mark(flags, r"\w+", everything, WORD)
    _mark(flags, r"\s+", everything, SPACE)
    multi_len = (multi >= 0).sum(axis=1)
    either = _sigma_probe(lower, multi_len, "A")  # ignorable or cased
    cased_only = _sigma_probe(lower, multi_len, "")  # cased and not ignorable
    flags[either & ~cased_only] |= IGNORABLE
    flags[cased_only] |= CASED
    for arr in (lower, multi, flags):
        arr.setflags(write=False)
    return UnicodeTables(lower=lower, multi=multi, flags=flags)
