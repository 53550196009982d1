"""Crash safety with real processes: a child ingests batches and is killed with SIGKILL at random."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from simsearch.index import Index

CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from simsearch.index import Index, Document
    path, start = sys.argv[1], int(sys.argv[2])
    idx = Index(path)
    coll = idx.create_collection("c", dim=8, threshold=0.5, exist_ok=True)
    rng = np.random.default_rng(start)
    words = [f"w{i}" for i in range(300)]
    b = start
    while True:
        size = int(rng.integers(1, 40))
        docs = [Document(id=f"b{b}-{i}", text=" ".join(rng.choice(words, 30)),
                         metadata={"batch": b, "size": size}, vector=rng.normal(size=8).astype(np.float32))
                for i in range(size)]
        if b % 5 == 4:   # re-upsert part of an older batch: replacements must be atomic too
            old = b - 3
            docs += [Document(id=f"b{old}-0", text="replaced " + str(b), metadata={"batch": old, "size": -1},
                              vector=np.zeros(8, np.float32) + b)]
        coll.upsert(docs)
        print(b, flush=True)
        b += 1
    """
)


def _run_trial(path, seed: int) -> None:
    rng = random.Random(seed)
    acked: list[int] = []
    start = 0
    for round_ in range(2):  # kill, restart where it left off, kill again
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(start)], stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + rng.uniform(0.8, 2.5)
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(int(line))
            if len(lines) >= 3 and rng.random() < 0.05:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rest = proc.stdout.read().split()
        proc.stdout.close()
        acked += lines + [int(x) for x in rest]
        start = (max(acked) + 1) if acked else start
        start += 1000 * (round_ + 1)  # fresh batch ids for the restarted child
    _check(path, acked)


def _check(path, acked: list[int]) -> None:
    with Index(path) as idx:
        coll = idx.get_collection("c")
        present = {}
        all_ids = [e for chunk in coll._storage.load_index_data(coll._cid) for e in chunk[1]]
        by_batch: dict[int, list] = {}
        docs = coll.get(all_ids)
        for d in docs:
            present[d.id] = d
            by_batch.setdefault(int(d.id.split("-")[0][1:]), []).append(d)
        # no batch is partially visible (a member replaced by a later batch still counts)
        for b, members in by_batch.items():
            sizes = {m.metadata["size"] for m in members if m.metadata["size"] != -1}
            assert len(sizes) <= 1, (b, sizes)
            if sizes:
                assert len(members) == sizes.pop(), (b, len(members))
        # every acknowledged batch is present and queryable
        for b in acked:
            assert f"b{b}-0" in present, b
        sample = [present[f"b{b}-0"] for b in acked[-5:]]
        for d in sample:
            assert coll.near_duplicates(d.text, threshold=0.99)[0].jaccard == 1.0
            assert coll.search(d.vector, k=1, metric="euclidean")[0].distance == pytest.approx(0.0, abs=1e-5)
        # query results equal those of a fresh index rebuilt from the stored documents
        fresh = Index().create_collection("c", dim=8, threshold=0.5)
        fresh.upsert(docs)
        for d in sample:
            assert coll.near_duplicates(d.text) == fresh.near_duplicates(d.text)
            assert coll.search(d.vector, k=5) == fresh.search(d.vector, k=5)
        assert coll.find_duplicates() == fresh.find_duplicates()


@pytest.mark.parametrize("trial", range(3))
def test_kill9_during_ingest_loses_nothing_acknowledged(tmp_path, trial):
    _run_trial(tmp_path / "idx", seed=trial)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(50))
def test_kill9_many_trials(tmp_path, trial):
    _run_trial(tmp_path / "idx", seed=1000 + trial)


# -- issue 14: kills while the engine flushes a memtable or merges segments ------------------------

@pytest.mark.parametrize("trial", range(2))
def test_kill9_with_constant_flushes_and_merges(tmp_path, monkeypatch, trial):
    """A memtable of 40 rows: the child flushes every few batches and merges all the time, so
    random kills land inside flushes and merges too."""
    monkeypatch.setenv("SIMSEARCH_MEMTABLE_ROWS", "40")
    _run_trial(tmp_path / "idx", seed=500 + trial)


KILLER = textwrap.dedent(
    """
    import os, signal, sys, threading
    from simsearch.index import _engine, _manifest
    at, nth = sys.argv[3], int(sys.argv[4])
    calls = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_segment, real_manifest = _engine.write_segment, _manifest.write_manifest

    def write_segment(directory, header, sections, **kw):
        merging = threading.current_thread().name.startswith("simsearch-merge")
        if (at in ("segment-torn", "segment-tmp") and not merging) or (at == "merge" and merging):
            calls[0] += 1
            if calls[0] == nth:
                if at == "segment-tmp":  # half a temporary file, never renamed
                    with open(os.path.join(directory, "seg-99999999.seg.tmp"), "wb") as fh:
                        fh.write(b"SIMSSEG\\n" + os.urandom(5000))
                    die()
                name = real_segment(directory, header, sections, **kw)
                path = os.path.join(directory, name)
                with open(path, "r+b") as fh:  # renamed, but torn: only its first half reached the disk
                    fh.truncate(os.path.getsize(path) // 2)
                die()
        return real_segment(directory, header, sections, **kw)

    def write_manifest(directory, body, fsync):
        if at == "manifest":
            calls[0] += 1
            if calls[0] == nth:
                with open(os.path.join(directory, "MANIFEST.tmp"), "wb") as fh:
                    fh.write(b'{"body": {"seq": 1')  # a torn temporary manifest
                die()
        return real_manifest(directory, body, fsync)

    _engine.write_segment = write_segment
    _manifest.write_manifest = write_manifest
    sys.argv = sys.argv[:3]
    """
) + CHILD


@pytest.mark.parametrize("at,nth,pipelined", [("segment-torn", 2, False), ("segment-tmp", 3, False),
                                              ("manifest", 3, False), ("merge", 1, False), ("merge", 2, False),
                                              ("segment-torn", 2, True), ("manifest", 3, True)])
def test_kill9_inside_a_flush_or_a_merge_loses_nothing(tmp_path, monkeypatch, at, nth, pipelined):
    """``pipelined``: every upsert of the child is pipelined (chunks of 4), so its flushes run
    beside its inserts (Engine.flush_beside) and the kill lands inside one with the write's
    transaction open."""
    monkeypatch.setenv("SIMSEARCH_MEMTABLE_ROWS", "30")
    if pipelined:
        monkeypatch.setenv("SIMSEARCH_PIPELINE_DOCS", "4")
    path = tmp_path / "idx"
    acked: list[int] = []
    start = 0
    for args in ([at, str(nth)], None):  # killed at the injection point, then a plain run killed at random
        cmd = [sys.executable, "-c", KILLER if args else CHILD, str(path), str(start)] + (args or [])
        rc, lines = _run_child(cmd, 30 if args else 1.0)
        if args:
            assert rc == -signal.SIGKILL and lines, "the injection point was never reached"
        acked += lines
        start = max(acked) + 1000
    _check(path, acked)


def _run_child(cmd, seconds) -> tuple[int, list[int]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + seconds
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(int(line))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines += [int(x) for x in proc.stdout.read().split()]
    proc.stdout.close()
    return proc.returncode, lines


@pytest.mark.parametrize("how", ["delete", pytest.param("flip-block", marks=pytest.mark.slow)])
def test_kill9_inside_a_segment_repair_loses_nothing(tmp_path, monkeypatch, how):
    """A segment goes missing (or a block of its signatures goes bad); the process that rebuilds
    its rows is killed inside that segment write (the file torn); the next one repairs again."""
    import json

    monkeypatch.setenv("SIMSEARCH_MEMTABLE_ROWS", "30")
    path = tmp_path / "idx"
    acked: list[int] = []
    for _ in range(5):  # until a manifest names a segment
        _, lines = _run_child([sys.executable, "-c", CHILD, str(path), str(max(acked, default=-1) + 1000)], 3.0)
        acked += lines
        seg_dir = next((path / "segments").glob("c*"))
        manifest = json.loads((seg_dir / "MANIFEST").read_text())["body"]
        if manifest["segments"]:
            break
    assert manifest["segments"]
    victim = seg_dir / max(manifest["segments"], key=lambda e: e["n"])["file"]
    if how == "delete":
        victim.unlink()
    else:
        raw = bytearray(victim.read_bytes())
        hlen = int.from_bytes(raw[8:16], "little")
        header = json.loads(bytes(raw[16 : 16 + hlen]))
        raw[-(-(24 + hlen) // 4096) * 4096 + header["sections"]["sigs"]["offset"] + 7] ^= 0x5A
        victim.write_bytes(bytes(raw))
    start = max(acked) + 1000
    rc, lines = _run_child([sys.executable, "-c", KILLER, str(path), str(start), "segment-torn", "1"], 30)
    assert rc == -signal.SIGKILL
    acked += lines
    start = max(acked) + 1000
    _, lines = _run_child([sys.executable, "-c", CHILD, str(path), str(start)], 1.0)
    acked += lines
    _check(path, acked)
