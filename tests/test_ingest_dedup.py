"""Dedup on ingest: ``Collection.upsert(on_duplicate="skip" | "tag", threshold=)``.

Oracles: brute-force Jaccard over the shingle strings (``simsearch.shingles``) with the sequential
rule of simsearch.index._ingest written out plainly; the signature estimate for collections
without shingles; the same calls through Index, Client and AsyncClient; 16 threads racing.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from async_bridge import async_scenario, recorder

from simsearch import Client, Document, Index, minhash, shingles
from simsearch.errors import InvalidArgumentError, InvalidTypeError
from simsearch.index import DUPLICATE_JACCARD_FIELD, DUPLICATE_OF_FIELD, Duplicate, parse_filter

WORDS = [f"w{i}" for i in range(400)]


def _text(rng, n=40):
    return " ".join(rng.choice(WORDS, n))


def _mutate(rng, text, k):
    """``text`` with ``k`` words replaced: Jaccard to it well above 0.7 for k <= 2 of 40 words."""
    words = text.split()
    for p in rng.choice(len(words), k, replace=False):
        words[p] = rng.choice(WORDS)
    return " ".join(words)


def _corpus(seed, n_base=30, n_new=40):
    """Base documents and a new batch of fresh texts, near-copies of base texts and near-copies of
    earlier texts of the batch itself (pairs either >= 0.8 or <= 0.2, away from the banding's edge)."""
    rng = np.random.default_rng(seed)
    base = [Document(id=f"b{i:03d}", text=_text(rng)) for i in range(n_base)]
    new: list[Document] = []
    for i in range(n_new):
        r = rng.random()
        if r < 0.3:
            src = base[rng.integers(len(base))].text
            text = _mutate(rng, src, int(rng.integers(0, 2)))
        elif r < 0.5 and new:
            text = _mutate(rng, new[int(rng.integers(len(new)))].text, int(rng.integers(0, 2)))
        else:
            text = _text(rng)
        new.append(Document(id=f"n{i:03d}", text=text, metadata={"i": i}))
    return base, new


def _jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a, 5, "word"), shingles(b, 5, "word")
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def _oracle(stored: list[Document], batch: list[Document], mode: str, threshold: float):
    """The sequential rule by brute force: (duplicates, ids stored) for one batch."""
    kept = list(stored)
    dups = []
    for d in batch:
        options = [(_jaccard(d.text, s.text), s.id) for s in kept if s.id != d.id]
        options = [o for o in options if o[0] >= threshold]
        if options:
            jac, of = min(options, key=lambda o: (-o[0], o[1]))
            dups.append(Duplicate(d.id, of, jac))
            if mode == "skip":
                continue
        kept.append(d)
    return dups, [d.id for d in kept]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["skip", "tag"])
def test_upsert_on_duplicate_matches_brute_force(seed, mode):
    base, new = _corpus(seed)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7)
        coll.upsert(base)
        res = coll.upsert(new, on_duplicate=mode)
        dups, kept = _oracle(base, new, mode, 0.7)
        assert len(dups) >= 5  # the corpus does plant duplicates of both kinds
        assert any(d.duplicate_of.startswith("n") for d in dups) and any(d.duplicate_of.startswith("b") for d in dups)
        assert [(d.id, d.duplicate_of) for d in res.duplicates] == [(d.id, d.duplicate_of) for d in dups]
        assert np.allclose([d.jaccard for d in res.duplicates], [d.jaccard for d in dups], rtol=0, atol=1e-12)
        assert res.skipped == (len(dups) if mode == "skip" else 0)
        assert res.upserted == len(new) - res.skipped and res.replaced == 0
        assert coll.count() == len(kept)
        got = {d.id: d for d in coll.get(kept)}
        assert set(got) == set(kept)
        for d in dups:
            if mode == "tag":
                assert got[d.id].metadata[DUPLICATE_OF_FIELD] == d.duplicate_of
                assert got[d.id].metadata[DUPLICATE_JACCARD_FIELD] == pytest.approx(d.jaccard, abs=1e-12)
            else:
                assert d.id not in got
        if mode == "tag":  # a filter selects the tagged documents
            flt = parse_filter({DUPLICATE_OF_FIELD: {"exists": True}})
            tagged = [i for i, d in got.items() if flt.matches(d.metadata, id=i, label=d.label)]
            assert sorted(tagged) == sorted(d.id for d in dups)


def test_insert_is_the_default_and_stores_duplicates():
    base, new = _corpus(0)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7)
        coll.upsert(base)
        res = coll.upsert(new)
        assert res.upserted == len(new) and res.skipped == 0 and res.duplicates == ()
        assert coll.count() == len(base) + len(new)


def test_threshold_argument_overrides_the_collections():
    rng = np.random.default_rng(5)
    a = _text(rng)
    b = _mutate(rng, a, 1)
    jac = _jaccard(a, b)
    assert 0.7 < jac < 0.95
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.5)
        coll.upsert([{"id": "a", "text": a}])
        assert coll.upsert([{"id": "b", "text": b}], on_duplicate="skip", threshold=0.95).skipped == 0
        coll.delete(["b"])
        res = coll.upsert([{"id": "b", "text": b}], on_duplicate="skip")  # the collection's 0.5
        assert res.skipped == 1 and res.duplicates == (Duplicate("b", "a", pytest.approx(jac, abs=1e-12)),)


def test_same_id_is_a_replacement_not_a_duplicate():
    rng = np.random.default_rng(1)
    t = _text(rng)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7)
        coll.upsert([{"id": "a", "text": t}])
        res = coll.upsert([{"id": "a", "text": t, "metadata": {"v": 2}}], on_duplicate="skip")
        assert res == type(res)(upserted=1, replaced=1, skipped=0, duplicates=())
        assert coll.get(["a"])[0].metadata == {"v": 2}


def test_documents_without_text_or_shingles_are_never_duplicates():
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7)
        coll.upsert([{"id": "a", "text": "!! ??"}, {"id": "b"}])  # punctuation only: no word shingles
        res = coll.upsert([{"id": "c", "text": "!! ??"}, {"id": "d"}, {"id": "e", "text": "!! ??"}], on_duplicate="skip")
        assert res.skipped == 0 and coll.count() == 5


def test_estimate_when_the_collection_stores_no_shingles():
    base, new = _corpus(2)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7, store_shingles=False)
        coll.upsert(base)
        res = coll.upsert(new, on_duplicate="tag")
        assert res.duplicates
        texts = {d.id: d.text for d in base + new}
        for d in res.duplicates:
            sa, sb = minhash([texts[d.id], texts[d.duplicate_of]], num_perm=128, seed=1, ngram=5)
            assert d.jaccard == pytest.approx(float((sa == sb).mean()), abs=1e-12)
            assert d.jaccard >= 0.7


@pytest.mark.parametrize("mode", ["skip", "tag"])
def test_sixteen_racing_copies_store_exactly_one_under_skip(tmp_path, mode):
    text = _text(np.random.default_rng(9), 60)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=0.8)
        start = threading.Barrier(16)
        results: dict[int, object] = {}

        def worker(i):
            start.wait()
            results[i] = coll.upsert([{"id": f"t{i:02d}", "text": text}], on_duplicate=mode)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, r in results.items() if not r.duplicates]
        assert len(winners) == 1
        first = f"t{winners[0]:02d}"
        if mode == "skip":
            assert coll.count() == 1 and coll.get([first])[0].text == text
            assert sum(r.upserted for r in results.values()) == 1
            assert {r.duplicates[0].duplicate_of for i, r in results.items() if i != winners[0]} == {first}
        else:
            assert coll.count() == 16
            assert all(r.duplicates[0].jaccard == 1.0 for i, r in results.items() if i != winners[0])


@pytest.mark.parametrize("kwargs, exc", [
    ({"on_duplicate": "drop"}, InvalidArgumentError),
    ({"on_duplicate": 1}, InvalidArgumentError),
    ({"on_duplicate": "skip", "threshold": 0.0}, InvalidArgumentError),
    ({"on_duplicate": "skip", "threshold": 1.5}, InvalidArgumentError),
    ({"on_duplicate": "skip", "threshold": "0.5"}, InvalidTypeError),
])
def test_bad_arguments_are_typed_errors_and_store_nothing(kwargs, exc):
    with Index() as ix:
        coll = ix.create_collection("c")
        with pytest.raises(exc):
            coll.upsert([{"id": "a", "text": "one two three four five six"}], **kwargs)
        assert coll.count() == 0


# -- remote: the same calls through Client and AsyncClient ------------------------------------

def _scenario(api) -> list:
    base, new = _corpus(3, n_base=20, n_new=30)
    log, step = recorder()

    coll = api.create_collection("c", threshold=0.7)
    step(lambda: coll.upsert(base))
    step(lambda: coll.upsert(new[:15], on_duplicate="skip"))
    step(lambda: coll.upsert(new[15:], on_duplicate="tag", threshold=0.75))
    step(lambda: coll.upsert(new[:5], on_duplicate="nope"))
    step(lambda: coll.upsert(new[:5], on_duplicate="skip", threshold=0))
    step(lambda: coll.upsert([{"id": "zz"}], on_duplicate=None))
    step(lambda: coll.count())
    step(lambda: sorted((d.id, d.metadata.get(DUPLICATE_OF_FIELD)) for d in coll.get([d.id for d in new[15:]])))
    return log


def test_remote_clients_congruent_with_index(tmp_path, grpc_server):
    with Index(tmp_path / "local") as ix:
        local = _scenario(ix)
    assert sum(r[0] == "error" for r in local) == 3
    assert local[1][1].skipped > 0 and local[2][1].duplicates
    with Client(grpc_server.address) as client:
        assert _scenario(client) == local
        client.drop_collection("c")
    assert async_scenario(grpc_server.address, _scenario) == local


def test_upsert_stream_carries_on_duplicate(grpc_server):
    base, new = _corpus(4)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=0.7)
        coll.upsert(base)
        r1 = coll.upsert(new[:20], on_duplicate="skip")
        r2 = coll.upsert(new[20:], on_duplicate="skip")
        want_ids = sorted(d.id for d in ix.get_collection("c").get([d.id for d in base + new
                                                                   if d.id not in {x.id for x in r1.duplicates + r2.duplicates}]))
    with Client(grpc_server.address) as client:
        rc = client.create_collection("c", threshold=0.7)
        rc.upsert(base)
        res = rc.upsert_stream([new[:20], new[20:]], on_duplicate="skip")
        assert res.duplicates == r1.duplicates + r2.duplicates
        assert res.skipped == r1.skipped + r2.skipped and res.upserted == r1.upserted + r2.upserted
        assert rc.count() == len(want_ids)
        with pytest.raises(InvalidArgumentError):
            rc.upsert_stream([new[:2]], on_duplicate="bogus")
