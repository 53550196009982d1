"""Durable index: ingest throughput, open time after a clean close and after kill -9, memory per
document (anonymous and RSS, from /proc/PID/smaps_rollup), query latency, bytes on disk.

Documents are ~200 words with a 128-d float32 vector, upserted in batches into an on-disk
``simsearch.Index`` (SQLite WAL, ``durability="full"``). Then, each in a fresh process so the
numbers are those of a server starting up:

* **open (clean close)**: ``Index(path)`` to the first answered near-duplicate and kNN query, in
  a process that has already loaded the backend's compiled kernels (a small in-memory index was
  queried first); "process start" adds the imports and that warm-up, the same for any index size;
* **open (kill -9)**: a process opens the index, upserts one more batch (so the memtable holds
  unflushed rows), and is killed with SIGKILL; the next process is timed the same way;
* in that process, once warm: near-duplicate and kNN latencies (p50 / p99 of single queries),
  and its anonymous memory and RSS, minus those of a process that did the same warm-up and
  opened nothing (the baseline), per document.

Runs against any simsearch (the engine before issue 14 too: it then rebuilds from the rows or
from its close-time cache), so one script gives the before and after rows. ``--smoke`` is tiny.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter  # noqa: E402
from bench_minhash import make_corpus  # noqa: E402

from simsearch.index import Document, Index  # noqa: E402


def smaps() -> dict[str, int]:
    """Bytes of this process: rss, anonymous (heap, not file-backed) from smaps_rollup."""
    out = {}
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if parts[0] in ("Rss:", "Anonymous:"):
                    out[parts[0][:-1].lower()] = int(parts[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return out


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def make_docs(texts, rng, start, n, dim):
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    return [Document(id=f"doc-{start + i}", text=texts[(start + i) % len(texts)], metadata={"n": start + i},
                     vector=vecs[i]) for i in range(n)]


def build(path, args, texts) -> dict:
    """Upsert ``args.docs`` documents batch by batch (only one batch of Documents exists at a
    time, so 10M documents need no 10M-long Python list)."""
    rng = np.random.default_rng(0)
    idx = Index(path, durability=args.durability)
    opts = {} if args.vector_index is None else {"vector_index": args.vector_index}
    coll = idx.create_collection("bench", dim=args.dim, metric="cosine", threshold=0.8, **opts)
    upsert_time = 0.0
    for start in range(0, args.docs, args.batch):
        docs = make_docs(texts, rng, start, min(args.batch, args.docs - start), args.dim)
        t = time.perf_counter()
        coll.upsert(docs)
        upsert_time += time.perf_counter() - t
    t = time.perf_counter()
    engine = getattr(coll, "_engine", None)
    if engine is not None:  # let the background merges finish (not counted as ingest)
        engine.wait_merges()
    merge_s = time.perf_counter() - t
    t = time.perf_counter()
    ann_s = None
    if hasattr(coll, "wait_indexed"):  # the per-segment ANN structures, built in the background
        coll.wait_indexed()
        ann_s = round(time.perf_counter() - t, 2)
    idx.close()
    return {"docs_per_s": round(args.docs / upsert_time, 1), "merge_tail_s": round(merge_s, 2),
            "ann_tail_s": ann_s, "ingest_s": round(upsert_time, 2)}


def sqlite_floor(root, args, texts) -> float:
    """Rows/s of SQLite alone with the engine's layout: the same schema (``_storage._SCHEMA``),
    pragmas (16 KiB pages, WAL, ``synchronous`` from ``--durability``) and INSERT, the same
    batches of the same documents (text, metadata JSON, the 512 B vector blob, a 512 B
    signature blob, the two checksum integers), one transaction per batch, no reads, no
    checksums computed, no MinHash, no segments. The rows are made before the clock starts; the
    ingest row's ratio to this one is the part of SQLite's speed the engine keeps."""
    import sqlite3

    from simsearch.index import _storage

    path = os.path.join(root, "sqlite-floor.db")
    files = (path, path + "-wal", path + "-shm")

    def remove():
        for f in files:
            if os.path.exists(f):
                os.remove(f)

    remove()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={_storage.PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if args.durability == 'full' else 'NORMAL'}")
    conn.executescript(_storage._SCHEMA)
    conn.execute("INSERT INTO collections(name, config) VALUES ('bench', '{}')")
    sql = ("INSERT INTO documents(cid, ext_id, text, metadata, label, vector, signature, shingles,"
           " crc_index, crc_doc, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
    rng = np.random.default_rng(0)
    sig_rng = np.random.default_rng(1)
    n = min(args.docs, args.floor_docs)
    spent = 0.0
    for seq, start in enumerate(range(0, n, args.batch), 1):
        docs = make_docs(texts, rng, start, min(args.batch, n - start), args.dim)
        sigs = sig_rng.integers(0, 2**32, size=(len(docs), 128), dtype=np.uint32)
        rows = [(1, d.id, d.text, json.dumps(d.metadata), None, d.vector.astype("<f4").tobytes(),
                 sigs[i].astype("<u4").tobytes(), None, i, i, seq) for i, d in enumerate(docs)]
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
    conn.close()
    remove()
    return n / spent


CHILD = r"""
import time
t_start = time.perf_counter()
import json, os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[5])
import bench_index as B
from simsearch.index import Index
path, mode, nq, dim = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = B.make_corpus(2000, 200, seed=1)
t_import = time.perf_counter()
if mode in ("baseline", "open"):  # load the backend and its compiled kernels: a process's one-time cost
    import shutil, tempfile
    with Index() as warm:
        w = warm.create_collection("w", dim=dim, metric="cosine", threshold=0.8)
        w.upsert(B.make_docs(texts, np.random.default_rng(9), 0, 200, dim))
        w.near_duplicates(texts[0], k=10)
        w.search(np.ones(dim, np.float32), k=10)
    # and once over mapped (read-only) segments, which numba compiles separately from heap arrays
    tmp = tempfile.mkdtemp(prefix="simsearch-warm-")
    with Index(tmp) as warm:
        warm.create_collection("w", dim=dim, metric="cosine", threshold=0.8).upsert(
            B.make_docs(texts, np.random.default_rng(9), 0, 200, dim))
    with Index(tmp) as warm:
        w = warm.get_collection("w")
        w.near_duplicates(texts[0], k=10)
        w.search(np.ones(dim, np.float32), k=10)
    shutil.rmtree(tmp, ignore_errors=True)
t_warm = time.perf_counter()
if mode == "baseline":
    import simsearch
    print(json.dumps({**B.smaps(), "simsearch_from": simsearch.__file__}))
    sys.exit(0)
if mode == "crash":  # one more batch, unflushed, then SIGKILL
    idx = Index(path)
    c = idx.get_collection("bench")
    c.upsert(B.make_docs(texts, np.random.default_rng(7), 10_000_000, 1000, dim))
    print("acked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
t0 = time.perf_counter()
idx = Index(path)
c = idx.get_collection("bench")
c.near_duplicates(texts[0], k=10)
nd_s = time.perf_counter() - t0
c.search(np.ones(dim, np.float32), k=10)
open_s = time.perf_counter() - t0
t1 = time.perf_counter()
if hasattr(c, "wait_indexed"):  # per-segment ANN: reopened (verified) by a background thread
    c.wait_indexed()
indexed_s = time.perf_counter() - t1 + open_s
eng = getattr(c, "_engine", None)
segs = len(getattr(eng, "segments", []))
if hasattr(eng, "wait_verified"):  # the background checksum pass over the large sections
    t = time.perf_counter(); eng.wait_verified(); verify_tail_s = time.perf_counter() - t
else:
    verify_tail_s = None
rng = np.random.default_rng(3)
for q in texts[:20]:  # warm-up
    c.near_duplicates(q, k=10)
lat_nd, lat_knn = [], []
for i in range(nq):
    q = texts[int(rng.integers(0, len(texts)))]
    t = time.perf_counter(); c.near_duplicates(q, k=10); lat_nd.append(time.perf_counter() - t)
for v in rng.normal(size=(max(nq // 4, 5), dim)).astype(np.float32):
    t = time.perf_counter(); c.search(v, k=10); lat_knn.append(time.perf_counter() - t)
mem = B.smaps()
print(json.dumps({"open_s": open_s, "cold_s": open_s + (t_warm - t_start), "count": c.count(), "nd": lat_nd,
                  "knn": lat_knn, "indexed_s": indexed_s, **mem}))
print(json.dumps({"open_s": open_s, "open_nd_s": nd_s, "cold_s": open_s + (t_warm - t_start), "count": c.count(),
                  "nd": lat_nd, "knn": lat_knn, "segments": segs, "verify_tail_s": verify_tail_s, **mem}))
os._exit(0)
"""


def child(path, mode, args) -> dict:
    here = str(Path(__file__).resolve().parent)
    # cwd: not a checkout, so the child imports the simsearch the parent does (PYTHONPATH), not ./simsearch
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(path), mode, str(args.queries), str(args.dim),
                          here], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if mode == "crash":
        assert out.returncode == -signal.SIGKILL and "acked" in out.stdout, out.stderr[-2000:]
        return {}
    if out.returncode:
        raise RuntimeError(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def report_open(rep, label, res, base, docs, args):
    rep.add(metric=f"open ({label}) to first answer", docs=res["count"], seconds=round(res["open_s"], 3),
            segments=res.get("segments"))
    if "open_nd_s" in res:
        rep.add(metric=f"open ({label}) to first near-duplicate answer", docs=res["count"],
                seconds=round(res["open_nd_s"], 3))
        if res.get("verify_tail_s") is not None:
            rep.add(metric=f"background block verification after open ({label}), tail", docs=res["count"],
                    seconds=round(res["verify_tail_s"], 3))
    rep.add(metric=f"process start ({label}) to first answer", docs=res["count"], seconds=round(res["cold_s"], 3))
    if "indexed_s" in res:
        rep.add(metric=f"open ({label}) to every ANN structure reopened", docs=res["count"],
                seconds=round(res["indexed_s"], 3))
    anon = res.get("anonymous", 0) - base.get("anonymous", 0)
    rss = res.get("rss", 0) - base.get("rss", 0)
    rep.add(metric=f"anonymous memory per doc ({label})", docs=res["count"], value=round(anon / docs, 1))
    rep.add(metric=f"RSS per doc ({label})", docs=res["count"], value=round(rss / docs, 1))
    rep.add(metric=f"near_duplicates latency ({label})", p50_ms=round(percentile(res["nd"], 50) * 1e3, 3),
            p99_ms=round(percentile(res["nd"], 99) * 1e3, 3), qps=round(1 / statistics.mean(res["nd"]), 1))
    rep.add(metric=f"search (kNN) latency ({label})", p50_ms=round(percentile(res["knn"], 50) * 1e3, 3),
            p99_ms=round(percentile(res["knn"], 99) * 1e3, 3), qps=round(1 / statistics.mean(res["knn"]), 1))


def _skip_upsert_row(rep, path, args, dup_rate: float | None = None, threads: int | None = None) -> None:
    """Issue 15: on_duplicate="skip" against a plain upsert of the same documents, batches and
    vectors into two fresh collections of a fresh index, batch for batch in alternation (after one
    warm-up batch of each), so both see the same machine state; target ratio >= 0.7.

    ``dup_rate``: the share of documents whose text repeats an earlier one (the corpus has
    ``docs * (1 - dup_rate)`` texts, reused in turn); None: a corpus of min(docs, 50,000) texts.
    ``threads``: numba threads for both upserts (None: as configured)."""
    n_texts = min(args.docs, 50_000) if dup_rate is None else max(1, round(args.docs * (1 - dup_rate)))
    texts = make_corpus(n_texts, 200, seed=0)
    shutil.rmtree(path, ignore_errors=True)
    prev = None
    if threads is not None:
        import numba

        prev = numba.get_num_threads()
        numba.set_num_threads(threads)
    try:
        with Index(path, durability=args.durability) as idx:
            opts = {} if args.vector_index is None else {"vector_index": args.vector_index}
            plain = idx.create_collection("bench-plain", dim=args.dim, metric="cosine", threshold=0.8, **opts)
            skip = idx.create_collection("bench-skip", dim=args.dim, metric="cosine", threshold=0.8, **opts)
            warm = [Document(id=f"warm-{i}", text=f"warm up text {i} " * 30, vector=np.ones(args.dim, np.float32))
                    for i in range(50)]
            again = [Document(id=f"warm2-{i}", text=d.text, vector=d.vector) for i, d in enumerate(warm)]
            for batch in (warm, again):  # the second batch warms the duplicate path (its kernels) too
                plain.upsert(batch)
                skip.upsert(batch, on_duplicate="skip")
            rng = np.random.default_rng(0)
            seconds = {"plain": 0.0, "skip": 0.0}
            skipped = 0
            for start in range(0, args.docs, args.batch):
                docs = make_docs(texts, rng, start, min(args.batch, args.docs - start), args.dim)
                t = time.perf_counter()
                plain.upsert(docs)
                seconds["plain"] += time.perf_counter() - t
                t = time.perf_counter()
                skipped += skip.upsert(docs, on_duplicate="skip").skipped
                seconds["skip"] += time.perf_counter() - t
    finally:
        if prev is not None:
            numba.set_num_threads(prev)
    shutil.rmtree(path, ignore_errors=True)
    ratio = seconds["plain"] / seconds["skip"]
    rate = "corpus of min(docs, 50k) texts" if dup_rate is None else f"{dup_rate:.0%} duplicates"
    where = f"{rate}, {'configured' if threads is None else threads} numba threads"
    rep.add(metric=f"upsert (plain, paired with skip; {where})", docs=args.docs, batch=args.batch,
            docs_per_s=round(args.docs / seconds["plain"], 1))
    rep.add(metric=f"upsert on_duplicate=skip ({where})", docs=args.docs, batch=args.batch,
            docs_per_s=round(args.docs / seconds["skip"], 1), value=round(ratio, 3), ratio_vs_plain_upsert=round(ratio, 3),
            skipped=skipped)


def _skip_rows(rep, path, args) -> None:
    """The skip row at each --dup-rates x --numba-threads setting."""
    rates = [None] if args.dup_rates is None else [float(x) for x in args.dup_rates.split(",")]
    threads = [None] if args.numba_threads is None else [int(x) for x in args.numba_threads.split(",")]
    for r in rates:
        for t in threads:
            _skip_upsert_row(rep, path, args, r, t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--dir", default=None, help="where to build the index (default: a temp dir)")
    p.add_argument("--reuse", action="store_true", help="reuse an index already built in --dir")
    p.add_argument("--durability", choices=["full", "normal"], default="full")
    p.add_argument("--vector-index", choices=["auto", "flat", "hnsw", "ivf"], default=None,
                   help="the collection's vector_index (default: the library's default, auto)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-skip-row", action="store_true", help="leave out the on_duplicate=skip row (issue 15)")
    p.add_argument("--only-skip-row", action="store_true", help="run only the on_duplicate=skip row (issue 15)")
    p.add_argument("--only-ingest", action="store_true",
                   help="only the write rows: the build's upsert row and the skip rows (no open/query children)")
    p.add_argument("--dup-rates", default=None,
                   help="skip rows at these duplicate rates, e.g. 0.95,0.05 (default: a corpus of min(docs, 50k) texts)")
    p.add_argument("--floor-docs", type=int, default=300_000,
                   help="rows for the SQLite-alone row, run before the build (0: leave it out)")
    p.add_argument("--numba-threads", default=None, help="skip rows with these numba thread counts, e.g. 1,2")
    args = p.parse_args(argv)
    if args.smoke:
        args.docs, args.batch, args.queries = 2_000, 500, 20
    rep = Reporter("bench_index", "psutil")
    root = args.dir or tempfile.mkdtemp(prefix="simsearch-bench-")
    os.makedirs(root, exist_ok=True)  # a --dir that does not exist yet (the SQLite-alone row writes there first)
    path = os.path.join(root, "idx")
    rep.add(metric="load average at start", value=round(os.getloadavg()[0], 2))
    if args.only_skip_row:
        _skip_rows(rep, os.path.join(root, "skip-idx"), args)
        rep.add(metric="load average at end", value=round(os.getloadavg()[0], 2))
        print()
        print(rep.table(["metric", "docs", "docs_per_s", "value", "skipped"]))
        return
    if not (args.reuse and os.path.exists(path)):
        shutil.rmtree(path, ignore_errors=True)
        texts = make_corpus(min(args.docs, 50_000), 200, seed=0)
        floor = sqlite_floor(root, args, texts) if args.floor_docs else None
        res = build(path, args, texts)
        del texts
        rep.add(metric="upsert", docs=args.docs, batch=args.batch, docs_per_s=res["docs_per_s"],
                seconds=res["merge_tail_s"])
        if floor is not None:
            rep.add(metric="SQLite alone, same layout and rows (value: upsert / this)",
                    docs=min(args.docs, args.floor_docs), batch=args.batch, docs_per_s=round(floor, 1),
                    value=round(res["docs_per_s"] / floor, 3))
        if res["ann_tail_s"] is not None:  # build per million: ingest (the builder runs during it) + the tail after it
            rep.add(metric="ANN build after ingest (wait_indexed)", docs=args.docs, seconds=res["ann_tail_s"],
                    value=round((res["ingest_s"] + res["merge_tail_s"] + res["ann_tail_s"]) * 1e6 / args.docs, 1))
    if args.only_ingest:
        _finish(rep, root, args, ["metric", "docs", "docs_per_s", "seconds", "value", "skipped"])
        return
    rep.add(metric="bytes on disk per doc", value=round(dir_bytes(path) / args.docs, 1))
    base = child(path, "baseline", args)
    rep.add(metric="simsearch imported from " + os.path.dirname(os.path.dirname(base.pop("simsearch_from"))))
    report_open(rep, "clean close", child(path, "open", args), base, args.docs, args)
    child(path, "crash", args)
    report_open(rep, "after kill -9", child(path, "open", args), base, args.docs, args)
    _finish(rep, root, args, ["metric", "docs", "docs_per_s", "seconds", "value", "p50_ms", "p99_ms", "qps"])


def _finish(rep, root, args, columns) -> None:
    """The skip rows (unless --no-skip-row), the closing load average, cleanup and the table."""
    if not args.no_skip_row:
        _skip_rows(rep, os.path.join(root, "skip-idx"), args)
    rep.add(metric="load average at end", value=round(os.getloadavg()[0], 2))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(rep.table(columns))


if __name__ == "__main__":
    main()
