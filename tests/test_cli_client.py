"""Issue 16 §2: the command-line client (collections, ingest, query, search, export, snapshot)
run as ``simsearch`` subprocesses against a real ``simsearch serve``: tables, JSON lines, exit
codes 0 / 2 (bad input) / 1 (other) and one-line messages."""

from __future__ import annotations

import gzip
import json
import os
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from served import Served, simsearch_command

from simsearch.client import Client

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    token = root / "token"
    token.write_text(TOKEN + "\n")
    os.chmod(token, 0o600)
    s = Served(root / "data", "--token-file", str(token), "--snapshot-dir", str(root / "snaps"))
    s.token_file = str(token)
    s.root = root
    yield s
    rc, err = s.terminate()
    assert rc == 0, err


def cli(served, *args, token=True, expect=0):
    conn = ["--address", served.address, "--timeout", "60"] + (["--token-file", served.token_file] if token else [])
    proc = subprocess.run(simsearch_command() + list(args[:1]) + _after_action(args, conn), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
    if expect:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"simsearch {args[0]}: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def _after_action(args, conn):
    """``collections ACTION`` takes the connection options after the action."""
    if args[0] == "collections":
        return [args[1]] + conn + list(args[2:])
    return conn + list(args[1:])


def _jsonl(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


TEXTS = [f"the quick brown fox number {i} jumps over the lazy dog again and again" for i in range(40)]


def _records(n=40, start=0):
    rng = np.random.default_rng(start)
    return [{"id": f"d{i}", "text": TEXTS[i % len(TEXTS)] + ("" if i < 40 else " copy"),
             "vector": rng.normal(size=4).round(4).tolist(), "label": "ab"[i % 2], "metadata": {"i": i}}
            for i in range(start, start + n)]


def test_collections_and_exit_codes(served):
    out = cli(served, "collections", "create", "c1", "--dim", "4", "--ngram", "3", "--json")
    [row] = _jsonl(out)
    assert row["name"] == "c1" and row["dim"] == 4 and row["ngram"] == 3 and row["count"] == 0
    table = cli(served, "collections", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "COUNT", "DIM"] and table[1].split()[:3] == ["c1", "0", "4"]
    assert _jsonl(cli(served, "collections", "info", "c1", "--json"))[0]["ngram"] == 3
    # bad input: exit 2 with one line
    err = cli(served, "collections", "create", "c1", "--dim", "4", "--ngram", "4", "--exist-ok", expect=2).stderr
    assert "ngram=3 (asked 4)" in err
    assert "does not exist" in cli(served, "collections", "info", "nope", expect=2).stderr
    cli(served, "collections", "create", "bad name!", expect=2)
    cli(served, "collections", "create", "c2", "--threshold", "0", expect=2)
    # other errors: exit 1 (auth, no server)
    assert "bearer token" in cli(served, "collections", "list", token=False, expect=1).stderr
    proc = subprocess.run(simsearch_command() + ["collections", "list", "--address", "127.0.0.1:1", "--timeout", "5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "UNAVAILABLE" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    cli(served, "collections", "drop", "c1")
    assert "c1" not in cli(served, "collections", "list", "--json").stdout


def test_ingest_query_search_export(served, tmp_path):
    recs = _records()
    jsonl = tmp_path / "a.jsonl.gz"
    with gzip.open(jsonl, "wt") as fh:
        for r in recs[:25]:
            fh.write(json.dumps(r) + "\n")
    part = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist(recs[25:]), part)
    out = cli(served, "ingest", str(jsonl), str(part), "--collection", "docs", "--create", "--dim", "4",
              "--batch-size", "10", "--json")
    [tot] = _jsonl(out)
    assert (tot["files"], tot["read"], tot["upserted"], tot["replaced"]) == (2, 40, 40, 0)
    with Client(served.address, token=TOKEN, timeout=60) as client:
        coll = client.get_collection("docs")
        assert coll.count() == 40
        got = coll.get(["d3", "d30"])
        assert got[0].metadata == {"i": 3} and got[1].label == "a" and got[1].text == recs[30]["text"]
        np.testing.assert_allclose(got[1].vector, recs[30]["vector"], rtol=1e-6)
        want = [h.id for h in coll.near_duplicates(TEXTS[7], k=3)]
        want_id = [h.id for h in coll.near_duplicates(id="d7", k=3)]
        want_knn = [(h.id, h.distance) for h in coll.search(recs[5]["vector"], k=4)]
    rows = _jsonl(cli(served, "query", "--collection", "docs", TEXTS[7], "-k", "3", "--json"))
    assert [r["id"] for r in rows] == want and all(r["query"] == 0 for r in rows)
    assert [r["id"] for r in _jsonl(cli(served, "query", "--collection", "docs", "--id", "d7", "-k", "3", "--json"))] \
        == want_id
    qfile = tmp_path / "q.txt"
    qfile.write_text(TEXTS[7] + "\n" + TEXTS[9] + "\n")
    rows = _jsonl(cli(served, "query", "--collection", "docs", "--file", str(qfile), "-k", "1", "--json"))
    assert [(r["query"], r["id"]) for r in rows] == [(TEXTS[7], "d7"), (TEXTS[9], "d9")]
    table = cli(served, "query", "--collection", "docs", TEXTS[7], "-k", "1").stdout.splitlines()
    assert table[0].split() == ["QUERY", "ID", "JACCARD", "ESTIMATED_JACCARD"] and table[1].split()[1] == "d7"
    vec = ",".join(str(v) for v in recs[5]["vector"])
    rows = _jsonl(cli(served, "search", "--collection", "docs", f"--vector={vec}", "-k", "4", "--json"))
    assert [r["id"] for r in rows] == [i for i, _ in want_knn]
    np.testing.assert_allclose([r["distance"] for r in rows], [d for _, d in want_knn], rtol=1e-5, atol=1e-6)
    assert len(_jsonl(cli(served, "search", "--collection", "docs", "--id", "d5", "--json"))) == 10
    # bad input
    cli(served, "search", "--collection", "docs", "--vector", "1,2", expect=2)  # wrong dim
    cli(served, "search", "--collection", "docs", "--vector", "a,b", expect=2)
    cli(served, "query", "--collection", "docs", expect=2)  # neither TEXT, --id nor --file
    cli(served, "query", "--collection", "docs", "--id", "nope", expect=2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_records(1, 100)[0]) + "\n{not json\n")
    err = cli(served, "ingest", str(bad), "--collection", "docs", "--batch-size", "1", expect=2).stderr
    assert f"{bad}:2: not valid JSON" in err and "1 documents in 1 batches were committed" in err
    cli(served, "ingest", str(tmp_path / "missing.jsonl"), "--collection", "docs", expect=2)
    # export: every document (Scroll) or the given ids
    ids = tmp_path / "ids.txt"
    ids.write_text("d1\nd2\n")
    out_ids = tmp_path / "some.jsonl"
    assert _jsonl(cli(served, "export", "docs", "-o", str(out_ids), "--ids", str(ids), "--json"))[0]["documents"] == 2
    exported = [json.loads(line) for line in out_ids.read_text().splitlines()]
    assert [(e["id"], e["metadata"], e["label"]) for e in exported] == [("d1", {"i": 1}, "b"), ("d2", {"i": 2}, "a")]
    out_all = tmp_path / "all.jsonl"  # every document, through the Scroll RPC
    assert _jsonl(cli(served, "export", "docs", "-o", str(out_all), "--json"))[0]["documents"] == 41
    exported = [json.loads(line) for line in out_all.read_text().splitlines()]
    assert [e["id"] for e in exported] == sorted([f"d{i}" for i in range(40)] + ["d100"], key=str.encode)
    with Client(served.address, token=TOKEN, timeout=60) as client:
        want = client.get_collection("docs").get([e["id"] for e in exported])
    assert [(e["id"], e["text"], e["metadata"], e["label"]) for e in exported] == \
        [(d.id, d.text, d.metadata, d.label) for d in want]


def test_snapshot_commands(served):
    cli(served, "collections", "create", "snapc")
    [row] = _jsonl(cli(served, "snapshot", "nightly", "--json"))
    assert row["name"] == "nightly" and row["size_bytes"] > 0
    assert (served.root / "snaps" / "nightly").is_dir()
    assert [r["name"] for r in _jsonl(cli(served, "snapshot", "--list", "--json"))] == ["nightly"]
    cli(served, "snapshot", "../escape", expect=2)
    cli(served, "snapshot", "nightly", expect=2)  # exists
    cli(served, "snapshot", "--delete", "nightly")
    assert _jsonl(cli(served, "snapshot", "--list", "--json")) == []
    assert cli(served, "snapshot", "--list").stdout.strip() == "(none)"
