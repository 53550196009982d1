"""LSH and dedup: simsearch against datasketch MinHashLSH and rensa RMinHashLSH on the same signatures.

Measured in one run (``--smoke`` makes every size tiny):

* **index**: batched insert, batched query and self-join throughput (docs/s) and peak memory
  of simsearch ``LSHIndex``, datasketch ``MinHashLSH`` (its ``insertion_session``) and rensa
  ``RMinHashLSH``, all fed the same simsearch signatures of ``--docs`` documents and the same
  banding (b, r) = ``lsh_params(threshold, num_perm)``. rensa gets its ``RMinHash`` objects built
  from those signatures (through its pickle state, checked by a round trip) and the first b*r
  values, so its band size equals r. The simsearch ``MinHashLSH`` facade is timed one document
  per call too, to compare the Python-object APIs like for like;
* **dedup end to end**: ``find_duplicates`` (tokenizing included, verify="exact") on ``--docs``
  and ``--big-docs`` synthetic documents, against the same pipeline written with datasketch and
  with rensa (shingle, MinHash, LSH insert, query every document, exact-Jaccard verification,
  union-find). Those run on ``--slow-docs`` documents and are extrapolated linearly (per-document
  costs are flat for this corpus; the extrapolation is marked);
* **quality**: recall and precision of ``find_duplicates`` at thresholds 0.5/0.7/0.8/0.9 against
  brute-force exact Jaccard (a sparse incidence product), and of the datasketch/rensa pipelines.

Each measurement runs in a fresh spawned process, so peak RSS (``ru_maxrss`` minus the RSS after
inputs are loaded) is per method. The corpus: documents of ~``--words`` random 6-letter words
from a 100k vocabulary; 20% are copies of earlier documents with 0-10 words replaced (Jaccard of
word 5-grams ~0.6-1.0), some copies of copies. ``--prefault-gb`` touches that much memory once at
start: on a fresh VM the host backs guest memory lazily and the first touch of each page costs
~10x a normal page fault, which would otherwise land on whichever method runs first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter, median_time  # noqa: E402,F401

THRESHOLDS = (0.5, 0.7, 0.8, 0.9)

# -- corpus ---------------------------------------------------------------------------------------


def make_corpus(n: int, words: int, seed: int) -> list[str]:
    """``n`` documents; 20% near-duplicates of earlier ones (0-10 words replaced)."""
    rng = np.random.default_rng(seed)
    vocab = rng.integers(97, 123, (100_000, 7), dtype=np.uint8)
    vocab[:, 6] = 32  # "abcdef "
    lmax = int(words * 1.3)
    lengths = np.clip(rng.normal(words, words / 10, n).astype(np.int64), 10, lmax)
    rows = rng.integers(0, vocab.shape[0], (n, lmax), dtype=np.int32)
    n_dup = n // 5
    dups = rng.choice(np.arange(1, n), size=n_dup, replace=False)
    dups.sort()
    for d in dups.tolist():
        src = int(rng.integers(0, d))
        rows[d] = rows[src]
        lengths[d] = lengths[src]
        k = int(rng.integers(0, 11))
        rows[d, rng.integers(0, lengths[d], k)] = rng.integers(0, vocab.shape[0], k)
    texts = []
    for start in range(0, n, 50_000):
        block = vocab[rows[start : start + 50_000]].reshape(-1, lmax * 7)
        for i, row in enumerate(block):
            texts.append(row[: lengths[start + i] * 7 - 1].tobytes().decode("ascii"))
    return texts


def ground_truth(texts: list[str], ngram: int) -> dict[float, set]:
    """Pairs with exact Jaccard >= t for each threshold, from a sparse incidence product."""
    import scipy.sparse as sp

    import simsearch

    sets = simsearch.shingle_hashes(texts, ngram=ngram)
    _, cols = np.unique(sets.hashes, return_inverse=True)
    n = len(texts)
    inc = sp.csr_matrix((np.ones(cols.shape[0], np.float32), cols.ravel(), sets.offsets), shape=(n, int(cols.max()) + 1))
    inter = sp.triu(inc @ inc.T, k=1).tocoo()
    size = sets.sizes()
    jac = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    return {t: set(zip(inter.row[jac >= t].tolist(), inter.col[jac >= t].tolist())) for t in THRESHOLDS}


def recall_precision(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(truth), 1), (hit / len(found) if found else 1.0)


# -- workers (each in a fresh process) ------------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    """Current RSS, after resetting the high-water mark (so _peak_mb counts from here)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    return _status_mb("VmHWM")


def timed(fn, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds (all threads) of ``fn``."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


def _rensa_minhash(sig: np.ndarray, seed: int = 1):
    """An RMinHash holding exactly ``sig`` (rensa has no constructor from values; its pickle state does)."""
    import rensa

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                return bytes(out)

    header = rensa.RMinHash(1, seed).__getstate__()
    head = header[: header.index(b"\x01" + varint(seed) + b"\x01")]
    m = rensa.RMinHash(len(sig), seed)
    m.__setstate__(head + varint(len(sig)) + varint(seed) + varint(len(sig)) + b"".join(varint(int(v)) for v in sig))
    return m


def _warm(method: str, sigs: np.ndarray, b: int, r: int) -> None:
    """Import the library and run it once on a few rows, so that peak memory counts the index only."""
    if method.startswith("simsearch"):
        from simsearch import LSHIndex

        small = LSHIndex(num_perm=sigs.shape[1], params=(b, r))
        small.insert(np.arange(64), sigs[:64])
        small.query(sigs[:64])
        small.candidate_pairs()
    elif method == "datasketch":
        import datasketch

        datasketch.MinHashLSH(num_perm=sigs.shape[1], params=(b, r)).insert(
            0, datasketch.MinHash(num_perm=sigs.shape[1], hashvalues=sigs[0].astype(np.uint64), scheme="affine32"))
    else:
        import rensa

        rensa.RMinHashLSH(0.5, b * r, b).insert(0, _rensa_minhash(sigs[0, : b * r]))


def random_signatures(n: int, num_perm: int, seed: int) -> np.ndarray:
    """Random signatures, a fifth of them repeating another row (so self-queries have hits)."""
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 1 << 32, (n, num_perm), dtype=np.uint64).astype(np.uint32)
    dup = rng.choice(n, n // 5, replace=False)
    sigs[dup] = sigs[rng.integers(0, n, dup.shape[0])]
    return sigs


def worker_index(method: str, sig_path: str, b: int, r: int, threshold: float, repeats: int, out):
    if sig_path.startswith("random:"):  # "random:N:NUM_PERM:SEED", made here rather than shipped on disk
        n, num_perm, seed = (int(x) for x in sig_path.split(":")[1:])
        sigs = random_signatures(n, num_perm, seed)
    else:
        sigs = np.load(sig_path)
    n, num_perm = sigs.shape
    _warm(method, sigs, b, r)
    base = _rss_mb()
    res = {"method": method, "docs": n}
    if method == "simsearch":
        from simsearch import LSHIndex

        ids = np.arange(n)

        def build():
            idx = LSHIndex(num_perm=num_perm, params=(b, r))
            idx.insert(ids, sigs)
            return idx

        res["insert_s"], res["insert_cpu_s"] = timed(build, repeats)
        index = build()
        res["query_s"], res["query_cpu_s"] = timed(lambda: index.query(sigs), repeats)
        fresh = np.random.default_rng(7).integers(0, 1 << 32, sigs.shape, dtype=np.uint64).astype(np.uint32)
        res["query_new_s"], res["query_new_cpu_s"] = timed(lambda: index.query(fresh), repeats)
        res["selfjoin_s"], res["selfjoin_cpu_s"] = timed(index.candidate_pairs, repeats)
        res["pairs"] = int(index.candidate_pairs().shape[0])
        res["index_mb"] = index.nbytes / 2**20
    elif method == "simsearch-facade":
        from simsearch.compat.datasketch import MinHashLSH

        objs = [_Sig(s) for s in sigs]
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(b, r))
        t = time.perf_counter()
        with lsh.insertion_session() as session:
            for i, m in enumerate(objs):
                session.insert(i, m)
        res["insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        pairs = {(i, j) for i, m in enumerate(objs) for j in lsh.query(m) if i < j}
        res["query_s"] = res["selfjoin_s"] = time.perf_counter() - t
        res["pairs"] = len(pairs)
    elif method == "datasketch":
        from datasketch import LeanMinHash, MinHash, MinHashLSH

        t = time.perf_counter()
        objs = [LeanMinHash(MinHash(num_perm=num_perm, hashvalues=s.astype(np.uint64), scheme="affine32")) for s in sigs]
        res["prep_s"] = time.perf_counter() - t
        base = _rss_mb()
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(b, r))
        t = time.perf_counter()
        with lsh.insertion_session() as session:
            for i, m in enumerate(objs):
                session.insert(i, m, check_duplication=False)
        res["insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        pairs = {(i, j) for i, m in enumerate(objs) for j in lsh.query(m) if i < j}
        res["query_s"] = res["selfjoin_s"] = time.perf_counter() - t
        res["pairs"] = len(pairs)
    elif method == "rensa":
        import rensa

        t = time.perf_counter()
        objs = [_rensa_minhash(s[: b * r]) for s in sigs]
        assert objs[0].digest() == sigs[0, : b * r].tolist(), "rensa state format changed"
        res["prep_s"] = time.perf_counter() - t
        base = _rss_mb()

        def build():
            lsh = rensa.RMinHashLSH(threshold, b * r, b)
            lsh.insert_many(objs, 0)
            return lsh

        res["insert_s"] = median_time(build, max(1, repeats // 2))
        lsh = build()
        res["query_s"] = median_time(lambda: lsh.query_all(objs), max(1, repeats // 2))
        t = time.perf_counter()  # self-join: query everything, keep each pair once
        pairs = {(i, j) for i, c in enumerate(lsh.query_all(objs)) for j in c if i < j}
        res["selfjoin_s"] = time.perf_counter() - t
        res["pairs"] = len(pairs)
    res["peak_mb"] = _peak_mb() - base
    out.put(res)


class _Sig:
    __slots__ = ("hashvalues",)

    def __init__(self, values):
        self.hashvalues = values


def worker_dedup(method: str, n_corpus: int, n: int, words: int, seed: int, threshold: float, num_perm: int,
                 truth_path, out):
    """Dedup the first ``n`` documents of the ``n_corpus``-document corpus of ``seed``."""
    texts = make_corpus(n_corpus, words, seed)[:n]
    import simsearch

    simsearch.find_duplicates(texts[:2000], threshold=threshold, num_perm=num_perm)  # warm-up (JIT cache)
    if method != "simsearch":
        python_pipeline(method, texts[:200], threshold, num_perm)
    base = _rss_mb()
    res = {"method": method, "docs": n, "threshold": threshold}
    if method == "simsearch":
        t, c = time.perf_counter(), time.process_time()
        r = simsearch.find_duplicates(texts, threshold=threshold, num_perm=num_perm)
        res["seconds"], res["cpu_s"] = time.perf_counter() - t, time.process_time() - c
        res["stages"] = {k[8:]: round(v, 3) for k, v in r.stats.items() if k.startswith("seconds_")}
        res["params"] = list(r.params)
        res["candidates"] = r.stats["candidates"]
        found = {tuple(p) for p in r.pairs.tolist()}
    else:
        found, res["seconds"], res["params"] = python_pipeline(method, texts, threshold, num_perm)
    res["pairs"] = len(found)
    res["peak_mb"] = _peak_mb() - base
    if truth_path:
        truth = np.load(truth_path)
        want = {tuple(p) for p in truth.tolist()}
        res["recall"], res["precision"] = recall_precision(found, want)
        res["true_pairs"] = len(want)
    out.put(res)


def python_pipeline(method: str, texts: list[str], threshold: float, num_perm: int):
    """The dedup pipeline as a datasketch or rensa user writes it: objects per document."""
    import simsearch

    t = time.perf_counter()
    sets = [simsearch.shingles(x, 5) for x in texts]  # neither library tokenizes; same shingles
    if method == "datasketch":
        from datasketch import LeanMinHash, MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        mhs = []
        with lsh.insertion_session() as session:
            for i, s in enumerate(sets):
                m = MinHash(num_perm=num_perm)
                m.update_batch([g.encode() for g in s])
                m = LeanMinHash(m)
                mhs.append(m)
                session.insert(i, m, check_duplication=False)
        cands = [lsh.query(m) for m in mhs]
        params = [lsh.b, lsh.r]
    else:
        import rensa

        b, r = simsearch.lsh_params(threshold, num_perm)
        lsh = rensa.RMinHashLSH(threshold, b * r, b)
        mhs = []
        for s in sets:
            m = rensa.RMinHash(b * r, 42)
            m.update(list(s))
            mhs.append(m)
        lsh.insert_many(mhs, 0)
        cands = lsh.query_all(mhs)
        params = [b, r]
    found = set()
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, c in enumerate(cands):
        for j in c:
            if i < j and len(sets[i] & sets[j]) >= threshold * len(sets[i] | sets[j]):
                found.add((i, j))
                ri, rj = find(i), find(j)
                parent[max(ri, rj)] = min(ri, rj)
    _ = [find(i) for i in range(len(texts))]
    return found, time.perf_counter() - t, params


def run(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    res = q.get()
    p.join()
    return res


# -- main -----------------------------------------------------------------------------------------


def prefault(gb: float) -> None:
    if gb > 0:
        block = np.ones(int(gb * 2**30) // 8, dtype=np.int64)
        del block


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--big-docs", type=int, default=1_000_000, help="end-to-end dedup size (0: skip)")
    ap.add_argument("--big-index-docs", type=int, default=1_000_000, help="simsearch-only index size (0: skip)")
    ap.add_argument("--slow-docs", type=int, default=20_000, help="documents for the datasketch/rensa pipelines")
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefault-gb", type=float, default=6.0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = ap.parse_args(argv)
    if args.smoke:
        args.docs, args.big_docs, args.slow_docs, args.repeats, args.prefault_gb = 3000, 0, 500, 1, 0
        args.big_index_docs = 5000
    import simsearch

    prefault(args.prefault_gb)
    b, r = simsearch.lsh_params(args.threshold, args.num_perm)
    rep = Reporter("bench_lsh", "datasketch", "rensa")
    rep.meta["loadavg_at_start"] = [round(x, 1) for x in os.getloadavg()]
    tmp = tempfile.mkdtemp(prefix="bench_lsh_")
    texts = make_corpus(args.docs, args.words, args.seed)
    sigs = simsearch.minhash(texts, num_perm=args.num_perm)
    sig_path = os.path.join(tmp, "sigs.npy")
    np.save(sig_path, sigs)

    # 1. index throughput on the same signatures
    index_rows = {}
    for method in ("simsearch", "datasketch", "rensa", "simsearch-facade"):
        res = run(worker_index, method, sig_path, b, r, args.threshold, args.repeats)
        n = res["docs"]
        extra = {}
        if "query_new_s" in res:
            extra = {"query_new_docs_per_s": round(n / res["query_new_s"]),
                     "cpu_s": {k[:-6]: round(v, 3) for k, v in res.items() if k.endswith("_cpu_s")}}
        row = rep.add(section="index", method=method, docs=n, b=b, r=r,
                      insert_docs_per_s=round(n / res["insert_s"]), query_docs_per_s=round(n / res["query_s"]),
                      selfjoin_docs_per_s=round(n / res["selfjoin_s"]), candidate_pairs=res["pairs"],
                      peak_mb=round(res["peak_mb"], 1), index_mb=round(res.get("index_mb", 0), 1) or None, **extra)
        index_rows[method] = row
    if args.big_index_docs:  # simsearch alone at a size where datasketch would take many minutes
        res = run(worker_index, "simsearch", f"random:{args.big_index_docs}:{args.num_perm}:{args.seed}", b, r,
                  args.threshold, args.repeats)
        n = res["docs"]
        rep.add(section="index-big", method="simsearch", docs=n, b=b, r=r, insert_docs_per_s=round(n / res["insert_s"]),
                query_docs_per_s=round(n / res["query_s"]), query_new_docs_per_s=round(n / res["query_new_s"]),
                selfjoin_docs_per_s=round(n / res["selfjoin_s"]), candidate_pairs=res["pairs"],
                peak_mb=round(res["peak_mb"], 1), index_mb=round(res["index_mb"], 1),
                cpu_s={k[:-6]: round(v, 3) for k, v in res.items() if k.endswith("_cpu_s")},
                note="random signatures, 20% repeated rows")
    ss, ds = index_rows["simsearch"], index_rows["datasketch"]
    for key in ("insert_docs_per_s", "query_docs_per_s", "selfjoin_docs_per_s"):
        rep.add(section="index-ratio", method="simsearch / datasketch", metric=key, ratio=round(ss[key] / ds[key], 1))
        rep.add(section="index-ratio", method="simsearch / rensa", metric=key,
                ratio=round(ss[key] / index_rows["rensa"][key], 1))

    # 2. quality and end-to-end dedup
    truth = ground_truth(texts, 5)
    slow_truth = ground_truth(texts[: args.slow_docs], 5)
    del texts, sigs
    dedup = {}
    for t in THRESHOLDS:
        tp = os.path.join(tmp, f"truth_{t}.npy")
        np.save(tp, np.array(sorted(truth[t]), dtype=np.int64).reshape(-1, 2))
        res = run(worker_dedup, "simsearch", args.docs, args.docs, args.words, args.seed, t, args.num_perm, tp)
        dedup[("simsearch", t)] = res
        rep.add(section="dedup", method="simsearch", docs=res["docs"], threshold=t, params=res["params"],
                seconds=round(res["seconds"], 2), docs_per_s=round(res["docs"] / res["seconds"]),
                candidates=res["candidates"], pairs=res["pairs"], true_pairs=res["true_pairs"],
                recall=round(res["recall"], 4), precision=round(res["precision"], 4), peak_mb=round(res["peak_mb"]),
                stages=res["stages"], cpu_s=round(res["cpu_s"], 2))
    for method in ("datasketch", "rensa"):
        tp = os.path.join(tmp, f"slow_truth_{method}.npy")
        np.save(tp, np.array(sorted(slow_truth[args.threshold]), dtype=np.int64).reshape(-1, 2))
        res = run(worker_dedup, method, args.docs, args.slow_docs, args.words, args.seed, args.threshold,
                  args.num_perm, tp)
        dedup[(method, args.threshold)] = res
        rep.add(section="dedup", method=method, docs=res["docs"], threshold=args.threshold, params=res["params"],
                seconds=round(res["seconds"], 2), docs_per_s=round(res["docs"] / res["seconds"]), pairs=res["pairs"],
                true_pairs=res["true_pairs"], recall=round(res["recall"], 4), precision=round(res["precision"], 4),
                peak_mb=round(res["peak_mb"]))
        for n in (args.docs, args.big_docs):
            if n:
                rep.add(section="dedup-extrapolated", method=method, docs=n, threshold=args.threshold,
                        seconds=round(res["seconds"] * n / res["docs"], 1), note=f"linear from {res['docs']} docs")
    ours = dedup[("simsearch", args.threshold)]
    for method in ("datasketch", "rensa"):
        theirs = dedup[(method, args.threshold)]
        rep.add(section="dedup-ratio", method=f"simsearch / {method}", docs=args.docs,
                ratio=round((theirs["seconds"] / theirs["docs"]) / (ours["seconds"] / ours["docs"]), 1))
    if args.big_docs:
        res = run(worker_dedup, "simsearch", args.big_docs, args.big_docs, args.words, args.seed + 1, args.threshold,
                  args.num_perm, None)
        rep.add(section="dedup", method="simsearch", docs=res["docs"], threshold=args.threshold, params=res["params"],
                seconds=round(res["seconds"], 2), docs_per_s=round(res["docs"] / res["seconds"]),
                candidates=res["candidates"], pairs=res["pairs"], peak_mb=round(res["peak_mb"]), stages=res["stages"],
                cpu_s=round(res["cpu_s"], 2))
        for method in ("datasketch", "rensa"):
            theirs = dedup[(method, args.threshold)]
            rep.add(section="dedup-ratio", method=f"simsearch / {method}", docs=args.big_docs,
                    ratio=round(theirs["seconds"] / theirs["docs"] * args.big_docs / res["seconds"], 1),
                    note="theirs extrapolated linearly")
    rep.add(section="machine", method="loadavg", note=f"1/5/15-min load {[round(x, 1) for x in os.getloadavg()]} "
            f"at the end, {rep.meta['loadavg_at_start']} at the start, on {os.cpu_count()} cores")
    print()
    print(rep.table(["section", "method", "docs", "threshold", "insert_docs_per_s", "query_docs_per_s", "query_new_docs_per_s",
                     "selfjoin_docs_per_s", "seconds", "docs_per_s", "recall", "precision", "peak_mb", "ratio",
                     "metric", "note"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
