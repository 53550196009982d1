"""A collection's manifest: the commit point of its segment files.

``segments/c<cid>/MANIFEST`` (JSON, with an XXH3 of its own body) names the database it belongs
to (the storage's uuid), the collection's write sequence number ``seq`` and the largest rowid
``max_rowid`` that its segments cover, and the live segments, each with its row count, its rowid
range (``min_rowid``, ``max_rowid``: what a rebuild of that segment alone reloads) and its
tombstone file (if it has removed rows). Writing one is: write ``MANIFEST.tmp``, fsync, rename over ``MANIFEST``,
fsync the directory; a crash leaves the old manifest or the new one, never a mix. Files that the
current manifest does not name (a flush or merge that a crash interrupted, replaced generations)
are removed when the collection opens and after each new manifest.

A tombstone file (``seg-<id>.del-<generation>``) is a bitmap of the segment's removed rows,
written once; a later generation writes a new file, so a segment and its tombstones are never
modified in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import numpy as np
import xxhash

from ..errors import StorageCorruptionError

log = logging.getLogger("simsearch.index")

MANIFEST = "MANIFEST"
MANIFEST_FORMAT = 1
TOMB_MAGIC = b"SIMSTMB\n"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str, fsync: bool, *, sync_dir: bool = True):
    """Write ``path`` atomically: yields its temporary twin open for writing; on success it is
    flushed, fsynced and renamed over ``path`` (and the directory fsynced unless ``sync_dir`` is
    false); on any failure the temporary file is removed and the error raised."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if fsync and sync_dir:
        _fsync_dir(os.path.dirname(path))


def _write_atomic(path: str, data: bytes, fsync: bool) -> None:
    with atomic_file(path, fsync) as fh:
        fh.write(data)


def write_tombstones(directory: str, seg_id: int, generation: int, alive: np.ndarray, fsync: bool) -> dict:
    """Write the removed-rows bitmap of a segment; returns its manifest entry."""
    name = f"seg-{seg_id:08d}.del-{generation:08d}"
    bits = np.packbits(~alive, bitorder="little").tobytes()
    data = TOMB_MAGIC + len(alive).to_bytes(8, "little") + bits
    _write_atomic(os.path.join(directory, name), data, fsync)
    return {"file": name, "xxh3": xxhash.xxh3_64_intdigest(data), "dead": int((~alive).sum())}


def read_tombstones(directory: str, entry: dict, n: int) -> np.ndarray:
    """The alive bitmap (bool n) a tombstone entry describes; StorageCorruptionError if damaged."""
    path = os.path.join(directory, entry["file"])
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise StorageCorruptionError(f"tombstones {path} cannot be read ({exc.strerror})") from None
    if xxhash.xxh3_64_intdigest(data) != entry["xxh3"] or data[:8] != TOMB_MAGIC or \
            int.from_bytes(data[8:16], "little") != n:
        raise StorageCorruptionError(f"tombstones {path} fail their checksum")
    dead = np.unpackbits(np.frombuffer(data, np.uint8, offset=16), count=n, bitorder="little").astype(bool)
    if int(dead.sum()) != entry["dead"]:
        raise StorageCorruptionError(f"tombstones {path} do not match the manifest")
    return ~dead


def write_manifest(directory: str, body: dict, fsync: bool) -> None:
    body = dict(body, format=MANIFEST_FORMAT)
    text = json.dumps(body, sort_keys=True)
    data = json.dumps({"body": body, "xxh3": xxhash.xxh3_64_intdigest(text.encode())}, sort_keys=True).encode()
    _write_atomic(os.path.join(directory, MANIFEST), data, fsync)


def read_manifest(directory: str) -> dict | None:
    """The manifest body, None when there is none; StorageCorruptionError when it is damaged."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageCorruptionError(f"manifest {path} cannot be read ({exc.strerror})") from None
    try:
        outer = json.loads(data)
        body = outer["body"]
        if xxhash.xxh3_64_intdigest(json.dumps(body, sort_keys=True).encode()) != outer["xxh3"]:
            raise ValueError("checksum mismatch")
        if body.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {body.get('format')}")
        return body
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageCorruptionError(f"manifest {path} is damaged ({exc})") from None


def referenced(body: dict | None) -> set[str]:
    if body is None:
        return set()
    out = {MANIFEST}
    for s in body["segments"]:
        out.add(s["file"])
        if s.get("tomb"):
            out.add(s["tomb"]["file"])
    return out


def collect_garbage(directory: str, keep: set[str]) -> None:
    """Remove the files of ``directory`` that ``keep`` does not name (best effort)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name not in keep:
            try:
                os.remove(os.path.join(directory, name))
            except OSError as exc:  # pragma: no cover - permissions
                log.warning("could not remove %s: %s", name, exc)
