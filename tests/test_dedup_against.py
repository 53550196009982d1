"""``simsearch dedup --against`` and the first-kept rule.

Oracles: the first-kept rule written as the plain greedy loop over brute-force Jaccard
(``simsearch.shingles`` sets); a first-kept run over the whole corpus for runs over its pieces
``--against`` a collection and ``--add``-ed to it; the collection's own documents for the ids that
clusters.parquet and pairs.parquet name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch import Client, Index, dedup, shingles
from simsearch.dedup._incremental import first_kept
from simsearch.errors import FailedPreconditionError, InvalidArgumentError, InvalidTypeError

WORDS = [f"w{i}" for i in range(300)]
T = 0.8


def _corpus(seed: int, n: int = 240) -> list[dict]:
    """Fresh texts and near-copies of earlier ones (one or two words changed of 30: Jaccard >= 0.85
    or well below the threshold), so chains A~B~C occur and LSH finds every true pair."""
    rng = np.random.default_rng(seed)
    docs: list[dict] = []
    for i in range(n):
        if docs and rng.random() < 0.45:
            words = docs[int(rng.integers(len(docs)))]["text"].split()
            for p in rng.choice(len(words), int(rng.integers(0, 2)) + 1, replace=False):
                words[p] = str(rng.choice(WORDS))
            text = " ".join(words)
        else:
            text = " ".join(rng.choice(WORDS, 30))
        docs.append({"id": f"doc-{seed}-{i:04d}", "text": text, "n": i})
    return docs


def _jac(a: str, b: str) -> float:
    sa, sb = shingles(a, 5, "word"), shingles(b, 5, "word")
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def _greedy(docs: list[dict], stored: list[dict] = ()) -> list[str]:
    """The first-kept rule by brute force: ids of ``docs`` kept, given ``stored`` (all kept)."""
    kept = list(stored)
    out = []
    for d in docs:
        if not any(_jac(d["text"], k["text"]) >= T for k in kept if k["id"] != d["id"]):
            kept.append(d)
            out.append(d["id"])
    return out


def _write(path, docs) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in docs)
    return str(path)


def _kept_ids(outdir) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(outdir, "data")):
        for f in sorted(files):
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                out += [json.loads(line)["id"] for line in fh if line.strip()]
    return out


# -- the rule ---------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 25), data=st.data())
def test_first_kept_is_the_greedy_loop(n, data):
    edges = data.draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
                              max_size=60))
    blocked = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    pairs = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    jac = np.linspace(0.8, 1.0, len(pairs))
    rep, rep_jac = first_kept(n, pairs, jac, blocked)
    kept = []
    for j in range(n):
        earlier = sorted(i for i, jj in edges if jj == j and i in kept)
        if blocked[j]:
            assert rep[j] == -1
        elif earlier:
            assert rep[j] == earlier[0]
            assert rep_jac[j] == jac[sorted(edges).index((earlier[0], j))]
        else:
            assert rep[j] == j and rep_jac[j] == 1.0
            kept.append(j)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_kept_run_matches_brute_force(tmp_path, seed):
    docs = _corpus(seed)
    s = dedup.run(_write(tmp_path / "in.jsonl", docs), tmp_path / "out", id_field="id", rule="first-kept",
                  threshold=T, quiet=True)
    want = _greedy(docs)
    assert _kept_ids(tmp_path / "out") == want
    assert s.rule == "first-kept" and s.docs_out == len(want) and s.duplicates == len(docs) - len(want)
    # the components rule keeps fewer: a chain A~B~C with A !~ C keeps A and C under first-kept
    comp = dedup.run(tmp_path / "in.jsonl", tmp_path / "comp", id_field="id", threshold=T, quiet=True)
    assert comp.docs_out <= s.docs_out


# -- against a collection ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("pieces", [2, 3])
def test_pieces_against_and_add_keep_what_one_run_keeps(tmp_path, seed, pieces):
    docs = _corpus(seed)
    whole = dedup.run(_write(tmp_path / "all.jsonl", docs), tmp_path / "whole", id_field="id", rule="first-kept",
                      threshold=T, quiet=True)
    cuts = np.linspace(0, len(docs), pieces + 1).astype(int)
    kept = []
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("crawl", threshold=T)
        for k in range(pieces):
            part = docs[cuts[k] : cuts[k + 1]]
            s = dedup.run(_write(tmp_path / f"p{k}.jsonl", part), tmp_path / f"out{k}", id_field="id",
                          threshold=T, against=coll, add=True, quiet=True, batch_size=37)
            kept += _kept_ids(tmp_path / f"out{k}")
            assert s.added == s.docs_out and s.rule == "first-kept" and s.against == "crawl"
            if k:
                assert s.against_matches > 0
        assert coll.count() == len(kept)
        assert sorted(d.id for p in coll.scroll() for d in p.documents) == sorted(kept)
    assert kept == _kept_ids(tmp_path / "whole")
    assert len(kept) == whole.docs_out


def test_against_a_filled_collection_matches_brute_force_and_names_its_ids(tmp_path):
    old, new = _corpus(4, 150), _corpus(4, 240)[150:]
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T)
        coll.upsert([{"id": d["id"], "text": d["text"]} for d in old])  # everything stored counts as kept
        s = dedup.run(_write(tmp_path / "new.jsonl", new), tmp_path / "out", id_field="id", threshold=T,
                      against=coll, quiet=True)
        assert coll.count() == len(old)  # no --add: the collection is untouched
    want = _greedy(new, old)
    assert _kept_ids(tmp_path / "out") == want
    texts = {d["id"]: d["text"] for d in old + new}
    clusters = pq.read_table(tmp_path / "out" / "clusters.parquet").to_pylist()
    in_coll = [c for c in clusters if c["in_collection"]]
    assert len(in_coll) == s.against_matches > 0
    old_ids = {d["id"] for d in old}
    for c in clusters:
        if c["in_collection"]:
            assert c["representative_id"] in old_ids and c["cluster_id"] == -1 and not c["kept"]
        assert c["jaccard"] == pytest.approx(_jac(texts[c["id"]], texts[c["representative_id"]]), abs=1e-12)
        assert c["jaccard"] >= T or c["kept"]
    pairs = pq.read_table(tmp_path / "out" / "pairs.parquet").to_pylist()
    coll_pairs = [p for p in pairs if p["a_in_collection"]]
    assert {(p["id_a"], p["id_b"]) for p in coll_pairs} == {(c["representative_id"], c["id"]) for c in in_coll}
    assert all(p["index_a"] == -1 for p in coll_pairs)
    for p in pairs:
        assert p["jaccard"] == pytest.approx(_jac(texts[p["id_a"]], texts[p["id_b"]]), abs=1e-12)


def test_rerun_after_add_is_harmless(tmp_path):
    docs = _corpus(5, 120)
    path = _write(tmp_path / "in.jsonl", docs)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T)
        dedup.run(path, tmp_path / "o1", id_field="id", threshold=T, against=coll, add=True, quiet=True)
        n = coll.count()
        dedup.run(path, tmp_path / "o2", id_field="id", threshold=T, against=coll, add=True, quiet=True)
        assert coll.count() == n  # a document is never its own duplicate
    assert _kept_ids(tmp_path / "o1") == _kept_ids(tmp_path / "o2") == _greedy(docs)


def test_against_a_server_through_the_cli(tmp_path, grpc_server):
    docs = _corpus(6)
    whole = dedup.run(_write(tmp_path / "all.jsonl", docs), tmp_path / "whole", id_field="id", rule="first-kept",
                      threshold=T, quiet=True)
    with Client(grpc_server.address) as client:
        client.create_collection("crawl", threshold=T)
    kept = []
    for k, part in enumerate((docs[:100], docs[100:])):
        proc = subprocess.run(
            [sys.executable, "-m", "simsearch", "dedup", _write(tmp_path / f"p{k}.jsonl", part), "-o",
             str(tmp_path / f"out{k}"), "--id-field", "id", "--threshold", str(T), "--against-address",
             grpc_server.address, "--collection", "crawl", "--add", "--quiet"],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.returncode == 0, proc.stderr
        line = json.loads(proc.stdout)
        assert line["added"] == line["docs_out"] and line["rule"] == "first-kept"
        kept += _kept_ids(tmp_path / f"out{k}")
    assert kept == _kept_ids(tmp_path / "whole") and len(kept) == whole.docs_out
    with Client(grpc_server.address) as client:
        assert client.get_collection("crawl").count() == len(kept)


def test_cli_against_an_index_directory(tmp_path):
    docs = _corpus(7, 100)
    with Index(tmp_path / "ix") as ix:
        ix.create_collection("c", threshold=T)
    cmd = [sys.executable, "-m", "simsearch", "dedup", _write(tmp_path / "in.jsonl", docs), "-o", str(tmp_path / "o"),
           "--id-field", "id", "--threshold", str(T), "--against", str(tmp_path / "ix"), "--collection", "c",
           "--add", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr
    assert _kept_ids(tmp_path / "o") == _greedy(docs)
    with Index(tmp_path / "ix") as ix:
        coll = ix.get_collection("c")
        assert coll.count() == len(_greedy(docs))
        by_id = {d["id"]: d for d in docs}
        assert all(d.metadata == {"n": by_id[d.id]["n"]} for d in coll.get(_greedy(docs)))  # the other fields
    bad = subprocess.run(cmd[:-4] + ["--add", "--quiet"], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})  # --against without --collection
    assert bad.returncode == 2 and "--collection" in bad.stderr and "Traceback" not in bad.stderr


def test_bad_against_options(tmp_path):
    path = _write(tmp_path / "in.jsonl", _corpus(8, 20))
    out = tmp_path / "o"
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T)
        bare = ix.create_collection("bare", store_shingles=False)
        with pytest.raises(InvalidArgumentError, match="--add needs --against"):
            dedup.run(path, out, id_field="id", add=True, quiet=True)
        with pytest.raises(InvalidArgumentError, match="first-kept"):
            dedup.run(path, out, id_field="id", against=coll, rule="components", quiet=True)
        with pytest.raises(InvalidArgumentError, match="--id-field"):
            dedup.run(path, out, against=coll, add=True, quiet=True)
        with pytest.raises(FailedPreconditionError, match="ngram=3 but collection 'c' was created with ngram=5"):
            dedup.run(path, out, id_field="id", against=coll, ngram=3, quiet=True)
        with pytest.raises(InvalidArgumentError, match="--label-field"):
            dedup.run(path, out, id_field="id", against=coll, label_field="n", quiet=True)
        with pytest.raises(FailedPreconditionError, match="--verify estimate"):
            dedup.run(path, out, id_field="id", against=bare, quiet=True)
        with pytest.raises(InvalidArgumentError, match="--against-address"):
            dedup.run(path, out, id_field="id", against=coll, engine="ray", quiet=True)
        with pytest.raises(InvalidTypeError):
            dedup.run(path, out, id_field="id", against="c", quiet=True)
        with pytest.raises(InvalidArgumentError):
            dedup.run(path, out, id_field="id", rule="first", quiet=True)
        assert coll.count() == 0 and not out.exists()
    for extra, code, message in ((["--against", str(tmp_path / "ix"), "--collection", "nope"], 2, "nope"),
                                 (["--against", str(tmp_path / "missing"), "--collection", "c"], 2, "not an index"),
                                 (["--collection", "c"], 2, "goes with --against"),
                                 (["--against", str(tmp_path / "ix"), "--against-address", "x:1", "--collection", "c"],
                                  2, "not both")):
        proc = subprocess.run([sys.executable, "-m", "simsearch", "dedup", path, "-o", str(out), "--id-field", "id",
                               "--quiet", *extra], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()


def test_remote_collection_pickles_as_a_reconnect(grpc_server):
    import pickle

    with Client(grpc_server.address) as client:
        rc = client.create_collection("c")
        rc.upsert([{"id": "a", "text": "one two three four five six seven"}])
        again = pickle.loads(pickle.dumps(rc))
        assert again.name == "c" and again.count() == 1 and again is not rc


def test_estimate_against_a_collection_without_shingles(tmp_path):
    docs = _corpus(9, 120)
    with Index() as ix:
        coll = ix.create_collection("c", threshold=T, store_shingles=False)
        for k, part in enumerate((docs[:60], docs[60:])):
            dedup.run(_write(tmp_path / f"p{k}.jsonl", part), tmp_path / f"o{k}", id_field="id", threshold=T,
                      verify="estimate", against=coll, add=True, quiet=True)
    whole = dedup.run(_write(tmp_path / "all.jsonl", docs), tmp_path / "whole", id_field="id", threshold=T,
                      verify="estimate", rule="first-kept", quiet=True)
    assert _kept_ids(tmp_path / "o0") + _kept_ids(tmp_path / "o1") == _kept_ids(tmp_path / "whole")
    assert whole.docs_out == len(_kept_ids(tmp_path / "whole"))


@pytest.mark.slow  # starts Ray (~30-80 s on 2 shared cores)
@pytest.mark.ray
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
def test_ray_engine_queries_the_server_from_its_workers(tmp_path, grpc_server):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'simsearch[ray]')")
    pytest.importorskip("ray.data")
    docs = _corpus(10, 160)
    whole = dedup.run(_write(tmp_path / "all.jsonl", docs), tmp_path / "whole", id_field="id", rule="first-kept",
                      threshold=T, quiet=True)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        with Client(grpc_server.address) as client:
            coll = client.create_collection("crawl", threshold=T)
            kept = []
            for k, part in enumerate((docs[:80], docs[80:])):
                s = dedup.run(_write(tmp_path / f"p{k}.jsonl", part), tmp_path / f"o{k}", id_field="id", threshold=T,
                              against=coll, add=True, engine="ray", quiet=True)
                assert s.engine == "ray" and s.added == s.docs_out
                kept += _kept_ids(tmp_path / f"o{k}")
            assert coll.count() == len(kept)
    finally:
        ray.shutdown()
    assert kept == _kept_ids(tmp_path / "whole") and len(kept) == whole.docs_out


# -- the settings a run shares with its collection --------------------------------------------

def _settings_cases():
    return [(dict(threshold=T), "threshold"), (dict(num_perm=64), "num_perm"), (dict(seed=2), "seed"),
            (dict(shingle="char"), "shingle"), (dict(ngram=4), "ngram")]


@pytest.mark.parametrize("remote", [False, True])
def test_settings_default_to_the_collections_and_a_mismatch_is_refused(tmp_path, grpc_server, remote):
    docs = _corpus(11, 120)
    path = _write(tmp_path / "in.jsonl", docs)
    whole = dedup.run(path, tmp_path / "whole", id_field="id", rule="first-kept", threshold=0.7, quiet=True)
    with Index(tmp_path / "ix") as ix, Client(grpc_server.address) as client:
        make = client.create_collection if remote else ix.create_collection
        coll = make("c", threshold=0.7)
        weighted = make("w", threshold=0.7, weights=(0.9, 0.1))
        for given, name in _settings_cases():
            with pytest.raises(FailedPreconditionError, match=f"{name}=.* but collection 'c' was created with {name}="):
                dedup.run(path, tmp_path / "o", id_field="id", against=coll, quiet=True, **given)
        with pytest.raises(FailedPreconditionError, match="weights"):
            dedup.run(path, tmp_path / "o", id_field="id", against=weighted, quiet=True)
        with pytest.raises(FailedPreconditionError, match="verify='none'"):
            dedup.run(path, tmp_path / "o", id_field="id", against=coll, verify="none", quiet=True)
        assert not (tmp_path / "o").exists() and coll.count() == 0
        s = dedup.run(path, tmp_path / "o", id_field="id", against=coll, add=True, quiet=True)  # unset: the collection's
        assert (s.threshold, s.num_perm, s.ngram, s.shingle, s.seed) == (0.7, 128, 5, "word", 1)
        assert _kept_ids(tmp_path / "o") == _kept_ids(tmp_path / "whole") == _greedy_at(docs, 0.7)
        assert coll.count() == whole.docs_out


def _greedy_at(docs, t):
    kept = []
    for d in docs:
        if not any(_jac(d["text"], k["text"]) >= t for k in kept):
            kept.append(d)
    return [d["id"] for d in kept]


def test_cli_names_the_mismatching_setting(tmp_path):
    path = _write(tmp_path / "in.jsonl", _corpus(12, 30))
    with Index(tmp_path / "ix") as ix:
        ix.create_collection("c", threshold=0.7)
    proc = subprocess.run([sys.executable, "-m", "simsearch", "dedup", path, "-o", str(tmp_path / "o"), "--id-field",
                           "id", "--against", str(tmp_path / "ix"), "--collection", "c", "--threshold", "0.8",
                           "--quiet"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 2 and "threshold=0.8 but collection 'c' was created with threshold=0.7" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


# -- what --add stores, and its own check -----------------------------------------------------

def _rich(docs):
    """The corpus with metadata of several kinds, a label and a 4-d vector per document."""
    rng = np.random.default_rng(13)
    out = []
    for d in docs:
        vec = rng.standard_normal(4).astype(np.float32).tolist()
        out.append({**d, "lang": ["en", "de"][d["n"] % 2], "meta": {"year": 2000 + d["n"] % 20, "tags": ["a", "b"]},
                    "missing": None, "topic": f"t{d['n'] % 3}", "emb": vec})
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_add_copies_metadata_label_and_vector(tmp_path, fmt):
    docs = _rich(_corpus(14, 120))
    if fmt == "jsonl":
        path = _write(tmp_path / "in.jsonl", docs)
    else:
        import pyarrow as pa

        path = str(tmp_path / "in.parquet")
        pq.write_table(pa.Table.from_pylist(docs), path)
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T, dim=4)
        s = dedup.run(path, tmp_path / "o", id_field="id", against=coll, add=True, label_field="topic",
                      vector_field="emb", quiet=True)
        kept = _greedy(docs)
        assert s.added == len(kept) == coll.count() and s.add_skipped == 0
        by_id = {d["id"]: d for d in docs}
        for got in coll.get(kept):
            want = by_id[got.id]
            assert got.text == want["text"] and got.label == want["topic"]
            np.testing.assert_array_equal(got.vector, np.asarray(want["emb"], np.float32))
            assert got.metadata == {k: v for k, v in want.items() if k not in ("id", "text", "topic", "emb")}


def test_add_of_text_files_stores_id_and_text(tmp_path):
    docs = _corpus(15, 40)
    src = tmp_path / "texts"
    src.mkdir()
    for d in docs:
        (src / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T)
        s = dedup.run(str(src), tmp_path / "o", against=coll, add=True, quiet=True)
        stored = [d for p in coll.scroll(with_text=True) for d in p.documents]
    assert s.added == len(stored) == len(_greedy(docs))
    assert sorted(os.path.basename(d.id)[:-4] for d in stored) == sorted(_greedy(docs))
    assert all(d.metadata == {} and d.label is None for d in stored)


class _Raced:
    """A collection handle whose first upsert waits until another writer (a second connection, in
    another thread) has stored ``docs``: the documents land between the run's query and its add."""

    def __init__(self, coll, other, docs):
        self._coll, self._other, self._docs, self._done = coll, other, docs, False

    def __getattr__(self, name):
        return getattr(self._coll, name)

    def upsert(self, docs, **kwargs):
        import threading

        if not self._done:
            self._done = True
            t = threading.Thread(target=self._other.upsert, args=(self._docs,))
            t.start()
            t.join()
        return self._coll.upsert(docs, **kwargs)


@pytest.mark.parametrize("remote", [False, True])
def test_add_is_atomic_with_a_writer_racing_the_run(tmp_path, grpc_server, remote):
    docs = _corpus(16, 160)
    path = _write(tmp_path / "in.jsonl", docs)
    kept0 = _greedy(docs)
    texts = {d["id"]: d["text"] for d in docs}
    # the racing writer stores near-copies (one word changed) of three documents the run keeps
    racing = []
    for i, kid in enumerate(kept0[5:8]):
        words = texts[kid].split()
        words[0] = "zz"
        racing.append({"id": f"other-{i}", "text": " ".join(words)})
    with Client(grpc_server.address) as client, Index(tmp_path / "ix") as ix:
        if remote:
            coll, other = client.create_collection("c", threshold=T), Client(grpc_server.address)
            other_coll = other.get_collection("c")
        else:
            coll = ix.create_collection("c", threshold=T)
            other, other_coll = None, coll
        try:
            s = dedup.run(path, tmp_path / "o", id_field="id", against=_Raced(coll, other_coll, racing), add=True,
                          quiet=True, batch_size=50)
        finally:
            if other is not None:
                other.close()
        stored = [d for p in coll.scroll(with_text=True) for d in p.documents]
    skipped = [k for k in kept0 if any(_jac(texts[k], r["text"]) >= T for r in racing)]
    assert len(skipped) >= 3 and s.add_skipped == len(skipped)
    kept = _kept_ids(tmp_path / "o")
    assert kept == [k for k in kept0 if k not in skipped]  # data/ holds exactly what this run added
    assert sorted(d.id for d in stored) == sorted(kept + [r["id"] for r in racing])
    assert s.added == len(kept) and s.docs_out == len(kept)
    clusters_of = {c["representative_id"] for c in pq.read_table(tmp_path / "o" / "clusters.parquet").to_pylist()
                   if not c["kept"] and c["representative_id"] in kept or c["in_collection"]}
    assert s.clusters == len(clusters_of)  # one per kept or collection representative
    for a in range(len(stored)):  # nothing is stored twice
        for b in range(a):
            assert _jac(stored[a].text, stored[b].text) < T
    clusters = {c["id"]: c for c in pq.read_table(tmp_path / "o" / "clusters.parquet").to_pylist()}
    for k in skipped:
        c = clusters[k]
        assert c["in_collection"] and not c["kept"] and c["representative_id"].startswith("other-")
        assert c["jaccard"] == pytest.approx(_jac(texts[k], texts.get(c["representative_id"]) or
                                                  next(r["text"] for r in racing if r["id"] == c["representative_id"])))


def test_two_runs_adding_at_once_store_no_pair_twice(tmp_path):
    """Two runs of near-identical crawls (other ids) query an empty collection, then add at once:
    the add's check under the write lock keeps every near-duplicate pair out."""
    import threading

    docs = _corpus(17, 140)
    twin = [{**d, "id": "twin-" + d["id"]} for d in docs]
    paths = [_write(tmp_path / "a.jsonl", docs), _write(tmp_path / "b.jsonl", twin)]
    with Index(tmp_path / "ix") as ix:
        coll = ix.create_collection("c", threshold=T)
        errors, summaries = [], {}

        def go(k):
            try:
                summaries[k] = dedup.run(paths[k], tmp_path / f"o{k}", id_field="id", against=coll, add=True,
                                         quiet=True, batch_size=20)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        stored = [d for p in coll.scroll(with_text=True) for d in p.documents]
    kept = _kept_ids(tmp_path / "o0") + _kept_ids(tmp_path / "o1")
    assert sorted(kept) == sorted(d.id for d in stored)
    assert len(stored) == len(_greedy(docs))  # every text once, whichever run stored it
    assert sum(s.added for s in summaries.values()) == len(stored)
    for a in range(len(stored)):
        for b in range(a):
            assert _jac(stored[a].text, stored[b].text) < T
