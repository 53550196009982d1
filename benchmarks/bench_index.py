"""Durable index: batched upsert throughput, reopen time, query latency, bytes on disk and RSS.

Documents are ~200 words with a 128-d float32 vector, upserted in batches into an on-disk
``simsearch.Index`` (SQLite WAL, synchronous=FULL). After closing, the index is reopened twice:
from the stored rows (the cache written at close moved aside) and from that cache; then
single-query latencies are measured in process. ``--smoke`` runs a tiny version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter  # noqa: E402
from bench_minhash import make_corpus  # noqa: E402

from simsearch.index import Document, Index  # noqa: E402


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover
        return 0


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def _skip_upsert_row(rep, idx, args, texts) -> None:
    """Issue 15: on_duplicate="skip" against a plain upsert of the same documents, batches and
    vectors into two fresh collections of this index, batch for batch in alternation (after one
    warm-up batch of each), so both see the same machine state; target ratio >= 0.7."""
    plain = idx.create_collection("bench-plain", dim=args.dim, metric="cosine", threshold=0.8)
    skip = idx.create_collection("bench-skip", dim=args.dim, metric="cosine", threshold=0.8)
    warm = [Document(id=f"warm-{i}", text=texts[-1 - i], vector=np.ones(args.dim, np.float32)) for i in range(50)]
    plain.upsert(warm)
    skip.upsert(warm, on_duplicate="skip")
    rng = np.random.default_rng(0)
    seconds = {"plain": 0.0, "skip": 0.0}
    skipped = 0
    for start in range(0, args.docs, args.batch):
        n = min(args.batch, args.docs - start)
        vecs = rng.normal(size=(n, args.dim)).astype(np.float32)
        docs = [Document(id=f"doc-{start + i}", text=texts[(start + i) % len(texts)], metadata={"n": start + i},
                         vector=vecs[i]) for i in range(n)]
        t = time.perf_counter()
        plain.upsert(docs)
        seconds["plain"] += time.perf_counter() - t
        t = time.perf_counter()
        skipped += skip.upsert(docs, on_duplicate="skip").skipped
        seconds["skip"] += time.perf_counter() - t
    ratio = seconds["plain"] / seconds["skip"]
    rep.add(metric="upsert (plain, paired with skip)", docs=args.docs, batch=args.batch,
            docs_per_s=round(args.docs / seconds["plain"], 1))
    rep.add(metric="upsert on_duplicate=skip", docs=args.docs, batch=args.batch,
            docs_per_s=round(args.docs / seconds["skip"], 1), value=round(ratio, 3), ratio_vs_plain_upsert=round(ratio, 3),
            skipped=skipped)
    idx.drop_collection("bench-plain")
    idx.drop_collection("bench-skip")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--dir", default=None, help="where to build the index (default: a temp dir)")
    p.add_argument("--durability", choices=["full", "normal"], default="full")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-skip-row", action="store_true", help="leave out the on_duplicate=skip row (issue 15)")
    p.add_argument("--only-skip-row", action="store_true", help="run only the on_duplicate=skip row (issue 15)")
    args = p.parse_args(argv)
    if args.smoke:
        args.docs, args.batch, args.queries = 2_000, 500, 20
    rep = Reporter("bench_index", "psutil")
    root = args.dir or tempfile.mkdtemp(prefix="simsearch-bench-")
    path = os.path.join(root, "idx")
    shutil.rmtree(path, ignore_errors=True)
    texts = make_corpus(min(args.docs, 50_000), 200, seed=0)
    rng = np.random.default_rng(0)
    rss0 = rss_bytes()

    if args.only_skip_row:
        with Index(path, durability=args.durability) as idx:
            _skip_upsert_row(rep, idx, args, texts)
        print()
        print(rep.table(["metric", "docs", "batch", "docs_per_s", "value", "skipped"]))
        return
    idx = Index(path, durability=args.durability)
    coll = idx.create_collection("bench", dim=args.dim, metric="cosine", threshold=0.8)
    upsert_time = 0.0
    for start in range(0, args.docs, args.batch):
        n = min(args.batch, args.docs - start)
        vecs = rng.normal(size=(n, args.dim)).astype(np.float32)
        docs = [
            Document(id=f"doc-{start + i}", text=texts[(start + i) % len(texts)], metadata={"n": start + i}, vector=vecs[i])
            for i in range(n)
        ]
        t = time.perf_counter()
        coll.upsert(docs)
        upsert_time += time.perf_counter() - t
    rep.add(metric="upsert", docs=args.docs, batch=args.batch, docs_per_s=round(args.docs / upsert_time, 1))
    rss_built = rss_bytes() - rss0
    idx.close()
    disk = dir_bytes(path)
    rep.add(metric="bytes on disk per doc", value=round(disk / args.docs, 1))

    # without the cache written at close: every row is read and its checksum verified
    shutil.move(os.path.join(path, "cache"), os.path.join(root, "cache-aside"))
    t = time.perf_counter()
    idx = Index(path)
    open_s = time.perf_counter() - t
    rep.add(metric="open (from rows)", docs=args.docs, seconds=round(open_s, 3),
            extrapolated_1M_s=round(open_s * 1_000_000 / args.docs, 2))
    idx.close()  # writes the cache again; put the first one back so the next open reads that
    shutil.rmtree(os.path.join(path, "cache"), ignore_errors=True)
    shutil.move(os.path.join(root, "cache-aside"), os.path.join(path, "cache"))
    t = time.perf_counter()
    idx = Index(path)
    coll = idx.get_collection("bench")
    open_s = time.perf_counter() - t
    rep.add(metric="open (from cache)", docs=args.docs, seconds=round(open_s, 3),
            extrapolated_1M_s=round(open_s * 1_000_000 / args.docs, 2))
    rep.add(metric="RSS per doc (after build)", value=round(rss_built / args.docs, 1))

    qtexts = [texts[int(i)] for i in rng.integers(0, len(texts), args.queries)]
    lat = []
    for q in qtexts:
        t = time.perf_counter()
        coll.near_duplicates(q, k=10)
        lat.append(time.perf_counter() - t)
    rep.add(metric="near_duplicates latency", p50_ms=round(percentile(lat, 50) * 1e3, 3),
            p99_ms=round(percentile(lat, 99) * 1e3, 3), qps=round(1 / statistics.mean(lat), 1))
    lat = []
    for q in rng.normal(size=(args.queries, args.dim)).astype(np.float32):
        t = time.perf_counter()
        coll.search(q, k=10)
        lat.append(time.perf_counter() - t)
    rep.add(metric="search (kNN) latency", p50_ms=round(percentile(lat, 50) * 1e3, 3),
            p99_ms=round(percentile(lat, 99) * 1e3, 3), qps=round(1 / statistics.mean(lat), 1))
    if not args.no_skip_row:
        _skip_upsert_row(rep, idx, args, texts)
    idx.close()
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(rep.table(["metric", "docs", "docs_per_s", "seconds", "extrapolated_1M_s", "value", "p50_ms", "p99_ms", "qps"]))


if __name__ == "__main__":
    main()
