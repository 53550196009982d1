"""The ``simsearch`` command line: one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _read_docs(path: str, text_field: str | None) -> list[str]:
    """One document per line; with --text-field, lines are JSON objects holding the text."""
    from .errors import InvalidArgumentError

    docs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if text_field is None:
                docs.append(line)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                raise InvalidArgumentError(f"{path}:{lineno}: no string field {text_field!r}")
            docs.append(obj[text_field])
    return docs


def _cmd_minhash(args: argparse.Namespace) -> int:
    from . import minhash
    from .backends import resolve_backend_name

    docs = _read_docs(args.file, args.text_field)
    backend = resolve_backend_name(args.backend)
    start = time.perf_counter()
    sigs = minhash(
        docs, num_perm=args.num_perm, seed=args.seed, ngram=args.ngram, shingle=args.shingle, backend=backend
    )
    elapsed = time.perf_counter() - start
    if args.output:
        np.save(args.output, sigs)
    summary = {
        "docs": len(docs),
        "num_perm": args.num_perm,
        "backend": backend,
        "seconds": round(elapsed, 4),
        "docs_per_s": round(len(docs) / elapsed, 1) if elapsed > 0 else None,
        "output": args.output,
    }
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="simsearch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"simsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("minhash", help="MinHash signatures of a file of documents (one per line)")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="write the uint32 signatures to this .npy file")
    p.add_argument("--text-field", help="lines are JSON objects; take the text from this field")
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ngram", type=int, default=5)
    p.add_argument("--shingle", choices=["word", "char"], default="word")
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.set_defaults(func=_cmd_minhash)

    p = sub.add_parser("lsh-params", help="LSH banding (b, r) for a threshold, its error areas and S-curve plot")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--weights", type=float, nargs=2, metavar=("FP", "FN"), default=(0.5, 0.5))
    p.add_argument("--min-probability", type=float, help="instead: recall-tuned, P(threshold) >= this")
    p.add_argument("--plot", metavar="PNG", help="draw the S-curve to this PNG (needs simsearch[plot])")
    p.set_defaults(func=_cmd_lsh_params)
    return parser


def _cmd_lsh_params(args: argparse.Namespace) -> int:
    from .lsh import lsh_error_areas, lsh_params, lsh_params_for_recall, lsh_probability, plot_s_curve

    if args.min_probability is None:
        b, r = lsh_params(args.threshold, args.num_perm, tuple(args.weights))
    else:
        b, r = lsh_params_for_recall(args.threshold, args.num_perm, args.min_probability)
    fp, fn = lsh_error_areas(args.threshold, b, r)
    if args.plot:
        plot_s_curve(args.plot, args.threshold, b, r)
    out = {"threshold": args.threshold, "num_perm": args.num_perm, "b": b, "r": r,
           "false_positive_area": fp, "false_negative_area": fn,
           "p_at_threshold": lsh_probability(args.threshold, b, r), "plot": args.plot}
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import SimsearchError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SimsearchError, OSError) as exc:
        print(f"simsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
