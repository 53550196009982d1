"""Exact and approximate kNN throughput: simsearch against faiss on the same data.

Rows (queries per second, one JSON line each, then a table):

* ``flat``: exact top-k for L2, cosine and L1. simsearch ``distance.knn(..., backend="numba")``
  (validation, kernel and exact re-scoring of the k results all timed) against faiss
  ``IndexFlatL2`` / ``IndexFlatIP`` on unit vectors / ``IndexFlat(METRIC_L1)`` built beforehand
  (only ``search`` timed; query normalisation included for cosine). The two are timed in
  alternation, so a noisy shared machine hits both alike; ``ratio`` = simsearch QPS / faiss QPS
  from the medians, ``ratio_best`` from the fastest run of each (the least disturbed), and
  ``load`` is the 1-minute load average when the row was written.
* ``gpu``: where CuPy sees a device, the same on ``--gpu-n`` x dim with ``--gpu-queries``:
  simsearch ``backend="cupy"`` against faiss-gpu when installed, else a plain CuPy brute force
  (one GEMM + ``argsort`` per block). The GPU is synchronised before each clock read.
* ``ivf`` / ``hnsw``: ``VectorIndex`` recall@k against ``exact=True`` and QPS, swept over
  ``nprobe`` / ``ef_search`` (build time reported separately).

Data: ``--n`` x ``--dim`` float32 vectors of low intrinsic dimension (16 latent Gaussian factors
through a fixed random map, plus noise), like embeddings; queries are noisy copies of held-out
points. Seeds are fixed. ``python benchmarks/bench_knn.py --smoke`` runs a tiny version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter  # noqa: E402

from simsearch import VectorIndex, distance  # noqa: E402
from simsearch.backends import available_backends  # noqa: E402
from simsearch.backends._numpy_distance import unit_rows  # noqa: E402

METRICS = [("L2", "sqeuclidean"), ("cosine", "cosine"), ("L1", "manhattan")]


def make_data(n: int, nq: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, dim)).astype(np.float32) / 4
    pts = rng.standard_normal((n + nq, 16)).astype(np.float32) @ w
    pts += 0.3 * rng.standard_normal(pts.shape).astype(np.float32)
    base, held = pts[:n], pts[n:]
    queries = held + 0.1 * rng.standard_normal(held.shape).astype(np.float32)
    return np.ascontiguousarray(base), np.ascontiguousarray(queries)


def alternate(fns: dict[str, callable], repeats: int, warmup: int = 1, sync=None, best=None) -> dict[str, float]:
    """Median seconds of each function, timed in alternation (a round runs each once); ``best``,
    when given, receives the minimum of each (the least disturbed run on a shared machine)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    if best is not None:
        best.update({name: min(ts) for name, ts in times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def faiss_flat(base: np.ndarray, metric: str, gpu_res=None):
    import faiss

    mt = {"sqeuclidean": faiss.METRIC_L2, "cosine": faiss.METRIC_INNER_PRODUCT, "manhattan": faiss.METRIC_L1}[metric]
    index = faiss.IndexFlat(base.shape[1], mt)
    if gpu_res is not None:
        index = faiss.index_cpu_to_gpu(gpu_res, 0, index)
    index.add(unit_rows(base) if metric == "cosine" else base)
    return index


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(got, want)]))


def bench_flat(rep: Reporter, base, queries, args) -> None:
    import faiss

    nq = len(queries)
    for label, metric in METRICS:
        index = faiss_flat(base, metric)

        def ours():
            return distance.knn(base, queries, args.k, metric, backend="numba")

        def theirs():
            return index.search(unit_rows(queries) if metric == "cosine" else queries, args.k)

        best: dict[str, float] = {}
        med = alternate({"ours": ours, "faiss": theirs}, args.repeats, best=best)
        _, ids = ours()
        _, fids = theirs()
        agree = recall(ids, fids)
        rep.add(part="flat", metric=label, method="simsearch-numba", n=len(base), nq=nq, k=args.k,
                seconds=round(med["ours"], 4), qps=round(nq / med["ours"], 1), best_s=round(best["ours"], 4),
                agree_with_faiss=round(agree, 4))
        rep.add(part="flat", metric=label, method=f"faiss-{faiss.__version__} IndexFlat", n=len(base), nq=nq,
                k=args.k, seconds=round(med["faiss"], 4), qps=round(nq / med["faiss"], 1), best_s=round(best["faiss"], 4))
        rep.add(part="flat", metric=label, method="ratio simsearch/faiss", ratio=round(med["faiss"] / med["ours"], 3),
                ratio_best=round(best["faiss"] / best["ours"], 3), load=round(os.getloadavg()[0], 2))
    if args.numpy:
        sub = queries[: max(1, nq // 10)]
        for label, metric in METRICS:
            t = alternate({"np": lambda: distance.knn(base, sub, args.k, metric, backend="numpy")}, 1)["np"]
            rep.add(part="flat", metric=label, method="simsearch-numpy (reference)", n=len(base), nq=len(sub),
                    k=args.k, seconds=round(t, 4), qps=round(len(sub) / t, 1))


def bench_gpu(rep: Reporter, args) -> None:
    import cupy as cp

    base, queries = make_data(args.gpu_n, args.gpu_queries, args.dim, args.seed + 1)
    sync = cp.cuda.runtime.deviceSynchronize
    try:
        import faiss

        gpu_res = faiss.StandardGpuResources() if faiss.get_num_gpus() > 0 else None
    except (ImportError, AttributeError):
        gpu_res = None
    for label, metric in METRICS:
        fns = {"ours": lambda: distance.knn(base, queries, args.k, metric, backend="cupy")}
        if gpu_res is not None:
            index = faiss_flat(base, metric, gpu_res)
            fns["other"] = lambda: index.search(unit_rows(queries) if metric == "cosine" else queries, args.k)
            other = "faiss-gpu IndexFlat"
        elif metric != "manhattan":
            d_base = cp.asarray(unit_rows(base) if metric == "cosine" else base)
            fns["other"] = lambda: _cupy_brute(cp, d_base, queries, metric, args.k)
            other = "cupy GEMM+argsort"
        med = alternate(fns, args.repeats, sync=sync)
        nq = len(queries)
        rep.add(part="gpu", metric=label, method="simsearch-cupy", n=len(base), nq=nq, k=args.k,
                seconds=round(med["ours"], 4), qps=round(nq / med["ours"], 1))
        if "other" in med:
            rep.add(part="gpu", metric=label, method=other, n=len(base), nq=nq, k=args.k,
                    seconds=round(med["other"], 4), qps=round(nq / med["other"], 1))
            rep.add(part="gpu", metric=label, method=f"ratio simsearch/{other}", ratio=round(med["other"] / med["ours"], 3))


def _cupy_brute(cp, d_base, queries, metric, k, block=2048):
    out = []
    q_all = unit_rows(queries) if metric == "cosine" else queries
    norms = (d_base * d_base).sum(axis=1)
    for q0 in range(0, len(q_all), block):
        q = cp.asarray(q_all[q0 : q0 + block])
        g = q @ d_base.T
        score = norms[None, :] - 2 * g if metric == "sqeuclidean" else -g
        out.append(cp.asnumpy(cp.argsort(score, axis=1)[:, :k]))
    return np.concatenate(out)


def bench_ann(rep: Reporter, base, queries, args) -> None:
    ids = np.arange(len(base), dtype=np.int64)
    nq = len(queries)
    for kind, knob, values in (("ivf", "nprobe", args.nprobe), ("hnsw", "ef_search", args.ef)):
        index = VectorIndex(dim=base.shape[1], metric="euclidean", kind=kind, seed=args.seed)
        index.add(ids, base)
        t0 = time.perf_counter()
        index.train()
        build = time.perf_counter() - t0
        exact = index.search(queries, args.k, exact=True).keys
        rep.add(part=kind, method=f"VectorIndex({kind}) build", n=len(base), seconds=round(build, 3),
                params=f"nlist={index._ann_nlist}" if kind == "ivf" else f"M={index.M} ef_construction={index.ef_construction}")
        for v in values:
            setattr(index, knob, v)
            t = alternate({"s": lambda: index.search(queries, args.k)}, args.repeats)["s"]
            r = recall(index.search(queries, args.k).keys, exact)
            rep.add(part=kind, metric="L2", method=f"VectorIndex({kind}) {knob}={v}", n=len(base), nq=nq, k=args.k,
                    seconds=round(t, 4), qps=round(nq / t, 1), recall=round(r, 4))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu-n", type=int, default=1_000_000)
    p.add_argument("--gpu-queries", type=int, default=10_000)
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--no-numpy", dest="numpy", action="store_false", help="skip the numpy reference rows")
    p.add_argument("--no-ann", dest="ann", action="store_false", help="skip the IVF/HNSW rows")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.dim, args.queries, args.repeats = 3_000, 32, 50, 1
        args.gpu_n, args.gpu_queries = 20_000, 200
        args.nprobe, args.ef = [1, 8], [16, 64]
    rep = Reporter("bench_knn", "faiss-cpu", "faiss-gpu-cu12", "cupy-cuda12x", "threadpoolctl")
    base, queries = make_data(args.n, args.queries, args.dim, args.seed)
    bench_flat(rep, base, queries, args)
    if "cupy" in available_backends():
        bench_gpu(rep, args)
    if args.ann:
        bench_ann(rep, base, queries, args)
    print()
    print(rep.table(["part", "metric", "method", "n", "nq", "seconds", "best_s", "qps", "ratio", "ratio_best", "recall",
                     "agree_with_faiss", "load", "params"]))


if __name__ == "__main__":
    main()
