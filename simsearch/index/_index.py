"""``simsearch.Index``: a durable set of collections on embedded SQLite (WAL)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Sequence

from ..validation import check_int, check_option
from ..backends import BackendLike, get_backend
from ..errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, InvalidTypeError, NotFoundError
from ._collection import Collection
from ._engine import SEGMENTS_DIR
from ._filtering import remove_fields
from ._storage import DB_FILE, open_storage
from ._types import MAX_NAME_BYTES, CollectionConfig, CollectionInfo

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_collection_name(name) -> str:
    """``name`` if it is a valid collection name (1 to MAX_NAME_BYTES characters of [A-Za-z0-9_.-]),
    else a typed error."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"A collection name must be a str. Got {type(name).__name__}.")
    if not 1 <= len(name) <= MAX_NAME_BYTES or not set(name) <= _NAME_CHARS:
        raise InvalidArgumentError(
            f"A collection name must be 1 to {MAX_NAME_BYTES} characters from [A-Za-z0-9_.-]. Got {name!r}."
        )
    return name


def _config_difference(existing: CollectionConfig, asked: CollectionConfig) -> str:
    """``" with a different config: ..."`` naming each field that differs, or "" when none does."""
    diffs = [f"{f.name}={getattr(existing, f.name)!r} (asked {getattr(asked, f.name)!r})"
             for f in dataclasses.fields(existing) if getattr(existing, f.name) != getattr(asked, f.name)]
    return f" with a different config: {', '.join(diffs)}" if diffs else ""


class Index:
    """Collections of documents with text, metadata, optional vector and label.

    ``Index()`` lives in memory; ``Index(path)`` keeps everything in the directory ``path``
    (created if missing) and reopens it later. Every write returns only after its transaction
    has committed; see :mod:`simsearch.index._storage` for the durability guarantees.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        durability: str = "full",
        backend: BackendLike = "auto",
        max_batch: int = 100_000,
        max_text_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        check_option(durability, "durability", ("full", "normal"), func="Index")
        self.path = None if path is None else os.fspath(path)
        self._backend = get_backend(backend)  # resolved once; collections use the object
        self.backend = self._backend.name
        self.max_batch = check_int(max_batch, "max_batch", 1, 10_000_000, func="Index")
        self.max_text_bytes = check_int(max_text_bytes, "max_text_bytes", 1, 1 << 31, func="Index")
        self._fsync = durability == "full"  # segment files and manifests are fsynced too
        self._storage = open_storage(self.path, durability=durability)
        if self.path is not None:  # the close-time cache of format 1 is retired (segments replace it)
            shutil.rmtree(os.path.join(self.path, "cache"), ignore_errors=True)
        self._lock = threading.RLock()
        self._closed = False
        self._collections: dict[str, Collection] = {}
        try:
            for cid, name, config in self._storage.collections():
                self._collections[name] = Collection(self, cid, name, config)
        except BaseException:
            for c in self._collections.values():
                c._engine.close()
            self._storage.close()
            raise

    def __repr__(self) -> str:
        return f"Index({self.path!r}, collections={sorted(self._collections)})"

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError("the index is closed")

    # -- collections -----------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        *,
        shingle: str = "word",
        ngram: int = 5,
        num_perm: int = 128,
        seed: int = 1,
        threshold: float = 0.8,
        weights: tuple[float, float] | None = None,
        dim: int | None = None,
        metric: str = "cosine",
        store_text: bool = True,
        store_shingles: bool = True,
        vector_index: str = "auto",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int | None = None,
        indexed_fields: Sequence[str] = (),
        exist_ok: bool = False,
    ) -> Collection:
        """Create a collection; its config is stored with it and never changes afterwards.

        With ``exist_ok=True`` an existing collection of the same config is returned, and one
        with a different config raises AlreadyExistsError.

        ``vector_index`` picks the kNN structure of the vectors (see :mod:`simsearch.index._ann`):
        ``"auto"`` (flat below 20,000 vectors, HNSW above), ``"flat"``, ``"hnsw"`` (``hnsw_m``,
        ``ef_construction``, ``ef_search``) or ``"ivf"`` (``nlist``, ``nprobe``).
        ``indexed_fields`` names metadata fields (in filter syntax: ``"lang"``, ``"a.b"``,
        ``"$label"``) kept as typed columns, so filters on them read no JSON.
        """
        self._check_open()
        name = check_collection_name(name)
        config = CollectionConfig(
            shingle=shingle, ngram=ngram, num_perm=num_perm, seed=seed, threshold=threshold,
            weights=tuple(weights) if isinstance(weights, list) else weights, dim=dim, metric=metric,
            store_text=store_text, store_shingles=store_shingles, vector_index=vector_index, hnsw_m=hnsw_m,
            ef_construction=ef_construction, ef_search=ef_search, nlist=nlist, nprobe=nprobe,
            indexed_fields=indexed_fields,
        ).validated()
        with self._lock:
            if name in self._collections:
                existing = self._collections[name]
                if exist_ok and existing.config == config:
                    return existing
                raise AlreadyExistsError(f"collection {name!r} already exists" + _config_difference(existing.config, config))
            cid = self._storage.create_collection(name, config)
            coll = self._collections[name] = Collection(self, cid, name, config)
            return coll

    def get_collection(self, name: str) -> Collection:
        self._check_open()
        try:
            return self._collections[check_collection_name(name)]
        except KeyError:
            raise NotFoundError(f"collection {name!r} does not exist") from None

    def list_collections(self) -> list[CollectionInfo]:
        self._check_open()
        with self._lock:
            colls = sorted(self._collections.values(), key=lambda c: c.name)
        return [CollectionInfo(name=c.name, config=c.config, count=c.count()) for c in colls]

    def drop_collection(self, name: str) -> None:
        self._check_open()
        with self._lock:
            coll = self.get_collection(name)
            with coll._lock.write():
                self._storage.drop_collection(coll._cid)
                coll._dropped = True
                if coll._ann is not None:
                    coll._ann.discard()
                if self.path is not None:
                    remove_fields(self.path, coll._cid)
            coll._engine.close(remove=True)
            del self._collections[name]

    # -- maintenance -----------------------------------------------------------------------
    def snapshot(self, dest_path: str | os.PathLike) -> None:
        """Write a consistent online copy of the whole index to the empty directory ``dest_path``:
        the database, and each collection's segment files as of its last manifest (hard links
        where the filesystem allows; the writes after it are replayed from the copied database).

        ``Index(dest_path)`` opens the snapshot; :meth:`restore` copies one to a new location.
        """
        self._check_open()
        dest = os.fspath(dest_path)
        with self._lock:
            colls = sorted(self._collections.values(), key=lambda c: c.name)
            locks = [c._lock.write() for c in colls]
            for lk in locks:  # no write and no merge install while the copy is taken
                lk.__enter__()
            try:
                new_uuid = self._storage.backup(dest)
                for c in colls:  # the segments of the last manifest, linked (immutable), renamed to the copy
                    c._engine.snapshot_into(dest, new_uuid)
                    c._snapshot_fields(dest, new_uuid)
            finally:
                for lk in reversed(locks):
                    lk.__exit__(None, None, None)

    @staticmethod
    def restore(snapshot_path: str | os.PathLike, dest_path: str | os.PathLike) -> "Index":
        """Copy a snapshot to ``dest_path`` (which must not hold an index) and open it."""
        src = os.path.join(os.fspath(snapshot_path), DB_FILE)
        if not os.path.exists(src):
            raise NotFoundError(f"no snapshot at {snapshot_path}")
        dest = os.path.join(os.fspath(dest_path), DB_FILE)
        if os.path.exists(dest):
            raise AlreadyExistsError(f"{dest_path} already holds an index")
        os.makedirs(os.fspath(dest_path), exist_ok=True)
        seg_src = os.path.join(os.fspath(snapshot_path), SEGMENTS_DIR)
        seg_dest = os.path.join(os.fspath(dest_path), SEGMENTS_DIR)
        if os.path.isdir(seg_src) and not os.path.exists(seg_dest):
            shutil.copytree(seg_src, seg_dest)  # checked on open, rebuilt if anything is off
        shutil.copyfile(src, dest + ".tmp")
        os.replace(dest + ".tmp", dest)
        return Index(dest_path)

    def close(self) -> None:
        """Close the storage; further calls raise FailedPreconditionError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for c in self._collections.values():
                    if c._ann is not None:  # before the lock: the ANN builder reads under it
                        c._ann.stop()
                    with c._lock.write():  # waits for in-flight writes
                        c._engine.flush_on_close()
                        c._save_query_state()
                    c._engine.close()  # stops its merger
            finally:
                self._storage.close()
