"""Per-segment ANN structures (simsearch.index._vecsearch): built in the background, never by a
query; results against exact=True through deletes, upserts, filters, flushes, merges, reopen after
close and after kill -9; merged segments served by their inputs' structures; a prompt close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from simsearch.index import Document, Index, _ann, _engine, _vecsearch

pytest.importorskip("faiss")

DIM = 12


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIM)).astype(np.float32) * 4
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def _docs(lo: int, hi: int, seed: int = 0) -> list[Document]:
    X = _vectors(hi, seed)
    return [Document(id=f"v{i}", metadata={"g": i % 3}, vector=X[i]) for i in range(lo, hi)]


def _flush(c) -> None:
    with c._lock.write():
        c._engine.flush()


def _recall(got, truth) -> float:
    return float(np.mean([len({n.id for n in a} & {n.id for n in b}) / max(len(b), 1)
                          for a, b in zip(got, truth)]))


@pytest.fixture
def small(monkeypatch):
    """Small memtables and structure thresholds, so flushes and merges happen at test sizes."""
    monkeypatch.setattr(_engine, "MEMTABLE_ROWS", 400)
    monkeypatch.setattr(_vecsearch, "SEGMENT_ANN_MIN", 300)
    monkeypatch.setattr(_ann, "EXACT_SCAN_MAX", 50)


@pytest.mark.parametrize("kind", ("hnsw", "ivf", "flat"))
@pytest.mark.parametrize("metric", ("euclidean", "cosine", "manhattan"))
def test_results_against_exact_through_writes_merges_and_reopen(tmp_path, small, kind, metric):
    path = str(tmp_path / "ix")
    ix = Index(path)
    c = ix.create_collection("v", dim=DIM, metric=metric, vector_index=kind, nprobe=16, indexed_fields=["g"])
    for lo in range(0, 2400, 300):
        c.upsert(_docs(lo, lo + 300))
    c.delete([f"v{i}" for i in range(0, 2400, 7)])  # tombstones inside indexed segments
    c.upsert([Document(id=f"v{i}", metadata={"g": 0}, vector=np.full(DIM, 0.5, np.float32) * (i % 5))
              for i in range(1, 2400, 11)])  # upserts: the old rowid dies, the new one is scanned
    assert c.wait_indexed(timeout=120)
    st = c.stats()
    assert st["vectors_pending"] == 0 and (st["vectors_indexed"] > 0) == (kind != "flat")
    Q = _vectors(40, 9)
    deleted = {f"v{i}" for i in range(0, 2400, 7)} - {f"v{i}" for i in range(1, 2400, 11)}

    def check(c):
        for flt in (None, {"g": 0}):
            res = c.search_batch(vectors=Q, k=10, filter=flt, with_stats=True)
            truth = c.search_batch(vectors=Q, k=10, filter=flt, exact=True)
            found = {n.id for hits in res.results for n in hits}
            assert not found & deleted
            if flt:
                assert all(int(n.id[1:]) % 3 == 0 or (int(n.id[1:]) - 1) % 11 == 0 for n in
                           (n for hits in res.results for n in hits))
            if kind == "flat":
                assert res.results == truth and res.stats.path == "exact"
            else:
                assert res.stats.path in ("ann", "ann_filtered")
                assert _recall(res.results, truth) >= 0.95
                for hits, want in zip(res.results, truth):  # the distances reported are the exact ones
                    exact = {n.id: n.distance for n in want}
                    for n in hits:
                        if n.id in exact:
                            assert n.distance == pytest.approx(exact[n.id], rel=1e-5, abs=1e-5)

    check(c)
    ix.close()
    ix = Index(path)
    c = ix.get_collection("v")
    assert c.wait_indexed(timeout=120)
    check(c)
    ix.close()


def test_merged_segment_is_served_by_its_inputs_structures(tmp_path, small):
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
    for lo in range(0, 1600, 400):
        c.upsert(_docs(lo, lo + 400))
    c._engine.stop_merger()  # merged below, once every input has its structure
    _flush(c)
    assert c._ann.wait_indexed(timeout=60)
    assert c.stats()["vectors_indexed"] == 1600
    c._ann.stop()  # no builder from here on: whatever serves the merged segment was built before
    c._ann._thread = None
    before = len(c._engine.segments)
    c._engine.wait_merges()
    assert len(c._engine.segments) < before
    merged = c._engine.segments[0]
    cover = c._ann._covers.get(merged)
    assert cover is not None and cover.own is None and len(cover.inherited) == 4
    c.delete(["v3", "v500"])
    Q = _vectors(30, 4)
    res = c.search_batch(vectors=Q, k=10, with_stats=True)
    truth = c.search_batch(vectors=Q, k=10, exact=True)
    assert res.stats.path == "ann"
    assert _recall(res.results, truth) >= 0.95
    assert not {"v3", "v500"} & {n.id for hits in res.results for n in hits}
    ix.close()


def test_no_query_builds(tmp_path, small, monkeypatch):
    """With the builder held, queries still answer (exactly) and never build a structure."""
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
    c._ann.stop()
    builds = []
    real = _ann.AnnBlock.build

    def counting(*a, **kw):
        builds.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(_ann.AnnBlock, "build", counting)
    c.upsert(_docs(0, 1200))
    _flush(c)
    Q = _vectors(10, 5)
    res = c.search_batch(vectors=Q, k=5, with_stats=True)
    assert res.stats.path == "exact" and res.results == c.search_batch(vectors=Q, k=5, exact=True)
    assert builds == []
    assert c.stats()["vectors_pending"] > 0
    ix.close()


def test_close_during_a_build_stops_it_at_the_next_batch(tmp_path, small, monkeypatch):
    monkeypatch.setattr(_ann, "ADD_BATCH", 50)
    started, calls = threading.Event(), []
    real = _ann.AnnBlock.build.__func__

    def held(cls, *a, should_stop=None, **kw):
        def stop_check():
            calls.append(1)
            if len(calls) == 2:  # the second batch waits for the close
                started.set()
                for _ in range(600):
                    if should_stop():
                        break
                    threading.Event().wait(0.05)
            return should_stop()
        return real(cls, *a, should_stop=stop_check, **kw)

    monkeypatch.setattr(_ann.AnnBlock, "build", classmethod(held))
    path = str(tmp_path / "ix")
    ix = Index(path)
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
    c.upsert(_docs(0, 1000))
    _flush(c)
    assert started.wait(60)
    ix.close()  # returns once the builder saw the stop: at the batch boundary, not after 20 batches
    assert len(calls) == 2
    adir = _vecsearch.ann_dir(path, c._cid)
    assert not os.path.isdir(adir) or not [f for f in os.listdir(adir) if f.endswith(".faiss")]
    monkeypatch.setattr(_ann.AnnBlock, "build", classmethod(real))
    ix = Index(path)  # the unfinished build was not saved: built again
    c = ix.get_collection("v")
    assert c.wait_indexed(timeout=60) and c.stats()["vectors_indexed"] == 1000
    ix.close()


CHILD = textwrap.dedent(
    """
    import sys, threading, numpy as np
    from simsearch.index import Index, Document, _ann, _vecsearch
    _vecsearch.SEGMENT_ANN_MIN = 300
    _ann.ADD_BATCH = 50
    real = _ann.AnnBlock.build.__func__
    def held(cls, *a, should_stop=None, **kw):
        n = []
        def stop_check():
            n.append(1)
            if len(n) == 3:
                print("building", flush=True)
                threading.Event().wait()   # killed here, mid-build
            return False
        return real(cls, *a, should_stop=stop_check, **kw)
    _ann.AnnBlock.build = classmethod(held)
    ix = Index(sys.argv[1])
    c = ix.create_collection("v", dim=12, vector_index="hnsw")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 12)).astype(np.float32)
    c.upsert([Document(id=f"v{i}", vector=X[i]) for i in range(1000)])
    with c._lock.write():
        c._engine.flush()
    threading.Event().wait()
    """
)


def test_kill9_during_a_build_leaves_a_store_that_opens(tmp_path, monkeypatch):
    monkeypatch.setattr(_vecsearch, "SEGMENT_ANN_MIN", 300)
    path = str(tmp_path / "ix")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "building"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    adir = os.path.join(path, "ann", "c1")
    os.makedirs(adir, exist_ok=True)
    with open(os.path.join(adir, "seg-00000001.faiss.tmp"), "wb") as f:  # as a kill inside a save leaves
        f.write(b"partial")
    ix = Index(path)
    c = ix.get_collection("v")
    assert c.count() == 1000
    X = np.random.default_rng(0).standard_normal((1000, 12)).astype(np.float32)
    Q = X[:20] + 0.01
    want = c.search_batch(vectors=Q, k=5, exact=True)
    assert c.search_batch(vectors=Q, k=5) == want  # exact until the structure is rebuilt
    assert c.wait_indexed(timeout=60)
    res = c.search_batch(vectors=Q, k=5, with_stats=True)
    assert res.stats.path == "ann" and _recall(res.results, want) >= 0.95
    assert not [f for f in os.listdir(adir) if f.endswith(".tmp")]
    ix.close()


def test_memtable_structure_covers_its_prefix(tmp_path, monkeypatch):
    """Past MEMTABLE_ANN_MIN rows the builder indexes the memtable (in memory); rows written
    after that prefix are scanned exactly, deletes in the prefix are excluded."""
    monkeypatch.setattr(_vecsearch, "MEMTABLE_ANN_MIN", 300)
    monkeypatch.setattr(_vecsearch, "SEGMENT_ANN_MIN", 300)
    monkeypatch.setattr(_ann, "EXACT_SCAN_MAX", 50)
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw", indexed_fields=["g"])
    c.upsert(_docs(0, 1000))
    assert c.wait_indexed(timeout=60)
    assert not c._engine.segments and c._ann._mem_cover is not None and c._ann._mem_cover[1] == 1000
    Q = _vectors(30, 6)
    c.delete(["v1", "v2"])
    c.upsert([Document(id="late", metadata={"g": 0}, vector=Q[0] + 0.001)])  # after the prefix
    for flt in (None, {"g": 0}):
        res = c.search_batch(vectors=Q, k=10, filter=flt, with_stats=True)
        truth = c.search_batch(vectors=Q, k=10, filter=flt, exact=True)
        assert res.stats.path in ("ann", "ann_filtered") and _recall(res.results, truth) >= 0.95
        assert res.results[0][0].id == "late"
        assert not {"v1", "v2"} & {n.id for hits in res.results for n in hits}
    _flush(c)  # the memtable's structure goes with it; the segment gets its own
    assert c.wait_indexed(timeout=60) and c._ann._mem_cover is None
    assert c.search_batch(vectors=Q, k=10, with_stats=True).stats.path == "ann"
    ix.close()


def test_builds_wait_for_the_writes_to_pause(tmp_path, small, monkeypatch):
    """While writes keep arriving, the builder leaves the sealed segments to exact scans (a bulk
    load keeps the cores); once the writes pause for BUILD_QUIET_S it builds them without being
    asked; wait_indexed() does not wait for a pause. Answers stay equal to exact=True throughout."""
    monkeypatch.setattr(_vecsearch, "BUILD_QUIET_S", 2.0)
    with Index(str(tmp_path / "ix")) as ix:
        c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
        Q = _vectors(10, 3)
        for lo in range(0, 2400, 100):  # a write every ~0.1 s: never a 2 s pause
            c.upsert(_docs(lo, lo + 100))
            threading.Event().wait(0.1)
        st = c.stats()
        assert st["vectors_indexed"] == 0 and st["vectors_pending"] > 0
        exact = [c.search(q, k=5, exact=True) for q in Q]
        assert [c.search(q, k=5) for q in Q] == exact  # all scanned exactly meanwhile
        for _ in range(600):  # no wait_indexed: the pause alone starts the builds
            if c.stats()["vectors_pending"] == 0:
                break
            threading.Event().wait(0.05)
        assert c.stats()["vectors_pending"] == 0 and c.stats()["vectors_indexed"] > 0
        assert _recall([c.search(q, k=5) for q in Q], exact) >= 0.95
        monkeypatch.setattr(_vecsearch, "BUILD_QUIET_S", 3600.0)
        c.upsert(_docs(2400, 3600))  # new sealed segments; a pause of an hour never comes
        assert c.wait_indexed(timeout=120)
        assert c.stats()["vectors_pending"] == 0


def test_segments_due_a_structure_are_scanned_from_the_mapping_without_a_heap_copy(tmp_path, small, monkeypatch):
    """Until a segment's structure is ready it is scanned exactly, from its mapping: no heap copy
    of its vectors (that would be anonymous memory for the life of the segment)."""
    path = str(tmp_path / "ix")
    with Index(path) as ix:
        c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
        for lo in range(0, 2400, 300):
            c.upsert(_docs(lo, lo + 300))
        assert c.wait_indexed(timeout=120)
        exact = [c.search(q, k=5, exact=True) for q in _vectors(10, 4)]
    monkeypatch.setattr(_vecsearch.CollectionVectors, "_run", lambda self: None)  # a builder that never gets to it
    with Index(path) as ix:
        c = ix.get_collection("v")
        due = [s for s in c._engine.segments if c._ann._seg_kind(s) is not None]
        assert due
        assert [c.search(q, k=5) for q in _vectors(10, 4)] == exact  # every segment scanned exactly
        threading.Event().wait(0.3)
        assert all(s.flat_copy is None for s in due)


def test_blocks_searched_side_by_side_answer_as_one_thread_would(tmp_path, small, monkeypatch):
    """A single query's blocks and exact scans are searched by pool threads beside the caller;
    the answers are those of the serial search, distances included."""
    monkeypatch.setattr(_vecsearch, "_POOL", _vecsearch._SidePool(2))
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
    c._engine.stop_merger()  # keep several segments, each with its own block
    for lo in range(0, 2000, 400):
        c.upsert(_docs(lo, lo + 400))
    c.upsert(_docs(2000, 2100))  # in the memtable: an exact scan beside the blocks
    assert c._ann.wait_indexed(timeout=60)
    assert sum(1 for cov in c._ann._covers.values() if cov.own is not None) >= 4
    ran = []
    real = _ann.AnnBlock.candidates

    def spy(self, *a, **kw):
        ran.append(threading.current_thread().name)
        return real(self, *a, **kw)

    monkeypatch.setattr(_ann.AnnBlock, "candidates", spy)
    Q = _vectors(25, 5)
    side = [c.search(q, k=10) for q in Q]
    assert any(name.startswith("simsearch-knn") for name in ran) and threading.current_thread().name in ran
    monkeypatch.setattr(_ann, "SERIAL_QUERIES", 0)  # every search serial in the caller
    ran.clear()
    serial = [c.search(q, k=10) for q in Q]
    assert set(ran) == {threading.current_thread().name}
    assert side == serial
    assert _recall(side, [c.search(q, k=10, exact=True) for q in Q]) >= 0.95
    ix.close()


def test_side_pool_keeps_order_raises_after_every_call_and_frees_its_threads():
    pool = _vecsearch._SidePool(2)
    started = threading.Barrier(3, timeout=10)

    def call(i):
        def f():
            if i < 3:
                started.wait()  # three calls at once: the caller and both pool threads
            return i * i
        return f

    assert pool.run([call(i) for i in range(9)]) == [i * i for i in range(9)]
    assert pool._idle == 2
    done = []

    def boom():
        raise ValueError("bad block")

    def slow():
        threading.Event().wait(0.2)
        done.append(1)
        return 1

    with pytest.raises(ValueError, match="bad block"):
        pool.run([slow, boom, slow])
    finished = len(done)
    threading.Event().wait(0.4)
    assert len(done) == finished >= 1  # nothing still running once the error was raised
    assert pool._idle == 2  # every pool thread given back, the error raised only after they ended
    assert pool.run([lambda: 1, lambda: 2]) == [1, 2]
    assert pool.run([lambda: 3, lambda: 4], side_by_side=False) == [3, 4]


def test_merged_segment_grows_its_structure_from_its_largest_input(tmp_path, small, monkeypatch):
    """Once merged, a segment's own structure starts from its largest input's (only the other
    inputs' vectors are added; rows deleted before the merge stay as nodes no query returns),
    is saved with its node map, and is reopened from the files, not rebuilt."""
    path = str(tmp_path / "ix")
    ix = Index(path)
    c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
    c._engine.stop_merger()
    c.upsert(_docs(0, 1200))  # the largest input
    _flush(c)
    for lo in range(1200, 2100, 300):
        c.upsert(_docs(lo, lo + 300))
        _flush(c)
    assert c._ann.wait_indexed(timeout=60)
    sizes = sorted(len(s.vec_rows) for s in c._engine.segments)
    assert sizes == [300, 300, 300, 1200]
    gone = [f"v{i}" for i in range(0, 1200, 40)]  # tombstones in the largest input
    c.delete(gone)
    added = []
    real_add = _ann._add_batches
    monkeypatch.setattr(_ann, "_add_batches", lambda index, x, *a, **kw: (added.append(len(x)),
                                                                            real_add(index, x, *a, **kw)))
    c._engine.wait_merges()
    assert len(c._engine.segments) == 1
    assert c._ann.wait_indexed(timeout=60)
    merged = c._engine.segments[0]
    own = c._ann._covers[merged].own
    assert c._ann.grown_from == 1 and own.nodes is not None
    assert added == [900]  # only the three small inputs' vectors were added
    assert int((own.nodes < 0).sum()) == len(gone)
    Q = _vectors(30, 6)
    res = c.search_batch(vectors=Q, k=10, with_stats=True)
    truth = c.search_batch(vectors=Q, k=10, exact=True)
    assert res.stats.path == "ann" and _recall(res.results, truth) >= 0.95
    assert not set(gone) & {n.id for hits in res.results for n in hits}
    c.delete(["v1201", "v5"])  # deletes after the merge: the live mask over the node map
    after = c.search_batch(vectors=Q, k=10)
    assert not {"v1201", "v5", *gone} & {n.id for hits in after for n in hits}
    ix.close()
    built = []
    monkeypatch.setattr(_ann.AnnBlock, "build", classmethod(lambda cls, *a, **kw: built.append(1)))
    ix = Index(path)
    c = ix.get_collection("v")
    assert c.wait_indexed(timeout=60)
    assert not built and not added[1:]  # opened from the saved files, node map included
    assert c.search_batch(vectors=Q, k=10) == after
    ix.close()


def test_foreground_waits_for_queries_within_each_threads_budget():
    fg = _engine.Foreground(budget_s=0.6)
    assert fg.give_way() == 0.0  # nothing in flight: no wait
    done = []

    def query(seconds):
        with fg.query():
            threading.Event().wait(seconds)
        done.append(seconds)

    q = threading.Thread(target=query, args=(0.3,))
    q.start()
    while not fg.running:
        threading.Event().wait(0.001)
    waited = fg.give_way()
    assert done == [0.3] and 0.2 <= waited < 0.6  # returned when the query ended, not before
    q.join()
    # a query that outlasts the budget: this thread waits what is left of its 0.6 s, then never again
    q = threading.Thread(target=query, args=(1.5,))
    q.start()
    while not fg.running:
        threading.Event().wait(0.001)
    second = fg.give_way()
    assert not done[1:] and second <= 0.6 - waited + 0.05
    assert fg.give_way() == 0.0 and fg.running == 1
    other = []  # each thread has its own budget
    t = threading.Thread(target=lambda: other.append(fg.give_way()))
    t.start()
    threading.Event().wait(0.2)
    fg.close()  # closing releases a waiter at once
    t.join(timeout=5)
    assert not t.is_alive() and 0.15 <= other[0] < 0.6
    q.join()


def test_foreground_holds_the_passes_while_opening_and_until_the_first_answer(monkeypatch):
    """During an open the passes wait (the opening thread never does), then for the first query
    to end, at most OPEN_GRACE_S; neither wait uses the budget; release() and close() end it."""
    monkeypatch.setattr(_engine, "OPEN_GRACE_S", 0.4)
    fg = _engine.Foreground(budget_s=0.05)
    waits = []

    def passes():
        waits.append(fg.give_way())

    with fg.opening():
        assert fg.give_way() == 0.0  # the opening thread itself
        t = threading.Thread(target=passes)
        t.start()
        threading.Event().wait(0.3)
        assert t.is_alive()  # held past its 0.05 s budget: the open's wait is not budgeted
    t.join(timeout=5)
    assert not t.is_alive() and 0.6 <= waits[0] < 3  # 0.3 s of open, then the 0.4 s grace
    assert fg.give_way() == 0.0  # the grace is over: nothing in flight, no wait

    monkeypatch.setattr(_engine, "OPEN_GRACE_S", 30.0)
    with fg.opening():
        t = threading.Thread(target=passes)
        t.start()
    with fg.query():  # the first query after the open: its end releases the passes
        threading.Event().wait(0.2)
        assert t.is_alive()
    t.join(timeout=5)
    assert not t.is_alive() and 0.15 <= waits[1] < 3

    for end in (fg.release, fg.close):  # a wait_* call, or closing, ends the hold at once
        with fg.opening():
            pass
        t = threading.Thread(target=passes)
        t.start()
        threading.Event().wait(0.2)
        assert t.is_alive()
        end()
        t.join(timeout=5)
        assert not t.is_alive() and waits[-1] < 3


def test_after_an_open_the_structures_are_reopened_after_the_first_answer(tmp_path, small, monkeypatch):
    """A reopened collection leaves its saved structures unread until its first query has been
    answered (exactly, from scans), then reopens them; wait_indexed does not wait for a query."""
    path = str(tmp_path / "ix")
    with Index(path) as ix:
        c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
        for lo in range(0, 1600, 400):
            c.upsert(_docs(lo, lo + 400))
        _flush(c)
        assert c.wait_indexed(timeout=120)
        indexed = c.stats()["vectors_indexed"]
    Q = _vectors(8, 6)
    monkeypatch.setattr(_engine, "OPEN_GRACE_S", 3600.0)
    with Index(path) as ix:
        c = ix.get_collection("v")
        threading.Event().wait(0.5)
        assert c.stats()["vectors_indexed"] == 0  # no query yet: the reopen waits
        first = c.search(Q[0], k=5)
        assert first == c.search(Q[0], k=5, exact=True)
        deadline = time.monotonic() + 60
        while c.stats()["vectors_indexed"] < indexed and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert c.stats()["vectors_indexed"] == indexed  # the first answer released it
    with Index(path) as ix:
        c = ix.get_collection("v")
        assert c.wait_indexed(timeout=60) and c.stats()["vectors_indexed"] == indexed


class _QueryAtOpen(_engine.Foreground):
    """A foreground with a query in flight from the moment the collection opens (as the first
    query after a restart would be) until the test ends it."""

    def __init__(self, budget_s=None):
        super().__init__(budget_s)
        self.held = self.query()
        self.held.__enter__()

    def end(self):
        self.held.__exit__(None, None, None)


def test_reopening_structures_gives_way_to_a_query_in_flight(tmp_path, small, monkeypatch):
    """After an open the saved structures are reopened only once the query in flight ends (it is
    answered meanwhile from exact scans, equal to exact=True); a query that never ends delays
    the reopen by at most the budget; closing during the wait is prompt."""
    path = str(tmp_path / "ix")
    with Index(path) as ix:
        c = ix.create_collection("v", dim=DIM, vector_index="hnsw")
        for lo in range(0, 1600, 400):
            c.upsert(_docs(lo, lo + 400))
        _flush(c)  # every row in a segment with its structure saved
        assert c.wait_indexed(timeout=120)
        indexed = c.stats()["vectors_indexed"]
        assert indexed == 1600
    Q = _vectors(8, 5)
    monkeypatch.setattr(_engine, "Foreground", _QueryAtOpen)
    monkeypatch.setattr(_engine, "GIVE_WAY_S", 60.0)
    with Index(path) as ix:
        c = ix.get_collection("v")
        threading.Event().wait(0.5)
        assert c.stats()["vectors_indexed"] == 0  # waiting for the query in flight
        assert [c.search(q, k=5) for q in Q] == [c.search(q, k=5, exact=True) for q in Q]
        c._engine.foreground.end()
        assert c.wait_indexed(timeout=60) and c.stats()["vectors_indexed"] == indexed
    monkeypatch.setattr(_engine, "GIVE_WAY_S", 0.5)
    with Index(path) as ix:  # the query never ends: the budget bounds the wait
        c = ix.get_collection("v")
        assert c.wait_indexed(timeout=60) and c.stats()["vectors_indexed"] == indexed
        assert c._engine.foreground.running == 1
    monkeypatch.setattr(_engine, "GIVE_WAY_S", 3600.0)
    ix = Index(path)
    ix.get_collection("v")
    threading.Event().wait(0.3)
    closer = threading.Thread(target=ix.close, daemon=True)  # a failure here must not hang the suite
    closer.start()
    closer.join(timeout=8)
    assert not closer.is_alive(), "close waited for the passes that were giving way"
