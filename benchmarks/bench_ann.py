"""A collection's vector index (issue 14) and filtered queries (issue 15 section 3), in process.

Rows (one JSON line each, then a table):

* ``first_query``: the first kNN query right after the bulk load (no query builds an ANN
  structure: segments not indexed yet are scanned exactly), with the vectors indexed / pending.
* ``build``: ``wait_indexed`` after the bulk load (the per-segment structures are built by a
  background thread during and after it, merges included); ``s_per_million`` is (ingest + wait)
  per million vectors, an upper bound of the build cost.
* ``reopen``: Index open to the first answered kNN query (``seconds``) and to every segment's
  structure reopened, checksum-verified, memory-mapped (``indexed_s``), after a clean close and
  after a kill -9 (a child process writes 100 documents and kills itself).
* ``knn``: single-query latency (p50 / p99 over ``--queries`` queries, ms) of ``search`` on the
  approximate index, of ``exact=True`` (the flat scan, unchanged from before), and with a filter
  that keeps 10 % of the documents (an indexed field); recall@10 of each approximate row against
  ``exact=True`` with the same filter. ``ratio`` = filtered p99 / unfiltered p99.
* ``block``: ``AnnBlock`` alone on ``--block-n`` vectors, every metric x {hnsw, ivf}: build
  seconds, single-query p50 / p99 and recall@10 against the exact scan. L1 runs on faiss's
  METRIC_L1 in both kinds (every kind re-scores its k results exactly), so the L1 rows are the
  measurement of that choice.
* ``merge`` (``--merge-n N``, 0 to skip): four segments of N / 4 vectors, each with its HNSW, 2 %
  of the first deleted, then merged: the time to the merged segment's own structure when it
  grows from its largest input's (the default) and when it is built from scratch (growing turned
  off, in a second collection on the same data), the vectors faiss was given, and recall@10 of
  the merged structure against ``exact=True``.
* ``near``: near-duplicate query latency on ``--near-n`` documents with texts, unfiltered and with
  the 10 % filter (LSH candidates, then the filter's bitmap).

Data: ``--n`` x ``--dim`` float32 vectors of low intrinsic dimension (16 latent factors through a
fixed random map, plus noise); queries are noisy copies of held-out points. Seeds are fixed; one
warm-up pass precedes every timed one; the filtered and unfiltered queries of a row pair run
interleaved, query by query, so both see the same load. ``load`` is the 1-minute load average
when a row is written (the machine is shared). ``python benchmarks/bench_ann.py --smoke`` runs a tiny version.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter

from simsearch import Document, Index, distance
from simsearch.index import _ann as _ann_mod
from simsearch.index._ann import AnnBlock, AnnParams

WORDS = [f"w{i}" for i in range(5000)]


def make_data(n: int, nq: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, dim)).astype(np.float32) / 4
    pts = rng.standard_normal((n + nq, 16)).astype(np.float32) @ w
    pts += 0.3 * rng.standard_normal(pts.shape).astype(np.float32)
    return np.ascontiguousarray(pts[:n]), np.ascontiguousarray(pts[n:] + 0.1 * rng.standard_normal((nq, dim)).astype(np.float32))


def load() -> float:
    return round(os.getloadavg()[0], 2)


def latencies(fn, items) -> np.ndarray:
    for it in items[: max(1, len(items) // 10)]:
        fn(it)  # warm-up
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append(time.perf_counter() - t)
    return np.asarray(out) * 1e3


def paired_latencies(fns: dict, items) -> dict:
    """Per-call latencies (ms) of every function in ``fns`` on each item, the calls interleaved
    (item by item, the order rotating) so that a change of load on the shared machine hits every
    row alike: the filtered and unfiltered rows are paired in one run."""
    names = list(fns)
    for it in items[: max(1, len(items) // 10)]:
        for name in names:
            fns[name](it)  # warm-up
    out = {name: [] for name in names}
    for i, it in enumerate(items):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            fns[name](it)
            out[name].append(time.perf_counter() - t)
    return {name: np.asarray(v) * 1e3 for name, v in out.items()}


def pct(ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def recall(got, truth) -> float:
    return float(np.mean([len({n.id for n in a} & {n.id for n in b}) / max(1, len(b)) for a, b in zip(got, truth)]))


def bench_knn(rep: Reporter, args, path: str) -> None:
    X, Q = make_data(args.n, args.queries, args.dim, 0)
    ix = Index(path)
    c = ix.create_collection("v", dim=args.dim, metric=args.metric, vector_index=args.kind,
                             indexed_fields=["bucket"])
    t = time.perf_counter()
    step = 10_000
    for lo in range(0, args.n, step):
        c.upsert([Document(id=f"v{i}", metadata={"bucket": i % 10}, vector=X[i]) for i in range(lo, min(args.n, lo + step))])
    ingest = time.perf_counter() - t
    t = time.perf_counter()
    first = c.search_batch(vectors=Q[:1], k=10, with_stats=True)
    rep.add(row="first_query", kind=first.stats.vector_index, path=first.stats.path, n=args.n,
            seconds=round(time.perf_counter() - t, 3), load=load(), **{k: c.stats()[k] for k in ('vectors_indexed', 'vectors_pending')})
    t = time.perf_counter()
    ok = c.wait_indexed()
    wait = time.perf_counter() - t
    st = c.stats()
    rep.add(row="build", kind=args.kind, n=args.n, dim=args.dim, seconds=round(wait, 2),
            s_per_million=round((ingest + wait) * 1e6 / args.n, 1), ingest_s=round(ingest, 1), indexed=ok,
            vectors_indexed=st["vectors_indexed"], vectors_pending=st["vectors_pending"], segments=st["segments"],
            load=load())
    qs = list(Q)
    flt = {"bucket": 3}  # keeps 10 %
    res = {}
    runs = {"ann": {}, "exact": {"exact": True}, "ann_filtered": {"filter": flt},
            "exact_filtered": {"filter": flt, "exact": True}}
    for group, items in ((("ann", "ann_filtered"), qs), (("exact", "exact_filtered"), qs[: args.exact_queries])):
        ms = paired_latencies({label: (lambda q, kw=runs[label]: c.search(q, k=10, **kw)) for label in group}, items)
        for label in group:
            stats = c.search_batch(vectors=[qs[0]], k=10, with_stats=True, **runs[label]).stats
            res[label] = (ms[label], stats)
    res = {label: res[label] for label in runs}
    truth = c.search_batch(vectors=Q, k=10, exact=True)
    truth_f = c.search_batch(vectors=Q, k=10, exact=True, filter=flt)
    got = c.search_batch(vectors=Q, k=10)
    got_f = c.search_batch(vectors=Q, k=10, filter=flt)
    for label, (ms, stats) in res.items():
        row = {"row": "knn", "query": label, "path": stats.path, "kind": stats.vector_index, "n": args.n,
               **pct(ms), "load": load()}
        if label == "ann":
            row["recall@10"] = round(recall(got, truth), 4)
        if label == "ann_filtered":
            row["recall@10"] = round(recall(got_f, truth_f), 4)
            row["ratio"] = round(row["p99_ms"] / max(pct(res["ann"][0])["p99_ms"], 1e-9), 2)
        rep.add(**row)
    ix.close()
    reopen(rep, args, path, Q, "clean close")
    subprocess.run([sys.executable, "-c", KILLED, path, str(args.dim)], check=False)
    reopen(rep, args, path, Q, "kill -9")


KILLED = """
import os, signal, sys, numpy as np
from simsearch import Document, Index
ix = Index(sys.argv[1])
c = ix.get_collection("v")
dim = int(sys.argv[2])
c.upsert([Document(id=f"k{i}", metadata={"bucket": 0}, vector=np.full(dim, i, np.float32)) for i in range(100)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def reopen(rep: Reporter, args, path: str, Q: np.ndarray, label: str) -> None:
    """Index open to the first answered kNN query, then to every structure reopened (verified)."""
    t = time.perf_counter()
    ix = Index(path)
    c = ix.get_collection("v")
    r = c.search_batch(vectors=Q[:1], k=10, with_stats=True)
    first = time.perf_counter() - t
    c.wait_indexed()
    r2 = c.search_batch(vectors=Q[:1], k=10, with_stats=True)
    rep.add(row="reopen", query=label, kind=r2.stats.vector_index, path=f"{r.stats.path}->{r2.stats.path}", n=args.n,
            seconds=round(first, 3), indexed_s=round(time.perf_counter() - t, 2), load=load())
    ix.close()


def bench_block(rep: Reporter, args) -> None:
    X, Q = make_data(args.block_n, args.queries, args.dim, 2)
    rows = np.arange(len(X), dtype=np.int64)
    for metric in ("euclidean", "cosine", "manhattan"):
        _, truth = distance.knn(X, Q, 10, metric)
        for kind in ("hnsw", "ivf"):
            t = time.perf_counter()
            block = AnnBlock.build(rows, X, metric=metric, kind=kind, params=AnnParams())
            build = time.perf_counter() - t
            ms = latencies(lambda q, b=block: b.search(q[None, :], 10), list(Q))
            got = block.search(Q, 10).rows
            rec = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]))
            rep.add(row="block", query=metric, kind=kind, n=len(X), seconds=round(build, 2),
                    s_per_million=round(build * 1e6 / len(X), 1), **pct(ms), **{"recall@10": round(rec, 4)},
                    load=load())


def bench_near(rep: Reporter, args, path: str) -> None:
    rng = np.random.default_rng(1)
    n = args.near_n
    ix = Index(path)
    c = ix.create_collection("t", indexed_fields=["bucket"])
    base = [" ".join(rng.choice(WORDS, 40)) for _ in range(n // 2)]
    docs = []
    for i in range(n):
        words = base[i // 2].split()
        if i % 2:
            words[int(rng.integers(0, 40))] = "changed"
        docs.append(Document(id=f"t{i}", text=" ".join(words), metadata={"bucket": i % 10}))
    for lo in range(0, n, 10_000):
        c.upsert(docs[lo:lo + 10_000])
    ids = [f"t{int(i)}" for i in rng.integers(0, n, args.queries)]
    res = paired_latencies({label: (lambda q, kw=kw: c.near_duplicates(id=q, **kw))
                            for label, kw in (("near", {}), ("near_filtered", {"filter": {"bucket": 3}}))}, ids)
    base_p99 = pct(res["near"])["p99_ms"]
    for label, ms in res.items():
        row = {"row": "near", "query": label, "n": n, **pct(ms), "load": load()}
        if label == "near_filtered":
            row["ratio"] = round(row["p99_ms"] / max(base_p99, 1e-9), 2)
        rep.add(**row)
    ix.close()


def bench_merge(rep: Reporter, args, path: str) -> None:
    from simsearch.index import _engine, _vecsearch
    n = args.merge_n
    X, Q = make_data(n, 200, args.dim, 3)
    quarter = n // 4
    saved_rows = _engine.MEMTABLE_ROWS
    real_grown = _vecsearch.CollectionVectors._grown
    added = []
    real_add = _ann_mod._add_batches
    _ann_mod._add_batches = lambda index, x, *a, **kw: (added.append(len(x)), real_add(index, x, *a, **kw))
    _engine.MEMTABLE_ROWS = quarter + 1  # one segment per quarter, flushed below
    try:
        for mode in ("grown", "scratch"):
            _vecsearch.CollectionVectors._grown = real_grown if mode == "grown" else (lambda self, *a: None)
            ix = Index(os.path.join(path, mode))
            c = ix.create_collection("v", dim=args.dim, metric=args.metric, vector_index="hnsw")
            c._engine.stop_merger()
            for lo in range(0, 4 * quarter, quarter):
                c.upsert([Document(id=f"v{i}", vector=X[i]) for i in range(lo, lo + quarter)])
                with c._lock.write():
                    c._engine.flush()
                c._ann.wait_indexed()  # (the collection's wait_indexed would run the merge first)
            c.delete([f"v{i}" for i in range(0, quarter, 50)])
            added.clear()
            t = time.perf_counter()
            c._engine.wait_merges()
            merged_s = time.perf_counter() - t
            c.wait_indexed()
            seconds = time.perf_counter() - t
            got = c.search_batch(vectors=Q, k=10)
            truth = c.search_batch(vectors=Q, k=10, exact=True)
            rep.add(row="merge", query=mode, kind="hnsw", n=4 * quarter, seconds=round(seconds, 2),
                    merge_s=round(merged_s, 2), vectors_added=sum(added), segments=len(c._engine.segments),
                    **{"recall@10": round(recall(got, truth), 4)}, load=load())
            ix.close()
    finally:
        _engine.MEMTABLE_ROWS = saved_rows
        _vecsearch.CollectionVectors._grown = real_grown
        _ann_mod._add_batches = real_add


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-queries", type=int, default=50)
    ap.add_argument("--near-n", type=int, default=200_000)
    ap.add_argument("--metric", default="euclidean")
    ap.add_argument("--kind", default="auto")
    ap.add_argument("--block-n", type=int, default=100_000)
    ap.add_argument("--merge-n", type=int, default=200_000, help="the merge row's vectors (0: skip it)")
    ap.add_argument("--skip-near", action="store_true")
    ap.add_argument("--skip-knn", action="store_true")
    ap.add_argument("--skip-block", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.dim, args.queries, args.exact_queries, args.near_n, args.block_n = 25_000, 32, 50, 10, 4000, 5000
        args.merge_n = 8000
    rep = Reporter("bench_ann", "faiss-cpu")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_knn:
            bench_knn(rep, args, os.path.join(tmp, "knn"))
        if not args.skip_block:
            bench_block(rep, args)
        if args.merge_n:
            bench_merge(rep, args, os.path.join(tmp, "merge"))
        if not args.skip_near:
            bench_near(rep, args, os.path.join(tmp, "near"))
    print()
    print(rep.table(["row", "query", "path", "kind", "n", "seconds", "s_per_million", "indexed_s", "vectors_indexed",
                     "vectors_pending", "merge_s", "vectors_added", "p50_ms", "p99_ms", "recall@10", "ratio", "load"]))


if __name__ == "__main__":
    main()
