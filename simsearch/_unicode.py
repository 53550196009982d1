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

Building them takes ~0.5 s, which every process paid before its first shingle (a server's first
answer after a restart, each ``simsearch`` command, each Ray worker). So they are also kept in a
file, one per interpreter and builder (implementation, Python version, Unicode version and a
digest of this module's source are in its name), checksummed: :func:`tables` loads it in
milliseconds, and builds it when the file is absent or damaged, then rewrites it atomically where
the directory is writable. The directory is ``$SIMSEARCH_CACHE_DIR``, else
``$NUMBA_CACHE_DIR/simsearch`` (the place a read-only install already gives numba), else this
package's ``__pycache__``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import unicodedata
from dataclasses import dataclass

import numpy as np
import xxhash

__all__ = ["UnicodeTables", "build", "cache_file", "tables", "WORD", "SPACE", "IGNORABLE", "CASED", "CAPITAL_SIGMA"]

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
    """The tables for this interpreter, once per process: from the cache file, else built (and
    the cache file written when its directory allows)."""
    path = cache_file()
    found = _read(path)
    if found is not None:
        return found
    built = build()
    _write(path, built)
    return built


def _builder_tag() -> str:
    """A digest of this module's source, so that a change to how the tables are built can never
    be answered by a file an older version wrote."""
    try:
        with open(__file__, "rb") as fh:
            return xxhash.xxh3_64_hexdigest(fh.read())[:12]
    except OSError:  # no source next to the module (a zipped or frozen install)
        return "nosource"


def cache_file() -> str:
    """Where this interpreter's tables are cached."""
    base = os.environ.get("SIMSEARCH_CACHE_DIR")
    if not base and os.environ.get("NUMBA_CACHE_DIR"):
        base = os.path.join(os.environ["NUMBA_CACHE_DIR"], "simsearch")
    if not base:
        base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    impl = sys.implementation
    name = (f"unicode-tables-{_builder_tag()}-{impl.name}-{'.'.join(map(str, sys.version_info[:3]))}"
            f"-{unicodedata.unidata_version}.npz")
    return os.path.join(base, name)


def _digest(lower: np.ndarray, multi: np.ndarray, flags: np.ndarray) -> int:
    h = xxhash.xxh3_64()
    for arr in (lower, multi, flags):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.intdigest()


def _read(path: str) -> UnicodeTables | None:
    """The cached tables, or None when the file is absent or anything about it is wrong."""
    try:
        with np.load(path, allow_pickle=False) as f:
            lower, multi, flags, digest = f["lower"], f["multi"], f["flags"], f["digest"]
    except Exception:  # absent, truncated, not a zip, a missing member: build instead
        return None
    if (lower.dtype != np.int32 or lower.shape != (_N,) or flags.dtype != np.uint8 or flags.shape != (_N,)
            or multi.dtype != np.int32 or multi.ndim != 2 or multi.shape[1] != 3 or digest.shape != (1,)
            or int(digest[0]) != _digest(lower, multi, flags)):
        return None
    for arr in (lower, multi, flags):
        arr.setflags(write=False)
    return UnicodeTables(lower=lower, multi=multi, flags=flags)


def _write(path: str, t: UnicodeTables) -> None:
    """Write the cache file atomically (a temporary file renamed); silently nothing when the
    directory cannot be created or written (the tables are then built by each process)."""
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # a unique temporary name, not index._manifest.atomic_file's fixed one: processes that
        # start together (Ray workers) write this file at the same moment; no fsync: a cache
        fd, tmp = tempfile.mkstemp(prefix=".unicode-", suffix=".tmp", dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, lower=t.lower, multi=t.multi, flags=t.flags,
                     digest=np.array([_digest(t.lower, t.multi, t.flags)], np.uint64))
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def build() -> UnicodeTables:
    """Build the tables for this interpreter's Unicode version from the interpreter itself (~0.5 s)."""
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
