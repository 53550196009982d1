"""Congruence: the same sequence of calls through the embedded Index and through a remote client.

Every step records either its result or its error (class and message); the embedded index, the
sync ``Client`` and the ``AsyncClient`` must record the same list. This is the qdrant-client
congruence-test pattern, and the CuPy rule that when one side raises the other raises the same.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from simsearch.aio_client import AsyncClient
from simsearch.client import Client
from simsearch.errors import SimsearchError
from simsearch.index import Collection, Document, Index

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def _text(rng: np.random.Generator, n: int = 30) -> str:
    return " ".join(rng.choice(WORDS, n))


def _corpus(seed: int = 0, n: int = 40, dim: int = 8) -> list[Document]:
    rng = np.random.default_rng(seed)
    base = [_text(rng) for _ in range(n // 2)]
    docs = []
    for i in range(n):
        text = base[i // 2] if i % 2 == 0 else base[i // 2] + " " + str(WORDS[i % len(WORDS)])
        vec = rng.normal(size=dim).astype(np.float32) if i % 5 else None
        docs.append(Document(id=f"d{i}", text=text, metadata={"i": i, "tags": ["x", i % 3]}, vector=vec,
                             label=f"l{i % 3}" if i % 4 else None))
    return docs


def _normal(value):
    """Results in a comparable form: collection handles become (name, config)."""
    if isinstance(value, Collection) or type(value).__name__ in ("RemoteCollection", "_Sync"):
        return ("collection", value.name, value.config)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


class _Sync:
    """Runs an async client's coroutines on one loop, so one scenario drives all three APIs."""

    def __init__(self, obj, loop):
        self._obj, self._loop = obj, loop

    @property
    def name(self):
        return self._obj.name

    @property
    def config(self):
        return self._obj.config

    def __getattr__(self, attr):
        fn = getattr(self._obj, attr)

        def call(*args, **kwargs):
            out = self._loop.run_until_complete(fn(*args, **kwargs))
            return _Sync(out, self._loop) if type(out).__name__ == "AsyncRemoteCollection" else out

        return call


def run_scenario(api) -> list:
    """The sequence of calls; returns one record per step."""
    log: list = []

    def step(label, fn, compare_message=True):
        try:
            log.append((label, "ok", _normal(fn())))
        except SimsearchError as exc:
            log.append((label, "error", type(exc).__name__, str(exc) if compare_message else None))
        return log[-1]

    docs = _corpus()
    holder: dict = {}

    def create(name, **kw):
        holder[name] = api.create_collection(name, **kw)
        return holder[name]

    # collections
    step("create", lambda: create("docs", dim=8, threshold=0.5))
    step("create again", lambda: api.create_collection("docs", dim=8, threshold=0.5))
    step("create exist_ok", lambda: api.create_collection("docs", dim=8, threshold=0.5, exist_ok=True))
    step("create exist_ok other config", lambda: api.create_collection("docs", dim=4, exist_ok=True))
    step("create plain", lambda: create("plain", store_shingles=False, threshold=0.5))
    step("create char", lambda: create("chars", shingle="char", ngram=3, num_perm=64, seed=7, weights=[0.3, 0.7]))
    for bad in ({"num_perm": 0}, {"threshold": 1.5}, {"threshold": math.nan}, {"weights": (0.3, 0.3)},
                {"metric": "bogus"}, {"dim": 0}, {"shingle": "token"}, {"ngram": "5"}, {"store_text": 1}):
        step(f"create bad {bad}", lambda bad=bad: api.create_collection("bad", **bad))
    for name in ("", "has space", "x" * 200, 5):
        step(f"create bad name {name!r}", lambda name=name: api.create_collection(name))
    step("get missing", lambda: api.get_collection("nope"))
    step("get", lambda: api.get_collection("docs"))
    step("list", lambda: api.list_collections())
    c, plain = holder["docs"], holder["plain"]

    # writes
    step("upsert", lambda: c.upsert(docs[:30]))
    step("upsert replace", lambda: c.upsert(docs[25:]))
    step("upsert dicts", lambda: c.upsert([{"id": "x1", "text": "a tiny doc"}, {"id": "x2", "metadata": {"k": None}}]))
    step("upsert plain", lambda: plain.upsert([Document(id=d.id, text=d.text) for d in docs]))
    bad_docs = {
        "empty batch": [],
        "duplicate ids": [{"id": "a"}, {"id": "a"}],
        "unknown field": [{"id": "a", "txt": "x"}],
        "missing id": [{"text": "x"}],
        "empty text": [{"id": "a", "text": ""}],
        "empty id": [{"id": ""}],
        "long id": [{"id": "é" * 200}],
        "wrong dim": [{"id": "a", "vector": [1.0, 2.0]}],
        "nan vector": [{"id": "a", "vector": [math.nan] * 8}],
        "inf vector": [{"id": "a", "vector": [math.inf] * 8}],
        "2d vector": [{"id": "a", "vector": np.ones((2, 4))}],
        "str vector": [{"id": "a", "vector": ["a"] * 8}],
        "metadata list": [{"id": "a", "metadata": [1, 2]}],
        "metadata nan": [{"id": "a", "metadata": {"x": math.nan}}],
        "metadata set": [{"id": "a", "metadata": {"x": {1}}}],
        "long label": [{"id": "a", "label": "l" * 300}],
        "int id": [{"id": 5}],
        "int text": [{"id": "a", "text": 5}],
        "not a doc": [5],
    }
    for label, batch in bad_docs.items():
        step(f"upsert {label}", lambda batch=batch: c.upsert(batch))
    step("upsert a dict", lambda: c.upsert({"id": "a"}))
    step("vector into plain", lambda: plain.upsert([{"id": "v", "vector": [1.0] * 8}]))
    step("count", lambda: c.count())

    # reads
    step("get", lambda: c.get(["d3", "d0", "x2"]))
    step("get unknown", lambda: c.get(["d3", "zzz"]))
    step("get str", lambda: c.get("d3"))
    step("get int ids", lambda: c.get([3]))
    step("get empty", lambda: c.get([]))

    # near-duplicates
    q = docs[4].text
    step("near text", lambda: c.near_duplicates(q))
    step("near id", lambda: c.near_duplicates(id="d4"))
    step("near exact", lambda: c.near_duplicates(q, exact=True))
    step("near k", lambda: c.near_duplicates(q, k=1))
    step("near threshold", lambda: c.near_duplicates(q, threshold=0.9))
    step("near batch texts", lambda: c.near_duplicates_batch(texts=[q, docs[7].text, "nothing like it at all"]))
    step("near batch ids", lambda: c.near_duplicates_batch(ids=["d1", "d2"], exact=True, k=3))
    step("near batch empty", lambda: c.near_duplicates_batch(texts=[]))
    step("near dup find", lambda: c.find_duplicates())
    step("near dup find est", lambda: c.find_duplicates(0.6, exact=False))
    for label, kw in {
        "k=0": {"k": 0}, "k big": {"k": 10_001}, "k float": {"k": 2.5}, "threshold 2": {"threshold": 2.0},
        "threshold nan": {"threshold": math.nan}, "threshold str": {"threshold": "high"}, "exact int": {"exact": 1},
    }.items():
        step(f"near {label}", lambda kw=kw: c.near_duplicates(q, **kw))
    step("near both", lambda: c.near_duplicates(q, id="d4"))
    step("near neither", lambda: c.near_duplicates())
    step("near unknown id", lambda: c.near_duplicates(id="zzz"))
    step("near no text id", lambda: c.near_duplicates(id="x2"))
    step("near no shingles", lambda: c.near_duplicates("   ..."))
    step("near texts str", lambda: c.near_duplicates_batch(texts="abc"))
    step("near texts ints", lambda: c.near_duplicates_batch(texts=[1]))
    step("near exact plain", lambda: plain.near_duplicates(q, exact=True))
    step("near plain", lambda: plain.near_duplicates(q))
    step("find exact plain", lambda: plain.find_duplicates(exact=True))

    # vectors
    v = docs[1].vector
    step("search", lambda: c.search(v, k=5))
    step("search id", lambda: c.search(id="d1", k=3))
    step("search metric", lambda: c.search(v, k=4, metric="euclidean"))
    step("search batch", lambda: c.search_batch(vectors=np.stack([docs[1].vector, docs[2].vector]), k=2))
    step("search batch ids", lambda: c.search_batch(ids=["d1", "d2"], k=2, metric="manhattan"))
    step("search batch empty", lambda: c.search_batch(vectors=[], k=2))
    for label, kw in {"k=0": {"k": 0}, "k big": {"k": 10_001}, "metric bogus": {"metric": "bogus"},
                      "metric int": {"metric": 3}, "k none": {"k": None}}.items():
        step(f"search {label}", lambda kw=kw: c.search(v, **kw))
    step("search wrong dim", lambda: c.search([1.0, 2.0]))
    step("search nan", lambda: c.search([math.nan] * 8))
    step("search unknown id", lambda: c.search(id="zzz"))
    step("search id without vector", lambda: c.search(id="d0"))
    step("search both", lambda: c.search(v, id="d1"))
    step("search plain", lambda: plain.search(v))

    # deletes
    step("delete unknown", lambda: c.delete(["d1", "zzz"]))
    step("delete missing_ok", lambda: c.delete(["d1", "zzz"], missing_ok=True))
    step("delete", lambda: c.delete(["d3", "d5", "d3"]))
    step("count after delete", lambda: c.count())
    step("near after delete", lambda: c.near_duplicates(id="d2"))
    step("get deleted", lambda: c.get(["d3"]))

    # drop
    step("drop", lambda: api.drop_collection("chars"))
    step("drop again", lambda: api.drop_collection("chars"))
    step("use dropped", lambda: holder["chars"].count(), compare_message=False)  # "was dropped" vs "does not exist"
    step("list at end", lambda: api.list_collections())
    return log


def _compare(local: list, remote: list) -> None:
    assert len(local) == len(remote)
    for a, b in zip(local, remote):
        assert a == b, f"step {a[0]!r} differs:\n local:  {a}\n remote: {b}"


def test_client_congruent_with_index(tmp_path, grpc_server):
    with Index(tmp_path / "local") as index:
        local = run_scenario(index)
    with Client(grpc_server.address) as client:
        remote = run_scenario(client)
    _compare(local, remote)
    assert sum(r[1] == "error" for r in local) > 50  # the scenario does exercise the error paths


def test_async_client_congruent_with_index(tmp_path, grpc_server):
    with Index(tmp_path / "local") as index:
        local = run_scenario(index)
    loop = asyncio.new_event_loop()
    try:
        async def connect():  # the grpc.aio channel belongs to the loop that creates it
            return AsyncClient(grpc_server.address)

        client = loop.run_until_complete(connect())
        remote = run_scenario(_Sync(client, loop))
        loop.run_until_complete(client.close())
    finally:
        loop.close()
    _compare(local, remote)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_upsert_stream_matches_upserts(tmp_path, grpc_server, kind):
    docs = _corpus(seed=3, n=60)
    batches = [docs[i : i + 7] for i in range(0, len(docs), 7)] + [docs[:5]]
    with Index(tmp_path / "local") as index:
        lc = index.create_collection("s", dim=8)
        expected = [lc.upsert(b) for b in batches]
        local_state = (lc.count(), lc.get([d.id for d in docs]), lc.find_duplicates())
    if kind == "sync":
        with Client(grpc_server.address) as client:
            rc = client.create_collection("s", dim=8)
            result = rc.upsert_stream(iter(batches))
            remote_state = (rc.count(), rc.get([d.id for d in docs]), rc.find_duplicates())
    else:
        async def go():
            async with AsyncClient(grpc_server.address) as client:
                rc = await client.create_collection("s", dim=8)

                async def gen():
                    for b in batches:
                        yield b

                res = await rc.upsert_stream(gen())
                return res, (await rc.count(), await rc.get([d.id for d in docs]), await rc.find_duplicates())

        result, remote_state = asyncio.run(go())
    assert result.upserted == sum(r.upserted for r in expected)
    assert result.replaced == sum(r.replaced for r in expected)
    assert remote_state == local_state


def test_upsert_stream_bad_batch_reports_what_committed(grpc_server):
    docs = _corpus(seed=4, n=20)
    with Client(grpc_server.address) as client:
        rc = client.create_collection("s", dim=8)
        server_bad = [docs[:5], docs[5:10], [{"id": "bad", "vector": [1.0]}], docs[10:]]
        with pytest.raises(SimsearchError) as info:
            rc.upsert_stream(server_bad)
        assert type(info.value).__name__ == "InvalidArgumentError"
        assert (info.value.committed_batches, info.value.committed_documents) == (2, 10)
        assert rc.count() == 10

        def client_bad():
            yield docs[10:15]
            yield [object()]  # cannot even be encoded: the stream ends, then the error is raised

        with pytest.raises(SimsearchError) as info:
            rc.upsert_stream(client_bad())
        assert type(info.value).__name__ == "InvalidTypeError"
        assert (info.value.committed_batches, info.value.committed_documents) == (1, 5)
        assert rc.count() == 15
