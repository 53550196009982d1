"""Drop-in replacements for datasketch classes, with bit-identical hash values.

``MinHash`` here has datasketch 2.x's constructor and method names and produces exactly the hash
values of ``datasketch.MinHash(num_perm, seed)`` for its default scheme ``"affine32"`` and for
``"legacy"``, with the default ``sha1_hash32`` (or any ``hashfunc`` you pass). The ``affine32``
batch paths (``update_batch``, ``bulk``) run on simsearch's MinHash kernels: the same scheme as
:func:`simsearch.minhash`, fed SHA-1 token hashes instead of XXH64 shingle hashes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable

import numpy as np

from .._arrays import offsets_from_sizes
from ..validation import check_param
from ..backends import get_backend
from ..errors import InvalidArgumentError, InvalidTypeError
from ..minhash import permutations as _affine32_params

__all__ = ["MinHash", "sha1_hash32"]

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_SCHEMES = ("affine32", "legacy")


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash: the first 4 bytes of SHA-1, little-endian."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def _legacy_permutations(num_perm: int, seed: int) -> np.ndarray:
    gen = np.random.RandomState(seed)
    pairs = [
        (gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
        for _ in range(num_perm)
    ]
    return np.array(pairs, dtype=np.uint64).T


class MinHash:
    """datasketch-compatible MinHash (schemes "affine32" and "legacy")."""

    def __init__(
        self,
        num_perm: int = 128,
        seed: int = 1,
        hashfunc: Callable[[bytes], int] | None = None,
        hashvalues=None,
        permutations=None,
        scheme: str | None = None,
    ) -> None:
        if scheme is None:
            if hashvalues is not None or permutations is not None:
                raise InvalidArgumentError(
                    "scheme must be given explicitly with hashvalues or permutations "
                    "('legacy' for values made by datasketch < 2.0)."
                )
            scheme = "affine32"
        if scheme not in _SCHEMES:
            raise InvalidArgumentError(f"scheme must be one of {_SCHEMES}; got {scheme!r} ('affine64' is not supported).")
        if hashvalues is not None:
            num_perm = len(hashvalues)
        self.num_perm = check_param("num_perm", num_perm, func="MinHash")
        self.seed = check_param("seed", seed, func="MinHash")
        self.scheme = scheme
        if hashfunc is not None and not callable(hashfunc):
            raise InvalidTypeError("The hashfunc must be a callable.")
        self.hashfunc = hashfunc or sha1_hash32
        self._dtype = np.uint32 if scheme == "affine32" else np.uint64
        if permutations is not None:
            self.permutations = np.asarray(permutations, dtype=self._dtype)
        elif scheme == "affine32":
            self.permutations = np.array(_affine32_params(self.num_perm, self.seed))
        else:
            self.permutations = _legacy_permutations(self.num_perm, self.seed)
        if hashvalues is not None:
            self.hashvalues = np.array(hashvalues, dtype=self._dtype)
        else:
            self.hashvalues = np.full(self.num_perm, _MAX32, dtype=self._dtype)
        if self.permutations.shape != (2, len(self.hashvalues)):
            raise InvalidArgumentError("Numbers of hash values and permutations mismatch")

    # -- updates ---------------------------------------------------------------------------
    def _hash_all(self, values: Iterable) -> np.ndarray:
        hv = [self.hashfunc(v) for v in values]
        try:
            return np.array(hv, dtype=np.uint64)
        except OverflowError as exc:
            raise InvalidArgumentError(f"hashfunc returned a value that is not a 32-bit hash: {exc}") from None

    def _permuted_min(self, hv: np.ndarray) -> np.ndarray:
        a, b = self.permutations
        if self.scheme == "legacy":
            phv = np.bitwise_and((hv[:, None] * a + b) % _MERSENNE, _MAX32)  # uint64 wraps like datasketch
            return phv.min(axis=0)
        if hv.size and int(hv.max()) > 0xFFFFFFFF:
            raise InvalidArgumentError("hashfunc must return 32-bit values for scheme 'affine32'.")
        return get_backend("numpy").minhash_hashes(np.array([0, hv.size]), hv, a, b)[0]

    def update(self, b) -> None:
        self.update_batch([b])

    def update_batch(self, b: Iterable) -> None:
        hv = self._hash_all(b)
        if hv.size:
            np.minimum(self.hashvalues, self._permuted_min(hv), out=self.hashvalues)

    @classmethod
    def bulk(cls, b: Iterable, **minhash_kwargs) -> list["MinHash"]:
        """One MinHash per list of byte tokens; the affine32 path runs in one batched kernel."""
        proto = cls(**minhash_kwargs)
        groups = [list(x) for x in b]
        if proto.scheme != "affine32":
            out = []
            for g in groups:
                m = proto.copy()
                m.update_batch(g)
                out.append(m)
            return out
        hv = proto._hash_all(v for g in groups for v in g)
        offsets = offsets_from_sizes(len(g) for g in groups)
        if hv.size and int(hv.max()) > 0xFFFFFFFF:
            raise InvalidArgumentError("hashfunc must return 32-bit values for scheme 'affine32'.")
        a, b_ = proto.permutations
        sigs = get_backend("auto").minhash_hashes(offsets, hv, a, b_)
        return [
            cls(seed=proto.seed, hashfunc=proto.hashfunc, hashvalues=s, permutations=proto.permutations, scheme="affine32")
            for s in sigs
        ]

    # -- comparisons -----------------------------------------------------------------------
    def _check(self, other: "MinHash", what: str) -> None:
        if getattr(other, "scheme", None) != self.scheme:
            raise InvalidArgumentError(f"Cannot {what} MinHash with different permutation schemes")
        if other.seed != self.seed:
            raise InvalidArgumentError(f"Cannot {what} MinHash with different seeds")
        if len(self) != len(other):
            raise InvalidArgumentError(f"Cannot {what} MinHash with different numbers of permutation functions")

    def jaccard(self, other: "MinHash") -> float:
        self._check(other, "compute Jaccard given")
        return float(np.count_nonzero(self.hashvalues == other.hashvalues)) / float(len(self))

    def merge(self, other: "MinHash") -> None:
        self._check(other, "merge")
        np.minimum(self.hashvalues, other.hashvalues, out=self.hashvalues)

    def count(self) -> float:
        return float(len(self)) / np.sum(self.hashvalues / float(_MAX32)) - 1.0

    def digest(self) -> np.ndarray:
        return self.hashvalues.copy()

    def is_empty(self) -> bool:
        return not np.any(self.hashvalues != _MAX32)

    def clear(self) -> None:
        self.hashvalues = np.full(len(self), _MAX32, dtype=self._dtype)

    def copy(self) -> "MinHash":
        return MinHash(
            seed=self.seed,
            hashfunc=self.hashfunc,
            hashvalues=self.digest(),
            permutations=self.permutations,
            scheme=self.scheme,
        )

    def __len__(self) -> int:
        return len(self.hashvalues)

    def __eq__(self, other) -> bool:
        return (
            type(self) is type(other)
            and self.scheme == other.scheme
            and self.seed == other.seed
            and np.array_equal(self.hashvalues, other.hashvalues)
        )

    __hash__ = None


from .lsh import MinHashLSH, MinHashLSHDeletionSession, MinHashLSHInsertionSession  # noqa: E402 (re-export)

__all__ += ["MinHashLSH", "MinHashLSHInsertionSession", "MinHashLSHDeletionSession"]
