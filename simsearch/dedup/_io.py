"""Inputs and outputs of the dedup pipeline: finding the files, reading them in batches, writing the kept records.

An input is cut into *units*: one JSONL or Parquet file, or a group of up to ``batch_size`` text
files. A unit is the smallest piece one worker reads; documents are numbered in input order,
units first, so ``global index = unit offset + row in unit``. Every reader can be told which rows
to parse (``select``), so later passes only decode the documents they need.

Bad input raises :class:`~simsearch.errors.InputDataError` naming the file and the line (JSONL,
1-based, blank lines counted) or row (Parquet, 1-based).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from ..errors import InputDataError, InvalidArgumentError

__all__ = ["FORMATS", "Unit", "Batch", "ReadConfig", "plan_units", "read_unit", "write_unit", "hash_ids", "unit_ids",
           "location", "read_records"]

FORMATS = ("jsonl", "parquet", "text")
_JSONL_EXT = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
_PARQUET_EXT = (".parquet", ".pq")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Unit:
    """The smallest piece of input one worker reads, and where its kept records go under data/."""

    format: str
    paths: tuple[str, ...]
    outs: tuple[str, ...]


@dataclass(frozen=True)
class ReadConfig:
    text_field: str = "text"
    id_field: str | None = None
    batch_size: int = 10_000


@dataclass
class Batch:
    """Up to ``batch_size`` documents of one unit: their rows in the unit, texts and (maybe) ids."""

    rows: np.ndarray  # int64, rows within the unit, ascending
    texts: list[str]
    ids: list[str] | None
    lines: np.ndarray  # int64, 1-based line (JSONL) or row (Parquet); 0 for text files


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    """uint64 XXH64 of each id's UTF-8 bytes: what the duplicate-id check sorts."""
    h = xxhash.xxh64_intdigest
    return np.fromiter((h(i.encode("utf-8", "surrogatepass")) for i in ids), dtype=np.uint64, count=len(ids))


# ---------------------------------------------------------------------------------------------
# Planning: which files, which format, which units.


def _kind(path: str) -> str | None:
    low = path.lower()
    if low.endswith(_JSONL_EXT):
        return "jsonl"
    if low.endswith(_PARQUET_EXT):
        return "parquet"
    return None


def _walk(root: str) -> list[str]:
    """Files under ``root``, sorted, skipping hidden files and folders (names starting with '.')."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise_walk):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    return out


def _raise_walk(exc: OSError) -> None:
    raise InputDataError(f"{exc.filename}: cannot read ({exc.strerror})", path=exc.filename) from None


def _expand(inputs: Sequence[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """For each input: (input, [(file, path relative to the input's root)])."""
    out = []
    for inp in inputs:
        if os.path.isdir(inp):
            files = [(f, os.path.relpath(f, inp)) for f in _walk(inp)]
        elif os.path.exists(inp):
            files = [(inp, os.path.basename(inp))]
        else:
            raise InputDataError(f"{inp}: no such file or directory", path=inp)
        out.append((inp, files))
    return out


def detect_format(expanded) -> str:
    """The one format of all inputs, from their extensions (see plan_units)."""
    kinds = set()
    for inp, files in expanded:
        file_kinds = {_kind(f) for f, _ in files}
        if os.path.isdir(inp):
            kinds.add(file_kinds.pop() if len(file_kinds) == 1 and None not in file_kinds else "text")
        elif None in file_kinds:
            raise InvalidArgumentError(
                f"{inp}: cannot tell the format from the extension (expected .jsonl, .jsonl.gz, .parquet, or a "
                "directory of text files); pass --format jsonl|parquet|text.")
        else:
            kinds |= file_kinds
    if len(kinds) > 1:
        raise InvalidArgumentError(f"The inputs mix formats ({', '.join(sorted(kinds))}); pass one format at a time.")
    return kinds.pop() if kinds else "text"


def plan_units(inputs: Sequence[str], fmt: str | None, batch_size: int) -> tuple[str, list[Unit]]:
    """The format and the units of ``inputs`` (files and directories, in the order given).

    With ``fmt`` None the format comes from the extensions: .jsonl/.ndjson/.json (optionally .gz)
    is JSONL, .parquet/.pq Parquet; a directory whose files all have one of those extensions is
    that format, any other directory is text (one file, one document).
    """
    if not inputs:
        raise InvalidArgumentError("dedup needs at least one input file or directory.")
    expanded = _expand(inputs)
    fmt = detect_format(expanded) if fmt is None else fmt
    outs_multi = len(inputs) > 1 and _collide(expanded)
    units = []
    for k, (_, files) in enumerate(expanded):
        prefix = f"input{k}" if outs_multi else ""
        pairs = [(f, os.path.join(prefix, rel) if prefix else rel) for f, rel in files]
        if fmt == "text":
            for s in range(0, len(pairs), batch_size):
                chunk = pairs[s : s + batch_size]
                units.append(Unit("text", tuple(p for p, _ in chunk), tuple(o for _, o in chunk)))
        else:
            units.extend(Unit(fmt, (p,), (o,)) for p, o in pairs)
    return fmt, units


def _collide(expanded) -> bool:
    seen = set()
    for _, files in expanded:
        for _, rel in files:
            if rel in seen:
                return True
            seen.add(rel)
    return False


# ---------------------------------------------------------------------------------------------
# Reading.


def read_unit(unit: Unit, cfg: ReadConfig, *, select: np.ndarray | None = None,
              want_ids: bool = True) -> Iterator[Batch]:
    """Batches of the documents of ``unit``; with ``select`` (sorted unit rows) only those rows are decoded.

    Rows not selected are still checked for being records (so row numbers are right), not parsed.
    """
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "text": _read_text}[unit.format]
    return reader(unit, cfg, select, want_ids)


def _open_binary(path: str):
    """A buffered binary reader of ``path``, decompressing gzip (detected by its magic bytes)."""
    try:
        fh = open(path, "rb")
        head = fh.peek(2)[:2] if hasattr(fh, "peek") else b""
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror or exc})", path=path) from None
    if head == _GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=fh, mode="rb"), buffer_size=1 << 20), True
    return fh, False


@dataclass
class _Block:
    """Whole lines of a JSONL stream: the bytes, and the non-blank lines' spans and 1-based numbers."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray


_BLOCK_BYTES = 16 << 20
_WS = np.frombuffer(b" \t\r\n\f\v", dtype=np.uint8)


def _jsonl_blocks(path: str) -> Iterator[_Block]:
    """The (decompressed) file in blocks of whole lines; blank lines are numbered but not listed."""
    fh, _ = _open_binary(path)
    lineno, carry = 0, b""
    with fh:
        while True:
            try:
                chunk = fh.read(_BLOCK_BYTES)
            except (OSError, EOFError, zlib.error) as exc:
                line = lineno + carry.count(b"\n") + 1
                raise InputDataError(f"{path}:{line}: cannot read ({exc})", path=path, line=line) from None
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue
            elif not data:
                return
            blk, total = _split_lines(data, lineno)
            lineno += total
            yield blk
            if not chunk:
                return


def _split_lines(data: bytes, lineno: int) -> tuple[_Block, int]:
    """The block's non-blank lines, and how many lines it has in all."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    starts = np.zeros(len(ends), dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    total = len(ends)
    numbers = lineno + 1 + np.arange(total, dtype=np.int64)
    suspect = np.flatnonzero((ends == starts) | np.isin(arr[np.minimum(starts, len(arr) - 1)], _WS))
    blank = [k for k in suspect.tolist() if not data[starts[k] : ends[k]].strip()]
    if blank:
        keep = np.ones(len(ends), dtype=bool)
        keep[blank] = False
        starts, ends, numbers = starts[keep], ends[keep], numbers[keep]
    return _Block(data, starts, ends.astype(np.int64), numbers), total


def _bad(path: str, line: int, what: str, fmt: str = "jsonl") -> InputDataError:
    return InputDataError(f"{location(fmt, path, line)}: {what}", path=path, line=line)


def _json_record(path: str, lineno: int, raw: bytes, cfg: ReadConfig, want_ids: bool) -> tuple[str, str | None]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(path, lineno, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # undecodable bytes
        raise _bad(path, lineno, f"malformed JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _bad(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get(cfg.text_field)
    if not isinstance(text, str):
        what = "missing" if cfg.text_field not in obj else f"not a string ({type(text).__name__})"
        raise _bad(path, lineno, f"text field {cfg.text_field!r} is {what}")
    if not want_ids or cfg.id_field is None:
        return text, None
    return text, _id_value(obj.get(cfg.id_field, None), cfg.id_field in obj, path, lineno, cfg.id_field)


def _id_value(value, present: bool, path: str, line: int, field: str, fmt: str = "jsonl") -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    what = "missing" if not present else f"not a string or integer ({type(value).__name__})"
    raise _bad(path, line, f"id field {field!r} is {what}", fmt)


def _read_jsonl(unit: Unit, cfg: ReadConfig, select, want_ids) -> Iterator[Batch]:
    path = unit.paths[0]
    with_ids = want_ids and cfg.id_field is not None
    row = 0
    for blk in _jsonl_blocks(path):
        m = len(blk.starts)
        if select is None:
            picks = np.arange(m)
        else:
            lo, hi = np.searchsorted(select, [row, row + m])
            picks = select[lo:hi] - row
        for s in range(0, len(picks), cfg.batch_size):
            k = picks[s : s + cfg.batch_size]
            texts, ids = _parse_lines(path, blk, k, cfg, with_ids)
            yield Batch(row + k, texts, ids, blk.lines[k])
        row += m
        if select is not None and (not len(select) or row > select[-1]):
            return


def _parse_lines(path: str, blk: _Block, k: np.ndarray, cfg: ReadConfig, with_ids: bool):
    """Texts (and ids) of lines ``k`` of a block: pyarrow's parser, or line by line where it disagrees."""
    contiguous = len(k) and k[-1] - k[0] + 1 == len(k)
    if contiguous:
        payload = blk.data[blk.starts[k[0]] : blk.ends[k[-1]]]
    else:
        payload = b"\n".join(blk.data[a:b] for a, b in zip(blk.starts[k].tolist(), blk.ends[k].tolist()))
    fast = _parse_fast(payload, len(k), cfg, with_ids)
    if fast is not None:
        return fast
    texts, ids = [], []
    for a, b, line in zip(blk.starts[k].tolist(), blk.ends[k].tolist(), blk.lines[k].tolist()):
        text, id_ = _json_record(path, line, blk.data[a:b], cfg, with_ids)
        texts.append(text)
        ids.append(id_)
    return texts, (ids if with_ids else None)


def _parse_fast(payload: bytes, rows: int, cfg: ReadConfig, with_ids: bool):
    """(texts, ids) via pyarrow.json when every line is one object with a string text (and a string or
    integer id); None to fall back to the line-by-line parser, which names the bad line."""
    import pyarrow as pa
    import pyarrow.json as pj

    for id_type in (pa.string(), pa.int64()) if with_ids else (None,):
        fields = [(cfg.text_field, pa.string())] + ([(cfg.id_field, id_type)] if with_ids else [])
        opts = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
        try:
            table = pj.read_json(pa.BufferReader(payload), parse_options=opts,
                                 read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(payload), 1 << 26))))
        except (pa.ArrowException, ValueError):
            continue
        if table.num_rows != rows or any(c.null_count for c in table.columns):
            return None
        texts = table.column(0).to_pylist()
        if not with_ids:
            return texts, None
        ids = table.column(1).to_pylist()
        return texts, (ids if id_type == pa.string() else [str(i) for i in ids])
    return None


def _parquet_file(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror or exc})", path=path) from None
    except (pa.ArrowException, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read as Parquet ({exc})", path=path) from None


def _parquet_columns(path: str, pf, cfg: ReadConfig, want_ids: bool) -> list[str]:
    import pyarrow as pa

    schema = pf.schema_arrow
    cols = [cfg.text_field] + ([cfg.id_field] if want_ids and cfg.id_field is not None else [])
    for c, kind in zip(cols, ("text", "id")):
        if schema.get_field_index(c) < 0:
            raise InputDataError(
                f"{path}: no {kind} column {c!r} (columns: {', '.join(schema.names)}); pass --{kind}-field.", path=path)
        t = schema.field(c).type
        ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        if kind == "id":
            ok = ok or pa.types.is_integer(t)
        if not ok:
            raise InputDataError(f"{path}: {kind} column {c!r} has type {t}, expected a string", path=path)
    return cols


def _read_parquet(unit: Unit, cfg: ReadConfig, select, want_ids) -> Iterator[Batch]:
    import pyarrow as pa

    path = unit.paths[0]
    pf = _parquet_file(path)
    cols = _parquet_columns(path, pf, cfg, want_ids)
    start = 0
    try:
        for rb in pf.iter_batches(batch_size=cfg.batch_size, columns=cols):
            m = rb.num_rows
            rows = np.arange(start, start + m, dtype=np.int64)
            if select is not None:
                lo, hi = np.searchsorted(select, [start, start + m])
                rows = select[lo:hi]
                rb = rb.take(pa.array(rows - start))
            start += m
            if not len(rows):
                continue
            texts = _non_null(rb.column(0), path, rows, cfg.text_field, "text")
            ids = None
            if len(cols) > 1:
                ids = [str(v) for v in _non_null(rb.column(1), path, rows, cfg.id_field, "id")]
            yield Batch(rows, texts, ids, rows + 1)
            if select is not None and start > (select[-1] if len(select) else -1):
                break
    except (OSError, pa.ArrowException) as exc:
        raise InputDataError(f"{path}: row {start + 1}: cannot read ({exc})", path=path, line=start + 1) from None


def _non_null(col, path: str, rows: np.ndarray, name: str, kind: str) -> list:
    if col.null_count:
        first = int(np.flatnonzero(np.asarray(col.is_null()))[0])
        raise _bad(path, int(rows[first]) + 1, f"{kind} field {name!r} is null", "parquet")
    return col.to_pylist()


def _read_text(unit: Unit, cfg: ReadConfig, select, want_ids) -> Iterator[Batch]:
    rows = np.arange(len(unit.paths), dtype=np.int64) if select is None else np.asarray(select, dtype=np.int64)
    texts = [_read_text_file(unit.paths[r]) for r in rows]
    if len(rows):
        yield Batch(rows, texts, [unit.paths[r] for r in rows] if want_ids else None, np.zeros(len(rows), np.int64))


def _read_text_file(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror or exc})", path=path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})", path=path) from None


def read_records(unit: Unit, cfg: ReadConfig, select: np.ndarray) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """(rows, whole records) of the sorted rows ``select`` of ``unit``, in batches: every field of a
    JSONL object or Parquet row (``--add`` copies them), ``{text_field: text}`` for a text file."""
    if unit.format == "text":
        for b in read_unit(unit, cfg, select=select, want_ids=False):
            yield b.rows, [{cfg.text_field: t} for t in b.texts]
        return
    if unit.format == "parquet":
        import pyarrow as pa

        pf = _parquet_file(unit.paths[0])
        start = 0
        for rb in pf.iter_batches(batch_size=cfg.batch_size):
            lo, hi = np.searchsorted(select, [start, start + rb.num_rows])
            if hi > lo:
                rows = select[lo:hi]
                yield rows, rb.take(pa.array(rows - start)).to_pylist()
            start += rb.num_rows
        return
    path, row = unit.paths[0], 0
    for blk in _jsonl_blocks(path):
        m = len(blk.starts)
        lo, hi = np.searchsorted(select, [row, row + m])
        k = select[lo:hi] - row
        for s in range(0, len(k), cfg.batch_size):
            kk = k[s : s + cfg.batch_size]
            recs = [json.loads(blk.data[a:b]) for a, b in zip(blk.starts[kk].tolist(), blk.ends[kk].tolist())]
            yield row + kk, recs
        row += m


def unit_ids(unit: Unit, cfg: ReadConfig, select: np.ndarray) -> dict[int, tuple[str, str, int | None]]:
    """{row: (id, path, line)} for the rows ``select`` of ``unit`` (line None for text files)."""
    out = {}
    for b in read_unit(unit, cfg, select=select, want_ids=True):
        for r, i, ln in zip(b.rows.tolist(), b.ids or [None] * len(b.rows), b.lines.tolist()):
            path = unit.paths[0] if unit.format != "text" else unit.paths[r]
            out[r] = (i, path, ln if unit.format != "text" else None)
    return out


def location(fmt: str, path: str, line: int | None) -> str:
    """How messages name a place: ``path:line`` (JSONL), ``path: row N`` (Parquet), ``path`` (text)."""
    if line is None:
        return path
    return f"{path}: row {line}" if fmt == "parquet" else f"{path}:{line}"


# ---------------------------------------------------------------------------------------------
# Writing the kept records.


def write_unit(unit: Unit, cfg: ReadConfig, keep_rows: np.ndarray, root: str) -> None:
    """Write the records at the sorted rows ``keep_rows`` of ``unit`` under ``root``, in its own format."""
    for out in unit.outs:
        os.makedirs(os.path.dirname(os.path.join(root, out)) or root, exist_ok=True)
    {"jsonl": _write_jsonl, "parquet": _write_parquet, "text": _write_text}[unit.format](unit, cfg, keep_rows, root)


def _write_jsonl(unit: Unit, cfg: ReadConfig, keep_rows, root) -> None:
    path = unit.paths[0]
    _, gz = _open_binary(path)
    dest = os.path.join(root, unit.outs[0])
    raw_out = open(dest, "wb")
    out = gzip.GzipFile(fileobj=raw_out, mode="wb", compresslevel=6, mtime=0) if gz else raw_out
    with raw_out, out:
        row = 0
        for blk in _jsonl_blocks(path):
            m = len(blk.starts)
            lo, hi = np.searchsorted(keep_rows, [row, row + m])
            k = keep_rows[lo:hi] - row
            if len(k):
                d = blk.data
                out.write(b"".join(d[a:b] + b"\n" for a, b in zip(blk.starts[k].tolist(), blk.ends[k].tolist())))
            row += m


def _write_parquet(unit: Unit, cfg: ReadConfig, keep_rows, root) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = unit.paths[0]
    pf = _parquet_file(path)
    dest = os.path.join(root, unit.outs[0])
    with pq.ParquetWriter(dest, pf.schema_arrow) as writer:
        start = 0
        for rb in pf.iter_batches(batch_size=cfg.batch_size):
            lo, hi = np.searchsorted(keep_rows, [start, start + rb.num_rows])
            if hi > lo:
                writer.write_batch(rb.take(pa.array(keep_rows[lo:hi] - start)))
            start += rb.num_rows


def _write_text(unit: Unit, cfg: ReadConfig, keep_rows, root) -> None:
    for r in keep_rows.tolist():
        shutil.copyfile(unit.paths[r], os.path.join(root, unit.outs[r]))
