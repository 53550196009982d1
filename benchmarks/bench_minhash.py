"""MinHash throughput: simsearch (numpy, numba, cupy) against datasketch and rensa, same corpus.

Two measurements per method, both in documents per second at ``--num-perm`` permutations:

* ``text``: from raw text to signatures, tokenizing included. datasketch and rensa get the
  shingles from simsearch's plain-Python reference definition (they have no tokenizer), so all
  methods hash the same shingle sets.
* ``hashes``: from ready shingles (datasketch: byte strings; rensa and simsearch: the uint64
  shingle hashes), which isolates the permutation + min kernel.

Slow methods run on a prefix of the corpus (``--slow-docs``); docs/s is a rate, so the ratios
stay comparable. Run ``python benchmarks/bench_minhash.py --smoke`` for a tiny check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter, median_time  # noqa: E402

import simsearch  # noqa: E402
from simsearch.backends import available_backends  # noqa: E402
from simsearch.shingling import shingles  # noqa: E402


def make_corpus(n_docs: int, words_per_doc: int, seed: int) -> list[str]:
    """Zipf-distributed words from a 50k vocabulary, a few capitals and punctuation."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 10))) for _ in range(50_000)])
    docs = []
    for _ in range(n_docs):
        n = max(1, int(rng.normal(words_per_doc, words_per_doc / 10)))
        ids = np.minimum(rng.zipf(1.2, n) - 1, len(vocab) - 1)
        words = vocab[ids]
        docs.append(" ".join(words).capitalize() + ".")
    return docs


def bench_corpus(rep: Reporter, label: str, docs: list[str], args) -> None:
    k, seed = args.num_perm, 1
    slow = docs[: args.slow_docs]
    sync = None
    results: dict[tuple[str, str], float] = {}

    def record(method: str, mode: str, n: int, seconds: float) -> None:
        rate = n / seconds
        results[(method, mode)] = rate
        rep.add(corpus=label, method=method, mode=mode, docs=n, seconds=round(seconds, 4), docs_per_s=round(rate, 1))

    sets = simsearch.shingle_hashes(docs, backend="numba")
    for be in [b for b in ("numba", "cupy", "numpy") if b in available_backends()]:
        sub = slow if be == "numpy" else docs
        sub_sets = sets if be != "numpy" else simsearch.shingle_hashes(slow, backend="numba")
        if be == "cupy":
            import cupy as cp

            sync = cp.cuda.runtime.deviceSynchronize
        t = median_time(lambda: simsearch.minhash(sub, num_perm=k, seed=seed, backend=be), args.repeats, sync=sync)
        record(f"simsearch-{be}", "text", len(sub), t)
        t = median_time(lambda: simsearch.minhash(sub_sets, num_perm=k, seed=seed, backend=be), args.repeats, sync=sync)
        record(f"simsearch-{be}", "hashes", len(sub), t)

    try:
        import datasketch
    except ImportError:
        datasketch = None
    if datasketch is not None:
        def ds_text():
            token_sets = [[s.encode() for s in shingles(d)] for d in slow]
            return datasketch.MinHash.bulk(token_sets, num_perm=k, seed=seed)

        ready = [[s.encode() for s in shingles(d)] for d in slow]
        record("datasketch", "text", len(slow), median_time(ds_text, args.slow_repeats))
        record(
            "datasketch", "hashes", len(slow),
            median_time(lambda: datasketch.MinHash.bulk(ready, num_perm=k, seed=seed), args.slow_repeats),
        )

    try:
        import rensa
    except ImportError:
        rensa = None
    if rensa is not None:
        R = rensa.RMinHash

        def rensa_text():
            return R.digest_matrix_from_token_sets([list(shingles(d)) for d in docs[: args.rensa_docs]], k, seed)

        record("rensa", "text", min(len(docs), args.rensa_docs), median_time(rensa_text, args.slow_repeats))
        flat_offsets = sets.offsets.astype(np.uint64)
        record(
            "rensa", "hashes", len(docs),
            median_time(lambda: R.digest_matrix_from_flat_token_hashes(sets.hashes, flat_offsets, k, seed), args.repeats),
        )

    best = results.get(("simsearch-cupy", "text")) or results.get(("simsearch-numba", "text"))
    best_h = results.get(("simsearch-cupy", "hashes")) or results.get(("simsearch-numba", "hashes"))
    for other in ("datasketch", "rensa"):
        for mode, ours in (("text", best), ("hashes", best_h)):
            if (other, mode) in results and ours:
                rep.add(corpus=label, method=f"ratio vs {other}", mode=mode, ratio=round(ours / results[(other, mode)], 2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000, help="short documents (~200 words)")
    p.add_argument("--long-docs", type=int, default=1_000, help="long documents (~10k words)")
    p.add_argument("--slow-docs", type=int, default=2_000, help="prefix given to datasketch and numpy")
    p.add_argument("--rensa-docs", type=int, default=20_000, help="prefix given to rensa from text")
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slow-repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.docs, args.long_docs, args.slow_docs, args.rensa_docs = 300, 10, 50, 300
        args.repeats = args.slow_repeats = 1
    rep = Reporter("bench_minhash", "datasketch", "rensa", "cupy-cuda12x")
    bench_corpus(rep, "200-word", make_corpus(args.docs, 200, seed=0), args)
    long_args = argparse.Namespace(**{**vars(args), "slow_docs": max(1, args.slow_docs // 50), "rensa_docs": max(1, args.rensa_docs // 50)})
    bench_corpus(rep, "10k-word", make_corpus(args.long_docs, 10_000, seed=1), long_args)
    print()
    print(rep.table(["corpus", "method", "mode", "docs", "docs_per_s", "ratio"]))


if __name__ == "__main__":
    main()
