"""``Collection.scroll``: every document in id order, pages, a resumable cursor, filters; and the
Scroll RPC through Client and AsyncClient. Oracle: ``get`` of every id, sorted, and
``Filter.matches`` on each document."""

from __future__ import annotations

import numpy as np
import pytest
from async_bridge import async_scenario, recorder
from filter_cases import FILTERS as RANDOM_FILTERS
from filter_cases import INDEXED
from filter_cases import _docs as _filtered_docs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsearch import Client, Document, Index
from simsearch.errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from simsearch.index import parse_filter


def _docs(seed=0, n=57, dim=4):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(Document(
            id=f"d{rng.integers(10**6):06d}-{i}",
            text=None if i % 7 == 0 else f"text {i} " + " ".join(f"w{x}" for x in rng.integers(0, 50, 8)),
            metadata={"lang": ["en", "de", "fr"][i % 3], "year": int(2015 + i % 10), "nested": {"k": i % 4}},
            vector=None if i % 5 == 0 else rng.standard_normal(dim).astype(np.float32),
            label=None if i % 4 == 0 else f"L{i % 2}",
        ))
    return out


def _stripped(d: Document, with_text: bool, with_vector: bool) -> Document:
    return Document(id=d.id, text=d.text if with_text else None, metadata=d.metadata,
                    vector=d.vector if with_vector else None, label=d.label)


def _oracle(coll, flt=None, with_text=False, with_vector=False):
    ids = sorted((d.id for d in ALL), key=lambda s: s.encode())
    docs = coll.get(ids)
    f = parse_filter(flt)
    return [_stripped(d, with_text, with_vector) for d in docs
            if f is None or f.matches(d.metadata, id=d.id, label=d.label)]


ALL = _docs()


@pytest.fixture(scope="module")
def coll():
    ix = Index()
    c = ix.create_collection("c", dim=4)
    c.upsert(ALL)
    yield c
    ix.close()


FILTERS = [None, {}, {"lang": "en"}, {"year": {"gte": 2020}}, {"or": [{"nested.k": 1}, {"$label": "L0"}]},
           {"not": {"$label": {"exists": True}}}, {"lang": "xx"}]


@pytest.mark.parametrize("flt", FILTERS)
@pytest.mark.parametrize("batch_size", [1, 5, 57, 1000])
def test_scroll_is_get_of_all_ids_in_id_order(coll, flt, batch_size):
    pages = list(coll.scroll(flt, batch_size=batch_size))
    docs = [d for p in pages for d in p.documents]
    assert docs == _oracle(coll, flt)
    assert all(len(p.documents) == batch_size for p in pages[:-1])
    assert all(0 < len(p.documents) <= batch_size for p in pages)
    assert [p.cursor for p in pages] == [p.documents[-1].id for p in pages]


@pytest.mark.parametrize("with_text, with_vector", [(True, False), (False, True), (True, True)])
def test_scroll_with_text_and_vector(coll, with_text, with_vector):
    docs = [d for p in coll.scroll(batch_size=10, with_text=with_text, with_vector=with_vector) for d in p.documents]
    assert docs == _oracle(coll, None, with_text, with_vector)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 20), stop=st.integers(0, 12), flt=st.sampled_from(FILTERS))
def test_cursor_resumes_where_it_stopped(coll, batch_size, stop, flt):
    it = coll.scroll(flt, batch_size=batch_size)
    first = []
    cursor = None
    for _ in range(stop):
        page = next(it, None)
        if page is None:
            break
        first.extend(page.documents)
        cursor = page.cursor
    rest = [d for p in coll.scroll(flt, batch_size=batch_size, after=cursor) for d in p.documents]
    assert first + rest == _oracle(coll, flt)


def test_scroll_sees_writes_between_pages():
    with Index() as ix:
        c = ix.create_collection("c")
        c.upsert([{"id": f"a{i:02d}"} for i in range(10)])
        it = c.scroll(batch_size=4)
        assert [d.id for d in next(it).documents] == ["a00", "a01", "a02", "a03"]
        c.delete(["a04", "a01"])
        c.upsert([{"id": "a055"}, {"id": "a00x"}])
        rest = [d.id for p in it for d in p.documents]
        assert rest == ["a05", "a055", "a06", "a07", "a08", "a09"]  # after the cursor only


def test_empty_collection_yields_no_pages():
    with Index() as ix:
        assert list(ix.create_collection("c").scroll()) == []


@pytest.mark.parametrize("kwargs, exc", [
    ({"batch_size": 0}, InvalidArgumentError),
    ({"batch_size": "5"}, InvalidTypeError),
    ({"with_text": 1}, InvalidTypeError),
    ({"after": 3}, InvalidTypeError),
    ({"after": ""}, InvalidArgumentError),
    ({"filter": {"year": {"gte": "x"}}}, InvalidArgumentError),
    ({"filter": {"year": {"near": 1}}}, InvalidArgumentError),
    ({"filter": 5}, InvalidTypeError),
])
def test_bad_arguments_raise_at_the_call(coll, kwargs, exc):
    with pytest.raises(exc):
        coll.scroll(**kwargs)


def test_batch_size_limit_is_max_batch():
    with Index(max_batch=10) as ix:
        c = ix.create_collection("c")
        with pytest.raises(InvalidArgumentError):
            c.scroll(batch_size=11)


# -- remote -------------------------------------------------------------------------------------

def _scenario(api) -> list:
    log, step = recorder()

    c = api.create_collection("c", dim=4)
    c.upsert(ALL)
    for flt in FILTERS + ['{"lang": "de"}']:
        step(lambda flt=flt: api.pages(c, flt, batch_size=7))
    step(lambda: api.pages(c, None, batch_size=9, with_text=True, with_vector=True, after=sorted(d.id for d in ALL)[20]))
    step(lambda: api.pages(c, {"year": {"lt": "x"}}))
    step(lambda: api.pages(c, None, batch_size=0))
    step(lambda: api.pages(c, None, with_vector="yes"))
    return log


class _LocalAPI:
    def __init__(self, ix):
        self.ix = ix

    def create_collection(self, *a, **k):
        return self.ix.create_collection(*a, **k)

    @staticmethod
    def pages(c, flt, **kw):
        return list(c.scroll(flt, **kw))


class _AsyncAPI:
    def __init__(self, client, loop):
        self.client, self.loop = client, loop

    def create_collection(self, *a, **k):
        coll = self.loop.run_until_complete(self.client.create_collection(*a, **k))
        loop = self.loop

        class _C:
            def upsert(self, docs):
                return loop.run_until_complete(coll.upsert(docs))

            def scroll(self, *a, **k):
                return coll.scroll(*a, **k)

        return _C()

    def pages(self, c, flt, **kw):
        async def collect():
            return [p async for p in c.scroll(flt, **kw)]

        return self.loop.run_until_complete(collect())


def test_scroll_rpc_congruent_with_index(grpc_server):
    with Index() as ix:
        local = _scenario(_LocalAPI(ix))
    assert [r[0] for r in local].count("error") == 3
    with Client(grpc_server.address) as client:
        api = _LocalAPI(client)
        assert _scenario(api) == local
        client.drop_collection("c")
    assert async_scenario(grpc_server.address, _scenario, wrap=_AsyncAPI) == local


def test_scroll_rpc_unknown_collection_and_stop_early(grpc_server):
    with Client(grpc_server.address) as client:
        c = client.create_collection("c")
        c.upsert([{"id": f"x{i:03d}"} for i in range(50)])
        it = c.scroll(batch_size=10)
        assert [d.id for d in next(it).documents] == [f"x{i:03d}" for i in range(10)]
        it.close()  # the client may stop reading; the stream is cancelled
        client.drop_collection("c")
        with pytest.raises(NotFoundError):
            list(c.scroll())


# -- a filter on indexed fields: the RowSet path (no Filter.matches per document) -------------

@pytest.fixture(scope="module")
def indexed():
    """A collection with every field of RANDOM_FILTERS indexed, some documents replaced and deleted."""
    docs = _filtered_docs(3, 150)
    ix = Index()
    c = ix.create_collection("c", dim=6, indexed_fields=INDEXED)
    c.upsert(docs[:100])
    c.upsert(docs[100:])
    c.delete(["d0004", "d0077"])
    again = [Document(id=d.id, text=d.text, metadata={**d.metadata, "lang": "de"}, vector=d.vector, label=d.label)
             for d in docs[10:20]]
    c.upsert(again)
    live = {d.id: d for d in docs if d.id not in ("d0004", "d0077")}
    live.update({d.id: d for d in again})
    yield c, sorted(live.values(), key=lambda d: d.id.encode())
    ix.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=RANDOM_FILTERS, batch_size=st.integers(1, 40), stop=st.integers(0, 4))
def test_indexed_filter_scroll_is_brute_force_without_a_metadata_scan(indexed, monkeypatch_matches, flt,
                                                                        batch_size, stop):
    coll, live = indexed
    f = parse_filter(flt)
    want = [_stripped(d, False, False) for d in live if f is None or f.matches(d.metadata, id=d.id, label=d.label)]
    with monkeypatch_matches():  # the indexed path never evaluates the filter per document
        it = coll.scroll(flt, batch_size=batch_size)
        first, cursor = [], None
        for _ in range(stop):
            page = next(it, None)
            if page is None:
                break
            assert 0 < len(page.documents) <= batch_size
            first.extend(page.documents)
            cursor = page.cursor
        rest = [d for p in coll.scroll(flt, batch_size=batch_size, after=cursor) for d in p.documents]
    got = first + rest
    assert [d.id for d in got] == [d.id for d in want]
    for g, w in zip(got, want):
        assert (g.metadata, g.label, g.text, g.vector) == (w.metadata, w.label, None, None)


@pytest.fixture
def monkeypatch_matches(monkeypatch):
    from contextlib import contextmanager

    from simsearch.index._filter import Filter

    @contextmanager
    def forbid():
        def boom(self, *a, **k):
            raise AssertionError("Filter.matches called: the indexed path should use the RowSet")

        with monkeypatch.context() as m:
            m.setattr(Filter, "matches", boom)
            yield

    return forbid


def test_indexed_filter_scroll_sees_writes_between_pages():
    with Index() as ix:
        c = ix.create_collection("c", indexed_fields=["k"])
        c.upsert([{"id": f"a{i:02d}", "metadata": {"k": i % 2}} for i in range(12)])
        it = c.scroll({"k": 0}, batch_size=2)
        assert [d.id for d in next(it).documents] == ["a00", "a02"]
        c.delete(["a04"])
        c.upsert([{"id": "a055", "metadata": {"k": 0}}, {"id": "a01", "metadata": {"k": 0}},
                  {"id": "a06", "metadata": {"k": 1}}])
        rest = [d.id for p in it for d in p.documents]
        assert rest == ["a055", "a08", "a10"]  # after the cursor only, each page from one committed state
