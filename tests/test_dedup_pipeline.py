"""The batch dedup pipeline (simsearch.dedup.run and `simsearch dedup`): formats, oracle, bad input, outputs."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import simsearch
from simsearch import dedup
from simsearch.errors import AlreadyExistsError, BackendUnavailableError, InputDataError, InvalidArgumentError

THRESHOLD = 0.8


def planted_corpus(seed: int = 7, bases: int = 60, variants: int = 4, noise: int = 80) -> list[str]:
    """Random base documents, variants of each at similarities spanning 0.5-1.0, exact copies, and noise."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    docs = []
    for _ in range(bases):
        base = [rng.choice(vocab) for _ in range(rng.randint(40, 90))]
        docs.append(" ".join(base))
        for _ in range(rng.randint(0, variants)):
            words = list(base)
            for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            docs.append(" ".join(words))
    docs += [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 60))) for _ in range(noise)]
    docs += ["", "...", "short one"]
    rng.shuffle(docs)
    return docs


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return planted_corpus()


@pytest.fixture(scope="module")
def reference(docs):
    return simsearch.find_duplicates(docs, threshold=THRESHOLD)


def write_jsonl(path, docs, gz=False, ids=True):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            rec = {"id": f"doc-{i}", "text": d, "extra": i} if ids else {"text": d}
            fh.write(json.dumps(rec) + "\n")
    return str(path)


def write_parquet(path, docs, row_group_size=50):
    table = pa.table({"id": pa.array(range(len(docs)), type=pa.int64()), "text": docs,
                      "meta": [f"m{i}" for i in range(len(docs))]})
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def write_text_dir(root, docs):
    for i, d in enumerate(docs):
        sub = root / f"part{i // 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:05d}.txt").write_text(d, encoding="utf-8")
    return str(root)


def clusters_of(outdir, n) -> np.ndarray:
    """Every document's cluster label from clusters.parquet (absent documents are singletons)."""
    t = pq.read_table(os.path.join(outdir, "clusters.parquet")).to_pydict()
    labels = np.arange(n)
    labels[t["index"]] = t["cluster_id"]
    return labels


def leftovers(parent) -> list[str]:
    return sorted(p for p in os.listdir(parent) if p.startswith("."))


def simsearch_exe() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "simsearch")
    return exe if os.path.exists(exe) else shutil.which("simsearch")


def run_cli(*args, cwd=None):
    return subprocess.run([simsearch_exe(), "dedup", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


# ---------------------------------------------------------------------------------------------
# The three formats, through the API: clusters identical to find_duplicates on the same texts.


def test_jsonl_api_matches_find_duplicates(tmp_path, docs, reference):
    src = write_jsonl(tmp_path / "corpus.jsonl", docs)
    s = dedup.run(src, tmp_path / "out", id_field="id", batch_size=37, quiet=True)
    out = tmp_path / "out"
    np.testing.assert_array_equal(clusters_of(out, len(docs)), reference.clusters)
    assert (s.docs_in, s.docs_out, s.duplicates) == (len(docs), int(reference.keep.sum()), reference.num_duplicates)
    assert s.pairs == reference.pairs.shape[0] and s.candidates == reference.stats["candidates"]
    kept = [json.loads(line) for line in open(out / "data" / "corpus.jsonl", encoding="utf-8")]
    assert [r["text"] for r in kept] == [d for d, k in zip(docs, reference.keep) if k]
    assert kept[0].keys() == {"id", "text", "extra"}  # records are copied whole
    pairs = pq.read_table(out / "pairs.parquet").to_pydict()
    np.testing.assert_array_equal(np.c_[pairs["index_a"], pairs["index_b"]], reference.pairs)
    np.testing.assert_allclose(pairs["jaccard"], reference.jaccard)
    assert pairs["id_a"] == [f"doc-{i}" for i in pairs["index_a"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["docs_in"] == len(docs) and summary["engine"] == "local" and summary["device"].startswith("CPU")
    assert {"signatures", "candidates", "verify", "components", "write", "total"} <= summary["seconds"].keys()
    assert summary["peak_rss_bytes"] > 0
    assert leftovers(tmp_path) == []


def test_clusters_parquet_columns(tmp_path, docs, reference):
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    dedup.run(src, tmp_path / "out", id_field="id", quiet=True)
    t = pq.read_table(tmp_path / "out" / "clusters.parquet")
    assert t.schema.names == ["id", "index", "cluster_id", "kept", "jaccard"]
    d = t.to_pydict()
    sets = [simsearch.shingles(x) for x in docs]
    for i, c, kept, j in zip(d["index"], d["cluster_id"], d["kept"], d["jaccard"]):
        assert kept == (i == c) and d["id"][d["index"].index(i)] == f"doc-{i}"
        exact = len(sets[i] & sets[c]) / len(sets[i] | sets[c])
        assert j == pytest.approx(exact)
    sizes = np.bincount(reference.clusters)
    assert sorted(d["index"]) == np.flatnonzero(sizes[reference.clusters] > 1).tolist()


def test_gzip_jsonl_keeps_gzip_and_positions_as_ids(tmp_path, docs, reference):
    src = write_jsonl(tmp_path / "corpus.jsonl.gz", docs, gz=True, ids=False)
    s = dedup.run([src], tmp_path / "out", quiet=True)
    assert s.format == "jsonl"
    with gzip.open(tmp_path / "out" / "data" / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        kept = [json.loads(line)["text"] for line in fh]
    assert kept == [d for d, k in zip(docs, reference.keep) if k]
    t = pq.read_table(tmp_path / "out" / "clusters.parquet").to_pydict()
    assert t["id"] == [str(i) for i in t["index"]]


def test_parquet_api_matches_find_duplicates(tmp_path, docs, reference):
    src = write_parquet(tmp_path / "corpus.parquet", docs)
    s = dedup.run(src, tmp_path / "out", id_field="id", batch_size=64, quiet=True)
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", len(docs)), reference.clusters)
    out = pq.read_table(tmp_path / "out" / "data" / "corpus.parquet")
    assert out.schema == pq.read_schema(src) and out.num_rows == s.docs_out
    assert out.column("text").to_pylist() == [d for d, k in zip(docs, reference.keep) if k]
    t = pq.read_table(tmp_path / "out" / "clusters.parquet").to_pydict()
    assert t["id"] == [str(i) for i in t["index"]]  # integer id column, as strings


def test_text_dir_api_matches_find_duplicates(tmp_path, docs, reference):
    root = write_text_dir(tmp_path / "corpus", docs)
    s = dedup.run(root, tmp_path / "out", batch_size=90, quiet=True)
    assert s.format == "text"
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", len(docs)), reference.clusters)
    kept = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out" / "data")
                  for d, _, fs in os.walk(tmp_path / "out" / "data") for f in fs)
    assert kept == [f"part{i // 100}/{i:05d}.txt" for i in np.flatnonzero(reference.keep)]
    t = pq.read_table(tmp_path / "out" / "clusters.parquet").to_pydict()
    assert t["id"] == [os.path.join(root, f"part{i // 100}", f"{i:05d}.txt") for i in t["index"]]


def test_several_inputs_are_one_corpus(tmp_path, docs, reference):
    (tmp_path / "a").mkdir()
    a = write_jsonl(tmp_path / "a" / "x.jsonl", docs[:200])
    b = write_jsonl(tmp_path / "b.jsonl", docs[200:])
    dedup.run([a, b], tmp_path / "out", quiet=True)
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", len(docs)), reference.clusters)
    assert sorted(os.listdir(tmp_path / "out" / "data")) == ["b.jsonl", "x.jsonl"]


def test_same_basename_inputs_do_not_collide(tmp_path, docs):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_jsonl(tmp_path / "a" / "x.jsonl", docs[:100])
    b = write_jsonl(tmp_path / "b" / "x.jsonl", docs[100:200])
    s = dedup.run([a, b], tmp_path / "out", quiet=True)
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out" / "data")
                   for d, _, fs in os.walk(tmp_path / "out" / "data") for f in fs)
    assert files == ["input0/x.jsonl", "input1/x.jsonl"] and s.docs_in == 200


@pytest.mark.parametrize("verify", ["estimate", "none"])
def test_other_verify_modes_match_find_duplicates(tmp_path, docs, verify):
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    dedup.run(src, tmp_path / "out", verify=verify, quiet=True)
    ref = simsearch.find_duplicates(docs, threshold=THRESHOLD, verify=verify)
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", len(docs)), ref.clusters)
    pairs = pq.read_table(tmp_path / "out" / "pairs.parquet").to_pydict()
    np.testing.assert_allclose(pairs["jaccard"], ref.jaccard)


def test_char_shingles_and_numpy_backend(tmp_path, docs):
    src = write_jsonl(tmp_path / "c.jsonl", docs[:150])
    dedup.run(src, tmp_path / "out", shingle="char", ngram=7, threshold=0.7, num_perm=64, backend="numpy", quiet=True)
    ref = simsearch.find_duplicates(docs[:150], threshold=0.7, shingle="char", ngram=7, num_perm=64)
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", 150), ref.clusters)


def test_empty_input(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n\n")
    s = dedup.run(str(src), tmp_path / "out", quiet=True)
    assert (s.docs_in, s.docs_out, s.clusters) == (0, 0, 0)
    assert (tmp_path / "out" / "data" / "empty.jsonl").read_bytes() == b""


# ---------------------------------------------------------------------------------------------
# Recall and precision against brute-force exact Jaccard.


def test_recall_and_precision_vs_brute_force(tmp_path, docs):
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    dedup.run(src, tmp_path / "out", quiet=True)
    sets = [simsearch.shingles(d) for d in docs]
    truth = {(i, j) for i, j in itertools.combinations(range(len(docs)), 2)
             if sets[i] and sets[j] and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= THRESHOLD}
    p = pq.read_table(tmp_path / "out" / "pairs.parquet").to_pydict()
    found = set(zip(p["index_a"], p["index_b"]))
    assert len(truth) > 50
    assert found <= truth  # precision 1.0: exact verification
    assert len(found & truth) / len(truth) >= 0.98


# ---------------------------------------------------------------------------------------------
# CLI: the real console script, all three formats.


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "text"])
def test_cli_all_formats(tmp_path, docs, reference, fmt):
    src = {"jsonl": lambda: write_jsonl(tmp_path / "in.jsonl", docs),
           "parquet": lambda: write_parquet(tmp_path / "in.parquet", docs),
           "text": lambda: write_text_dir(tmp_path / "in", docs)}[fmt]()
    out = tmp_path / "out"
    r = run_cli(src, "-o", out, "--id-field" if fmt != "text" else "--batch-size", "id" if fmt != "text" else "500",
                "--threshold", "0.8", "--num-perm", "128", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --quiet: no progress bars, no table
    line = json.loads(r.stdout)
    assert line["docs_out"] == int(reference.keep.sum()) and line["docs_in"] == len(docs)
    np.testing.assert_array_equal(clusters_of(out, len(docs)), reference.clusters)
    assert sorted(os.listdir(out)) == ["clusters.parquet", "data", "pairs.parquet", "summary.json"]


def test_cli_progress_says_cpu_and_prints_table(tmp_path, docs):
    src = write_jsonl(tmp_path / "in.jsonl", docs[:100])
    r = run_cli(src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "engine local" in r.stderr and "on CPU" in r.stderr
    for stage in ("dedup signatures", "dedup candidates", "dedup verify", "dedup write", "documents out"):
        assert stage in r.stderr


def test_cli_refuses_non_empty_outdir_then_overwrites(tmp_path, docs):
    src = write_jsonl(tmp_path / "in.jsonl", docs[:50])
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = run_cli(src, "-o", out, "--quiet")
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert (out / "precious.txt").exists()
    r = run_cli(src, "-o", out, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (out / "precious.txt").exists() and (out / "summary.json").exists()
    assert leftovers(tmp_path) == []


def test_empty_existing_outdir_is_used(tmp_path, docs):
    src = write_jsonl(tmp_path / "in.jsonl", docs[:30])
    (tmp_path / "out").mkdir()
    dedup.run(src, tmp_path / "out", quiet=True)
    assert (tmp_path / "out" / "summary.json").exists()


def test_outdir_inside_input_dir_is_refused(tmp_path, docs):
    root = write_text_dir(tmp_path / "corpus", docs[:10])
    with pytest.raises(InvalidArgumentError, match="inside the input"):
        dedup.run(root, os.path.join(root, "out"), quiet=True)


# ---------------------------------------------------------------------------------------------
# Bad input: a typed error naming the file and line, exit 2 without a traceback, nothing left behind.


def _jsonl_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


BAD_JSONL = {
    "malformed": (['{"id": "a", "text": "x y"}', "", '{"id": "b", "text": "oops'], 3, "malformed JSON"),
    "missing_text": (['{"id": "a", "text": "x"}', '{"id": "b", "body": "x"}'], 2, "text field 'text' is missing"),
    "text_not_string": (['{"id": "a", "text": 5}'], 1, "text field 'text' is not a string"),
    "missing_id": (['{"id": "a", "text": "x"}', '{"text": "y"}'], 2, "id field 'id' is missing"),
    "not_object": (['["a", "b"]'], 1, "expected a JSON object"),
    "duplicate_id": (['{"id": "a", "text": "x"}', '{"id": "b", "text": "y"}', '{"id": "a", "text": "z"}'], 3,
                     "duplicate id 'a' (first seen at {path}:1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_api(tmp_path, case):
    lines, lineno, what = BAD_JSONL[case]
    src = _jsonl_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(InputDataError) as info:
        dedup.run(src, tmp_path / "out", id_field="id", quiet=True)
    err = info.value
    assert (err.path, err.line) == (src, lineno)
    assert str(err).startswith(f"{src}:{lineno}: ") and what.format(path=src) in str(err)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["malformed", "duplicate_id"])
def test_bad_jsonl_cli_exits_2_without_traceback(tmp_path, case):
    lines, lineno, _ = BAD_JSONL[case]
    src = _jsonl_lines(tmp_path / "bad.jsonl", lines)
    r = run_cli(src, "-o", tmp_path / "out", "--id-field", "id")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"simsearch dedup: error: {src}:{lineno}: ")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_duplicate_id_in_second_file_names_both(tmp_path):
    a = _jsonl_lines(tmp_path / "a.jsonl", ['{"id": 1, "text": "p"}', '{"id": 2, "text": "q"}'])
    b = _jsonl_lines(tmp_path / "b.jsonl", ['{"id": 3, "text": "r"}', '{"id": "2", "text": "s"}'])
    with pytest.raises(InputDataError, match=rf"^{b}:2: duplicate id '2' \(first seen at {a}:2\)"):
        dedup.run([a, b], tmp_path / "out", id_field="id", quiet=True)


def test_truncated_gzip_is_an_input_error(tmp_path, docs):
    src = write_jsonl(tmp_path / "c.jsonl.gz", docs, gz=True)
    data = open(src, "rb").read()
    open(src, "wb").write(data[: len(data) // 2])
    with pytest.raises(InputDataError, match=rf"^{src}:\d+: cannot read"):
        dedup.run(src, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_not_parquet_is_an_input_error(tmp_path):
    src = tmp_path / "fake.parquet"
    src.write_bytes(b"this is not parquet")
    r = run_cli(src, "-o", tmp_path / "out")
    assert r.returncode == 2 and f"{src}: cannot read as Parquet" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_parquet_missing_column_and_null_row(tmp_path):
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), src)
    with pytest.raises(InputDataError, match=r"no text column 'text' \(columns: body\)"):
        dedup.run(str(src), tmp_path / "out", quiet=True)
    pq.write_table(pa.table({"text": ["a b c", None, "d"]}), src)
    with pytest.raises(InputDataError, match=rf"^{src}: row 2: text field 'text' is null") as info:
        dedup.run(str(src), tmp_path / "out", quiet=True)
    assert info.value.line == 2
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_text_file_not_utf8(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("fine text")
    (root / "b.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputDataError, match=rf"^{root / 'b.txt'}: not UTF-8"):
        dedup.run(str(root), tmp_path / "out", quiet=True)


def test_missing_input_and_unknown_extension(tmp_path):
    with pytest.raises(InputDataError, match="no such file"):
        dedup.run(str(tmp_path / "nope.jsonl"), tmp_path / "out", quiet=True)
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InvalidArgumentError, match="--format"):
        dedup.run(str(tmp_path / "x.csv"), tmp_path / "out", quiet=True)
    r = run_cli(tmp_path / "nope.jsonl", "-o", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_write_failure_leaves_nothing(tmp_path, docs, monkeypatch):
    from simsearch.dedup import _run

    src = write_jsonl(tmp_path / "c.jsonl", docs[:40])

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(_run, "representative_jaccard", boom)
    with pytest.raises(OSError, match="disk full"):
        dedup.run(src, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_bad_options():
    with pytest.raises(InvalidArgumentError, match="'engine'"):
        dedup.run("x", "y", engine="spark")
    with pytest.raises(InvalidArgumentError, match="'threshold'"):
        dedup.run("x", "y", threshold=1.5)


def test_ray_missing_names_the_extra(tmp_path, docs, monkeypatch):
    src = write_jsonl(tmp_path / "c.jsonl", docs[:10])
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BackendUnavailableError, match=r"simsearch\[ray\]"):
        dedup.run(src, tmp_path / "out", engine="ray", quiet=True)
    assert not (tmp_path / "out").exists()


def test_streaming_batches_do_not_change_results(tmp_path, docs):
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    dedup.run(src, tmp_path / "a", batch_size=1, quiet=True)
    dedup.run(src, tmp_path / "b", batch_size=100_000, quiet=True)
    for f in ("clusters.parquet", "pairs.parquet"):
        assert pq.read_table(tmp_path / "a" / f).equals(pq.read_table(tmp_path / "b" / f))
    assert (tmp_path / "a" / "data" / "c.jsonl").read_bytes() == (tmp_path / "b" / "data" / "c.jsonl").read_bytes()


def test_already_exists_error_is_typed(tmp_path, docs):
    src = write_jsonl(tmp_path / "c.jsonl", docs[:10])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("x")
    with pytest.raises(AlreadyExistsError):
        dedup.run(src, tmp_path / "out", quiet=True)


def test_jsonl_parser_paths_agree(tmp_path):
    """Lines pyarrow's fast parser refuses (lone surrogates, mixed id types, CRLF, blank and
    whitespace lines) are parsed line by line with the same results and line numbers."""
    lines = ['{"id": 1, "text": "alpha beta gamma delta epsilon zeta"}', "", "  \t",
             '{"id": "x", "text": "alpha beta gamma delta epsilon zeta"}\r',
             '{"id": 3, "text": "lone \\ud800 surrogate"}', '{"id": 4, "text": "a", "text": "dup key"}']
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines), encoding="utf-8")  # no final newline
    dedup.run(str(src), tmp_path / "out", id_field="id", quiet=True)
    t = pq.read_table(tmp_path / "out" / "clusters.parquet").to_pydict()
    assert t["id"] == ["1", "x"] and t["kept"] == [True, False]
    out = (tmp_path / "out" / "data" / "mixed.jsonl").read_bytes().split(b"\n")
    assert out[:-1] == [lines[0].encode(), lines[4].encode(), lines[5].encode()]  # originals, byte for byte
    two = tmp_path / "two.jsonl"
    two.write_text('{"text": "a"}\n{"text": "a"}{"text": "b"}\n')
    with pytest.raises(InputDataError, match=rf"^{two}:2: malformed JSON \(Extra data"):
        dedup.run(str(two), tmp_path / "out2", quiet=True)


def test_blocks_smaller_than_lines(tmp_path, docs, reference, monkeypatch):
    """Reading in blocks shorter than a line (and gzip'd) changes neither results nor line numbers."""
    from simsearch.dedup import _io

    monkeypatch.setattr(_io, "_BLOCK_BYTES", 97)
    src = tmp_path / "c.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"text": d}) + ("\n\n" if i % 7 == 0 else "\n"))
    dedup.run(str(src), tmp_path / "out", batch_size=33, quiet=True)
    np.testing.assert_array_equal(clusters_of(tmp_path / "out", len(docs)), reference.clusters)
    with gzip.open(tmp_path / "out" / "data" / "c.jsonl.gz", "rt", encoding="utf-8") as fh:
        assert [json.loads(x)["text"] for x in fh] == [d for d, k in zip(docs, reference.keep) if k]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:50]) + "\n{oops\n")
    with pytest.raises(InputDataError, match=rf"^{bad}:52: malformed JSON"):
        dedup.run(str(bad), tmp_path / "out2", quiet=True)
