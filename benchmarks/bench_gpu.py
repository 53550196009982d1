"""The GPU targets, measured in one run on one box: the GPU backend against numba on all its cores.

Three measurements (issue 12's targets on one H200 in parentheses):

* ``minhash``: text -> signatures for 200-word documents at 128 permutations, on a generated corpus
  of ``--gb`` GB of text (>= 2), host-to-device copies included, GPU synchronised before the clock
  stops. GB/s of UTF-8 text, and the ratio to numba on ``os.cpu_count()`` threads (>= 10 GB/s,
  >= 10x numba). The first ``--check-docs`` signatures are compared bit for bit.
* ``dedup``: ``simsearch dedup`` end to end, JSONL shards in, outputs written, with planted near-
  duplicates whose exact Jaccard is known (``bench_dedup``'s corpus), ``--backend cupy`` against
  ``--backend numba``: TB of text per GPU-hour, recall and precision over pairs at the threshold
  (>= 5 TB/GPU-hour, recall >= 0.99, precision 1.0).
* ``knn``: exact kNN on ``--n`` x ``--dim`` with ``--queries`` queries, k = ``--k``, for L2, cosine and
  L1: the GPU backend against faiss ``IndexFlat`` (faiss-gpu when the installed faiss has GPU
  support, else faiss-cpu, and the row says which) and numba, plus PyTorch (``cdist`` + ``topk`` on
  the GPU) as a second reference when it is installed. Recall@k of every method against numba's
  exact answer (within 1.2x of faiss-gpu for L2/cosine, ahead of it for L1).

``--smoke`` runs tiny sizes; under ``NUMBA_ENABLE_CUDASIM=1`` it exercises every code path on the
CUDA simulator (numbers meaningless). Prints one JSON line per result and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dedup as BD  # noqa: E402
from _common import Reporter  # noqa: E402

import simsearch  # noqa: E402
from simsearch.backends import get_backend  # noqa: E402


def _sync_for(backend_name: str):
    if backend_name != "cupy":
        return None
    from simsearch.backends import _device

    return None if _device.SIM else _device.xp.cuda.runtime.deviceSynchronize


def _timed(fn, sync, repeats: int) -> float:
    fn()  # warm-up: compilation, table upload, memory pool
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# -- text -> signatures ---------------------------------------------------------------------


def text_corpus(gb: float, seed: int) -> tuple[list[str], int]:
    """~``gb`` GB of 200-word documents (Zipf words from a 50k vocabulary): up to 50,000 distinct
    documents, repeated to the size (a throughput test: the kernels see every byte)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(50_000)], dtype=object)
    n = max(1, int(gb * 1e9 / 1250))  # ~1,250 bytes per document
    base = []
    for _ in range(min(n, 50_000)):
        ids = np.minimum(rng.zipf(1.2, max(1, int(rng.normal(200, 20)))) - 1, len(vocab) - 1)
        base.append(" ".join(vocab[ids]).capitalize() + ".")
    docs = [base[i % len(base)] for i in range(n)]
    return docs, sum(map(len, docs))  # ASCII: characters are bytes


def bench_minhash(rep: Reporter, args) -> None:
    docs, nbytes = text_corpus(args.gb, args.seed)
    got = {}
    for name in ("cupy", "numba"):
        be = get_backend(name)
        t = _timed(lambda: simsearch.minhash(docs, num_perm=128, backend=be), _sync_for(name), args.repeats)
        got[name] = t
        rep.add(bench="minhash", backend=name, device=be.device, docs=len(docs), gb=round(nbytes / 1e9, 3),
                seconds=round(t, 4), gb_per_s=round(nbytes / 1e9 / t, 3), docs_per_s=round(len(docs) / t))
    check = docs[: args.check_docs]
    same = np.array_equal(simsearch.minhash(check, backend="cupy"), simsearch.minhash(check, backend="numba"))
    rep.add(bench="minhash", backend="cupy/numba", ratio=round(got["numba"] / got["cupy"], 2), bit_equal=bool(same))


# -- dedup end to end -----------------------------------------------------------------------


def bench_dedup(rep: Reporter, args) -> None:
    words = args.dedup_words
    per_doc = 1350 * words / 200  # bytes of JSONL per ~200-word document of bench_dedup's vocabulary
    n = max(50, int(args.dedup_gb * 1e9 / per_doc))
    docs, groups = BD.make_corpus(n, words, 0.2, args.seed)
    truth = BD.ground_truth(docs, groups, args.threshold)
    vocab = BD.make_vocab(np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        src = os.path.join(work, "corpus")
        size = BD.write_jsonl(src, docs, vocab, shards=args.shards)
        for name in ("cupy", "numba"):
            out = os.path.join(work, f"out-{name}")
            exe = os.path.join(os.path.dirname(sys.executable), "simsearch")
            cmd = [exe, "dedup", src, "-o", out, "--id-field", "id", "--threshold", str(args.threshold),
                   "--backend", name, "--quiet", "--overwrite"]
            if not os.path.exists(exe):
                cmd = [sys.executable, "-m", "simsearch"] + cmd[1:]
            m = BD.run_measured(cmd)
            import pyarrow.parquet as pq

            pairs = pq.read_table(os.path.join(out, "pairs.parquet")).to_pydict()
            found = np.stack([pairs["index_a"], pairs["index_b"]], axis=1) if pairs["index_a"] else np.empty((0, 2))
            recall, precision = BD.score(found, truth)
            summary = json.load(open(os.path.join(out, "summary.json")))
            rep.add(bench="dedup", backend=name, device=summary.get("device"), docs=n, gb=round(size / 1e9, 3),
                    seconds=round(m["wall"], 2), tb_per_hour=round(size / 1e12 / m["wall"] * 3600, 3),
                    recall=round(recall, 5), precision=round(precision, 5), peak_mb=round(m["peak_tree"] / 2**20))


# -- kNN ------------------------------------------------------------------------------------


def _faiss_flat(base, metric):
    import faiss

    from simsearch.distance import unit_rows

    mt = {"euclidean": faiss.METRIC_L2, "manhattan": faiss.METRIC_L1}.get(metric, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexFlat(base.shape[1], mt)
    where = "faiss-cpu"
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        try:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            where = "faiss-gpu"
        except RuntimeError:
            pass
    index.add(unit_rows(base) if metric == "cosine" else base)
    return index, where


def _torch_knn(base, queries, k, metric):
    import torch

    b = torch.from_numpy(base).cuda()
    q = torch.from_numpy(queries).cuda()
    if metric == "cosine":
        b, q = torch.nn.functional.normalize(b, dim=1), torch.nn.functional.normalize(q, dim=1)
    p = 1.0 if metric == "manhattan" else 2.0
    out = []
    for lo in range(0, len(q), 1024):
        d = torch.cdist(q[lo : lo + 1024], b, p=p)
        out.append(torch.topk(d, k, largest=False).indices)
    torch.cuda.synchronize()
    return torch.cat(out).cpu().numpy()


def bench_knn(rep: Reporter, args) -> None:
    rng = np.random.default_rng(args.seed)
    base = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    k = args.k
    for metric in ("euclidean", "cosine", "manhattan"):
        want = simsearch.distance.knn(base, queries, k, metric, backend="numba")[1]

        def recall(idx):
            return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, want)]))

        rows = {}
        for name in ("cupy", "numba"):
            be = get_backend(name)
            t = _timed(lambda: simsearch.distance.knn(base, queries, k, metric, backend=be), _sync_for(name),
                       args.repeats)
            idx = simsearch.distance.knn(base, queries, k, metric, backend=be)[1]
            rows[name] = t
            rep.add(bench="knn", metric=metric, method=f"simsearch-{name}", n=args.n, queries=args.queries, k=k,
                    seconds=round(t, 4), qps=round(args.queries / t), recall=round(recall(idx), 4))
        try:
            index, where = _faiss_flat(base, metric)
            qq = simsearch.distance.unit_rows(queries) if metric == "cosine" else queries
            t = _timed(lambda: index.search(qq, k), None, args.repeats)
            rows[where] = t
            rep.add(bench="knn", metric=metric, method=where, n=args.n, queries=args.queries, k=k,
                    seconds=round(t, 4), qps=round(args.queries / t), recall=round(recall(index.search(qq, k)[1]), 4))
            rep.add(bench="knn", metric=metric, method=f"cupy vs {where}", ratio=round(t / rows["cupy"], 2))
        except ImportError:
            rep.add(bench="knn", metric=metric, method="faiss", note="faiss not installed")
        try:
            import torch

            if torch.cuda.is_available():
                t = _timed(lambda: _torch_knn(base, queries, k, metric), None, args.repeats)
                rep.add(bench="knn", metric=metric, method="torch-cuda cdist+topk", n=args.n, queries=args.queries,
                        k=k, seconds=round(t, 4), qps=round(args.queries / t),
                        recall=round(recall(_torch_knn(base, queries, k, metric)), 4))
                rep.add(bench="knn", metric=metric, method="cupy vs torch", ratio=round(t / rows["cupy"], 2))
        except ImportError:
            pass
        rep.add(bench="knn", metric=metric, method="cupy vs numba", ratio=round(rows["numba"] / rows["cupy"], 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["minhash", "dedup", "knn"], action="append")
    p.add_argument("--gb", type=float, default=2.0, help="GB of text for the MinHash run")
    p.add_argument("--check-docs", type=int, default=10_000)
    p.add_argument("--dedup-gb", type=float, default=2.0, help="GB of JSONL for the dedup run")
    p.add_argument("--dedup-words", type=int, default=200, help="words per document of the dedup corpus")
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the dedup corpus goes (default: a temp dir)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (runs on the CUDA simulator too)")
    args = p.parse_args(argv)
    if args.smoke:
        args.gb, args.check_docs, args.dedup_gb, args.dedup_words, args.shards = 0.00005, 20, 0.00001, 30, 2
        args.n, args.queries, args.dim, args.repeats = 300, 7, 8, 1
    rep = Reporter("bench_gpu", "cupy-cuda13x", "cupy-cuda12x", "numba-cuda", "faiss-cpu", "faiss-gpu", "torch")
    for part in args.only or ["minhash", "dedup", "knn"]:
        {"minhash": bench_minhash, "dedup": bench_dedup, "knn": bench_knn}[part](rep, args)
    print()
    print(rep.table(["bench", "backend", "method", "metric", "docs", "gb", "seconds", "gb_per_s", "tb_per_hour",
                     "qps", "recall", "precision", "ratio", "bit_equal"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
