"""Pipelined plain upserts (Collection._upsert_pipelined, SQLiteStorage.write_chunks): a batch
hashed and inserted in chunks behaves exactly like the same batch written as one chunk, and a
failure in any chunk stores nothing of the batch and raises the typed error."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import simsearch.index._collection as collection_mod
from simsearch.errors import ResourceExhaustedError
from simsearch.index import Document, Index
from simsearch.index import _storage

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


def test_chunks_hashed_beside_the_insert_leave_it_a_core(tmp_path, monkeypatch):
    """With the numba backend, chunks after the first are hashed while the storage worker inserts
    the previous one, on one numba thread fewer (at least one); the first chunk (nothing runs
    beside it) uses them all, and the caller's setting is restored afterwards."""
    numba = pytest.importorskip("numba")
    monkeypatch.setattr(collection_mod, "PIPELINE_DOCS", 16)
    seen: list[int] = []
    prepare = collection_mod.Collection._prepare

    def recording(self, norm, vecs):
        seen.append(numba.get_num_threads())
        return prepare(self, norm, vecs)

    monkeypatch.setattr(collection_mod.Collection, "_prepare", recording)
    before = numba.get_num_threads()
    with Index(tmp_path / "idx", backend="numba") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        c.upsert(_docs(np.random.default_rng(0), 80))
        assert c.count() == 80
    assert numba.get_num_threads() == before
    assert len(seen) == 5
    assert seen[0] == before and seen[1:] == [max(1, before - 1)] * 4
