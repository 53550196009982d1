"""The durable index: CRUD, typed errors that change nothing, reopen == rebuild, snapshots, formats."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from simsearch.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    ResourceExhaustedError,
    StorageCorruptionError,
    UnsupportedFormatError,
)
from simsearch.index import Document, Index
from simsearch.index._storage import DB_FILE

WORDS = [f"w{i}" for i in range(400)]


def make_docs(n: int, seed: int, dim: int = 8, prefix: str = "d") -> list[Document]:
    rng = np.random.default_rng(seed)
    docs = []
    base = [" ".join(rng.choice(WORDS, 60)) for _ in range(max(1, n // 4))]
    for i in range(n):
        words = base[i % len(base)].split()
        # planted near-duplicates: copies of a base text with a few words changed
        for j in rng.choice(len(words), int(rng.integers(0, 6)), replace=False):
            words[j] = str(rng.choice(WORDS))
        docs.append(
            Document(
                id=f"{prefix}{i}",
                text=" ".join(words),
                metadata={"i": i, "tag": ["x", "y"][i % 2]},
                vector=rng.normal(size=dim).astype(np.float32),
                label=["a", "b", None][i % 3],
            )
        )
    return docs


def queries_of(coll, docs):
    nd = [coll.near_duplicates(id=d.id, k=5) for d in docs[:10]]
    nd_text = [coll.near_duplicates(d.text, threshold=0.5, exact=True) for d in docs[:5]]
    knn = [coll.search(d.vector, k=5) for d in docs[:10]]
    clusters = coll.find_duplicates(threshold=0.7)
    return nd, nd_text, knn, clusters


@pytest.fixture(params=["memory", "disk"])
def index(request, tmp_path):
    idx = Index(None if request.param == "memory" else tmp_path / "idx")
    yield idx
    idx.close()


def test_crud_round_trip(index):
    coll = index.create_collection("docs", dim=8, threshold=0.7)
    docs = make_docs(40, 1)
    res = coll.upsert(docs)
    assert (res.upserted, res.replaced) == (40, 0)
    assert coll.count() == 40
    got = coll.get([d.id for d in docs[::-1]])
    assert got == docs[::-1]
    # replace: new text and vector, and the old ones are gone from every structure
    new = Document(id="d3", text="completely different words now here in this text", vector=np.ones(8, np.float32))
    assert coll.upsert([new]).replaced == 1
    assert coll.get(["d3"]) == [new]
    assert coll.count() == 40
    assert coll.delete(["d3", "d4"]) == 2
    assert coll.count() == 38
    with pytest.raises(NotFoundError):
        coll.get(["d3"])
    assert [c.name for c in index.list_collections()] == ["docs"]
    assert index.list_collections()[0].count == 38


def test_no_ghosts_after_replace_delete_and_reinsert(index):
    coll = index.create_collection("g", dim=8, threshold=0.5)
    docs = make_docs(20, 2)
    coll.upsert(docs)
    target = docs[0]
    twin = Document(id="twin", text=target.text, vector=target.vector.copy())
    coll.upsert([twin])
    assert "twin" in [r.id for r in coll.near_duplicates(id=target.id)]
    assert "twin" in [n.id for n in coll.search(id=target.id, k=3)]
    # replace twin with unrelated content: it must vanish from both result kinds
    coll.upsert([Document(id="twin", text="zzz yyy xxx www vvv uuu ttt", vector=-target.vector)])
    assert "twin" not in [r.id for r in coll.near_duplicates(id=target.id)]
    assert "twin" not in [n.id for n in coll.search(target.vector, k=3)]
    coll.delete(["twin"])
    assert "twin" not in [n.id for n in coll.search(-target.vector, k=21)]
    assert all(r.id != "twin" for r in coll.near_duplicates("zzz yyy xxx www vvv uuu ttt", threshold=0.1))
    coll.upsert([twin])
    assert [r.id for r in coll.near_duplicates(id=target.id, threshold=0.99)] == ["twin"]
    assert coll.search(id=target.id, k=1)[0].id == "twin"


def test_near_duplicates_are_ranked_filtered_and_exact_on_request(index):
    coll = index.create_collection("nd", threshold=0.5)
    docs = [Document(id=d.id, text=d.text) for d in make_docs(60, 3)]
    coll.upsert(docs)
    from simsearch.index._doctable import exact_jaccard
    from simsearch.shingling import shingle_hash_set

    for d in docs[:8]:
        res = coll.near_duplicates(d.text, threshold=0.5, exact=True)
        scores = [r.jaccard for r in res]
        assert scores == sorted(scores, reverse=True)
        q = shingle_hash_set(d.text)
        for r in res:
            other = next(x for x in docs if x.id == r.id)
            assert r.exact_jaccard == pytest.approx(exact_jaccard(q, shingle_hash_set(other.text)))
            assert r.jaccard >= 0.5
        assert d.id in [r.id for r in res]  # a text query does not exclude the stored copy
        assert [r.id for r in coll.near_duplicates(d.text, threshold=0.5, exact=True, k=2)] == [r.id for r in res[:2]]


def test_bad_input_matrix_raises_typed_errors_and_changes_nothing(index):
    coll = index.create_collection("bad", dim=4)
    coll.upsert([Document(id="keep", text="some stored text here", vector=np.ones(4, np.float32), metadata={"a": 1})])
    before = (coll.count(), coll.get(["keep"]))
    ok = {"id": "new", "text": "fine text", "vector": [0.0, 1.0, 2.0, 3.0]}
    cases = [
        ([{**ok, "id": ""}], InvalidArgumentError),
        ([{**ok, "id": "x" * 257}], InvalidArgumentError),
        ([{**ok, "id": 5}], InvalidTypeError),
        ([{**ok, "vector": [1.0, 2.0]}], InvalidArgumentError),
        ([{**ok, "vector": [1.0, float("nan"), 0.0, 0.0]}], InvalidArgumentError),
        ([{**ok, "vector": [1.0, float("inf"), 0.0, 0.0]}], InvalidArgumentError),
        ([{**ok, "metadata": {"x": object()}}], InvalidArgumentError),
        ([{**ok, "metadata": {"x": float("nan")}}], InvalidArgumentError),
        ([{**ok, "metadata": "not a dict"}], InvalidTypeError),
        ([{**ok, "metadata": {"big": "x" * 70000}}], InvalidArgumentError),
        ([{**ok, "text": ""}], InvalidArgumentError),
        ([{**ok, "text": 7}], InvalidTypeError),
        ([{**ok, "label": ""}], InvalidArgumentError),
        ([{**ok, "unknown": 1}], InvalidArgumentError),
        ([ok, {**ok, "text": "other"}], InvalidArgumentError),  # duplicate id in one batch
        ([ok, {**ok, "id": "new2", "vector": [1.0]}], InvalidArgumentError),  # bad doc after a good one
        ([], InvalidArgumentError),
        ("not a list", InvalidTypeError),
    ]
    for docs, exc in cases:
        with pytest.raises(exc):
            coll.upsert(docs)
        assert (coll.count(), coll.get(["keep"])) == before, docs
    with pytest.raises(NotFoundError):
        index.get_collection("nope")
    with pytest.raises(NotFoundError):
        coll.delete(["keep", "missing"])
    assert coll.count() == 1
    with pytest.raises(InvalidArgumentError):
        coll.search([1.0, 2.0], k=1)
    with pytest.raises(InvalidArgumentError):
        coll.search([1.0, float("nan"), 0.0, 0.0], k=1)
    with pytest.raises(InvalidArgumentError):
        coll.search(np.ones(4), k=0)
    with pytest.raises(NotFoundError):
        coll.search(id="missing")
    with pytest.raises(InvalidArgumentError):
        coll.near_duplicates("   ...   ")
    with pytest.raises(InvalidArgumentError):
        coll.near_duplicates("text", threshold=1.5)
    with pytest.raises(AlreadyExistsError):
        index.create_collection("bad")
    with pytest.raises(InvalidArgumentError):
        index.create_collection("bad name!")
    with pytest.raises(InvalidArgumentError):
        index.create_collection("x", num_perm=0)
    with pytest.raises(InvalidArgumentError):
        index.create_collection("x", metric="hamming")
    small = Index(max_batch=2, max_text_bytes=10)
    c = small.create_collection("s")
    with pytest.raises(ResourceExhaustedError):
        c.upsert([{"id": str(i)} for i in range(3)])
    with pytest.raises(ResourceExhaustedError):
        c.upsert([{"id": "a", "text": "x" * 11}])
    small.close()
    no_vec = index.create_collection("novec")
    with pytest.raises(InvalidArgumentError):
        no_vec.upsert([{"id": "a", "vector": [1.0]}])
    with pytest.raises(FailedPreconditionError):
        no_vec.search([1.0])
    assert (coll.count(), coll.get(["keep"])) == before


def test_config_is_immutable_and_persisted(tmp_path):
    with Index(tmp_path) as idx:
        c = idx.create_collection("c", ngram=3, num_perm=64, threshold=0.6, dim=4, metric="euclidean")
        with pytest.raises(Exception):
            c.config.ngram = 4  # frozen dataclass
        assert idx.create_collection("c", ngram=3, num_perm=64, threshold=0.6, dim=4, metric="euclidean", exist_ok=True) is c
        with pytest.raises(AlreadyExistsError):
            idx.create_collection("c", ngram=4, exist_ok=True)
    with Index(tmp_path) as idx:
        cfg = idx.get_collection("c").config
        assert (cfg.ngram, cfg.num_perm, cfg.threshold, cfg.dim, cfg.metric) == (3, 64, 0.6, 4, "euclidean")


def test_reopen_equals_fresh_rebuild(tmp_path):
    docs = make_docs(80, 4)
    with Index(tmp_path / "a") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.6)
        c.upsert(docs[:50])
        c.upsert(docs[50:])
        c.delete([d.id for d in docs[::7]])
        c.upsert([Document(id=docs[1].id, text=docs[2].text, vector=docs[2].vector)])
        live_ids = {d.id for d in docs} - {d.id for d in docs[::7]}
        # the stored order (rowid order) is the order a rebuild from storage inserts in
        stored_order = [e for chunk in c._storage.load_index_data(c._cid) for e in chunk[1]]
        live = c.get([i for i in stored_order if i in live_ids])
    with Index(tmp_path / "a") as reopened:
        c = reopened.get_collection("c")
        fresh = Index().create_collection("c", dim=8, threshold=0.6)
        fresh.upsert(live)
        assert c.count() == fresh.count() == len(live)
        assert queries_of(c, live) == queries_of(fresh, live)


def test_snapshot_is_consistent_and_restorable(tmp_path):
    idx = Index(tmp_path / "live")
    c = idx.create_collection("c", dim=8)
    docs = make_docs(30, 5)
    c.upsert(docs)
    idx.snapshot(tmp_path / "snap")
    c.upsert(make_docs(10, 6, prefix="late"))
    with pytest.raises(AlreadyExistsError):
        idx.snapshot(tmp_path / "snap")
    idx.close()
    with Index(tmp_path / "snap") as snap:
        sc = snap.get_collection("c")
        assert sc.count() == 30
        assert sc.get([d.id for d in docs]) == docs
    restored = Index.restore(tmp_path / "snap", tmp_path / "restored")
    assert restored.get_collection("c").count() == 30
    restored.close()


@pytest.mark.parametrize("store_text", [True, False])
def test_exact_verification_same_whether_shingles_come_from_text_or_blobs(tmp_path, store_text):
    """With the text stored, shingle sets are derived from it; without, they are stored as blobs.
    Either way near_duplicates(exact=True) and find_duplicates equal the brute-force oracle."""
    from simsearch.index._doctable import exact_jaccard
    from simsearch.shingling import shingle_hash_set

    docs = [Document(id=d.id, text=d.text) for d in make_docs(80, 11)]
    with Index(tmp_path / "idx") as idx:
        coll = idx.create_collection("c", threshold=0.6, store_text=store_text)
        coll.upsert(docs)
        sets = {d.id: shingle_hash_set(d.text) for d in docs}
        for d in docs[:10]:
            res = coll.near_duplicates(id=d.id, threshold=0.6, exact=True)
            for r in res:
                assert r.exact_jaccard == pytest.approx(exact_jaccard(sets[d.id], sets[r.id]))
        for cl in coll.find_duplicates(threshold=0.6, exact=True):
            for member, jac in zip(cl.ids, cl.jaccard):
                assert jac == pytest.approx(exact_jaccard(sets[cl.representative], sets[member]))
                if member != cl.representative:
                    assert jac >= 0.6
    db = sqlite3.connect(tmp_path / "idx" / DB_FILE)
    stored = db.execute("SELECT COUNT(*) FROM documents WHERE shingles IS NOT NULL").fetchone()[0]
    assert stored == (0 if store_text else len(docs))
    if store_text:  # a text altered behind the index's back fails its checksum when verification reads it
        db.execute("UPDATE documents SET text='tampered text here' WHERE ext_id=?", (docs[1].id,))
        db.commit()
    db.close()
    if store_text:
        with Index(tmp_path / "idx") as idx:
            with pytest.raises(StorageCorruptionError, match="checksum"):
                idx.get_collection("c").near_duplicates(id=docs[1].id, threshold=0.01, exact=True)


def test_newer_format_and_corruption_give_clear_errors(tmp_path):
    Index(tmp_path / "new").close()
    db = sqlite3.connect(tmp_path / "new" / DB_FILE)
    db.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    db.commit()
    db.close()
    with pytest.raises(UnsupportedFormatError, match="newer"):
        Index(tmp_path / "new")

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_FILE).write_bytes(os.urandom(8192))
    with pytest.raises(StorageCorruptionError):
        Index(tmp_path / "junk")

    with Index(tmp_path / "flip") as idx:
        idx.create_collection("c", dim=4).upsert(
            [Document(id="a", text="hello there general", vector=np.ones(4, np.float32))]
        )
    db = sqlite3.connect(tmp_path / "flip" / DB_FILE)
    db.execute("UPDATE documents SET vector=? WHERE ext_id='a'", (np.zeros(4, np.float32).tobytes(),))
    db.commit()
    db.close()
    # The segment flushed at close holds the rows as they were verified; queries answer from it,
    # and reading the altered row itself fails its checksum.
    with Index(tmp_path / "flip") as idx:
        coll = idx.get_collection("c")
        assert [n.id for n in coll.search(np.ones(4, np.float32), k=1)] == ["a"]
        with pytest.raises(StorageCorruptionError, match="checksum"):
            coll.get(["a"])
    # With a damaged segment, the reopen drops it, reads every row and refuses.
    seg_file = next((tmp_path / "flip" / "segments").glob("c*/seg-*.seg"))
    seg_file.write_bytes(seg_file.read_bytes()[:-3] + b"xyz")
    with pytest.raises(StorageCorruptionError, match="checksum"):
        Index(tmp_path / "flip")
    assert not seg_file.exists()  # a segment that fails its checks is removed
    with pytest.raises(StorageCorruptionError, match="checksum"):
        Index(tmp_path / "flip")


def test_operations_on_closed_or_dropped_objects_fail_cleanly(tmp_path):
    idx = Index(tmp_path)
    c = idx.create_collection("c")
    idx.drop_collection("c")
    with pytest.raises(NotFoundError):
        c.count()
    with pytest.raises(NotFoundError):
        idx.drop_collection("c")
    idx.close()
    with pytest.raises(FailedPreconditionError):
        idx.list_collections()


def test_a_second_open_of_the_same_directory_is_refused_until_the_first_closes(tmp_path):
    import subprocess
    import sys

    idx = Index(tmp_path / "idx")
    idx.create_collection("c").upsert([Document(id="a", text="one two three four five six")])
    with pytest.raises(FailedPreconditionError, match="already open"):
        Index(tmp_path / "idx")
    code = (
        "import sys\n"
        "from simsearch.index import Index\n"
        "from simsearch.errors import FailedPreconditionError\n"
        "try:\n"
        "    Index(sys.argv[1])\n"
        "except FailedPreconditionError:\n"
        "    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")]).returncode == 3
    idx.close()
    with Index(tmp_path / "idx") as again:  # released on close
        assert again.get_collection("c").count() == 1
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")]).returncode == 0


def test_reopen_from_the_segments_equals_a_rebuild_and_a_stale_manifest_is_ignored(tmp_path):
    import shutil

    from simsearch.index import _engine

    docs = make_docs(120, 21)
    with Index(tmp_path / "idx") as idx:
        c = idx.create_collection("c", dim=8, threshold=0.6)
        c.upsert(docs[:80])
        c.delete([d.id for d in docs[:80:9]])
        c.upsert(docs[80:])
        deleted = {d.id for d in docs[:80:9]}
        live = [d for d in docs if d.id not in deleted][:40]
        expected = queries_of(c, live)
        cid = c._cid
    seg_dir = _engine.segments_dir(str(tmp_path / "idx"), cid)
    assert any(n.endswith(".seg") for n in os.listdir(seg_dir))
    with Index(tmp_path / "idx") as idx:  # from the segments
        c = idx.get_collection("c")
        assert len(c._engine.segments) >= 1 and len(c._engine.mem) == 0
        assert queries_of(c, live) == expected
    shutil.rmtree(seg_dir)
    with Index(tmp_path / "idx") as idx:  # from the rows; writes the segments again
        assert queries_of(idx.get_collection("c"), live) == expected
    assert os.path.exists(os.path.join(seg_dir, "MANIFEST"))
    # an older manifest (and its segments) put back after later writes: detected, rebuilt
    stale = {n: open(os.path.join(seg_dir, n), "rb").read() for n in os.listdir(seg_dir)}
    with Index(tmp_path / "idx") as idx:
        idx.get_collection("c").delete([docs[100].id])
    shutil.rmtree(seg_dir)
    os.makedirs(seg_dir)
    for n, data in stale.items():
        open(os.path.join(seg_dir, n), "wb").write(data)
    with Index(tmp_path / "idx") as idx:
        c = idx.get_collection("c")
        assert c.count() == len(docs) - len(docs[:80:9]) - 1
        with pytest.raises(NotFoundError):
            c.get([docs[100].id])
        assert docs[100].id not in [n.id for n in c.search(docs[100].vector, k=3)]
        assert docs[100].id not in [n.id for n in c.near_duplicates(docs[100].text, threshold=1e-9)]


def test_segments_are_never_used_for_another_database_with_a_look_alike_history(tmp_path):
    import shutil

    a_docs, b_docs = make_docs(30, 31, prefix="a"), make_docs(30, 32, prefix="b")
    for name, docs in (("a", a_docs), ("b", b_docs)):
        with Index(tmp_path / name) as idx:  # same collection, one write each: same seq and count
            idx.create_collection("c", dim=8).upsert(docs)
    # copy b's database over a's, leaving a's segments behind
    shutil.copyfile(tmp_path / "b" / DB_FILE, tmp_path / "a" / DB_FILE)
    with Index(tmp_path / "a") as idx:
        c = idx.get_collection("c")
        assert [n.id for n in c.search(b_docs[0].vector, k=1)] == [b_docs[0].id]
        assert c.get([b_docs[1].id])[0].text == b_docs[1].text
        assert all(n.id.startswith("b") for n in c.near_duplicates(b_docs[2].text, threshold=1e-9))
    with Index(tmp_path / "a") as idx:
        idx.snapshot(tmp_path / "snap")
        origin = idx._storage.state(idx.get_collection("c")._cid)
    with Index(tmp_path / "snap") as snap:
        copy = snap._storage.state(snap.get_collection("c")._cid)
        assert [n.id for n in snap.get_collection("c").search(b_docs[0].vector, k=1)] == [b_docs[0].id]
    assert copy[1:] == origin[1:] and copy[0] != origin[0]  # a snapshot starts a history of its own
