"""Batch dedup end to end: `simsearch dedup` (local and Ray engines) against a datasketch pipeline.

The corpus is synthetic: ``--docs`` documents of ~``--words`` words drawn uniformly from a
4,096-word vocabulary, of which ``--dup-fraction`` are planted near-duplicates of a base document
(substitutions, deletions and insertions aimed at Jaccard 0.5-1.0, plus exact copies). With 4,096
words a word 5-gram packs exactly into 60 bits, so the ground truth is the exact 5-gram Jaccard of
every pair inside each planted group, computed here independently of simsearch. Unrelated
documents share a 5-gram with probability ~1e-14 per pair, so pairs across groups are ignored.

Each measured pipeline runs in its own process while this script samples the memory of that
process and its descendants (Ray's raylet and workers included): ``peak_tree_mb`` is the peak of
their summed PSS (RSS where PSS is unavailable); ``peak_rss_mb`` is the pipeline process's own peak.

* ``simsearch-local``: ``simsearch dedup corpus/ -o OUT --id-field id`` (exact verification) on the
  corpus written as ``--shards`` JSONL files;
* ``simsearch-ray``: the same with ``--engine ray`` on a local Ray started on this machine;
* ``datasketch``: MinHash + MinHashLSH (same (b, r) banding) + exact verification of candidates with
  Python sets + union-find, on the first ``--datasketch-docs`` documents; its time is extrapolated
  linearly to the full corpus (the ``extrapolated`` column says so). ``simsearch-local`` runs on the
  same subset too, for a like-for-like ratio.

Recall and precision are over pairs at ``--threshold``: verified pairs (pairs.parquet) against the
planted pairs whose exact Jaccard reaches it. ``python benchmarks/bench_dedup.py --smoke`` is tiny.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter  # noqa: E402

VOCAB_BITS = 12
NGRAM = 5


# ---------------------------------------------------------------------------------------------
# Corpus with exact ground truth.


def make_vocab(rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    while len(words) < 1 << VOCAB_BITS:
        words.add("".join(rng.choice(letters, rng.integers(3, 10))))
    return sorted(words)


def _variant(base: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """Edit ``base`` (word ids) with about the number of edits that brings 5-gram Jaccard to ``target``."""
    s = max(1, len(base) - NGRAM + 1)
    edits = int(round(s * (1 - target) / (NGRAM * (1 + target))))
    w = list(base)
    for _ in range(edits):
        op, pos = rng.integers(3), int(rng.integers(len(w)))
        if op == 0:
            w[pos] = int(rng.integers(1 << VOCAB_BITS))
        elif op == 1 and len(w) > NGRAM + 1:
            del w[pos]
        else:
            w.insert(pos, int(rng.integers(1 << VOCAB_BITS)))
    return np.asarray(w, dtype=np.uint16)


def make_corpus(n: int, words: int, dup_fraction: float, seed: int):
    """Word-id arrays of ``n`` documents in shuffled order, and the planted groups (lists of positions)."""
    rng = np.random.default_rng(seed)
    n_var = int(n * dup_fraction)
    n_base = n - n_var
    lengths = np.clip(rng.normal(words, words / 10, n_base), 20, None).astype(int)
    docs = [rng.integers(0, 1 << VOCAB_BITS, k).astype(np.uint16) for k in lengths]
    n_groups = max(1, min(n_base, n_var // 2))
    owner = rng.integers(0, n_groups, n_var)
    for k in range(n_var):
        target = 1.0 if rng.random() < 0.1 else rng.uniform(0.5, 1.0)
        docs.append(_variant(docs[owner[k]], target, rng))
    order = rng.permutation(n)  # order[new position] = old index
    pos_of = np.empty(n, dtype=np.int64)
    pos_of[order] = np.arange(n)
    groups: dict[int, list[int]] = {}
    for k in range(n_var):
        groups.setdefault(int(owner[k]), [int(pos_of[owner[k]])]).append(int(pos_of[n_base + k]))
    return [docs[i] for i in order], list(groups.values())


def packed_shingles(w: np.ndarray) -> np.ndarray:
    """The document's word 5-grams, each packed exactly into 60 bits, sorted unique (documents have >= 5 words)."""
    w = w.astype(np.uint64)
    code = np.zeros(len(w) - NGRAM + 1, np.uint64)
    for i in range(NGRAM):
        code |= w[i : len(w) - NGRAM + 1 + i] << np.uint64(VOCAB_BITS * (NGRAM - 1 - i))
    return np.unique(code)


def ground_truth(docs, groups, threshold: float) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair inside every planted group whose Jaccard reaches ``threshold``."""
    truth = {}
    for g in groups:
        g = sorted(set(g))
        sets = {i: packed_shingles(docs[i]) for i in g}
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                i, j = g[a], g[b]
                inter = np.intersect1d(sets[i], sets[j], assume_unique=True).size
                jac = inter / (sets[i].size + sets[j].size - inter)
                if jac >= threshold:
                    truth[(i, j)] = jac
    return truth


def write_jsonl(path: str, docs, vocab: list[str], limit: int | None = None, shards: int = 1) -> int:
    """The corpus as JSONL: one file, or ``shards`` files part-NNN.jsonl in the directory ``path``."""
    v = np.asarray(vocab, dtype=object)
    docs = docs[:limit] if limit else docs
    bounds = np.linspace(0, len(docs), shards + 1).astype(int)
    if shards > 1:
        os.makedirs(path)
    total = 0
    for k in range(shards):
        name = os.path.join(path, f"part-{k:03d}.jsonl") if shards > 1 else path
        with open(name, "w", encoding="utf-8") as fh:
            for i in range(bounds[k], bounds[k + 1]):
                fh.write(json.dumps({"id": f"doc{i:08d}", "text": " ".join(v[docs[i]])}) + "\n")
        total += os.path.getsize(name)
    return total


# ---------------------------------------------------------------------------------------------
# Measuring a child process.


def run_measured(cmd: list[str], env=None) -> dict:
    """Run ``cmd``; wall time and the peak summed PSS/RSS of it and its descendants (sampled)."""
    import psutil

    import resource

    peak = [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root] + root.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        mi = p.memory_full_info()
                        total += getattr(mi, "pss", mi.rss)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                peak[0] = max(peak[0], total)
            except psutil.NoSuchProcess:
                break
            done.wait(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall": wall, "cpu": cpu, "peak_tree": peak[0], "stdout": out, "stderr": err}


def score(pairs: np.ndarray, truth: dict, limit: int | None = None) -> tuple[float, float]:
    t = {p for p in truth if limit is None or p[1] < limit}
    found = {(int(a), int(b)) for a, b in pairs}
    hit = len(found & t)
    return (hit / len(t) if t else 1.0), (hit / len(found) if found else 1.0)


def simsearch_run(src: str, out: str, args, engine: str) -> dict:
    exe = os.path.join(os.path.dirname(sys.executable), "simsearch")
    cmd = [exe, "dedup", src, "-o", out, "--id-field", "id", "--threshold", str(args.threshold),
           "--num-perm", str(args.num_perm), "--batch-size", str(args.batch_size), "--engine", engine,
           "--quiet", "--overwrite"]
    m = run_measured(cmd)
    summary = json.load(open(os.path.join(out, "summary.json")))
    import pyarrow.parquet as pq

    t = pq.read_table(os.path.join(out, "pairs.parquet"), columns=["index_a", "index_b"]).to_pydict()
    m.update(summary=summary, pairs=np.c_[np.asarray(t["index_a"], np.int64), np.asarray(t["index_b"], np.int64)])
    return m


def _kept(out: str) -> list[str]:
    ids = []
    for root, _, files in sorted(os.walk(os.path.join(out, "data"))):
        for f in sorted(files):
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                ids += [json.loads(line)["id"] for line in fh if line.strip()]
    return ids


def _against_rows(args, work: str, src: str, rep: Reporter) -> None:
    """``dedup --against``: the second half of the corpus against a collection holding what a run
    over the first half kept (--against + --add into an empty collection), timed against one
    ``simsearch dedup`` over the whole corpus (both rules); the kept sets must be identical."""
    exe = os.path.join(os.path.dirname(sys.executable), "simsearch")
    files = sorted(os.path.join(src, f) for f in os.listdir(src)) if os.path.isdir(src) else [src]
    half = max(1, len(files) // 2)
    first, second = files[:half], files[half:]
    common = ["--id-field", "id", "--threshold", str(args.threshold), "--num-perm", str(args.num_perm),
              "--batch-size", str(args.batch_size), "--quiet", "--overwrite"]
    ix = os.path.join(work, "against-index")
    from simsearch import Index

    with Index(ix) as index:
        index.create_collection("kept", threshold=args.threshold, num_perm=args.num_perm)
        index.create_collection("warm", threshold=args.threshold, num_perm=args.num_perm)
    for extra in (["--against", ix, "--collection", "warm", "--add"], ["--rule", "first-kept"], []):
        run_measured([exe, "dedup", files[0], "-o", os.path.join(work, "against-warm"), *common, *extra])  # warm-up
    runs = {}
    for name, inputs, extra in (
        ("whole, components rule", files, []),
        ("whole, first-kept rule", files, ["--rule", "first-kept"]),
        ("first half --against --add (builds the collection)", first,
         ["--against", ix, "--collection", "kept", "--add"]),
        ("second half --against the collection", second, ["--against", ix, "--collection", "kept"]),
    ):
        out = os.path.join(work, "against-" + str(len(runs)))
        m = run_measured([exe, "dedup", *inputs, "-o", out, *common, *extra])
        runs[name] = (m, json.load(open(os.path.join(out, "summary.json"))), out)
    whole_c, whole_f = runs["whole, components rule"], runs["whole, first-kept rule"]
    build, against = runs["first half --against --add (builds the collection)"], \
        runs["second half --against the collection"]
    identical = _kept(whole_f[2]) == _kept(build[2]) + _kept(against[2])
    for name, (m, summ, _) in runs.items():
        row = dict(method=f"dedup {name}", docs=summ["docs_in"], seconds=round(summ["seconds"]["total"], 2),
                   process_wall_s=round(m["wall"], 2), process_cpu_s=round(m["cpu"], 1),
                   docs_per_s=round(summ["docs_in"] / summ["seconds"]["total"], 1), docs_out=summ["docs_out"],
                   peak_tree_mb=round(m["peak_tree"] / 2**20), stages=summ["seconds"],
                   against_matches=summ.get("against_matches"), added=summ.get("added"))
        if name.startswith("second half"):
            row.update(collection_docs=build[1]["added"],
                       ratio_vs_whole_components=round(m["wall"] / whole_c[0]["wall"], 3),
                       ratio_vs_whole_first_kept=round(m["wall"] / whole_f[0]["wall"], 3),
                       kept_sets_identical=identical)
        rep.add(**row)
    if not identical:
        raise RuntimeError("dedup --against: the two halves did not keep what the whole run kept")


# ---------------------------------------------------------------------------------------------
# The datasketch reference pipeline (runs in a child process: --_datasketch).


def datasketch_pipeline(src: str, out: str, threshold: float, num_perm: int, b: int, r: int) -> None:
    from datasketch import MinHash, MinHashLSH

    times = {}
    t0 = time.perf_counter()
    word = re.compile(r"\w+")
    sets, sigs = [], []
    with open(src, encoding="utf-8") as fh:
        for line in fh:
            toks = word.findall(json.loads(line)["text"].lower())
            sh = {" ".join(toks[i : i + NGRAM]) for i in range(max(1, len(toks) - NGRAM + 1))}
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch([s.encode() for s in sh])
            sets.append(sh)
            sigs.append(m)
    times["minhash"] = time.perf_counter() - t0
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(b, r))
    for i, m in enumerate(sigs):
        lsh.insert(i, m, check_duplication=False)
    times["lsh_insert"] = time.perf_counter() - t0 - sum(times.values())
    pairs = []
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j > i:
                inter = len(sets[i] & sets[j])
                if inter / (len(sets[i]) + len(sets[j]) - inter) >= threshold:
                    pairs.append((i, j))
    times["query_verify"] = time.perf_counter() - t0 - sum(times.values())
    parent = list(range(len(sets)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        a, c = find(i), find(j)
        parent[max(a, c)] = min(a, c)
    kept = sum(1 for i in range(len(sets)) if find(i) == i)
    times["components"] = time.perf_counter() - t0 - sum(times.values())
    import resource

    json.dump({"pairs": pairs, "kept": kept, "seconds": times, "total": time.perf_counter() - t0,
               "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}, open(out, "w"))


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--dup-fraction", type=float, default=0.2, help="share of documents that are planted variants")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--datasketch-docs", type=int, default=20_000, help="subset the datasketch pipeline runs on")
    ap.add_argument("--engines", default="local,ray,datasketch",
                    help="comma-separated: local, ray, datasketch, against (dedup --against, issue 15)")
    ap.add_argument("--shards", type=int, default=8,
                    help="JSONL files the corpus is split into (Ray reads files in parallel)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="where the corpus and outputs go (default: a temp dir, removed)")
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI: 3,000 docs, local + datasketch")
    ap.add_argument("--_datasketch", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--_params", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._datasketch:
        datasketch_pipeline(*args._datasketch, args.threshold, args.num_perm, *args._params)
        return 0
    if args.smoke:
        args.docs, args.datasketch_docs, args.batch_size = 3000, 1000, 500
        if args.engines == "local,ray,datasketch":
            args.engines = "local,datasketch"
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        return _bench(args, engines, work)


def _bench(args, engines: list[str], work: str) -> int:
    from simsearch.banding import choose_params

    rep = Reporter("bench_dedup", "datasketch", "ray", "pyarrow")
    t = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    vocab = make_vocab(rng)
    docs, groups = make_corpus(args.docs, args.words, args.dup_fraction, args.seed + 1)
    truth = ground_truth(docs, groups, args.threshold)
    src = os.path.join(work, "corpus")
    nbytes = write_jsonl(src, docs, vocab, shards=args.shards)
    sub_n = min(args.datasketch_docs, args.docs)
    sub = os.path.join(work, "subset.jsonl")
    sub_bytes = write_jsonl(sub, docs, vocab, sub_n)
    del docs
    print(f"# corpus: {args.docs:,} docs, {nbytes / 1e9:.2f} GB JSONL in {args.shards} files, {len(groups):,} groups, "
          f"{len(truth):,} true pairs at {args.threshold} (made in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    b, r = choose_params(args.threshold, args.num_perm, "exact")
    base = dict(threshold=args.threshold, num_perm=args.num_perm, bands=b, rows=r, true_pairs=len(truth))
    rates = {}

    def add(method, n, size, seconds, pairs, peak_rss, peak_tree, cpu, limit=None, **extra):
        recall, precision = score(pairs, truth, limit)
        rates[method] = n / seconds
        speedup = round(rates[method] / rates["datasketch"], 1) if "datasketch" in rates else None
        return rep.add(method=method, docs=n, gb=round(size / 1e9, 3), seconds=round(seconds, 2),
                       docs_per_s=round(n / seconds, 1), gb_per_hour=round(size / 1e9 / seconds * 3600, 2),
                       process_cpu_s=round(cpu, 1) if cpu else None, docs_per_cpu_s=round(n / cpu, 1) if cpu else None,
                       recall=round(recall, 4), precision=round(precision, 4),
                       peak_rss_mb=round(peak_rss / 2**20), peak_tree_mb=round(peak_tree / 2**20),
                       mb_per_million_docs=round(peak_tree / 2**20 / (n / 1e6)), speedup_vs_datasketch=speedup,
                       **base, **extra)

    if "datasketch" in engines:  # first, so that every later row can carry its speedup
        out = os.path.join(work, "datasketch.json")
        m = run_measured([sys.executable, __file__, "--_datasketch", sub, out, "--threshold", str(args.threshold),
                          "--num-perm", str(args.num_perm), "--_params", str(b), str(r)])
        d = json.load(open(out))
        pairs = np.asarray(d["pairs"], dtype=np.int64).reshape(-1, 2)
        rates["datasketch"] = sub_n / d["total"]
        add("datasketch", sub_n, sub_bytes, d["total"], pairs, d["peak_rss"], m["peak_tree"], m["cpu"], limit=sub_n,
            docs_out=d["kept"], stages={k: round(v, 2) for k, v in d["seconds"].items()},
            extrapolated_full_s=round(args.docs / rates["datasketch"], 1), extrapolated=sub_n < args.docs)
        m = simsearch_run(sub, os.path.join(work, "out-subset"), args, "local")
        s = m["summary"]
        add("simsearch-local (subset)", sub_n, sub_bytes, s["seconds"]["total"], m["pairs"], s["peak_rss_bytes"],
            m["peak_tree"], m["cpu"], limit=sub_n, docs_out=s["docs_out"], extrapolated=False)
    for engine in [e for e in ("local", "ray") if e in engines]:
        m = simsearch_run(src, os.path.join(work, f"out-{engine}"), args, engine)
        s = m["summary"]
        cpu = m["cpu"] if engine == "local" else None  # Ray's workers are not our children: their CPU is not seen
        add(f"simsearch-{engine}", args.docs, nbytes, s["seconds"]["total"], m["pairs"], s["peak_rss_bytes"],
            m["peak_tree"], cpu, engine_device=s["device"], stages=s["seconds"], docs_out=s["docs_out"],
            process_wall_s=round(m["wall"], 2), extrapolated=False)
    if "against" in engines:
        _against_rows(args, work, src, rep)
    print(rep.table(["method", "docs", "gb", "seconds", "docs_per_s", "process_cpu_s", "docs_per_cpu_s", "recall",
                     "precision", "peak_rss_mb", "peak_tree_mb", "mb_per_million_docs", "speedup_vs_datasketch",
                     "extrapolated", "process_wall_s", "ratio_vs_whole_components", "ratio_vs_whole_first_kept",
                     "kept_sets_identical"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
