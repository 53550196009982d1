"""The index engine (segments, manifest, memtable, merges) against an oracle: a fresh in-memory
index over the same live documents, whose memtable never flushes. Damaged files, a full disk and
SQLite damage are injected; no query may answer from a bad segment."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from simsearch.errors import NotFoundError, ResourceExhaustedError, StorageCorruptionError
from simsearch.index import Document, Index, _collection, _engine, _manifest
from simsearch.index._storage import DB_FILE, FORMAT_VERSION

WORDS = [f"w{i}" for i in range(300)]


def make_docs(n, seed, prefix="d", dim=8):
    rng = np.random.default_rng(seed)
    base = [" ".join(rng.choice(WORDS, 40)) for _ in range(max(1, n // 3))]
    out = []
    for i in range(n):
        words = base[i % len(base)].split()
        for j in rng.choice(len(words), int(rng.integers(0, 5)), replace=False):
            words[j] = str(rng.choice(WORDS))
        out.append(Document(id=f"{prefix}{i}", text=" ".join(words) if i % 11 else None,
                            metadata={"i": i}, vector=rng.normal(size=dim).astype(np.float32) if i % 7 else None,
                            label=["a", "b", None][i % 3]))
    return out


def answers(coll, docs):
    texts = [d for d in docs if d.text is not None][:8]
    vecs = [d for d in docs if d.vector is not None][:8]
    return (
        coll.count(),
        [coll.near_duplicates(d.text, threshold=0.3) for d in texts],
        [coll.near_duplicates(id=d.id, k=4) for d in texts],
        [coll.near_duplicates(d.text, threshold=0.3, exact=True) for d in texts[:4]],
        [coll.search(d.vector, k=6) for d in vecs],
        [coll.search(id=d.id, k=3, metric="manhattan") for d in vecs[:4]],
        coll.find_duplicates(threshold=0.5),
        sorted(coll.vectors_and_labels(require_labels=False)[0]),
    )


def oracle(live_docs):
    fresh = Index().create_collection("c", dim=8, threshold=0.5)
    fresh.upsert(list(live_docs.values()))  # in insertion order: representatives are the earliest
    return fresh


def churn(coll, seed, rounds=6):
    """Upserts, re-upserts and deletes; returns the live documents by id."""
    rng = np.random.default_rng(seed)
    live: dict[str, Document] = {}
    for r in range(rounds):
        batch = make_docs(int(rng.integers(20, 60)), seed * 100 + r, prefix=f"r{r}-")
        if live and r % 2:
            old = list(live)
            for i in rng.choice(len(old), min(5, len(old)), replace=False):
                batch.append(Document(id=old[i], text="replaced " + " ".join(rng.choice(WORDS, 30)),
                                      vector=rng.normal(size=8).astype(np.float32)))
        coll.upsert(batch)
        for d in batch:  # a re-upserted id is a new row, the latest
            live.pop(d.id, None)
            live[d.id] = d
        gone = [k for k in list(live) if rng.random() < 0.15]
        if gone:
            coll.delete(gone)
            for k in gone:
                del live[k]
    return live


@pytest.fixture
def small_memtable(monkeypatch):
    monkeypatch.setattr(_engine, "MEMTABLE_ROWS", 32)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flushes_and_merges_answer_like_a_fresh_index(tmp_path, small_memtable, seed):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        live = churn(c, seed)
        c._engine.wait_merges()
        assert len(c._engine.segments) >= 1
        docs = list(live.values())
        got = answers(c, docs)
        fresh = oracle(live)
        want = answers(fresh, docs)
        assert got == want
    with Index(tmp_path / "idx") as idx:  # reopened from the manifest: the same answers
        c = idx.get_collection("c")
        assert answers(c, docs) == got


def test_reopen_after_kill_equals_clean_close(tmp_path, small_memtable):
    """A process that never closes (as after kill -9): the manifest plus the replayed tail."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.getcwd()!r})
        from simsearch.index import _engine
        _engine.MEMTABLE_ROWS = 32
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_index_engine import churn
        from simsearch.index import Index
        idx = Index(sys.argv[1])
        c = idx.create_collection("c", dim=8, threshold=0.5)
        churn(c, 7)
        os._exit(0)  # no close: nothing flushed on the way out
    """)
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")], check=True)
    with Index() as mem:
        live = churn(mem.create_collection("c", dim=8, threshold=0.5), 7)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert len(c._engine.mem) > 0 or c._engine.segments  # some of both, usually
        got = answers(c, list(live.values()))
    fresh = oracle(live)
    want = answers(fresh, list(live.values()))
    assert got == want


def _damage(path, how):
    data = Path(path).read_bytes()
    if how == "flip":
        pos = len(data) // 2
        data = data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:]
        Path(path).write_bytes(data)
    elif how == "flip-tail":
        Path(path).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif how == "truncate":
        Path(path).write_bytes(data[: len(data) // 3])
    elif how == "delete":
        os.remove(path)
    elif how == "empty":
        Path(path).write_bytes(b"")


@pytest.mark.parametrize("target", ["segment", "tombstones", "manifest"])
@pytest.mark.parametrize("how", ["flip", "flip-tail", "truncate", "delete", "empty"])
def test_a_damaged_file_is_detected_and_rebuilt_never_answered_from(tmp_path, small_memtable, target, how):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        live = churn(c, 11)
        c._engine.stop_merger()
        c._engine.wait_merges()
        gone = [k for k in list(live)[:3]]
        c.delete(gone)  # removals in mapped segments: tombstone files at the next manifest
        for k in gone:
            del live[k]
        extra = make_docs(1, 99, prefix="extra")
        c.upsert(extra)
        live[extra[0].id] = extra[0]
        with c._lock.write():
            c._engine.flush()
        d = c._engine.dir
        segs = sorted((s for s in c._engine.segments), key=lambda s: -s.n)
        tombs = [s.tomb["file"] for s in c._engine.segments if s.tomb]
        expected = answers(c, list(live.values()))
    if target == "segment":
        victim = os.path.join(d, segs[0].name)
    elif target == "tombstones":
        assert tombs
        victim = os.path.join(d, tombs[0])
    else:
        victim = os.path.join(d, _manifest.MANIFEST)
    _damage(victim, how)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert answers(c, list(live.values())) == expected
    with Index(tmp_path / "idx") as idx:  # and the rebuilt files are good
        assert answers(idx.get_collection("c"), list(live.values())) == expected


def test_sqlite_damage_is_storage_corruption(tmp_path, small_memtable):
    with Index(tmp_path / "idx") as idx:
        churn(idx.create_collection("c", dim=8, threshold=0.5), 5, rounds=3)
    db = os.path.join(tmp_path, "idx", DB_FILE)
    raw = bytearray(Path(db).read_bytes())
    for pos in range(4096 * 2, len(raw), 997):  # scribble over the pages after the first two
        raw[pos] ^= 0xFF
    Path(db).write_bytes(bytes(raw))
    with pytest.raises(StorageCorruptionError), Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        c.get([f"r0-{i}" for i in range(10)])
        # segments mapped from the manifest may answer, but a rebuild reads the rows
        import shutil

        shutil.rmtree(c._engine.dir)
        c._rebuild()


def _absent(coll, docs) -> bool:
    """None of ``docs`` is stored (get raises NotFoundError for each)."""
    for d in docs:
        with pytest.raises(NotFoundError):
            coll.get([d.id])
    return True


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("pipelined", [False, True])
def test_disk_full_during_a_flush_fails_that_write_and_keeps_serving(tmp_path, small_memtable, monkeypatch, pipelined):
    """``pipelined``: the write is a pipelined upsert, whose flush runs beside its inserts and
    fails it before the commit (Engine.flush_beside)."""
    idx = Index(tmp_path / "idx")
    c = idx.create_collection("c", dim=8, threshold=0.5)
    docs = make_docs(40, 3)
    c.upsert(docs)  # 40 rows in the memtable: the next write flushes first
    before = answers(c, docs)
    manifest = Path(os.path.join(c._engine.dir, _manifest.MANIFEST)).read_bytes()
    monkeypatch.setattr(_engine, "write_segment", _enospc)
    if pipelined:
        monkeypatch.setattr(_collection, "PIPELINE_DOCS", 2)
    more = make_docs(5, 4, prefix="late")
    with pytest.raises(ResourceExhaustedError, match="full"):
        c.upsert(more)
    assert answers(c, docs) == before  # nothing applied, still served
    assert c.count() == 40 and _absent(c, more)
    assert Path(os.path.join(c._engine.dir, _manifest.MANIFEST)).read_bytes() == manifest
    assert not [n for n in os.listdir(c._engine.dir) if n.endswith(".tmp")]
    monkeypatch.undo()
    monkeypatch.setattr(_engine, "MEMTABLE_ROWS", 32)
    if pipelined:
        monkeypatch.setattr(_collection, "PIPELINE_DOCS", 2)
    c.upsert(more)  # space again: the flush and the write go through
    assert c.count() == 45
    idx.close()
    with Index(tmp_path / "idx") as idx:
        assert idx.get_collection("c").count() == 45
        assert answers(idx.get_collection("c"), docs) == answers(oracle({d.id: d for d in docs + more}), docs)



def test_a_pipelined_upsert_flushes_beside_its_inserts(tmp_path, small_memtable, monkeypatch):
    """A pipelined upsert that finds the memtable full flushes it on a thread of its own while
    its chunks are inserted; the answers equal a fresh index's, before and after a reopen, and a
    write that fails after such a flush keeps the flush and stores nothing of itself."""
    monkeypatch.setattr(_collection, "PIPELINE_DOCS", 4)
    flushed_on: list[str] = []
    flush_segment = _engine.Engine._flush_segment

    def recording(self):
        flushed_on.append(threading.current_thread().name)
        return flush_segment(self)

    monkeypatch.setattr(_engine.Engine, "_flush_segment", recording)
    live = {}
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        for k in range(6):
            batch = make_docs(30, 10 + k, prefix=f"b{k}-")
            c.upsert(batch)
            live.update({d.id: d for d in batch})
        assert len(flushed_on) >= 2 and all(n.startswith("simsearch-flush-") for n in flushed_on)
        conns = len(c._storage._all_conns)
        for k in range(6):  # more flushes beside: one flush thread, so no new storage connection each
            batch = make_docs(30, 20 + k, prefix=f"m{k}-")
            c.upsert(batch)
            live.update({d.id: d for d in batch})
        assert len(flushed_on) >= 4 and len(c._storage._all_conns) <= conns + 1
        assert c._engine.segments  # the flushes made segments
        docs = list(live.values())
        assert answers(c, docs) == answers(oracle(live), docs)
        # the memtable is full again: this write flushes beside, then one of its chunks fails
        while len(c._engine.mem) < _engine.MEMTABLE_ROWS:
            extra = make_docs(8, 40 + len(c._engine.mem), prefix=f"x{len(c._engine.mem)}-")
            c.upsert(extra)
            live.update({d.id: d for d in extra})
        segs = len(c._engine.segments)
        n_flushes = len(flushed_on)
        original = _collection.Collection._prepare
        calls = [0]

        def failing(self, norm, vecs):
            calls[0] += 1
            if calls[0] == 3:
                raise RuntimeError("injected failure in the third chunk")
            return original(self, norm, vecs)

        monkeypatch.setattr(_collection.Collection, "_prepare", failing)
        bad = make_docs(20, 99, prefix="bad-")
        with pytest.raises(RuntimeError, match="injected"):
            c.upsert(bad)
        monkeypatch.setattr(_collection.Collection, "_prepare", original)
        assert len(flushed_on) == n_flushes + 1 and len(c._engine.segments) >= segs  # the flush stands
        assert len(c._engine.mem) == 0 or len(c._engine.mem) < _engine.MEMTABLE_ROWS
        assert _absent(c, bad)
        assert c.count() == len(live)
        docs = list(live.values())
        assert answers(c, docs) == answers(oracle(live), docs)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert c.count() == len(live)
        assert answers(c, docs) == answers(oracle(live), docs)


def test_disk_full_during_the_manifest_write_changes_nothing(tmp_path, small_memtable, monkeypatch):
    idx = Index(tmp_path / "idx")
    c = idx.create_collection("c", dim=8, threshold=0.5)
    docs = make_docs(40, 5)
    c.upsert(docs)
    monkeypatch.setattr(_manifest, "write_manifest", _enospc)
    with pytest.raises(ResourceExhaustedError):
        c.upsert(make_docs(3, 6, prefix="x"))
    assert c.count() == 40 and len(c._engine.mem) == 40 and not c._engine.segments
    assert [n for n in os.listdir(c._engine.dir) if n.endswith(".seg")] == []  # the new segment removed
    monkeypatch.undo()
    idx.close()
    with Index(tmp_path / "idx") as idx:
        assert idx.get_collection("c").count() == 40


def test_disk_full_during_a_merge_keeps_the_last_good_manifest(tmp_path, small_memtable, monkeypatch):
    idx = Index(tmp_path / "idx")
    c = idx.create_collection("c", dim=8, threshold=0.5)
    c._engine.stop_merger()  # merges run here, one at a time
    monkeypatch.setattr(_engine, "MERGE_FACTOR", 1000)  # no merges while filling
    live = churn(c, 9)
    with c._lock.write():
        c._engine.flush()
    monkeypatch.setattr(_engine, "MERGE_FACTOR", 2)
    before = answers(c, list(live.values()))
    names = sorted(os.listdir(c._engine.dir))
    monkeypatch.setattr(_engine, "write_segment", _enospc)
    assert c._engine.merge_once() is False
    assert isinstance(c._engine.merge_error, OSError)
    assert sorted(os.listdir(c._engine.dir)) == names
    assert answers(c, list(live.values())) == before
    monkeypatch.undo()
    monkeypatch.setattr(_engine, "MEMTABLE_ROWS", 32)
    monkeypatch.setattr(_engine, "MERGE_FACTOR", 2)
    assert c._engine.merge_once() is True and sorted(os.listdir(c._engine.dir)) != names
    assert answers(c, list(live.values())) == before
    idx.close()


def test_sqlite_full_is_resource_exhausted_and_nothing_is_lost(tmp_path):
    idx = Index(tmp_path / "idx")
    c = idx.create_collection("c", dim=8, threshold=0.5)
    docs = make_docs(30, 8)
    c.upsert(docs)
    w = idx._storage._writer
    pages = w.execute("PRAGMA page_count").fetchone()[0]
    w.execute(f"PRAGMA max_page_count={pages}")
    big = [Document(id=f"big{i}", text=" ".join(WORDS) * 20) for i in range(50)]
    with pytest.raises(ResourceExhaustedError, match="full"):
        c.upsert(big)
    assert c.count() == 30
    w.execute("PRAGMA max_page_count=1073741823")
    c.upsert(big[:2])
    idx.close()
    with Index(tmp_path / "idx") as idx:
        assert idx.get_collection("c").count() == 32


def test_a_format_1_store_is_upgraded_once(tmp_path):
    """A store written by format 1 (no seq, no delete log, a close-time cache) opens, upgrades
    and answers like a fresh index."""
    path = tmp_path / "idx"
    docs = make_docs(50, 12)
    with Index(path) as idx:
        idx.create_collection("c", dim=8, threshold=0.5).upsert(docs)
    # rewrite it as format 1 wrote it
    import shutil

    shutil.rmtree(path / "segments")
    (path / "cache").mkdir()
    (path / "cache" / "c1.bin").write_bytes(b"old cache")
    db = sqlite3.connect(path / DB_FILE)
    db.execute("DROP TABLE deletes")
    db.execute("ALTER TABLE documents DROP COLUMN seq")
    db.execute("ALTER TABLE collections DROP COLUMN seq")
    db.execute("UPDATE meta SET value='1' WHERE key='format_version'")
    db.execute("INSERT INTO meta(key, value) VALUES ('generation:1', '3')")
    db.commit()
    db.close()
    with Index(path) as idx:
        c = idx.get_collection("c")
        assert answers(c, docs) == answers(oracle({d.id: d for d in docs}), docs)
        c.delete([docs[0].id])
    assert not (path / "cache").exists()
    db = sqlite3.connect(path / DB_FILE)
    assert db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()[0] == str(FORMAT_VERSION)
    assert db.execute("SELECT seq FROM collections").fetchone()[0] == 1
    db.close()
    with Index(path) as idx:
        assert idx.get_collection("c").count() == 49


def test_every_write_gets_the_next_seq_and_deletes_are_logged(tmp_path, small_memtable):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c")
        st = idx._storage
        c.upsert([Document(id="a", text="one two three four five six")])
        c.upsert([Document(id="a", text="one two three four five seven")])  # a re-upsert: a delete + insert
        c.delete(["a"])
        assert st.seq(c._cid) == 3
        assert len(st.deletes_after(c._cid, 0)) == 2 and len(st.deletes_after(c._cid, 2)) == 1
        with c._lock.write():
            c._engine.flush()  # a manifest at seq 3: the log below it is pruned
        assert len(st.deletes_after(c._cid, 0)) == 0


def test_a_snapshot_carries_its_segments_and_restores_without_a_rebuild(tmp_path, small_memtable, monkeypatch):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        live = churn(c, 13)
        c.upsert(make_docs(5, 77, prefix="tail"))  # in the memtable: replayed from the copied database
        live.update({d.id: d for d in make_docs(5, 77, prefix="tail")})
        expected = answers(c, list(live.values()))
        idx.snapshot(tmp_path / "snap")
        c.delete([next(iter(live))])  # after the snapshot: not in it
    rebuilds = []
    real = _engine.Engine._rebuild
    monkeypatch.setattr(_engine.Engine, "_rebuild", lambda self: rebuilds.append(1) or real(self))
    with Index(tmp_path / "snap") as snap:
        assert answers(snap.get_collection("c"), list(live.values())) == expected
    restored = Index.restore(tmp_path / "snap", tmp_path / "restored")
    with restored:
        assert answers(restored.get_collection("c"), list(live.values())) == expected
    assert rebuilds == []  # both opened from the copied manifest


def test_a_flush_during_a_merge_keeps_the_merge_output(tmp_path, small_memtable, monkeypatch):
    """A merge writes its segment outside the lock; a flush that commits meanwhile collects the
    directory's garbage and must not remove that file (the merged manifest would name a missing
    segment: the next open rebuilds and a snapshot cannot link it)."""
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        eng = c._engine
        eng._merge_stop = True  # no background merger: this test runs the merge itself
        live = churn(c, 5)
        real = _engine.write_segment
        flushed = []

        def write_then_flush(directory, header, sections, **kw):
            name = real(directory, header, sections, **kw)
            if threading.current_thread() is merger and not flushed and name.endswith(".seg"):
                flushed.append(name)  # first: the flush below writes a segment through here too
                extra = make_docs(40, 99, prefix="during")  # > MEMTABLE_ROWS: this upsert flushes
                c.upsert(extra)
                live.update({d.id: d for d in extra})
            return name

        monkeypatch.setattr(_engine, "write_segment", write_then_flush)
        merged = []
        merger = threading.Thread(target=lambda: merged.append(eng.merge_once()))
        merger.start()
        merger.join()
        assert merged == [True] and flushed
        body = _manifest.read_manifest(eng.dir)
        for name in _manifest.referenced(body):
            assert os.path.exists(os.path.join(eng.dir, name)), name
        want = answers(c, list(live.values()))
        idx.snapshot(tmp_path / "snap")
    rebuilds = []
    real_rebuild = _engine.Engine._rebuild
    monkeypatch.setattr(_engine.Engine, "_rebuild", lambda self: rebuilds.append(1) or real_rebuild(self))
    with Index(tmp_path / "idx") as idx:
        assert answers(idx.get_collection("c"), list(live.values())) == want
    assert rebuilds == []


def test_collection_stats_count_segments_and_their_bytes(tmp_path, small_memtable):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        c._engine._merge_stop = True  # segment count as flushed (no merge in between)
        live = churn(c, 7)
        s = c.stats()
        eng = c._engine
        assert s["documents"] == len(live) == c.count()
        assert s["segments"] == len(eng.segments) >= 1
        files = os.listdir(eng.dir)
        assert s["bytes_on_disk"] == sum(os.path.getsize(os.path.join(eng.dir, f)) for f in files)
        assert s["bytes_on_disk"] >= sum(os.path.getsize(seg.path) for seg in eng.segments)
        assert s["bytes_in_memory"] >= eng.mem.nbytes() > 0
    with Index() as mem:
        m = mem.create_collection("m", dim=8)
        m.upsert(make_docs(10, 3))
        s = m.stats()
        assert s["documents"] == 10 and s["bytes_on_disk"] is None and s["segments"] == len(m._engine.segments)


# -- lazily verified blocks, segment-local rebuilds, the document counter ------------------------
def _section_offset(path, name):
    """Absolute file offset and byte size of a segment section (from the file's own header)."""
    import json

    data = Path(path).read_bytes()
    hlen = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16 : 16 + hlen])
    base = -(-(24 + hlen) // 4096) * 4096
    sec = header["sections"][name]
    size = int(np.prod(sec["shape"])) * np.dtype(sec["dtype"]).itemsize
    return base + sec["offset"], size


def _flip(path, pos):
    raw = bytearray(Path(path).read_bytes())
    raw[pos] ^= 0x5A
    Path(path).write_bytes(bytes(raw))


def _several_segments(tmp_path, seed=21):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        live = churn(c, seed)
        c._engine.stop_merger()
        with c._lock.write():
            c._engine.flush()
        segs = [(s.name, s.live) for s in c._engine.segments]
        ids = {s.name: [i for i in s.ext_ids(np.flatnonzero(s.alive)) if live[i].text is not None]
               for s in c._engine.segments}
        d = c._engine.dir
        expected = answers(c, list(live.values()))
    assert len(segs) >= 3
    return live, segs, d, expected, ids


@pytest.mark.parametrize("section", ["sigs", "skeys", "srows", "vecs"])
def test_a_flipped_byte_in_a_large_section_is_caught_at_its_first_read(tmp_path, small_memtable, monkeypatch,
                                                                       section):
    """The open does not hash the large sections; the first query that reads the damaged block
    hashes it, the segment is dropped and rebuilt from its own rows only, and the query is
    answered as by a fresh index."""
    live, segs, d, expected, ids = _several_segments(tmp_path)
    name, n_live = max(segs, key=lambda s: s[1])
    off, size = _section_offset(os.path.join(d, name), section)
    _flip(os.path.join(d, name), off + size // 2)
    monkeypatch.setattr(_engine.Engine, "_start_verifier", lambda self: None)  # only queries verify
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        eng = c._engine
        assert eng.rows_loaded == 0 and not all(s.verified for s in eng.segments)  # opened, not hashed
        by_id = [c.near_duplicates(id=i, k=3) for i in ids[name]]  # reads each row's signature
        got = answers(c, list(live.values()))
        assert eng.repairs == 1 and eng.rows_loaded == n_live  # only the damaged segment's rows
        assert name not in {s.name for s in eng.segments} and not os.path.exists(os.path.join(d, name))
    fresh = oracle(live)
    assert got == expected == answers(fresh, list(live.values()))
    assert by_id == [fresh.near_duplicates(id=i, k=3) for i in ids[name]]
    with Index(tmp_path / "idx") as idx:  # the repaired manifest reopens without a rebuild
        c = idx.get_collection("c")
        assert c._engine.rows_loaded == 0
        assert answers(c, list(live.values())) == expected


def test_the_background_pass_finds_a_damaged_block_no_query_read(tmp_path, small_memtable):
    live, segs, d, expected, ids = _several_segments(tmp_path, seed=22)
    name, n_live = segs[0]
    off, size = _section_offset(os.path.join(d, name), "vecs")
    _flip(os.path.join(d, name), off + size - 1)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        c._engine.wait_verified()
        assert all(s.verified for s in c._engine.segments)
        assert c._engine.repairs == 1 and c._engine.rows_loaded == n_live
        assert answers(c, list(live.values())) == expected


@pytest.mark.parametrize("how", ["delete", "flip", "truncate"])
def test_a_bad_segment_at_open_rebuilds_only_its_rows(tmp_path, small_memtable, how):
    live, segs, d, expected, ids = _several_segments(tmp_path, seed=23)
    name, n_live = segs[len(segs) // 2]
    _damage(os.path.join(d, name), how)  # "flip" lands in the structural sections or a block
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        got = answers(c, list(live.values()))
        assert c._engine.repairs == 1 and c._engine.rows_loaded == n_live
        assert c._engine.rows_loaded < sum(n for _, n in segs)
    assert got == expected == answers(oracle(live), list(live.values()))


def test_a_merge_of_a_damaged_segment_rebuilds_its_rows_instead(tmp_path, small_memtable, monkeypatch):
    live, segs, d, expected, ids = _several_segments(tmp_path, seed=24)
    for name, _ in segs:
        off, size = _section_offset(os.path.join(d, name), "sigs")
        _flip(os.path.join(d, name), off)
    monkeypatch.setattr(_engine.Engine, "_start_verifier", lambda self: None)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        c._engine.stop_merger()
        c._engine.wait_merges()
        assert c._engine.repairs >= 1
        assert answers(c, list(live.values())) == expected


def test_the_document_counter_follows_every_write_and_old_stores_count_once(tmp_path, small_memtable):
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5)
        live = churn(c, 25)
        c.upsert(make_docs(5, 1, prefix="same"))
        c.upsert(make_docs(5, 2, prefix="same"))  # replaces: the count does not move
        st = idx._storage
        assert st.count(c._cid) == st.count_rows(c._cid) == len(live) + 5 == c.count()
    db = os.path.join(tmp_path, "idx", DB_FILE)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE collections DROP COLUMN ndocs")  # a store from before the counter
    conn.commit()
    conn.close()
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert c.count() == len(live) + 5 == idx._storage.count_rows(c._cid)
        c.delete([next(iter(live))])
        assert idx._storage.count(c._cid) == len(live) + 4 == idx._storage.count_rows(c._cid)
    conn = sqlite3.connect(db)  # an older simsearch writes: seq moves, the counter does not
    conn.execute("DELETE FROM documents WHERE rowid = (SELECT MAX(rowid) FROM documents)")
    conn.execute("UPDATE collections SET seq = seq + 1")
    conn.commit()
    conn.close()
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert idx._storage.count(c._cid) == len(live) + 3 == idx._storage.count_rows(c._cid) == c.count()


def test_small_blocks_concurrent_first_reads_and_one_repair(tmp_path, small_memtable, monkeypatch):
    """256-byte blocks (a signature row spans two, a bucket several): threads querying right after
    open verify blocks concurrently; the one bad block is found once, its segment rebuilt once,
    and every thread's answers equal the fresh index's."""
    from simsearch.index import _segments

    monkeypatch.setattr(_segments, "CHECK_BLOCK", 256)
    live, segs, d, expected, ids = _several_segments(tmp_path, seed=26)
    name, _ = max(segs, key=lambda s: s[1])
    off, size = _section_offset(os.path.join(d, name), "skeys")
    _flip(os.path.join(d, name), off + size // 3)
    monkeypatch.setattr(_engine.Engine, "_start_verifier", lambda self: None)
    fresh = oracle(live)
    queries = [i for v in ids.values() for i in v]
    want = [fresh.near_duplicates(id=i, k=3) for i in queries]
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        results, errors = [None] * 4, []

        def work(t):
            try:
                results[t] = [c.near_duplicates(id=i, k=3) for i in queries]
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and all(r == want for r in results)
        assert answers(c, list(live.values())) == expected
        assert c._engine.repairs == 1


def test_flat_scans_read_the_mapping_until_the_background_copy_lands(tmp_path, small_memtable, monkeypatch):
    """The first flat scan of a segment does not copy its vectors in the query: it reads the
    verified mapping and a background thread makes the heap copy; answers are the same before
    and after the copy, and equal a fresh in-memory index."""
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5, vector_index="flat")
        live = churn(c, 5)
        c._engine.wait_merges()
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        segs = [s for s in c._engine.segments if s.vecs is not None and len(s.vecs)]
        assert segs and all(s.flat_copy is None for s in segs)
        docs = list(live.values())
        vecs = [d for d in docs if d.vector is not None][:8]
        release = threading.Event()
        copy = _engine._copy_flat

        copiers: list[tuple[str, int, int]] = []  # (thread name, ident, nice) of each copy

        def held(seg, v, *rest):  # the copy waits until the queries have been answered from the mapping
            release.wait(10)
            copiers.append((threading.current_thread().name, threading.get_ident(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            copy(seg, v, *rest)

        monkeypatch.setattr(_engine, "_copy_flat", held)
        first = [c.search(d.vector, k=6) for d in vecs]
        assert all(s.flat_copy is None for s in segs)  # answered without a copy in the query path
        release.set()
        for _ in range(500):
            if all(s.flat_copy is not None for s in segs):
                break
            threading.Event().wait(0.01)
        assert all(s.flat_copy is not None for s in segs)
        assert all(np.array_equal(s.flat_copy, s.vecs) for s in segs)
        c._engine.wait_copies()
        # one thread made every copy, one segment after another, at a lower CPU priority than
        # the queries (several copiers on 2 cores held near-duplicate queries ~4 ms each)
        assert len(copiers) == len(segs) and len(set(copiers)) == 1
        assert copiers[0][2] > os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) or copiers[0][2] == 19
        assert not [t for t in threading.enumerate() if t.name.startswith("simsearch-flatcopy")]
        assert [c.search(d.vector, k=6) for d in vecs] == first
        fresh = oracle(live)
        assert [fresh.search(d.vector, k=6) for d in vecs] == first


def test_a_heap_copy_that_fails_leaves_no_copier_behind(tmp_path, small_memtable, monkeypatch):
    """A copy that raises is logged and its segment is scanned from the mapping; wait_copies and
    close return (before, the dead thread stayed the copier and wait_copies spun on it)."""
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5, vector_index="flat")
        live = churn(c, 4)
        c._engine.wait_merges()

    def broken(seg, v, *rest):
        raise MemoryError("no room for the copy")

    monkeypatch.setattr(_engine, "_copy_flat", broken)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        vec = next(d.vector for d in live.values() if d.vector is not None)
        first = c.search(vec, k=5)
        waiter = threading.Thread(target=c._engine.wait_copies, daemon=True)
        waiter.start()
        waiter.join(timeout=10)
        assert not waiter.is_alive()
        assert all(s.flat_copy is None for s in c._engine.segments)
        assert c.search(vec, k=5) == first == c.search(vec, k=5, exact=True)


def test_close_waits_for_the_background_copies(tmp_path, small_memtable, monkeypatch):
    """Close stops the heap copier at its next step and waits for it: once the index is closed no
    thread reads the segment files, which may then be changed (truncating a file that a thread
    still reads through its mapping would kill the process with SIGBUS)."""
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.5, vector_index="flat")
        live = churn(c, 4)
        c._engine.wait_merges()
    monkeypatch.setattr(_engine, "COPY_STEP_BYTES", 32)  # one 8-d vector per step: a slow copy
    started = threading.Event()
    copy = _engine._copy_flat

    def observed(seg, v, *rest):
        started.set()
        copy(seg, v, *rest)

    monkeypatch.setattr(_engine, "_copy_flat", observed)
    idx = Index(tmp_path / "idx")
    c = idx.get_collection("c")
    vec = next(d.vector for d in live.values() if d.vector is not None)
    c.search(vec, k=3)  # queues the copies
    assert started.wait(10)
    idx.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("simsearch-flatcopy")]
    for f in (tmp_path / "idx" / "segments").glob("c*/seg-*.seg"):
        f.write_bytes(b"")  # truncated under any mapping still read
    with Index(tmp_path / "idx") as idx:  # the emptied segments are rebuilt from the rows
        assert idx.get_collection("c").count() == len(live)


def _vm_flags(addr: int) -> set[str]:
    """The VmFlags of this process's mapping that holds ``addr`` (from /proc/self/smaps)."""
    found = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                found = lo <= addr < hi
            elif found and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {addr:#x}")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc/self/smaps")
def test_a_mapped_segment_reads_no_more_than_its_blocks(tmp_path, small_memtable):
    """A segment's mapping is advised random (no read-around past the verified block a query
    asks for) except its signatures and vectors, which flat scans and merges read in order;
    the advice changes no answer."""
    from simsearch.index import _segments

    live, segs, d, expected, ids = _several_segments(tmp_path, seed=23)
    name = max(segs, key=lambda s: s[1])[0]
    idx = Index(tmp_path / "idx")
    c = idx.get_collection("c")
    seg = next(s for s in c._engine.segments if s.name == name)
    base = np.frombuffer(seg._mm, np.uint8).ctypes.data
    flags = {sec: _vm_flags(base + _section_offset(os.path.join(d, name), sec)[0])
             for sec in ("rowids", "skeys", "srows", "directory", "id_hash", "sigs", "vecs")}
    assert all("rr" in flags[s] for s in ("rowids", "skeys", "srows", "directory", "id_hash")), flags
    assert not any("rr" in flags[s] for s in _segments._IN_ORDER), flags
    seg.will_read("skeys", "srows")  # advice only: nothing is read into the arrays or changed
    seg.will_read()
    assert answers(c, list(live.values())) == expected
    idx.close()
