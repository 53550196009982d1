"""The exact shingling definition, in plain Python: the reference every backend equals.

* **word** n-grams: ``tokens = re.findall(r"\\w+", text.lower())``; the shingles are the set of
  ``" ".join(tokens[i:i+n])``. A text with 1..n-1 tokens gives one shingle of all its tokens; a text
  with no tokens gives the empty set.
* **char** n-grams: ``t = " ".join(text.lower().split())`` (runs of whitespace collapsed to one
  space, ends stripped); the shingles are every ``t[i:i+n]``. A non-empty ``t`` shorter than n gives
  one shingle, ``t`` itself.
* **shingle hash**: ``xxh64(shingle.encode("utf-8", "surrogatepass"), seed=0)``, the standard XXH64
  of the shingle's UTF-8 bytes, as an unsigned 64-bit int. MinHash uses its low 32 bits.

It sits below the backends (which compute it fast) and :mod:`simsearch.shingling` (the public
batch API), so both import it downward.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash

from ._arrays import offsets_from_sizes
from .validation import SHINGLE_KINDS, check_param

__all__ = ["SHINGLE_KINDS", "tokenize", "shingles", "shingle_hash", "shingle_hash_set", "encode_texts"]

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Word tokens of ``text``: ``re.findall(r"\\w+", text.lower())``."""
    return _WORD.findall(text.lower())


def shingles(text: str, ngram: int = 5, shingle: str = "word") -> set[str]:
    """The reference shingle set of one text (see the module docstring)."""
    if shingle == "word":
        toks = tokenize(text)
        if not toks:
            return set()
        if len(toks) < ngram:
            return {" ".join(toks)}
        return {" ".join(toks[i : i + ngram]) for i in range(len(toks) - ngram + 1)}
    if shingle == "char":
        t = " ".join(text.lower().split())
        if not t:
            return set()
        if len(t) < ngram:
            return {t}
        return {t[i : i + ngram] for i in range(len(t) - ngram + 1)}
    check_param("shingle", shingle, func="shingles")
    raise AssertionError("unreachable")  # pragma: no cover


def shingle_hash(s: str) -> int:
    """The documented 64-bit shingle hash: XXH64 (seed 0) of the UTF-8 bytes."""
    return xxhash.xxh64_intdigest(s.encode("utf-8", "surrogatepass"))


def shingle_hash_set(text: str, ngram: int = 5, shingle: str = "word") -> np.ndarray:
    """Sorted unique uint64 shingle hashes of one text, computed by the reference definition."""
    hashes = np.fromiter((shingle_hash(s) for s in shingles(text, ngram, shingle)), dtype=np.uint64)
    return np.unique(hashes)


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all texts back to back (uint8) and their int64 offsets (n + 1).

    One join and one encode for the whole list (``surrogatepass`` writes each code point on its
    own, so the bytes of the joined text are the texts' bytes back to back). An all-ASCII list
    takes its offsets from the ``len`` of each text; otherwise only the texts holding non-ASCII
    characters are encoded once more, for their length.
    """
    n = len(texts)
    joined = "".join(texts)
    if joined.isascii():
        data = joined.encode("ascii")
        offsets = offsets_from_sizes(np.fromiter(map(len, texts), dtype=np.int64, count=n))
    else:
        data = joined.encode("utf-8", "surrogatepass")
        lengths = (len(t) if t.isascii() else len(t.encode("utf-8", "surrogatepass")) for t in texts)
        offsets = offsets_from_sizes(np.fromiter(lengths, dtype=np.int64, count=n))
    return np.frombuffer(data, dtype=np.uint8), offsets
