"""A checksummed cache of a collection's in-memory rows, so that reopening skips the row scan.

On a clean close the index writes, per collection, the rows its in-memory structures are built
from (rowids, ids, labels, signatures, vectors) to ``cache/c<cid>.bin`` in the index directory,
with the collection's *state*: the database's uuid, the collection's generation (bumped in the
same transaction as every write) and its document count. On open the cache is used only if the state still matches the database
and every section's XXH3 checksum holds; otherwise it is ignored (and removed) and the
collection is rebuilt from the rows, whose CRCs are checked as always. A crash leaves the cache
of the last clean close behind, which the bumped generation marks stale.

The file: ``MAGIC``, an 8-byte little-endian header length, the header (JSON), then the raw
sections at the offsets the header gives.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import xxhash

log = logging.getLogger("simsearch.index")

MAGIC = b"SIMSEARCH-CACHE\n"
VERSION = 1
CACHE_DIR = "cache"


def cache_path(index_path: str, cid: int) -> str:
    return os.path.join(index_path, CACHE_DIR, f"c{cid}.bin")


def _raw(arr: np.ndarray):
    """The bytes of a C-contiguous array (an empty one has no castable view)."""
    return memoryview(arr).cast("B") if arr.nbytes else b""


def _strings(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 (surrogatepass) bytes of the strings back to back, and int64 offsets; None is -1."""
    enc = [None if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    lens = np.fromiter((-1 if e is None else len(e) for e in enc), np.int64, len(enc))
    return np.frombuffer(b"".join(e for e in enc if e is not None), np.uint8), lens


def _unstrings(buf: np.ndarray, lens: np.ndarray) -> list[str | None]:
    raw = buf.tobytes()
    ends = np.cumsum(np.maximum(lens, 0)).tolist()
    out: list[str | None] = []
    start = 0
    for n, end in zip(lens.tolist(), ends):
        out.append(None if n < 0 else raw[start:end].decode("utf-8", "surrogatepass"))
        start = end
    return out


def save(path: str, state: tuple[str, int, int], rowids, ext_ids, labels, sigs, vecs) -> None:
    """Write the cache atomically (temp file + rename). Failures are logged, never raised: the
    cache is an optimisation, and the database stays the truth."""
    try:
        id_buf, id_lens = _strings(ext_ids)
        lab_buf, lab_lens = _strings(labels)
        sections = {
            "rowids": np.ascontiguousarray(rowids, "<i8"),
            "id_bytes": id_buf,
            "id_lens": id_lens.astype("<i8"),
            "label_bytes": lab_buf,
            "label_lens": lab_lens.astype("<i8"),
            "signatures": np.ascontiguousarray(sigs, "<u4"),
        }
        if vecs is not None:
            sections["vectors"] = np.ascontiguousarray(vecs, "<f4")
        meta, offset = [], 0
        for name, arr in sections.items():
            meta.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                         "nbytes": arr.nbytes, "xxh3": xxhash.xxh3_64_intdigest(_raw(arr))})
            offset += arr.nbytes
        header = json.dumps({"version": VERSION, "database": state[0], "generation": state[1], "count": state[2],
                             "sections": meta}).encode()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for arr in sections.values():
                fh.write(_raw(arr))
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:  # pragma: no cover - disk full, permissions
        log.warning("could not write the index cache %s: %s", path, exc)


def load(path: str, state: tuple[str, int, int], num_perm: int, dim: int | None):
    """(rowids, ext_ids, labels, sigs, vecs) from a cache that matches ``state``, else None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a cache file")
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
            cached_state = [header["database"], header["generation"], header["count"]]
            if header["version"] != VERSION or cached_state != list(state):
                raise ValueError(f"stale (cache of {cached_state}; the database is at {list(state)})")
            base = fh.tell()
            arrays = {}
            for sec in header["sections"]:
                arr = np.empty(sec["shape"], np.dtype(sec["dtype"]))
                fh.seek(base + sec["offset"])
                if arr.nbytes != sec["nbytes"] or (arr.nbytes and fh.readinto(_raw(arr)) != arr.nbytes):
                    raise ValueError(f"section {sec['name']} is truncated")
                if xxhash.xxh3_64_intdigest(_raw(arr)) != sec["xxh3"]:
                    raise ValueError(f"section {sec['name']} fails its checksum")
                arrays[sec["name"]] = arr
        rowids = arrays["rowids"].astype(np.int64, copy=False)
        sigs = arrays["signatures"].astype(np.uint32, copy=False)
        vecs = arrays.get("vectors")
        n = len(rowids)
        if sigs.shape != (n, num_perm) or (dim is None) != (vecs is None) or (
                vecs is not None and vecs.shape != (n, dim)) or n != state[2]:
            raise ValueError("shapes do not match the collection")
        ext_ids = _unstrings(arrays["id_bytes"], arrays["id_lens"])
        labels = _unstrings(arrays["label_bytes"], arrays["label_lens"])
        if len(ext_ids) != n or len(labels) != n or (n > 1 and not (np.diff(rowids) > 0).all()):
            raise ValueError("rows are not consistent")
        return rowids, ext_ids, labels, sigs, None if vecs is None else vecs.astype(np.float32, copy=False)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        log.info("ignoring the index cache %s: %s", path, exc)
        try:
            os.remove(path)
        except OSError:
            pass
        return None
