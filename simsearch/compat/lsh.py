"""``MinHashLSH``: datasketch's MinHash LSH interface on top of :class:`simsearch.LSHIndex`.

Same constructor, same (b, r) for the same threshold/num_perm/weights, and the same query results
for the same signatures as ``datasketch.MinHashLSH``, with two deliberate differences:

* an **empty** MinHash (every hash value 2**32 - 1) is stored but is nobody's candidate, itself
  included (datasketch returns all empty sets as near-duplicates of each other);
* only in-memory storage: ``storage_config`` other than ``{"type": "dict"}`` is refused.

Keys are any hashables; they map to dense int64 ids inside the index. Objects with
``.hashvalues`` (datasketch ``MinHash``/``LeanMinHash``, :class:`simsearch.MinHash`) or
``.digest()`` (rensa ``RMinHash``) are accepted.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError
from ..banding import check_weights, lsh_params
from ..lsh import LSHIndex

__all__ = ["MinHashLSH", "MinHashLSHInsertionSession", "MinHashLSHDeletionSession"]


def _hashvalues(minhash, num_perm: int) -> np.ndarray:
    if hasattr(minhash, "hashvalues"):
        values = np.asarray(minhash.hashvalues)
    elif hasattr(minhash, "digest"):
        values = np.asarray(minhash.digest())
    else:
        raise InvalidTypeError(
            f"MinHashLSH needs a MinHash-like object with .hashvalues or .digest(); got {type(minhash).__name__}."
        )
    if values.ndim != 1 or values.shape[0] != num_perm:
        raise InvalidArgumentError(f"Expecting minhash with length {num_perm}, got {values.size}")
    if values.size and (values.dtype.kind not in "ui" or values.min() < 0 or values.max() > 0xFFFFFFFF):
        raise InvalidArgumentError("MinHash hash values must be unsigned 32-bit integers.")
    return values.astype(np.uint32)


class MinHashLSH:
    """datasketch-compatible MinHash LSH (see the module docstring for the two differences)."""

    def __init__(self, threshold: float = 0.9, num_perm: int = 128, weights=(0.5, 0.5), params=None,
                 storage_config=None, prepickle=None, hashfunc=None):
        if storage_config not in (None, {"type": "dict"}):
            raise InvalidArgumentError("simsearch's MinHashLSH keeps its tables in memory; storage_config must be None.")
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgumentError("threshold must be in [0.0, 1.0]")
        if num_perm < 2:
            raise InvalidArgumentError("Too few permutation functions")
        weights = check_weights(weights, "MinHashLSH")
        b, r = params if params is not None else lsh_params(float(threshold), int(num_perm), weights)
        if b * r > num_perm:
            raise InvalidArgumentError(
                f"The product of b and r in params is {b} * {r} = {b * r} -- it must be less than num_perm "
                f"{num_perm}. Did you forget to specify num_perm?"
            )
        if b < 2:
            raise InvalidArgumentError("The number of bands are too small (b < 2)")
        self.threshold = threshold
        self.h = num_perm
        self.weights = weights
        self.b, self.r = int(b), int(r)
        self.hashranges = [(i * self.r, (i + 1) * self.r) for i in range(self.b)]
        self._index = LSHIndex(num_perm=num_perm, threshold=threshold, params=(self.b, self.r))
        self._ids: dict[Hashable, list[int]] = {}
        self._keys: dict[int, Hashable] = {}
        self._next = 0
        self._pending_ids: list[int] = []
        self._pending_sigs: list[np.ndarray] = []
        self._pending_removals: list[int] = []

    @property
    def num_perm(self) -> int:
        return self.h

    @property
    def params(self) -> tuple[int, int]:
        return self.b, self.r

    def _flush(self) -> None:
        """Apply buffered removals, then buffered inserts, to the index."""
        if self._pending_removals:
            ids = np.array(self._pending_removals, dtype=np.int64)
            self._pending_removals = []
            in_index = self._index.contains(ids)
            self._index.remove(ids[in_index])
            if not in_index.all():  # removed before they were ever flushed
                drop = set(ids[~in_index].tolist())
                keep = [k for k, i in enumerate(self._pending_ids) if i not in drop]
                self._pending_ids = [self._pending_ids[k] for k in keep]
                self._pending_sigs = [self._pending_sigs[k] for k in keep]
        if self._pending_ids:
            ids = np.array(self._pending_ids, dtype=np.int64)
            sigs = np.stack(self._pending_sigs)
            self._pending_ids, self._pending_sigs = [], []
            self._index.insert(ids, sigs)

    def insert(self, key: Hashable, minhash, check_duplication: bool = True) -> None:
        """Insert ``key`` with its MinHash; ValueError if the key exists (unless check_duplication=False)."""
        self._insert(key, minhash, check_duplication, buffer=False)

    def _insert(self, key, minhash, check_duplication, buffer):
        sig = _hashvalues(minhash, self.h)
        if check_duplication and key in self._ids:
            raise InvalidArgumentError("The given key already exists")
        id_ = self._next
        self._next += 1
        self._ids.setdefault(key, []).append(id_)
        self._keys[id_] = key
        self._pending_ids.append(id_)
        self._pending_sigs.append(sig)
        if not buffer or len(self._pending_ids) >= 50_000:
            self._flush()

    def query(self, minhash) -> list:
        """Keys whose signature agrees with ``minhash`` on all rows of at least one band."""
        sig = _hashvalues(minhash, self.h)
        self._flush()
        ids = self._index.query(sig)
        return list({self._keys[i] for i in ids.tolist()})

    def query_many(self, minhashes) -> list[list]:
        """Batched :meth:`query`: one key list per MinHash (one index call for all of them)."""
        sigs = np.stack([_hashvalues(m, self.h) for m in minhashes]) if minhashes else np.empty((0, self.h), np.uint32)
        self._flush()
        cands = self._index.query(sigs)
        return [list({self._keys[i] for i in c.tolist()}) for c in cands]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._ids

    def remove(self, key: Hashable) -> None:
        """Remove ``key``; ValueError if it does not exist."""
        self._remove_many([key])

    def _remove_many(self, keys, defer: bool = False) -> None:
        for key in keys:
            if key not in self._ids:
                raise InvalidArgumentError("The given key does not exist")
        for key in keys:
            for id_ in self._ids.pop(key, []):
                self._pending_removals.append(id_)
                del self._keys[id_]
        if not defer or len(self._pending_removals) >= 50_000:
            self._flush()

    def is_empty(self) -> bool:
        """True when nothing is indexed."""
        return not self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def insertion_session(self, buffer_size: int = 50000) -> "MinHashLSHInsertionSession":
        """A context manager that batches inserts into one index call."""
        return MinHashLSHInsertionSession(self, buffer_size)

    def deletion_session(self, buffer_size: int = 50000) -> "MinHashLSHDeletionSession":
        """A context manager that batches removals into one index call."""
        return MinHashLSHDeletionSession(self, buffer_size)

    def __repr__(self) -> str:
        return f"MinHashLSH(threshold={self.threshold}, num_perm={self.h}, b={self.b}, r={self.r}, keys={len(self)})"


class MinHashLSHInsertionSession:
    """Buffered insertion (datasketch's ``insertion_session``); flushed on exit or by a query."""

    def __init__(self, lsh: MinHashLSH, buffer_size: int = 50000):
        self.lsh = lsh
        self.buffer_size = buffer_size

    def __enter__(self) -> "MinHashLSHInsertionSession":
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.close()

    def close(self) -> None:
        self.lsh._flush()
        self.lsh._index.flush()  # a bulk load: seal it, so that queries use the sorted tables

    def insert(self, key: Hashable, minhash, check_duplication: bool = True) -> None:
        self.lsh._insert(key, minhash, check_duplication, buffer=True)
        if len(self.lsh._pending_ids) >= self.buffer_size:
            self.lsh._flush()


class MinHashLSHDeletionSession:
    """Buffered removal (datasketch's ``deletion_session``): keys disappear at once, the index
    work is batched until the session closes or a query needs it; missing keys raise at once."""

    def __init__(self, lsh: MinHashLSH, buffer_size: int = 50000):
        self.lsh = lsh
        self.buffer_size = buffer_size

    def __enter__(self) -> "MinHashLSHDeletionSession":
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.close()

    def close(self) -> None:
        self.lsh._flush()

    def remove(self, key: Hashable) -> None:
        self.lsh._remove_many([key], defer=True)
        if len(self.lsh._pending_removals) >= self.buffer_size:
            self.lsh._flush()
