"""MinHash signatures: the batch API, a per-document :class:`MinHash`, and Jaccard estimates.

Scheme (the same on every backend, bit for bit). For the permutation parameters of ``seed``::

    rng = numpy.random.RandomState(seed)
    a = rng.randint(0, 2**31, num_perm, dtype=uint32) * 2 + 1      # odd, so h -> a*h+b is a bijection
    b = rng.randint(0, 2**32, num_perm, dtype=uint32)

each 64-bit shingle hash ``h`` (see :mod:`simsearch.shingling`) contributes
``a[k] * fmix32(h & 0xFFFFFFFF) + b[k] mod 2**32`` to permutation k, and the signature keeps the
minimum. This is datasketch 2.x's default "affine32" scheme, so a datasketch
``MinHash(num_perm, seed, hashfunc=lambda s: simsearch.shingle_hash(s) & 0xFFFFFFFF)`` fed the
same shingles gives identical hash values.

The **empty document** (no shingles) has the signature of all ``0xFFFFFFFF``. No real shingle set
produces it with any practical probability, and :func:`jaccard` and every index treat it as
similar to nothing, itself included.
"""

from __future__ import annotations

import functools

import numpy as np
import xxhash

from ._arrays import offsets_from_sizes
from .validation import MAX_NUM_PERM, check_array, check_param, check_texts
from .backends import get_backend
from .errors import InvalidArgumentError, InvalidTypeError
from .shingling import ShingleSets, shingle_hash

__all__ = ["MAX_NUM_PERM", "EMPTY_HASH", "permutations", "minhash", "jaccard", "is_empty", "MinHash"]

EMPTY_HASH = np.uint32(0xFFFFFFFF)


@functools.lru_cache(maxsize=64)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    a = rng.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) uint32 permutation parameters for ``num_perm`` and ``seed`` (read-only, cached)."""
    num_perm = check_param("num_perm", num_perm, func="permutations")
    seed = check_param("seed", seed, func="permutations")
    return _permutations(num_perm, seed)


def _check_hash_sets(texts) -> tuple[np.ndarray, np.ndarray] | None:
    """Accept pre-computed shingle hashes: a ShingleSets, or a list of integer arrays."""
    if isinstance(texts, ShingleSets):
        return texts.offsets, texts.hashes
    if isinstance(texts, (list, tuple)) and texts and all(isinstance(t, np.ndarray) for t in texts):
        arrays = []
        for i, t in enumerate(texts):
            if t.ndim != 1 or (t.size and t.dtype.kind not in "ui"):
                raise InvalidTypeError(
                    f"Pre-computed shingle hashes must be 1-d arrays of unsigned ints; element {i} has "
                    f"dtype {t.dtype} and shape {t.shape}."
                )
            arrays.append(t.astype(np.uint64, copy=False))
        offsets = offsets_from_sizes(len(t) for t in arrays)
        return offsets, np.concatenate(arrays)
    return None


def minhash(
    texts,
    *,
    num_perm: int = 128,
    seed: int = 1,
    ngram: int = 5,
    shingle: str = "word",
    backend: str = "auto",
) -> np.ndarray:
    """MinHash signatures of many documents: a C-contiguous uint32 array (len(texts), num_perm).

    ``texts`` is a sequence of str, or pre-computed shingle hashes (a :class:`ShingleSets` or a
    list of uint64/uint32 arrays), in which case ``ngram`` and ``shingle`` are not used.
    """
    a, b = permutations(num_perm, seed)
    ngram = check_param("ngram", ngram, func="minhash")
    check_param("shingle", shingle, func="minhash")
    be = get_backend(backend)
    ready = _check_hash_sets(texts)
    if ready is not None:
        return be.minhash_hashes(ready[0], ready[1], a, b)
    texts = check_texts(texts, func="minhash")
    if not texts:
        return np.empty((0, num_perm), dtype=np.uint32)
    return be.minhash_texts(texts, ngram, shingle, a, b)


def is_empty(signatures) -> np.ndarray | bool:
    """True for the empty document's signature (all 0xFFFFFFFF); vectorised over rows."""
    sig = np.asarray(signatures)
    out = (sig == EMPTY_HASH).all(axis=-1)
    return bool(out) if out.ndim == 0 else out


def jaccard(sig_a, sig_b) -> float | np.ndarray:
    """Estimated Jaccard similarity: the fraction of equal positions.

    Works on two signatures or row-aligned batches of them. An empty document is similar to
    nothing, so any pair involving one estimates 0.0.
    """
    a = check_array(sig_a, "sig_a", dtype=np.uint32, allowed_kinds="ui", func="jaccard")
    b = check_array(sig_b, "sig_b", dtype=np.uint32, allowed_kinds="ui", func="jaccard")
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise InvalidArgumentError(
            f"jaccard needs two signatures (or batches) of the same shape; got {a.shape} and {b.shape}. "
            "Were they made with different num_perm?"
        )
    est = (a == b).mean(axis=-1)
    est = np.where(is_empty(a) | is_empty(b), 0.0, est)
    return float(est) if est.ndim == 0 else est


def _hashes_of(items) -> np.ndarray:
    """uint64 hashes of str/bytes shingles or integer hashes, or of one array of hashes."""
    if len(items) == 1 and isinstance(items[0], np.ndarray):
        arr = items[0]
        if arr.size and arr.dtype.kind not in "ui":
            raise InvalidTypeError(f"Shingle hashes must be unsigned ints; got dtype {arr.dtype}.")
        return arr.astype(np.uint64, copy=False).ravel()
    out = np.empty(len(items), dtype=np.uint64)
    for i, s in enumerate(items):
        if isinstance(s, str):
            out[i] = shingle_hash(s)
        elif isinstance(s, bytes):
            out[i] = xxhash.xxh64_intdigest(s)
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < (1 << 64):
            out[i] = s
        else:
            raise InvalidTypeError(
                f"MinHash.update takes str or bytes shingles or integer hashes in [0, 2**64); "
                f"got {s!r} at position {i}."
            )
    return out


class MinHash:
    """One document's signature, updated incrementally.

    ``update`` takes str shingles (hashed with :func:`simsearch.shingle_hash`) or integer shingle
    hashes; ``merge`` makes this the signature of the union; ``jaccard`` estimates similarity.
    """

    def __init__(self, num_perm: int = 128, seed: int = 1, hashvalues=None):
        self.a, self.b = permutations(num_perm, seed)
        self.num_perm = num_perm
        self.seed = seed
        if hashvalues is None:
            self.hashvalues = np.full(num_perm, EMPTY_HASH, dtype=np.uint32)
        else:
            self.hashvalues = check_array(
                hashvalues, "hashvalues", dtype=np.uint32, shape=(num_perm,), allowed_kinds="ui", copy=True
            )

    @classmethod
    def from_text(cls, text: str, *, num_perm: int = 128, seed: int = 1, ngram: int = 5,
                  shingle: str = "word") -> MinHash:
        sig = minhash([text], num_perm=num_perm, seed=seed, ngram=ngram, shingle=shingle, backend="numpy")
        return cls(num_perm, seed, hashvalues=sig[0])

    def update(self, *shingles) -> None:
        """Add shingles: str values, integer hashes, or one array of integer hashes."""
        hashes = _hashes_of(shingles)
        if hashes.size:
            sig = get_backend("numpy").minhash_hashes(np.array([0, hashes.size]), hashes, self.a, self.b)[0]
            np.minimum(self.hashvalues, sig, out=self.hashvalues)

    def _check_peer(self, other: "MinHash", what: str) -> None:
        if not isinstance(other, MinHash):
            raise InvalidTypeError(f"Cannot {what} a MinHash with {type(other).__name__}.")
        if other.seed != self.seed or other.num_perm != self.num_perm:
            raise InvalidArgumentError(
                f"Cannot {what} MinHash with different seeds or num_perm: "
                f"({self.seed}, {self.num_perm}) vs ({other.seed}, {other.num_perm})."
            )

    def merge(self, other: "MinHash") -> None:
        """Make this the signature of the union of both sets (elementwise min)."""
        self._check_peer(other, "merge")
        np.minimum(self.hashvalues, other.hashvalues, out=self.hashvalues)

    def jaccard(self, other: "MinHash") -> float:
        self._check_peer(other, "compare")
        return jaccard(self.hashvalues, other.hashvalues)

    def is_empty(self) -> bool:
        return is_empty(self.hashvalues)

    def digest(self) -> np.ndarray:
        return self.hashvalues.copy()

    def copy(self) -> "MinHash":
        return MinHash(self.num_perm, self.seed, hashvalues=self.hashvalues)

    def __len__(self) -> int:
        return self.num_perm

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, MinHash)
            and self.seed == other.seed
            and np.array_equal(self.hashvalues, other.hashvalues)
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"MinHash(num_perm={self.num_perm}, seed={self.seed}, empty={self.is_empty()})"
