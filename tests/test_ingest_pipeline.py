"""Pipelined plain upserts (Collection._upsert_pipelined, SQLiteStorage.write_chunks): a batch
hashed and inserted in chunks behaves exactly like the same batch written as one chunk, and a
failure in any chunk stores nothing of the batch and raises the typed error."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import simsearch.index._collection as collection_mod
from simsearch.errors import InvalidArgumentError, ResourceExhaustedError
from simsearch.index import Document, Index
from simsearch.index import _document, _storage

WORDS = [f"w{i}" for i in range(300)]


def _docs(rng, n, prefix="d", dim=8):
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, 30)) if i % 7 else None  # some documents have no text
        out.append(Document(id=f"{prefix}{i}", text=text, metadata={"i": i}, label="ab"[i % 2],
                            vector=vecs[i] if i % 5 else None))
    return out


def _state(coll, ids, rng):
    docs = coll.get(ids)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    texts = [d.text for d in docs if d.text][:5]
    return ([(d.id, d.text, d.metadata, d.label, None if d.vector is None else d.vector.tolist()) for d in docs],
            coll.count(),
            [[(n.id, n.jaccard) for n in coll.near_duplicates(t, exact=True)] for t in texts],
            [[(n.id, n.distance) for n in coll.search(v, k=5, exact=True)] for v in q])


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_a_batch_in_chunks_equals_one_chunk(tmp_path, monkeypatch, chunk):
    rng = np.random.default_rng(chunk)
    first, second = _docs(rng, 150), _docs(rng, 120, "e")
    second = second[:60] + [Document(id=f"d{i}", text=d.text, metadata={"v": 2}, vector=d.vector)
                            for i, d in enumerate(second[60:])]  # re-upserts: replacements inside a pipelined batch
    states = []
    for name, step in (("one", 10**9), ("chunked", chunk)):
        monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", step)
        with Index(tmp_path / name) as ix:
            coll = ix.create_collection("c", dim=8, threshold=0.7)
            r1 = coll.upsert(first)
            r2 = coll.upsert(second)
            assert (r1.upserted, r1.replaced, r2.upserted, r2.replaced) == (150, 0, 120, 60)
        with Index(tmp_path / name) as ix:  # and the same after a reopen
            coll = ix.get_collection("c")
            ids = sorted({d.id for d in first + second})
            states.append(_state(coll, ids, np.random.default_rng(0)))
    assert states[0] == states[1]


def _fail_on_call(monkeypatch, target, name, n, exc):
    real = getattr(target, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return calls


@pytest.mark.parametrize("where", ["insert", "hash"])
def test_a_failure_mid_batch_stores_nothing(tmp_path, monkeypatch, where):
    monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
    rng = np.random.default_rng(3)
    base, batch = _docs(rng, 40, "b"), _docs(rng, 100)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", dim=8, threshold=0.7)
        coll.upsert(base)
        if where == "insert":  # the disk fills while the third chunk is inserted
            calls = _fail_on_call(monkeypatch, _storage, "_insert_params", 3,
                                  sqlite3.OperationalError("database or disk is full"))
            with pytest.raises(ResourceExhaustedError):
                coll.upsert(batch)
        else:  # hashing the fourth chunk fails (the first three are inserted by then)
            calls = _fail_on_call(monkeypatch, coll, "_prepare", 4, MemoryError())
            with pytest.raises(MemoryError):
                coll.upsert(batch)
        assert len(calls) >= 3
        monkeypatch.undo()
        assert coll.count() == 40
        assert coll.search(np.ones(8, np.float32), k=100, exact=True)
        with pytest.raises(Exception):
            coll.get(["d1"])
        monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
        assert coll.upsert(batch).upserted == 100  # the store is usable and the batch goes in whole
        assert coll.count() == 140
    with Index(tmp_path / "ix") as ix:
        assert ix.get_collection("c").count() == 140


@pytest.mark.parametrize("slower", ["insert", "hash"])
def test_chunks_hashed_beside_the_insert_share_the_cores_by_which_stage_is_slower(tmp_path, monkeypatch, slower):
    """With the numba backend, chunks after the first are hashed while the storage worker inserts
    the previous one: on one numba thread fewer (at least one) while the inserts are the slower
    stage, on all of them once hashing is (the worker waited); the first chunk (nothing runs
    beside it) uses them all, and the caller's setting is restored afterwards."""
    import time

    numba = pytest.importorskip("numba")
    monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
    seen: list[int] = []
    prepare = collection_mod.Collection._prepare
    params = _storage._insert_params

    def hashing(self, norm, vecs):
        seen.append(numba.get_num_threads())
        if slower == "hash":
            time.sleep(0.05)
        return prepare(self, norm, vecs)

    def inserting(cid, seq, rows):
        if slower == "insert":
            time.sleep(0.05)
        return params(cid, seq, rows)

    monkeypatch.setattr(collection_mod.Collection, "_prepare", hashing)
    monkeypatch.setattr(_storage, "_insert_params", inserting)
    before = numba.get_num_threads()
    with Index(tmp_path / "idx", backend="numba") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        c.upsert(_docs(np.random.default_rng(0), 96))
        assert c.count() == 96
    assert numba.get_num_threads() == before
    assert len(seen) == 6
    shared = max(1, before - 1)
    # chunk 2 is hashed beside chunk 1's insert before anything is measured: one core left
    assert seen[0] == before and seen[1] == shared
    if slower == "insert":
        assert seen[2:] == [shared] * 4
    else:  # the worker waited for chunk 2: every later chunk is hashed on all threads
        assert seen[2:] == [before] * 4


def _bad_batches():
    """(name, batch of 100 documents, one or two of them bad) for the pipelined checks."""
    rng = np.random.default_rng(7)

    def with_(i, **change):
        docs = _docs(rng, 100)
        d = docs[i]
        fields = dict(id=d.id, text=d.text, metadata=d.metadata, vector=d.vector, label=d.label)
        fields.update(change)
        docs[i] = Document(**fields)
        return docs

    nan = np.full(8, np.nan, np.float32)
    two = with_(90, text="")
    two[60] = Document(id="d60", text="x y", metadata={"a": float("nan")})
    dup = _docs(rng, 100)
    dup[70] = Document(id="d3", text="again")
    return [
        ("empty text", with_(70, text="")),
        ("text type", with_(50, text=3)),
        ("metadata type", with_(40, metadata=[1])),
        ("metadata nan", with_(99, metadata={"x": float("inf")})),
        ("label", with_(33, label="")),
        ("nan vector", with_(80, vector=nan)),
        ("vector shape", with_(20, vector=np.ones(3, np.float32))),
        ("vector then text", with_(20, vector=nan)[:30] + with_(85, text="")[30:]),
        ("two bad documents", two),
        ("duplicate id", dup),
        ("id type", with_(64, id=5)),
        ("a dict", _docs(rng, 60) + [{"id": "x", "txt": "typo"}] + _docs(rng, 39, "z")),
        ("text too long", with_(77, text="w " * 600)),
    ]


@pytest.mark.parametrize("name,batch", _bad_batches(), ids=[b[0] for b in _bad_batches()])
def test_a_bad_document_in_a_later_chunk_raises_what_one_chunk_raises(tmp_path, monkeypatch, name, batch):
    """The pipelined path checks each chunk's documents beside the previous chunk's insert; a bad
    one (in any chunk, of any kind) raises exactly the error the unchunked path raises for the
    batch (the first bad document's), and stores nothing of it."""
    raised = []
    for step in (10**9, 16):
        monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", step)
        with Index(tmp_path / f"ix{step}", max_text_bytes=1000) as ix:
            coll = ix.create_collection("c", dim=8, threshold=0.7)
            coll.upsert(_docs(np.random.default_rng(1), 20, "base"))
            with pytest.raises(Exception) as info:
                coll.upsert(batch)
            raised.append((type(info.value), str(info.value)))
            assert coll.count() == 20
            assert coll.upsert(_docs(np.random.default_rng(2), 40, "ok")).upserted == 40
    assert raised[0] == raised[1]
    assert raised[0][0].__module__ == "simsearch.errors"


def test_later_chunks_are_checked_beside_the_inserts(tmp_path, monkeypatch):
    """Only the first chunk's documents are checked before the first insert: the rest are checked
    chunk by chunk while the worker inserts (the checks are not a serial step of the write)."""
    monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
    events: list[tuple[str, int]] = []
    check, params = _document.check_document, _storage._insert_params

    def checking(doc, i, *args):
        events.append(("check", i))
        return check(doc, i, *args)

    def inserting(cid, seq, rows):
        events.append(("insert", len(rows)))
        return params(cid, seq, rows)

    monkeypatch.setattr(_document, "check_document", checking)
    monkeypatch.setattr(_storage, "_insert_params", inserting)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", dim=8, threshold=0.7)
        coll.upsert(_docs(np.random.default_rng(0), 64))
        assert coll.count() == 64
    first_insert = events.index(("insert", 16))
    assert {i for kind, i in events[:first_insert] if kind == "check"} <= set(range(32))
    assert ("check", 63) in events[first_insert:]


def test_a_pipelined_write_syncs_its_wal_while_it_inserts(tmp_path, monkeypatch):
    """durability="full": the WAL is fdatasync'ed by the writeback thread after the chunks'
    inserts, before the commit syncs it; durability="normal" (no sync at commit) has no such
    thread. The data is the same either way."""
    import os

    monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
    synced: list[str] = []
    real = os.fdatasync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(_storage.os, "fdatasync", recording)
    docs = _docs(np.random.default_rng(5), 80)
    for durability in ("full", "normal"):
        synced.clear()
        with Index(tmp_path / durability, durability=durability) as ix:
            coll = ix.create_collection("c", dim=8, threshold=0.7)
            coll.upsert(docs)
            assert (ix._storage._writeback is not None) == (durability == "full")
        if durability == "full":
            assert synced and all(p.endswith("simsearch.db-wal") for p in synced)
        else:
            assert not synced
        with Index(tmp_path / durability) as ix:
            assert [d.id for d in ix.get_collection("c").get([d.id for d in docs])] == [d.id for d in docs]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), _JSON, min_size=1, max_size=5))
def test_metadata_text_is_the_json_encoders(metadata):
    """The metadata text stored for a dict (encoded by a C encoder made once) is what
    ``json.dumps(sort_keys=True, ensure_ascii=False, allow_nan=False)`` writes."""
    expected = json.dumps(metadata, sort_keys=True, ensure_ascii=False, allow_nan=False)
    assert _document._metadata_text(metadata, "m") == expected
    assert json.loads(expected) == metadata


@pytest.mark.parametrize("metadata", [{"x": float("nan")}, {"x": [float("-inf")]}, {"x": object()},
                                      {"x": {1, 2}}, {1: "a", "b": 2}, "cycle"])
def test_unencodable_metadata_is_invalid_argument(metadata):
    if metadata == "cycle":
        metadata = {"a": []}
        metadata["a"].append(metadata)
    with pytest.raises(InvalidArgumentError, match="metadata is not JSON-serialisable"):
        _document._metadata_text(metadata, "m")
