"""``simsearch collections | ingest | query | search | export | snapshot``: a command-line client of a
running ``simsearch serve``, through :class:`simsearch.Client`.

Every command takes ``--address`` (default ``$SIMSEARCH_ADDRESS`` or 127.0.0.1:50051),
``--token-file``, ``--tls-ca`` and ``--timeout``, prints a table (or JSON lines with ``--json``),
and exits 0 on success, 2 for bad input (a bad argument or file, an unknown or existing name) and
1 for anything else (server unreachable, refused by a limit, internal error), with a one-line
message on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

DEFAULT_ADDRESS = "127.0.0.1:50051"
_JSONL_EXT = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
_PARQUET_EXT = (".parquet", ".pq")


class BadInput(Exception):
    """A problem with what the user passed (exit 2)."""


# -- output ---------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def emit(rows: list[dict], columns: Sequence[str], as_json: bool, out=None) -> None:
    """JSON lines, or an aligned table of ``columns`` (long cells cut at 60 characters)."""
    out = out or sys.stdout
    if as_json:
        for row in rows:
            out.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
        return
    if not rows:
        out.write("(none)\n")
        return

    def cell(v: Any) -> str:
        text = json.dumps(_jsonable(v), ensure_ascii=False) if isinstance(v, (dict, list, tuple)) else \
            ("" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
        text = text.replace("\n", " ")
        return text if len(text) <= 60 else text[:59] + "…"

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


# -- reading input files ----------------------------------------------------------------------
def _files(inputs: Sequence[str]) -> list[str]:
    """The JSONL/Parquet files of ``inputs`` (a directory: its files of those kinds, sorted)."""
    out = []
    for inp in inputs:
        if os.path.isdir(inp):
            for root, dirs, files in os.walk(inp):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if not f.startswith(".") and f.lower().endswith(_JSONL_EXT + _PARQUET_EXT))
        elif os.path.exists(inp):
            if not inp.lower().endswith(_JSONL_EXT + _PARQUET_EXT):
                raise BadInput(f"{inp}: expected a .jsonl[.gz] or .parquet file (or a directory of them)")
            out.append(inp)
        else:
            raise BadInput(f"{inp}: no such file or directory")
    return out


def _records(path: str) -> Iterator[tuple[int, dict]]:
    """(line or row number, record) of one JSONL or Parquet file."""
    if path.lower().endswith(_PARQUET_EXT):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
        return
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise BadInput(f"{path}:{lineno}: expected a JSON object per line")
            yield lineno, rec


def _document(rec: dict, args, where: str) -> dict:
    if args.id_field not in rec or rec[args.id_field] is None:
        raise BadInput(f"{where}: no id field {args.id_field!r} (pass --id-field)")
    doc: dict[str, Any] = {"id": str(rec[args.id_field])}
    for key, field in (("text", args.text_field), ("vector", args.vector_field), ("label", args.label_field),
                       ("metadata", args.metadata_field)):
        if field and rec.get(field) is not None:
            doc[key] = rec[field]
    if "label" in doc:
        doc["label"] = str(doc["label"])
    return doc


# -- the client -------------------------------------------------------------------------------
def _client(args):
    from .client import Client

    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise BadInput(f"cannot read the token file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise BadInput(f"the token file {args.token_file} is empty")
    if args.tls_ca and not os.path.exists(args.tls_ca):
        raise BadInput(f"{args.tls_ca}: no such CA certificate file")
    return Client(args.address, token=token, tls=args.tls_ca or None, timeout=args.timeout)


def _info_row(info) -> dict:
    cfg = info.config
    return {"name": info.name, "count": info.count, "dim": cfg.dim, "metric": cfg.metric, "shingle": cfg.shingle,
            "ngram": cfg.ngram, "num_perm": cfg.num_perm, "threshold": cfg.threshold}


_INFO_COLUMNS = ("name", "count", "dim", "metric", "shingle", "ngram", "num_perm", "threshold")


def cmd_collections(args) -> int:
    from .index import CollectionInfo

    with _client(args) as client:
        if args.action == "list":
            emit([_info_row(i) for i in client.list_collections()], _INFO_COLUMNS, args.json)
        elif args.action == "create":
            kwargs = {k: getattr(args, k) for k in ("dim", "threshold", "ngram", "num_perm", "shingle", "metric", "seed")
                      if getattr(args, k) is not None}
            coll = client.create_collection(args.name, store_text=not args.no_store_text,
                                            store_shingles=not args.no_store_shingles, exist_ok=args.exist_ok,
                                            **kwargs)
            emit([_info_row(CollectionInfo(coll.name, coll.config, coll.count()))], _INFO_COLUMNS, args.json)
        elif args.action == "drop":
            client.drop_collection(args.name)
            emit([{"dropped": args.name}], ("dropped",), args.json)
        else:  # info
            coll = client.get_collection(args.name)
            emit([_info_row(CollectionInfo(coll.name, coll.config, coll.count()))], _INFO_COLUMNS, args.json)
    return 0


def cmd_ingest(args) -> int:
    from tqdm import tqdm

    files = _files(args.files)
    if not files:
        raise BadInput("no .jsonl or .parquet files in the inputs")
    start = time.perf_counter()
    read = {"documents": 0}
    bar = tqdm(unit="doc", desc=f"ingest {args.collection}", disable=args.quiet or not sys.stderr.isatty(),
               file=sys.stderr)

    def batches() -> Iterator[list[dict]]:
        batch: list[dict] = []
        for path in files:
            for n, rec in _records(path):
                batch.append(_document(rec, args, f"{path}:{n}"))
                if len(batch) >= args.batch_size:
                    read["documents"] += len(batch)
                    bar.update(len(batch))
                    yield batch
                    batch = []
        if batch:
            read["documents"] += len(batch)
            bar.update(len(batch))
            yield batch

    with _client(args) as client:
        if args.create:
            dims = {"dim": args.dim} if args.dim is not None else {}
            coll = client.create_collection(args.collection, exist_ok=True, **dims)
        else:
            coll = client.get_collection(args.collection)
        try:
            result = coll.upsert_stream(batches())
        finally:
            bar.close()
    seconds = time.perf_counter() - start
    emit([{"collection": args.collection, "files": len(files), "read": read["documents"], "upserted": result.upserted,
           "replaced": result.replaced, "seconds": round(seconds, 3),
           "docs_per_s": round(result.upserted / seconds, 1) if seconds > 0 else None}],
         ("collection", "files", "read", "upserted", "replaced", "seconds", "docs_per_s"), args.json)
    return 0


def _query_texts(path: str, text_field: str) -> list[str]:
    if path.lower().endswith(_JSONL_EXT + _PARQUET_EXT):
        out = []
        for n, rec in _records(path):
            if not isinstance(rec.get(text_field), str):
                raise BadInput(f"{path}:{n}: no string field {text_field!r} (pass --text-field)")
            out.append(rec[text_field])
        return out
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh if line.strip()]
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None


def cmd_query(args) -> int:
    given = [x is not None for x in (args.text, args.id, args.file)]
    if sum(given) != 1:
        raise BadInput("query takes exactly one of TEXT, --id ID and --file F")
    with _client(args) as client:
        coll = client.get_collection(args.collection)
        kw = {"threshold": args.threshold, "k": args.k, "exact": args.exact}
        if args.file is not None:
            queries = _query_texts(args.file, args.text_field)
            results = coll.near_duplicates_batch(texts=queries, **kw) if queries else []
        elif args.id is not None:
            queries, results = [args.id], [coll.near_duplicates(id=args.id, **kw)]
        else:
            queries, results = [args.text], [coll.near_duplicates(args.text, **kw)]
    rows = [{"query": q if args.file is not None else i, "id": h.id, "jaccard": h.jaccard,
             "estimated_jaccard": h.estimated_jaccard}
            for i, (q, hits) in enumerate(zip(queries, results)) for h in hits]
    emit(rows, ("query", "id", "jaccard", "estimated_jaccard"), args.json)
    return 0


def _vector(text: str) -> list[float]:
    try:
        values = json.loads(text) if text.strip().startswith("[") else [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--vector must be numbers separated by commas (or a JSON list). Got {text!r}.") from None
    if not values:
        raise BadInput("--vector is empty")
    return values


def cmd_search(args) -> int:
    if (args.vector is None) == (args.id is None):
        raise BadInput("search takes exactly one of --vector V and --id ID")
    kw = {"k": args.k} | ({"metric": args.metric} if args.metric else {})
    with _client(args) as client:
        coll = client.get_collection(args.collection)
        hits = coll.search(_vector(args.vector), **kw) if args.vector is not None else coll.search(id=args.id, **kw)
    emit([{"id": h.id, "distance": h.distance} for h in hits], ("id", "distance"), args.json)
    return 0


def _doc_record(d) -> dict:
    return {"id": d.id, "text": d.text, "metadata": d.metadata,
            "vector": None if d.vector is None else d.vector.tolist(), "label": d.label}


def cmd_export(args) -> int:
    tmp = f"{args.output}.tmp-{os.getpid()}"
    n = 0
    with _client(args) as client:
        coll = client.get_collection(args.name)
        if args.ids is None and not hasattr(coll, "scroll"):
            raise BadInput("this client has no Scroll RPC; pass --ids FILE (one id per line) to export those ids")
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                if args.ids is None:  # every document, in id order, page by page
                    pages = coll.scroll(batch_size=args.batch_size, with_text=True, with_vector=True)
                    for page in pages:
                        for d in page.documents:
                            out.write(json.dumps(_doc_record(d), ensure_ascii=False) + "\n")
                            n += 1
                else:
                    ids = _query_texts(args.ids, "id")
                    for lo in range(0, len(ids), args.batch_size):
                        for d in coll.get(ids[lo:lo + args.batch_size]):
                            out.write(json.dumps(_doc_record(d), ensure_ascii=False) + "\n")
                            n += 1
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    emit([{"collection": args.name, "documents": n, "output": args.output}], ("collection", "documents", "output"),
         args.json)
    return 0


def cmd_snapshot(args) -> int:
    with _client(args) as client:
        if args.list:
            infos = client.list_snapshots()
        elif args.delete:
            client.delete_snapshot(args.delete)
            emit([{"deleted": args.delete}], ("deleted",), args.json)
            return 0
        else:
            infos = [client.snapshot(args.name or "")]
    emit([{"name": s.name, "size_bytes": s.size_bytes,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.created_unix_seconds))} for s in infos],
         ("name", "size_bytes", "created"), args.json)
    return 0


# -- the parser -------------------------------------------------------------------------------
def _connection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument("--address", default=os.environ.get("SIMSEARCH_ADDRESS", DEFAULT_ADDRESS),
                   help=f"host:port of the server (default: $SIMSEARCH_ADDRESS or {DEFAULT_ADDRESS})")
    g.add_argument("--token-file", help="send 'authorization: Bearer <token>' with the token in this file")
    g.add_argument("--tls-ca", help="connect with TLS, trusting this CA certificate (PEM)")
    g.add_argument("--timeout", type=float, help="deadline of each call in seconds (default: none)")
    g.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    return p


def add_commands(sub) -> None:
    """Add the client subcommands to the ``simsearch`` parser's subparsers."""
    conn = _connection_options()

    # (the connection options sit on each action, not on "collections" too: argparse would let the
    # action's defaults overwrite values given before it)
    p = sub.add_parser("collections", help="list, create, drop or describe collections on a server")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[conn], help="every collection with its size and config")
    c = actions.add_parser("create", parents=[conn], help="create a collection")
    c.add_argument("name")
    c.add_argument("--dim", type=int, help="vector dimension (default: no vectors)")
    c.add_argument("--threshold", type=float)
    c.add_argument("--ngram", type=int)
    c.add_argument("--num-perm", type=int)
    c.add_argument("--shingle", choices=["word", "char"])
    c.add_argument("--metric", choices=["cosine", "euclidean", "sqeuclidean", "manhattan"])
    c.add_argument("--seed", type=int)
    c.add_argument("--no-store-text", action="store_true")
    c.add_argument("--no-store-shingles", action="store_true")
    c.add_argument("--exist-ok", action="store_true", help="succeed if it exists with the same config")
    for name, text in (("drop", "drop a collection and its documents"), ("info", "one collection's size and config")):
        a = actions.add_parser(name, parents=[conn], help=text)
        a.add_argument("name")
    p.set_defaults(func=cmd_collections)

    p = sub.add_parser("ingest", parents=[conn], help="stream JSONL / Parquet records into a collection on a server")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL[.gz] or Parquet files, or directories of them")
    p.add_argument("--collection", required=True)
    p.add_argument("--create", action="store_true", help="create the collection (defaults, --dim) if missing")
    p.add_argument("--dim", type=int, help="with --create: the vector dimension")
    p.add_argument("--id-field", default="id")
    p.add_argument("--text-field", default="text")
    p.add_argument("--vector-field", default="vector")
    p.add_argument("--label-field", default="label")
    p.add_argument("--metadata-field", default="metadata", help="a JSON object field stored as the metadata")
    p.add_argument("--batch-size", type=int, default=1000, help="documents per streamed batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("query", parents=[conn], help="near-duplicates of a text, a stored id or a file of texts")
    p.add_argument("text", nargs="?", help="the query text")
    p.add_argument("--collection", required=True)
    p.add_argument("--id", help="query with this stored document (left out of its own results)")
    p.add_argument("--file", help="one query per line (or JSONL/Parquet records with --text-field)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--threshold", type=float)
    p.add_argument("-k", "--k", type=int)
    p.add_argument("--exact", action="store_true", help="rank by the exact Jaccard")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("search", parents=[conn], help="k nearest vectors of a vector or a stored id")
    p.add_argument("--collection", required=True)
    p.add_argument("--vector", help="comma-separated floats, or a JSON list (--vector=-0.5,1 when it starts with -)")
    p.add_argument("--id")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--metric", choices=["cosine", "euclidean", "sqeuclidean", "manhattan"])
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", parents=[conn], help="write a collection's documents to a JSONL file")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--ids", metavar="FILE", help="only these ids (one per line); needed without the Scroll RPC")
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("snapshot", parents=[conn], help="snapshots on the server (under its --snapshot-dir)")
    p.add_argument("name", nargs="?", help="the new snapshot's name (default: snapshot-<time>)")
    p.add_argument("--list", action="store_true", help="list the snapshots")
    p.add_argument("--delete", metavar="NAME", help="delete this snapshot")
    p.set_defaults(func=cmd_snapshot)


COMMANDS = ("collections", "ingest", "query", "search", "export", "snapshot")


def run(args) -> int:
    """Run a client command: 0, 2 (bad input) or 1 (other errors), with a one-line message."""
    from .errors import AlreadyExistsError, InvalidArgumentError, InvalidTypeError, NotFoundError, SimsearchError

    try:
        return args.func(args)
    except (BadInput, InvalidArgumentError, InvalidTypeError, NotFoundError, AlreadyExistsError) as exc:
        code, exc_ = 2, exc
    except (SimsearchError, OSError) as exc:
        code, exc_ = 1, exc
    except KeyboardInterrupt:
        code, exc_ = 1, "interrupted"
    message = " ".join(str(exc_).split())
    if getattr(exc_, "committed_documents", None) is not None:
        message += f" ({exc_.committed_documents} documents in {exc_.committed_batches} batches were committed before it)"
    print(f"simsearch {args.command}: error: {message}", file=sys.stderr)
    return code
