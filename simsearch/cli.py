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


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .server import ServerConfig, read_token_file, serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        data=args.data, host=args.host, port=args.port,
        token=read_token_file(args.token_file) if args.token_file else None,
        tls_cert=args.tls_cert, tls_key=args.tls_key, max_message_mb=args.max_message_mb, workers=args.workers,
        max_batch=args.max_batch, max_k=args.max_k, max_text_bytes=args.max_text_bytes, grace_s=args.grace,
        durability=args.durability, backend=args.backend, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, snapshot_dir=args.snapshot_dir, max_training_jobs=args.max_training_jobs,
        max_kernel_cache_mb=args.max_kernel_cache_mb, max_nystroem_components=args.max_nystroem_components,
        max_training_mb=args.max_training_mb,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and (config.token is None or config.tls_cert is None):
        logging.getLogger("simsearch.server").warning(
            "listening on %s without both --token-file and TLS; anyone who can reach it can read and write", args.host)

    def ready(server) -> None:
        mode = ("tls" if config.tls_cert else "plaintext") + (", token auth" if config.token else ", no auth")
        metrics = "" if server.metrics_port is None else \
            f", metrics on http://{config.metrics_host}:{server.metrics_port}/metrics"
        print(f"simsearch serve: listening on {args.host}:{server.port} (data {args.data}, {mode}{metrics})", flush=True)

    return serve(config, ready=ready)


def _dedup_against(args: argparse.Namespace, stack) -> object | None:
    """The collection of ``dedup --against DIR | --against-address HOST:PORT --collection NAME``,
    opened here (and closed by ``stack``)."""
    from .errors import InvalidArgumentError

    if args.against is None and args.against_address is None:
        for flag, val in (("--collection", args.collection), ("--add", args.add or None),
                          ("--token-file", args.token_file), ("--tls-ca", args.tls_ca)):
            if val is not None:
                raise InvalidArgumentError(f"{flag} goes with --against DIR or --against-address HOST:PORT.")
        return None
    if args.against is not None and args.against_address is not None:
        raise InvalidArgumentError("pass one of --against DIR and --against-address HOST:PORT, not both.")
    if not args.collection:
        raise InvalidArgumentError("--against needs --collection NAME.")
    if args.against is not None:
        import os

        from .index import Index

        if not os.path.isdir(args.against):
            raise InvalidArgumentError(f"--against {args.against}: not an index directory.")
        return stack.enter_context(Index(args.against)).get_collection(args.collection)
    from .client import Client

    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    client = stack.enter_context(Client(args.against_address, token=token, tls=args.tls_ca))
    return client.get_collection(args.collection)


def _cmd_dedup(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from .dedup import run

    with ExitStack() as stack:
        s = run(
            args.inputs, args.output, format=args.format, text_field=args.text_field, id_field=args.id_field,
            threshold=args.threshold, ngram=args.ngram, shingle=args.shingle, num_perm=args.num_perm,
            verify=args.verify, engine=args.engine, ray_address=args.ray_address, batch_size=args.batch_size,
            backend=args.backend, seed=args.seed, overwrite=args.overwrite, quiet=args.quiet,
            rule=args.rule, against=_dedup_against(args, stack), add=args.add, label_field=args.label_field,
            vector_field=args.vector_field,
        )
    out = {"output": s.output, "docs_in": s.docs_in, "docs_out": s.docs_out, "duplicates": s.duplicates,
           "clusters": s.clusters, "engine": s.engine, "device": s.device, "seconds": s.seconds.get("total")}
    if s.against is not None:
        out.update(rule=s.rule, against=s.against, against_matches=s.against_matches, added=s.added,
                   add_skipped=s.add_skipped)
    print(json.dumps(out))
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

    p = sub.add_parser("serve", help="serve an index over gRPC (simsearch.v1.SimSearch, health, reflection)")
    p.add_argument("--data", required=True, help="index directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    p.add_argument("--token-file", help="require 'authorization: Bearer <token>' with the token in this file")
    p.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--max-message-mb", type=float, default=64.0, help="largest request or response (MiB)")
    p.add_argument("--workers", type=int, default=16, help="threads serving calls")
    p.add_argument("--max-batch", type=int, default=100_000, help="most documents, ids or queries per call")
    p.add_argument("--max-k", type=int, default=10_000, help="largest k of a query")
    p.add_argument("--max-text-bytes", type=int, default=16 * 1024 * 1024, help="longest document text (UTF-8)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain in-flight calls on SIGTERM/SIGINT")
    p.add_argument("--durability", choices=["full", "normal"], default="full")
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info",
                   help="info logs one access line per call")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off; 0: any)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint (default: loopback)")
    p.add_argument("--snapshot-dir", help="directory of the Snapshot RPCs (default: snapshots refused)")
    p.add_argument("--max-training-jobs", type=int, default=1, help="classifier trainings at once; others wait")
    p.add_argument("--max-kernel-cache-mb", type=float, default=1024.0, help="largest svm kernel cache (cache_size)")
    p.add_argument("--max-nystroem-components", type=int, default=4096, help="largest svm n_components")
    p.add_argument("--max-training-mb", type=float, default=4096.0, help="largest estimated memory of a training")
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("dedup", help="remove near-duplicates from JSONL / Parquet / text files (streaming)",
                       description="Write OUTDIR/data (one record per cluster: the first), OUTDIR/clusters.parquet "
                                   "and OUTDIR/summary.json. Without --id-field a document's id is its 0-based "
                                   "position in the input (files in order); text files are identified by path.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL[.gz] or Parquet files, or directories")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory (written atomically)")
    p.add_argument("--format", choices=["jsonl", "parquet", "text"], help="default: from the file extensions")
    p.add_argument("--text-field", default="text", help="JSON field / Parquet column holding the text")
    p.add_argument("--id-field", help="JSON field / Parquet column holding a unique id (default: position)")
    # None: 0.8 / 5 / word / 128 / 1, or with --against the collection's (a different value is refused)
    p.add_argument("--threshold", type=float, help="Jaccard similarity that makes a duplicate (default 0.8; "
                   "with --against the collection's)")
    p.add_argument("--ngram", type=int, help="default 5 (with --against: the collection's)")
    p.add_argument("--shingle", choices=["word", "char"], help="default word (with --against: the collection's)")
    p.add_argument("--num-perm", type=int, help="default 128 (with --against: the collection's)")
    p.add_argument("--seed", type=int, help="default 1 (with --against: the collection's)")
    p.add_argument("--verify", choices=["exact", "estimate", "none"], default="exact",
                   help="check candidate pairs by exact shingle Jaccard (precision 1.0), the MinHash estimate, or not")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="connect to this Ray cluster (e.g. ray://head:10001 or auto)")
    p.add_argument("--batch-size", type=int, default=10_000, help="documents per batch (bounds memory)")
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table")
    p.add_argument("--rule", choices=["components", "first-kept"],
                   help="which documents stay: one per connected component (default), or first-kept: drop a "
                        "document iff it near-duplicates an earlier kept one (the --against default)")
    p.add_argument("--against", metavar="INDEX_DIR", help="also drop near-duplicates of this index's --collection")
    p.add_argument("--against-address", metavar="HOST:PORT", help="the same, against a running simsearch server")
    p.add_argument("--collection", metavar="NAME", help="the collection of --against / --against-address")
    p.add_argument("--token-file", help="with --against-address: the server's bearer token, in this file")
    p.add_argument("--tls-ca", help="with --against-address: TLS, trusting this CA certificate (PEM)")
    p.add_argument("--add", action="store_true",
                   help="then insert the kept documents into the collection (id, text, the other fields as "
                        "metadata), skipping any that another writer's near-duplicate beat in the meantime")
    p.add_argument("--label-field", help="with --add: the input field that becomes the document's label")
    p.add_argument("--vector-field", help="with --add: the input field (a list of floats) that becomes its vector")
    p.set_defaults(func=_cmd_dedup)

    from ._cli_client import add_commands

    add_commands(sub)  # collections, ingest, query, search, export, snapshot: a client of a running server
    return parser


def _cmd_lsh_params(args: argparse.Namespace) -> int:
    from .banding import lsh_error_areas, lsh_params, lsh_params_for_recall, lsh_probability, plot_s_curve

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
    from ._cli_client import COMMANDS, run

    if args.command in COMMANDS:
        return run(args)
    try:
        return args.func(args)
    except (SimsearchError, OSError) as exc:
        print(f"simsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
