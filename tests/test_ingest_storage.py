"""The write path's storage: commits append to the WAL (fsynced), checkpoints run off the commit
path (a background thread, or the writer itself once the WAL passes its limit), and nothing
committed is lost either way."""

from __future__ import annotations

import os

import numpy as np

from simsearch.index import Document, Index
from simsearch.index import _storage
from simsearch.index._storage import DB_FILE


def _docs(start, n, rng):
    return [Document(id=f"d{start + i}", text=" ".join(rng.choice([f"w{j}" for j in range(300)], 30)),
                     metadata={"i": start + i}) for i in range(n)]


def test_commits_leave_checkpoints_to_the_background(tmp_path, monkeypatch):
    pokes = []
    monkeypatch.setattr(_storage._Checkpointer, "poke", lambda self: pokes.append(1))
    rng = np.random.default_rng(0)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c")
        db = os.path.join(ix.path, DB_FILE)
        size0 = os.path.getsize(db)
        for b in range(4):
            coll.upsert(_docs(b * 200, 200, rng))
        # no checkpoint ran: the rows are in the WAL only, and every write handed it on
        assert os.path.getsize(db) == size0 and len(pokes) == 4
        assert coll.count() == 800
    with Index(tmp_path / "ix") as ix:
        assert ix.get_collection("c").count() == 800


def test_the_writer_checkpoints_a_wal_past_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_storage._Checkpointer, "poke", lambda self: None)  # a checkpointer that never runs
    monkeypatch.setattr(_storage, "WAL_LIMIT_BYTES", 1)
    rng = np.random.default_rng(1)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c")
        db = os.path.join(ix.path, DB_FILE)
        size0 = os.path.getsize(db)
        wal_sizes = []
        for b in range(4):
            coll.upsert(_docs(b * 200, 200, rng))
            wal_sizes.append(os.path.getsize(db + "-wal"))
        assert os.path.getsize(db) > size0  # the pages reached the database file
        assert max(wal_sizes) <= 2 * wal_sizes[0]  # the WAL restarts instead of growing with every batch
        got = coll.get(["d0", "d799"])
        assert [d.metadata["i"] for d in got] == [0, 799]


def test_background_checkpoints_keep_every_write(tmp_path):
    rng = np.random.default_rng(2)
    docs = _docs(0, 600, rng)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c")
        for lo in range(0, 600, 50):
            coll.upsert(docs[lo:lo + 50])
    with Index(tmp_path / "ix") as ix:
        coll = ix.get_collection("c")
        assert coll.count() == 600
        got = coll.get([d.id for d in docs])
        assert [g.text for g in got] == [d.text for d in docs]


from hypothesis import given, settings
from hypothesis import strategies as st

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_blob = st.none() | st.binary(max_size=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_text.filter(bool), st.none() | _text, _text, st.none() | _text, _blob, _blob, _blob),
                max_size=8))
def test_checksums_written_out_equal_their_definition(rows):
    params = _storage._insert_params(3, 9, rows)
    assert [p[:8] for p in params] == [(3, *r) for r in rows] and all(p[10] == 9 for p in params)
    spec_index = [_storage._crc(e, lab, v, s) for e, _, _, lab, v, s, _ in rows]  # the definition
    spec_doc = [_storage._crc(t, m, sh) for _, t, m, _, _, _, sh in rows]
    assert [p[8] for p in params] == spec_index
    assert [p[9] for p in params] == spec_doc
    assert [_storage.crc_index(e, lab, v, s) for e, _, _, lab, v, s, _ in rows] == spec_index
    assert [_storage.crc_doc(t, m, sh) for _, t, m, _, _, _, sh in rows] == spec_doc


def test_checksums_of_values_of_the_wrong_type_are_the_definitions():
    """A damaged row can read back a blob where text was stored (or the reverse): the checksum
    is still computed (and then fails to match), never a raw AttributeError."""
    assert _storage.crc_doc(b"text", b"{}", None) == _storage._crc(b"text", b"{}", None)
    assert _storage.crc_index(b"id", b"lab", "vec", None) == _storage._crc(b"id", b"lab", "vec", None)
    assert _storage.crc_doc("text", "{}", None) != _storage.crc_doc(b"tex", "{}", None)
