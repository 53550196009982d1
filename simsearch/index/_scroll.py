"""``Collection.scroll``: pages of documents in id order, each read under the read lock.

A filter on indexed fields (``indexed_fields``, ``$id``, ``$label``) walks its RowSet, the one the
queries use: no JSON is decoded to evaluate it; its ids are sorted once per committed state (a
write makes a new RowSet) and each page is one fetch by rowid. Any other filter is evaluated per
document on a scan of the store in id order (the metadata is decoded for the page anyway).
"""

from __future__ import annotations

import json

import numpy as np

from ._storage import unpack
from ._types import Document, ScrollPage

__all__ = ["pages"]


def pages(coll, flt, batch_size: int, with_text: bool, with_vector: bool, after: str | None):
    """The pages of ``coll.scroll`` (arguments validated there; ``flt`` a parsed Filter or None)."""
    if flt is not None and coll._fields.covers(flt):
        yield from _indexed_pages(coll, flt, batch_size, with_text, with_vector, after)
        return
    while True:
        coll._check_alive()
        page: list[Document] = []
        with coll._lock.read():
            while len(page) < batch_size:
                rows = coll._storage.scan(coll._cid, after, batch_size)
                for row in rows:
                    after = row.ext_id
                    meta = json.loads(row.metadata)
                    if flt is not None and not flt.matches(meta, id=row.ext_id, label=row.label):
                        continue
                    page.append(Document(id=row.ext_id, text=row.text if with_text else None, metadata=meta,
                                         vector=unpack(row.vector, np.float32) if with_vector else None,
                                         label=row.label))
                    if len(page) == batch_size:
                        break
                if len(rows) < batch_size:
                    break
        done = len(page) < batch_size
        if page or not done:
            yield ScrollPage(documents=tuple(page), cursor=page[-1].id)
        if done:
            return
        after = page[-1].id

def _indexed_pages(coll, flt, batch_size: int, with_text: bool, with_vector: bool, after: str | None):
    """Scroll a filter on indexed fields: the filter's RowSet (the one the queries use, no JSON
    per document), its ids sorted once per committed state, then one fetch by rowid per page."""
    held = None  # (RowSet, its ids in id order, their rowids): reused until a write changes the RowSet
    while True:
        coll._check_alive()
        with coll._lock.read():
            rowset = coll._rowset(flt, "scroll")
            if held is None or held[0] is not rowset:
                rowids = rowset.rowids()
                ext = np.array(coll._ext_of_rowids(rowids), dtype=object)
                order = np.argsort(ext, kind="stable")  # code point order: UTF-8 byte order, as scan
                held = (rowset, ext[order], rowids[order])
            _, ext, rowids = held
            lo = 0 if after is None else int(np.searchsorted(ext, after, side="right"))
            take = rowids[lo : lo + batch_size].tolist()
            found = {r.rowid: r for r in coll._storage.fetch(coll._cid, rowids=take)}
        page = []
        for r in take:
            row = found[r]
            page.append(Document(id=row.ext_id, text=row.text if with_text else None,
                                 metadata=json.loads(row.metadata),
                                 vector=unpack(row.vector, np.float32) if with_vector else None, label=row.label))
        if not page:
            return
        yield ScrollPage(documents=tuple(page), cursor=page[-1].id)
        if lo + batch_size >= len(ext):
            return
        after = page[-1].id
