"""Filtered queries and the collection's vector index: results equal brute force with the filter
applied (Filter.matches over the documents), for every metric and vector index kind, with the
filter's fields indexed or scanned; the ANN block persists and is reused, and is rebuilt when
damaged or stale."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from async_bridge import recorder
from filter_cases import FILTERS, INDEXED, _docs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsearch.distance import pairwise
from simsearch.errors import InvalidArgumentError
from simsearch.index import Document, Index, _ann, _vecsearch, parse_filter

pytest.importorskip("faiss")

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
KINDS = ("flat", "hnsw", "ivf")


def _matching(docs, flt):
    f = parse_filter(flt)
    return [d for d in docs if f is None or f.matches(d.metadata, id=d.id, label=d.label)]


def _knn_oracle(docs, query, k, metric, exclude=None):
    cand = [d for d in docs if d.vector is not None and d.id != exclude]
    if not cand:
        return []
    dist = pairwise(query[None, :], np.stack([d.vector for d in cand]), metric)[0]
    order = sorted(range(len(cand)), key=lambda j: (float(dist[j]), cand[j].id))[:k]
    return [(cand[j].id, float(dist[j])) for j in order]


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """One index with a collection per (metric, kind), with and without indexed fields."""
    ix = Index(str(tmp_path_factory.mktemp("filtered")))
    docs = _docs(0, 240)
    out = {}
    for metric in METRICS:
        for kind in KINDS:
            for indexed in (True, False):
                name = f"{metric}-{kind}-{'ix' if indexed else 'scan'}"
                c = ix.create_collection(name, dim=6, metric=metric, vector_index=kind, nlist=4, nprobe=2,
                                         threshold=0.5, indexed_fields=INDEXED if indexed else [])
                c.upsert(docs)
                c.delete(["d0003", "d0100"])  # tombstones in the ANN block
                out[(metric, kind, indexed)] = c
    live = [d for d in docs if d.id not in ("d0003", "d0100")]
    yield _Fixture((ix, out, live))
    ix.close()


class _Fixture(tuple):
    """The fixture's (index, collections, live docs), with a short repr for hypothesis reports."""

    def __repr__(self) -> str:
        return "collections"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=FILTERS, metric=st.sampled_from(METRICS), kind=st.sampled_from(KINDS), indexed=st.booleans(),
       k=st.integers(1, 25), qi=st.integers(0, 239))
def test_filtered_search_equals_brute_force(collections, flt, metric, kind, indexed, k, qi):
    _, colls, docs = collections
    c = colls[(metric, kind, indexed)]
    query = np.random.default_rng(qi).standard_normal(6).astype(np.float32)
    res = c.search_batch(vectors=[query], k=k, filter=flt, with_stats=True)
    want = _knn_oracle(_matching(docs, flt), query, k, metric)
    got = [(n.id, n.distance) for n in res.results[0]]
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5, atol=1e-5)
    assert res.stats.allowed == len(_matching(docs, flt))
    assert res.stats.metadata_scan == (not indexed)
    assert res.stats.path == "exact"  # a few hundred allowed rows: an exact scan on every kind
    # by stored id: the document itself is left out
    qid = docs[qi % len(docs)]
    if qid.vector is not None:
        got = [n.id for n in c.search(id=qid.id, k=k, filter=flt)]
        assert got == [w[0] for w in _knn_oracle(_matching(docs, flt), qid.vector, k, metric, exclude=qid.id)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=FILTERS, indexed=st.booleans(), qi=st.integers(0, 239), k=st.one_of(st.none(), st.integers(1, 5)),
       exact=st.booleans())
def test_filtered_near_duplicates_equal_unfiltered_then_filtered(collections, flt, indexed, qi, k, exact):
    """Filtering the LSH candidates before ranking equals ranking everything and dropping the
    documents the filter rejects (the brute-force reading of a filter)."""
    _, colls, docs = collections
    c = colls[("cosine", "flat", indexed)]
    qid = docs[qi % len(docs)].id
    keep = {d.id for d in _matching(docs, flt)}
    full = c.near_duplicates(id=qid, exact=exact)
    want = [h for h in full if h.id in keep][:k] if k else [h for h in full if h.id in keep]
    res = c.near_duplicates_batch(ids=[qid], k=k, exact=exact, filter=flt, with_stats=True)
    assert res.results[0] == want
    assert res.stats.path == "lsh" and res.stats.allowed == len(keep)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=FILTERS)
def test_filtered_find_duplicates_equals_the_subcollection(collections, flt, tmp_path_factory):
    """find_duplicates(filter=f) equals find_duplicates over a collection holding only the
    documents f keeps, inserted in the same order (same signatures, same representatives)."""
    ix, colls, docs = collections
    got = colls[("cosine", "flat", True)].find_duplicates(filter=flt)
    sub_docs = _matching(docs, flt)
    name = f"sub{abs(hash(str(flt))) % 10**9}"
    sub = ix.create_collection(name, dim=6, threshold=0.5)
    try:
        if sub_docs:
            sub.upsert(sub_docs)
        assert got == sub.find_duplicates()
    finally:
        ix.drop_collection(name)


def test_classify_neighbours_are_filtered(collections):
    _, colls, docs = collections
    c = colls[("euclidean", "hnsw", True)]
    c.train_classifier("m", kind="gmm", params={"n_components": 2})
    q = next(d.vector for d in docs if d.vector is not None)
    flt = {"lang": "fr"}
    res = c.classify([q], model="m", k=5, filter=flt)
    assert [n.id for n in res[0].neighbors] == [w[0] for w in _knn_oracle(_matching(docs, flt), q, 5, "euclidean")]


def _seal(c) -> None:
    """Flush the memtable to a segment and wait for its ANN structure (built in the background)."""
    with c._lock.write():
        c._engine.flush()
    assert c.wait_indexed(timeout=120)


@pytest.mark.parametrize("kind", ("hnsw", "ivf"))
def test_ann_paths_and_recall(tmp_path, kind, monkeypatch):
    """Above the exact-scan limits the approximate index answers: unfiltered ("ann") and with the
    filter as a faiss selector ("ann_filtered"); recall@10 against exact=True, and only allowed ids."""
    monkeypatch.setattr(_ann, "EXACT_SCAN_MAX", 50)
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16)).astype(np.float32) * 4
    X = (centres[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 16))).astype(np.float32)
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("v", dim=16, metric="euclidean", vector_index=kind, nprobe=8,
                             indexed_fields=["g"])
    c.upsert([Document(id=f"v{i}", metadata={"g": i % 4}, vector=X[i]) for i in range(3000)])
    Q = (centres[rng.integers(0, 20, 30)] + rng.standard_normal((30, 16))).astype(np.float32)
    assert c.search_batch(vectors=Q, k=10, with_stats=True).stats.path == "exact"  # the memtable: scanned
    _seal(c)
    assert c.stats()["vectors_indexed"] == 3000 and c.stats()["vectors_pending"] == 0
    for flt, path in ((None, "ann"), ({"g": 1}, "ann_filtered")):
        res = c.search_batch(vectors=Q, k=10, filter=flt, with_stats=True)
        truth = c.search_batch(vectors=Q, k=10, filter=flt, exact=True, with_stats=True)
        assert (res.stats.path, res.stats.vector_index) == (path, kind)
        assert truth.stats.path == "exact"
        recall = np.mean([len({n.id for n in a} & {n.id for n in b}) / 10 for a, b in zip(res.results, truth.results)])
        assert recall >= 0.9, recall
        if flt:
            assert all(int(n.id[1:]) % 4 == 1 for hits in res.results for n in hits)
    ix.close()


def test_block_persists_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(_vecsearch, "SEGMENT_ANN_MIN", 50)
    path = str(tmp_path / "ix")
    docs = _docs(2, 300)
    ix = Index(path)
    c = ix.create_collection("c", dim=6, metric="manhattan", vector_index="hnsw")
    c.upsert(docs)
    _seal(c)
    q = next(d.vector for d in docs if d.vector is not None)
    before = c.search(q, k=7)
    assert c.search_batch(vectors=[q], k=7, with_stats=True).stats.path == "ann"
    ix.close()
    adir = _vecsearch.ann_dir(path, c._cid)
    files = sorted(os.listdir(adir))
    assert len(files) == 2 and {os.path.splitext(f)[1] for f in files} == {".ann", ".faiss"}
    mtimes = [os.path.getmtime(os.path.join(adir, f)) for f in files]
    ix = Index(path)
    c = ix.get_collection("c")
    assert c.search(q, k=7) == before  # exact until the builder has reopened the file: same answer here
    assert c.wait_indexed(timeout=60)
    assert c.search(q, k=7) == before
    assert [os.path.getmtime(os.path.join(adir, f)) for f in files] == mtimes  # opened, not rebuilt
    # writes after the reopen: deletes excluded through the live mask, new rows scanned in the memtable
    gone = before[0].id
    c.delete([gone])
    c.upsert([Document(id="new", vector=q + 0.01)])
    hits = [n.id for n in c.search(q, k=3)]
    assert "new" in hits and gone not in hits
    want = [n.id for n in c.search(q, k=3, exact=True)]
    assert hits == want
    ix.drop_collection("c")
    assert not os.path.exists(adir)
    ix.close()


@pytest.mark.parametrize("damage", ("flip", "truncate", "delete_faiss", "foreign"))
def test_damaged_or_foreign_block_is_rebuilt(tmp_path, damage, monkeypatch):
    monkeypatch.setattr(_vecsearch, "SEGMENT_ANN_MIN", 50)
    path = str(tmp_path / "ix")
    docs = _docs(3, 200)
    ix = Index(path)
    c = ix.create_collection("c", dim=6, metric="cosine", vector_index="hnsw")
    c.upsert(docs)
    _seal(c)
    q = next(d.vector for d in docs[4:] if d.vector is not None)
    want = c.search(q, k=5, exact=True)
    ix.close()
    adir = _vecsearch.ann_dir(path, c._cid)
    stem = os.path.join(adir, os.path.splitext(min(os.listdir(adir)))[0])
    if damage == "flip":
        with open(stem + ".faiss", "r+b") as f:
            f.seek(os.path.getsize(stem + ".faiss") - 10)
            f.write(b"\xff\xfe")
    elif damage == "truncate":
        os.truncate(stem + ".ann", 20)
    elif damage == "delete_faiss":
        os.unlink(stem + ".faiss")
    else:  # another database's structure of the same shape under this name
        other = str(tmp_path / "other")
        ix2 = Index(other)
        c2 = ix2.create_collection("c", dim=6, metric="cosine", vector_index="hnsw")
        c2.upsert(_docs(4, 200))
        _seal(c2)
        ix2.close()
        odir = _vecsearch.ann_dir(other, c2._cid)
        ostem = os.path.join(odir, os.path.splitext(min(os.listdir(odir)))[0])
        for ext in (".ann", ".faiss"):
            os.replace(ostem + ext, stem + ext)
    mtime = os.path.getmtime(stem + ".ann")
    ix = Index(path)
    c = ix.get_collection("c")
    assert c.search(q, k=5, exact=True) == want
    assert c.wait_indexed(timeout=60)
    assert os.path.getmtime(stem + ".ann") != mtime or damage == "truncate"  # refused and rebuilt
    res = c.search_batch(vectors=[q], k=5, with_stats=True)
    assert res.stats.path == "ann"
    hits = res.results[0]
    assert hits[0] == want[0] and {n.id for n in hits} <= {d.id for d in docs}
    ix.close()


def test_auto_switches_to_hnsw(tmp_path, monkeypatch):
    """auto: a segment below AUTO_FLAT_BELOW vectors is scanned, one at or above it gets an HNSW."""
    monkeypatch.setattr(_ann, "AUTO_FLAT_BELOW", 100)
    ix = Index(str(tmp_path / "ix"))
    c = ix.create_collection("c", dim=6)
    docs = _docs(5, 150)
    nvec = sum(d.vector is not None for d in docs)
    assert nvec >= 100 and sum(d.vector is not None for d in docs[:80]) < 100
    q = np.ones(6, np.float32)
    c.upsert(docs[:80])
    _seal(c)
    assert c.search_batch(vectors=[q], k=3, with_stats=True).stats.vector_index == "flat"
    assert c.stats()["vectors_indexed"] == 0
    big = ix.create_collection("big", dim=6)
    big.upsert(docs)
    _seal(big)
    res = big.search_batch(vectors=[q], k=3, with_stats=True)
    assert (res.stats.path, res.stats.vector_index) == ("ann", "hnsw")
    assert big.stats()["vectors_indexed"] == nvec
    assert res.results[0] == big.search(q, k=3, exact=True)
    ix.close()


def test_bad_filters_name_the_position(collections):
    _, colls, _ = collections
    c = colls[("cosine", "flat", True)]
    v = np.ones(6, np.float32)
    for flt, pos in (({"and": [{"lang": "en"}, {"year": {"between": 1}}]}, "filter.and[1].year.between"),
                     ({"year": {"gt": "x"}}, "filter.year.gt"),
                     ({"a.b.c.d.e.f.g.h.i": 1}, "filter.a.b.c.d.e.f.g.h.i")):
        for call in (lambda f=flt: c.search(v, filter=f), lambda f=flt: c.near_duplicates(id="d0001", filter=f),
                     lambda f=flt: c.find_duplicates(filter=f)):
            with pytest.raises(InvalidArgumentError, match=pos.replace(".", r"\.").replace("[", r"\[")):
                call()


def test_filters_over_grpc(collections, grpc_server):
    """The same filtered calls through the sync client equal the embedded index (stats included)."""
    from simsearch.client import Client

    ix, _, docs = collections
    with Client(grpc_server.address) as client:
        rc = client.create_collection("g", dim=6, vector_index="hnsw", indexed_fields=["lang"], threshold=0.5)
        rc.upsert(docs)
        local = ix.create_collection("g_local", dim=6, vector_index="hnsw", indexed_fields=["lang"], threshold=0.5)
        local.upsert(docs)
        flt = {"or": [{"lang": "de"}, {"year": {"lt": 2005}}]}
        q = next(d.vector for d in docs if d.vector is not None)
        assert rc.search_batch(vectors=[q], k=6, filter=flt, with_stats=True) == \
            local.search_batch(vectors=[q], k=6, filter=flt, with_stats=True)
        assert rc.near_duplicates(id=docs[1].id, filter=flt) == local.near_duplicates(id=docs[1].id, filter=flt)
        assert rc.find_duplicates(filter=flt) == local.find_duplicates(filter=flt)
        with pytest.raises(InvalidArgumentError, match=r"filter\.lang\.in"):
            rc.search(q, filter={"lang": {"in": "en"}})
        ix.drop_collection("g_local")


def test_indexed_columns_persist_across_a_clean_close(tmp_path):
    from simsearch.index._filtering import FieldStore, fields_dir

    path = str(tmp_path / "ix")
    docs = _docs(6, 120)
    ix = Index(path)
    c = ix.create_collection("c", dim=6, indexed_fields=["lang", "year"])
    c.upsert(docs)
    c.delete(["d0007"])
    flt = {"and": [{"lang": "en"}, {"year": {"gte": 2010}}]}
    want = c.search(np.ones(6, np.float32), k=8, filter=flt)
    ix.close()
    fdir = fields_dir(path, c._cid)
    assert len(os.listdir(fdir)) == 1
    ix = Index(path)
    c = ix.get_collection("c")
    assert c._fields.rows_decoded == 0  # the part file was used, not rebuilt
    owner = c._fields_owner()
    assert len(FieldStore.load_parts(fdir, ("lang", "year"), owner)._chunks) == 1
    assert c.search(np.ones(6, np.float32), k=8, filter=flt) == want
    assert "d0007" not in {n.id for n in c.search(np.ones(6, np.float32), k=200, filter={"lang": {"exists": True}})}
    # a part recording a write seq the database does not have (it lost writes) or of other fields: not used
    assert not FieldStore.load_parts(fdir, ("lang", "year"), {**owner, "seq": owner["seq"] - 1})._chunks
    assert not os.listdir(fdir)  # ... and removed
    ix.close()  # nothing new to write: the next open decodes everything again
    ix = Index(path)
    c = ix.get_collection("c")
    assert c._fields.rows_decoded == 119
    assert c.search(np.ones(6, np.float32), k=8, filter=flt) == want
    ix.close()
    assert not FieldStore.load_parts(fdir, ("lang",), owner)._chunks
    ix = Index(path)
    c = ix.get_collection("c")
    assert c._fields.rows_decoded == 119
    c.upsert([dataclasses.replace(d, id="n" + d.id) for d in _docs(7, 10)])
    want = c.search(np.ones(6, np.float32), k=8, filter=flt)
    ix.close()
    (name,) = os.listdir(fdir)
    with open(os.path.join(fdir, name), "r+b") as f:  # damage: rebuilt from the metadata on the next open
        f.seek(os.path.getsize(os.path.join(fdir, name)) - 3)
        f.write(b"\x07\x07\x07")
    ix = Index(path)
    c = ix.get_collection("c")
    assert c._fields.rows_decoded == 129
    assert c.search(np.ones(6, np.float32), k=8, filter=flt) == want
    ix.drop_collection("c")
    assert not os.path.exists(fdir)
    ix.close()


# -- QueryStats of find_duplicates and classify, in the SDK and through both clients ------------

def _stats_scenario(api) -> list:
    """find_duplicates and classify asked with_stats, filtered (indexed and scanned) and not."""
    log, step = recorder()

    docs = _docs(7, 160)
    c = api.create_collection("st", dim=6, indexed_fields=["lang"], threshold=0.5, vector_index="flat")
    c.upsert(docs)
    c.train_classifier("m", kind="gmm", params={"n_components": 2})
    q = [d.vector for d in docs if d.vector is not None][:3]
    for flt in (None, {"lang": "de"}, {"year": {"lt": 2010}}, {"lang": "xx"}):
        step(lambda f=flt: c.find_duplicates(filter=f, with_stats=True))
        step(lambda f=flt: c.find_duplicates(filter=f))
        step(lambda f=flt: c.classify(q, model="m", k=4, filter=f, with_stats=True))
        step(lambda f=flt: c.classify(ids=[docs[1].id], model="m", k=2, filter=f, with_stats=True))
    step(lambda: c.classify([], model="m", with_stats=True))
    step(lambda: c.find_duplicates(with_stats="yes"))
    step(lambda: c.classify(q, model="m", with_stats=1))
    api.drop_collection("st")
    return log


def test_find_duplicates_and_classify_report_query_stats(grpc_server):
    from async_bridge import async_scenario

    from simsearch.client import Client

    with Index() as ix:
        local = _stats_scenario(ix)
    docs = _docs(7, 160)
    de = _matching(docs, {"lang": "de"})
    old = _matching(docs, {"year": {"lt": 2010}})
    stats = [entry[1].stats for entry in local if entry[0] == "ok" and hasattr(entry[1], "stats")]
    assert [(s.path, s.allowed, s.metadata_scan) for s in stats[0::3][:4]] == [
        ("lsh", None, False), ("lsh", len(de), False), ("lsh", len(old), True), ("lsh", 0, False)]
    assert all(s.path == "exact" and s.vector_index == "flat" for s in stats if s.path != "lsh")
    assert [s.allowed for s in stats if s.path != "lsh"][:8] == [None, None, len(de), len(de), len(old), len(old),
                                                                   0, 0]
    # with and without stats: the same clusters
    assert local[0][1].results == local[1][1] and local[4][1].results == local[5][1]
    assert [e[1] for e in local[-2:]] == ["InvalidTypeError", "InvalidTypeError"]
    with Client(grpc_server.address) as client:
        assert _stats_scenario(client) == local
    assert async_scenario(grpc_server.address, _stats_scenario) == local
