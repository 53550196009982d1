"""The indexed fields' columns after a kill -9: an open decodes the metadata only of the rows written
after the last part file (simsearch.index._filtering.FieldStore.persist), and filtered answers equal
brute force (Filter.matches over ``get`` of every document); damaged, foreign or stale part files
are ignored and rebuilt, never answered from."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch import Document, Index
from simsearch.index import parse_filter
from simsearch.index._filtering import FieldStore, fields_dir

FIELDS = ["g", "n", "$label"]
FLUSH = 300  # the child's memtable and part files: rows

CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from simsearch.index import Index, Document
    path = sys.argv[1]
    idx = Index(path)
    coll = idx.create_collection("c", dim=4, indexed_fields=["g", "n", "$label"])
    rng = np.random.default_rng(7)
    b = 0
    while True:
        docs = [Document(id=f"b{b}-{i}", text=f"t {b} {i}", metadata={"g": int(rng.integers(0, 4)), "n": b * 40 + i,
                         **({"s": "x"} if i % 3 else {})}, label=None if i % 5 == 0 else f"L{i % 2}",
                         vector=rng.normal(size=4).astype(np.float32)) for i in range(40)]
        if b % 4 == 3:  # replace older documents: new rows, new metadata
            docs += [Document(id=f"b{b - 2}-{i}", text="r", metadata={"g": 9, "n": -b}) for i in range(5)]
        coll.upsert(docs)
        if b % 3 == 2:
            coll.delete([f"b{b - 1}-{i}" for i in range(0, 40, 7)])
        print(b, flush=True)
        b += 1
    """
)

FILTERS = [{"g": 1}, {"g": {"in": [0, 9]}}, {"n": {"gte": 500}}, {"and": [{"g": 2}, {"n": {"lt": 900}}]},
           {"$label": "L1"}, {"or": [{"$label": {"exists": False}}, {"g": 9}]}]


def _killed_after(path, batches: int) -> None:
    env = dict(os.environ, SIMSEARCH_MEMTABLE_ROWS=str(FLUSH), SIMSEARCH_FIELD_PART_ROWS=str(FLUSH))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(batches):
            assert proc.stdout.readline(), "the child died"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def _check_exact(coll) -> None:
    ids = [d.id for page in coll.scroll() for d in page.documents]
    docs = coll.get(ids)
    assert len(docs) == coll.count()
    for spec in FILTERS:
        f = parse_filter(spec)
        want = {d.id for d in docs if f.matches(d.metadata, id=d.id, label=d.label)}
        got = {d.id for page in coll.scroll(spec) for d in page.documents}
        assert got == want, spec
        assert not coll._rowset(spec, "test").scanned
        if coll.config.dim:
            with_vec = {d.id for d in docs if d.vector is not None and d.id in want}
            hits = coll.search(np.ones(4, np.float32), k=max(1, len(docs)), filter=spec, exact=True)
            assert {h.id for h in hits} == with_vec, spec


def _tail(coll) -> int:
    rowids, _ = coll._live_rows()
    return int((rowids > coll._fields._saved_hi).sum())


def test_open_after_kill_decodes_only_the_tail(tmp_path):
    path = tmp_path / "ix"
    _killed_after(path, 60)  # ~2,500 rows: several part files, rewritten into fewer
    fdir = fields_dir(str(path), 1)
    assert os.listdir(fdir)
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c._fields._saved_hi > 0
        assert c._fields.rows_decoded == _tail(c)  # exactly the live rows after the parts
        assert c._fields.rows_decoded <= FLUSH + 45 < c.count() // 4
        _check_exact(c)
        c.upsert([Document(id="late", text="z", metadata={"g": 1, "n": 10**6})])
        _check_exact(c)
    with Index(path) as ix:  # after the clean close the parts cover everything
        c = ix.get_collection("c")
        assert c._fields.rows_decoded == 0
        _check_exact(c)


def test_damaged_or_foreign_parts_are_rebuilt(tmp_path):
    path = tmp_path / "ix"
    _killed_after(path, 30)
    fdir = fields_dir(str(path), 1)
    names = sorted(os.listdir(fdir))
    assert names
    with open(os.path.join(fdir, names[0]), "r+b") as f:  # the first part: the chain breaks at rowid 0
        f.seek(os.path.getsize(os.path.join(fdir, names[0])) // 2)
        f.write(b"\xff\x00\xff")
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c._fields._saved_hi == 0 and c._fields.rows_decoded == c.count()
        _check_exact(c)
        docs = c.get([d.id for page in c.scroll() for d in page.documents])
    # another database's parts (same documents, same rowids): not used
    other = tmp_path / "other"
    with Index(other) as ix:
        c = ix.create_collection("c", dim=4, indexed_fields=FIELDS)
        c.upsert([Document(id=d.id, text=d.text, metadata={"g": 5, "n": 0}, label=d.label, vector=d.vector)
                  for d in docs])
    shutil.rmtree(fdir)
    shutil.copytree(fields_dir(str(other), 1), fdir)
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c._fields.rows_decoded == c.count()
        _check_exact(c)
    # truncated part: ignored
    (name,) = os.listdir(fdir)
    with open(os.path.join(fdir, name), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(fdir, name)) - 10)
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c._fields.rows_decoded == c.count()
        _check_exact(c)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(0, 10), st.booleans()), min_size=1, max_size=25))
def test_parts_hold_every_live_row_they_cover(tmp_path_factory, ops):
    """Random writes, deletes and persists: the parts loaded back hold every live row up to their
    coverage, with the columns the documents' metadata gives, and none past it."""
    fdir = str(tmp_path_factory.mktemp("f"))
    owner = {"db": "u", "cid": 1, "seq": 0}
    store = FieldStore(["g"])
    meta: dict[int, dict] = {}
    live: set[int] = set()
    rowid = 0
    rng = np.random.default_rng(len(ops))
    for n, dels, save in ops:
        rows = np.arange(rowid + 1, rowid + n + 1)
        rowid += n
        batch = [{"g": int(rng.integers(0, 3))} for _ in rows]
        meta.update(zip(rows.tolist(), batch))
        live.update(rows.tolist())
        store.add(rows, [str(r) for r in rows], [None] * n, batch)
        dead = rng.choice(sorted(live), size=min(dels, len(live)), replace=False) if live else []
        store.remove(np.sort(np.asarray(dead, np.int64)))
        live.difference_update(int(x) for x in dead)
        if save:
            owner["seq"] += 1
            store.persist(fdir, dict(owner), fsync=False)
        assert len(os.listdir(fdir)) <= 12
    back = FieldStore.load_parts(fdir, ["g"], dict(owner))
    assert back._saved_hi == store._saved_hi
    live_rowids = np.array(sorted(live), np.int64)
    held = back.keep_live(live_rowids)
    assert held.tolist() == (live_rowids <= back._saved_hi).tolist()
    flt = parse_filter({"g": 1})
    got = back.rowset(flt, None, None).rowids().tolist()
    assert got == [r for r in live_rowids.tolist() if r <= back._saved_hi and meta[r]["g"] == 1]


def test_snapshot_carries_the_parts(tmp_path):
    path = tmp_path / "ix"
    _killed_after(path, 20)
    with Index(path) as ix:
        c = ix.get_collection("c")
        c.delete(["b3-1", "b4-2"])
        ix.snapshot(tmp_path / "snap")
    with Index(tmp_path / "snap") as ix:
        c = ix.get_collection("c")
        assert c._fields.rows_decoded == 0
        _check_exact(c)


def test_a_failed_part_write_costs_nothing_but_decoding(tmp_path, monkeypatch):
    """A part write that fails (ENOSPC) fails no write, is retried PART_ROWS rows later, and the
    next open decodes the rows it lacks."""
    import errno

    from simsearch.index import _filtering

    monkeypatch.setattr("simsearch.index._collection.PART_ROWS", 50)
    calls = []
    real = _filtering.FieldStore._write_part

    def full(self, *a, **k):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "ix"
    ix = Index(path)
    c = ix.create_collection("c", dim=4, indexed_fields=FIELDS)
    monkeypatch.setattr(_filtering.FieldStore, "_write_part", full)
    for b in range(6):  # 40 rows a batch: a part is due at 50 rows, then retried 50 rows after the failure
        c.upsert([Document(id=f"x{b}-{i}", text="t", metadata={"g": i % 3, "n": b}, label=None) for i in range(40)])
    assert len(calls) == 3  # after the 2nd, 4th and 6th batches, not on every write once due (5)
    monkeypatch.setattr(_filtering.FieldStore, "_write_part", real)
    c.upsert([Document(id=f"y{i}", text="t", metadata={"g": 1, "n": 99}) for i in range(60)])
    assert c._fields._saved_hi > 0
    _check_exact(c)
    ix.close()
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c._fields.rows_decoded == 0
        _check_exact(c)


KILL_INSIDE = textwrap.dedent(
    """
    import os, signal, sys
    from simsearch.index import Index, Document
    from simsearch.index import _filtering
    path, where = sys.argv[1], sys.argv[2]
    ix = Index(path)
    c = ix.create_collection("c", indexed_fields=["g", "n", "$label"])
    for b in range(12):  # parts after batches 1, 3, 5, ...; the kill arms at the 4th part write
        if b == 7:
            if where == "write":  # a part half written, not renamed
                def torn(self, directory, lo, hi, owner, fsync):
                    with open(os.path.join(directory, f"p-{lo:016d}-{hi:016d}.bin.tmp"), "wb") as fh:
                        fh.write(b"SSFPART1" + b"\\x00" * 10)
                    os.kill(os.getpid(), signal.SIGKILL)
                _filtering.FieldStore._write_part = torn
            else:  # a rewrite renamed into place, the parts it replaces not yet removed
                _filtering._remove = lambda p: os.kill(os.getpid(), signal.SIGKILL)
        c.upsert([Document(id=f"b{b}-{i}", text="t", metadata={"g": i % 4, "n": b * 40 + i},
                           label=f"L{i % 2}") for i in range(40)])
        if b % 2:
            c.delete([f"b{b - 1}-{i}" for i in range(0, 40, 9)])
        print(b, flush=True)
    """
)


@pytest.mark.parametrize("where", ["write", "cleanup"])
def test_kill_inside_a_part_write(tmp_path, where):
    path = tmp_path / "ix"
    env = dict(os.environ, SIMSEARCH_FIELD_PART_ROWS="60")
    out = subprocess.run([sys.executable, "-c", KILL_INSIDE, str(path), where], env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    acked = [int(x) for x in out.stdout.split()]
    assert acked == list(range(7))  # killed inside the 8th write, after its commit
    fdir = fields_dir(str(path), 1)
    before = sorted(os.listdir(fdir))
    assert any(n.endswith(".tmp") for n in before) == (where == "write")
    with Index(path) as ix:
        c = ix.get_collection("c")
        assert c.count() == 8 * 40 - 3 * 5  # the 8th batch committed before the kill
        assert c._fields._saved_hi > 0 and c._fields.rows_decoded == _tail(c) < c.count()
        assert not any(n.endswith(".tmp") for n in os.listdir(fdir))
        if where == "cleanup":
            assert len(os.listdir(fdir)) < len(before)  # the replaced parts, left by the kill, removed
        _check_exact(c)
