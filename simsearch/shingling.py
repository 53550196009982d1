"""Shingling: the one exact definition (plain Python) and the batch entry point to the fast paths.

Definition (also in the README; results are reproducible from it alone):

* **word** n-grams: ``tokens = re.findall(r"\\w+", text.lower())``; the shingles are the set of
  ``" ".join(tokens[i:i+n])``. A text with 1..n-1 tokens gives one shingle of all its tokens; a text
  with no tokens gives the empty set.
* **char** n-grams: ``t = " ".join(text.lower().split())`` (runs of whitespace collapsed to one
  space, ends stripped); the shingles are every ``t[i:i+n]``. A non-empty ``t`` shorter than n gives
  one shingle, ``t`` itself.
* **shingle hash**: ``xxh64(shingle.encode("utf-8", "surrogatepass"), seed=0)``, the standard XXH64
  of the shingle's UTF-8 bytes, as an unsigned 64-bit int. MinHash uses its low 32 bits.

:func:`shingle_hashes` computes the sorted unique hash set of many texts at once on a backend; the
numba and CuPy paths work on UTF-8 bytes and are tested to equal this reference exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._text import SHINGLE_KINDS, encode_texts, shingle_hash, shingle_hash_set, shingles, tokenize
from .validation import check_param, check_texts
from .backends import get_backend

__all__ = [
    "SHINGLE_KINDS",
    "tokenize",
    "shingles",
    "shingle_hash",
    "shingle_hash_set",
    "ShingleSets",
    "shingle_hashes",
    "encode_texts",
]


@dataclass(frozen=True)
class ShingleSets:
    """Sorted unique shingle-hash sets of many documents in CSR form.

    Document ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``, sorted ascending without repeats.
    """

    offsets: np.ndarray  # int64 (n + 1,)
    hashes: np.ndarray  # uint64 (offsets[-1],)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def shingle_hashes(texts, *, ngram: int = 5, shingle: str = "word", backend: str = "auto") -> ShingleSets:
    """Sorted unique shingle-hash sets of many texts, computed on ``backend``."""
    texts = check_texts(texts, func="shingle_hashes")
    ngram = check_param("ngram", ngram, func="shingle_hashes")
    check_param("shingle", shingle, func="shingle_hashes")
    offsets, hashes = get_backend(backend).shingle_hashes(texts, ngram, shingle)
    return ShingleSets(offsets, hashes)
