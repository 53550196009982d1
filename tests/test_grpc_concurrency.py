"""16 client threads mix upserts, deletes and queries against one server; the final state must
equal a serial replay, into an embedded Index, of exactly the writes that were acknowledged.

Each thread writes only its own ids, so the replay order within a thread is its program order
and threads commute. During the run every thread also checks that it reads its own
acknowledged writes, and that queries never return an id nobody ever wrote.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from simsearch.client import Client
from simsearch.errors import InvalidArgumentError, NotFoundError
from simsearch.index import Document, Index

THREADS = 16
OPS = 25
DIM = 4
BASES = [
    "the committee approved the annual budget after a long debate about school funding",
    "heavy rain flooded the valley roads and the river rose above its banks overnight",
    "the new phone ships with a faster chip a brighter screen and a larger battery",
]


def _doc(rng: np.random.Generator, thread: int, slot: int, version: int) -> Document:
    text = f"{BASES[rng.integers(len(BASES))]} note {slot} {version % 3}"
    return Document(id=f"t{thread}-{slot}", text=text, metadata={"v": version},
                    vector=rng.normal(size=DIM).astype(np.float32), label=f"t{thread}")


def _worker(address: str, thread: int, acked: list, written: set, lock: threading.Lock, errors: list,
            ops: int = OPS) -> None:
    rng = np.random.default_rng(1000 + thread)
    state: dict[str, Document] = {}  # this thread's ids as its acknowledged writes left them
    try:
        with Client(address, timeout=30) as client:
            coll = client.get_collection("c")
            for version in range(ops):
                op = rng.choice(["upsert", "upsert", "delete", "bad", "near", "search"])
                if op == "upsert":
                    slots = rng.choice(8, size=rng.integers(1, 4), replace=False)
                    docs = [_doc(rng, thread, int(s), version) for s in slots]
                    with lock:
                        written.update(d.id for d in docs)
                    coll.upsert(docs)
                    acked.append(("upsert", docs))
                    state.update((d.id, d) for d in docs)
                elif op == "delete":
                    ids = [f"t{thread}-{int(s)}" for s in rng.choice(8, size=2, replace=False)]
                    n = coll.delete(ids, missing_ok=True)
                    assert n == sum(i in state for i in ids)
                    acked.append(("delete", ids))
                    for i in ids:
                        state.pop(i, None)
                elif op == "bad":  # refused as a whole: not acknowledged, not replayed
                    bad = [_doc(rng, thread, 0, version), Document(id=f"t{thread}-1", vector=[math.nan] * DIM)]
                    with pytest.raises(InvalidArgumentError):
                        coll.upsert(bad)
                elif op == "near":
                    hits = coll.near_duplicates(BASES[rng.integers(len(BASES))] + " note 1 1", threshold=0.3)
                    with lock:
                        assert {h.id for h in hits} <= written
                else:
                    hits = coll.search(rng.normal(size=DIM), k=5)
                    with lock:
                        assert {h.id for h in hits} <= written
                # read-your-writes on one of this thread's ids
                probe = f"t{thread}-{int(rng.integers(8))}"
                if probe in state:
                    assert coll.get([probe]) == [state[probe]]
                else:
                    with pytest.raises(NotFoundError):
                        coll.get([probe])
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append((thread, exc))


def test_concurrent_clients_match_serial_replay(tmp_path, grpc_server):
    with Client(grpc_server.address) as client:
        client.create_collection("c", dim=DIM, threshold=0.5)
    logs = [[] for _ in range(THREADS)]
    written: set = set()
    lock = threading.Lock()
    errors: list = []
    threads = [threading.Thread(target=_worker, args=(grpc_server.address, t, logs[t], written, lock, errors))
               for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert sum(len(log) for log in logs) > THREADS * OPS // 3

    with Index(tmp_path / "replay") as index:
        local = index.create_collection("c", dim=DIM, threshold=0.5)
        for log in logs:
            for op, arg in log:
                local.upsert(arg) if op == "upsert" else local.delete(arg, missing_ok=True)
        with Client(grpc_server.address) as client:
            remote = client.get_collection("c")
            assert remote.count() == local.count() > 0
            alive = sorted(i for i in written if _exists(local, i))
            assert remote.get(alive) == local.get(alive)
            for text in BASES:
                q = text + " note 2 0"
                assert remote.near_duplicates(q, threshold=0.3) == local.near_duplicates(q, threshold=0.3)
            rng = np.random.default_rng(7)
            for _ in range(5):
                v = rng.normal(size=DIM)
                assert remote.search(v, k=10) == local.search(v, k=10)
            # representatives depend on insertion order, which differs; the clusters must not
            assert {frozenset(c.ids) for c in remote.find_duplicates()} == \
                {frozenset(c.ids) for c in local.find_duplicates()}


def _exists(coll, doc_id: str) -> bool:
    try:
        coll.get([doc_id])
        return True
    except NotFoundError:
        return False
