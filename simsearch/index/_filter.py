"""The filter language of simsearch: which documents a query, a scan or a training may see.

A filter is a dict in Python and the same object as JSON text over gRPC (:func:`parse` decodes
the text to the dict and runs the one parser). ``None``, ``{}`` and ``""`` match every document::

    {"and": [{"lang": "en"}, {"year": {"gte": 2020}}, {"not": {"$label": {"in": ["spam", "ads"]}}}]}

Grammar::

    filter    := {entry, ...}                 the entries of an object are ANDed; {} matches all
    entry     := "and": [filter, ...]         all of them (a non-empty list)
               | "or":  [filter, ...]         any of them (a non-empty list)
               | "not": filter                the complement
               | field: value                 shorthand for field: {"eq": value}
               | field: {op: operand, ...}    the operators are ANDed (at least one)
    op        := "eq": value | "in": [value, ...] | "exists": true|false
               | "gt" | "gte" | "lt" | "lte": number
    value     := str | number | bool | null
    field     := "$id" | "$label" | "$metadata." path | path
    path      := key ("." key)*               a key of the metadata, then of the object in it ...

Fields. A plain path reads the metadata: ``"a.b"`` is ``metadata["a"]["b"]``. The document's id
and label are the reserved names ``$id`` and ``$label``: ``$`` cannot clash with the plain keys
the old ``{key: value}`` equality dicts used, and metadata may well hold a key called "id". A
path whose first key is ``and``, ``or``, ``not`` or starts with ``$`` is written
``"$metadata.<path>"`` (``$metadata.id`` is ``metadata["id"]`` too). A key that contains a dot
cannot be filtered on. A path has 1 to 8 non-empty keys and at most 256 UTF-8 bytes.

Values and types. At a path a document has one of: nothing (the key is absent, something on the
way is not an object, or the value is JSON null: all three are "missing"), a bool, a number, a
string, or an array/object. ``$id`` is always a string, ``$label`` a string or missing.

- ``eq``: the same type and the same value. Numbers compare as float64 (``1 == 1.0``; integers
  beyond 2**53 round, beyond the float range are infinite); a bool is not a number (``true != 1``)
  and a string equals only a string (``"1" != 1``). ``eq: null`` means "missing".
- ``in``: ``eq`` one of the values (``[]`` matches nothing).
- ``gt``/``gte``/``lt``/``lte``: a number in the range. The operand must be a number (else an
  error); a document whose value is not a number (a string, a bool, missing) does not match.
- ``exists``: whether the field is there and not null. Arrays and objects only ever match
  ``exists``: no comparison looks inside them.
- ``not`` is a plain complement: ``{"not": {"year": {"gte": 2020}}}`` keeps documents without a year.
- On ``$id`` and ``$label`` the values must be strings (``null`` too for ``$label``); ranges are
  refused.

Limits, so that one request cannot exhaust a server (the MAX_* constants): 16 nested objects,
256 clauses (each and/or/not and each operator on a field), 1024 values in an ``in``, 4096
UTF-8 bytes in a string value, 256 KiB of JSON text.

Errors. Anything wrong inside a filter raises :class:`~simsearch.errors.InvalidArgumentError`
whose message starts with its position, e.g. ``filter.and[1].year.gte: a range bound must be a
number ...``; a filter that is not a dict, a str or None raises InvalidTypeError.

Evaluation never parses JSON per document per query: a :class:`Filter` is compiled once, and
:meth:`Filter.mask` evaluates it with numpy over typed per-field :class:`Column` objects, which an
index builds once per field with :func:`build_columns` and keeps (:meth:`Column.to_bytes`).
:meth:`Filter.matches` tests one decoded document: a filter on a field that has no column still
works, by a scan. Both give the same answer on every document.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import struct
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, StorageCorruptionError, UnsupportedFormatError

__all__ = [
    "Filter", "Column", "parse", "build_columns", "MAX_DEPTH", "MAX_CLAUSES", "MAX_IN_VALUES",
    "MAX_PATH_KEYS", "MAX_PATH_BYTES", "MAX_STRING_BYTES", "MAX_JSON_BYTES",
]

MAX_DEPTH = 16  # nested condition objects, the outermost counting 1
MAX_CLAUSES = 256
MAX_IN_VALUES = 1024
MAX_PATH_KEYS = 8
MAX_PATH_BYTES = 256
MAX_STRING_BYTES = 4096
MAX_JSON_BYTES = 256 * 1024

# What a document holds at a field (Column.kind); a JSON null is MISSING.
MISSING, BOOL, NUMBER, STRING, OTHER = 0, 1, 2, 3, 4
_LOGICAL = ("and", "or", "not")
_RANGES = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_OPERATORS = ("eq", "in", "gt", "gte", "lt", "lte", "exists")
_RESERVED = ("$id", "$label")
_META = "$metadata."
_PLAIN_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-$.")
_NO_VALUE = (MISSING, None)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        return math.inf if value > 0 else -math.inf


def _scalar(value: Any) -> tuple[int, Any]:
    """(kind, comparable key) of a value found in a document: the one type rule that
    :meth:`Filter.matches` and :class:`Column` share."""
    t = type(value)
    if t is str:
        return STRING, value
    if t is bool:
        return BOOL, value
    if t is int or t is float:
        return NUMBER, _to_float(value)
    if value is None:
        return _NO_VALUE
    if isinstance(value, (bool, np.bool_)):
        return BOOL, bool(value)
    if isinstance(value, str):
        return STRING, str(value)
    if isinstance(value, numbers.Real):  # numpy numbers, int and float subclasses
        return NUMBER, _to_float(value)
    return OTHER, None


def _resolve(metadata: Any, path: tuple[str, ...]) -> Any:
    value = metadata
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _fail(pos: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{pos}: {message}")


def _at(pos: str, key: str) -> str:
    """The position of ``key`` inside ``pos``: ``filter.and[1].year``, or ``filter["a b"]``."""
    if key and set(key) <= _PLAIN_KEY:
        return f"{pos}.{key}"
    return f"{pos}[{json.dumps(key, ensure_ascii=False)}]"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _got(value: Any) -> str:
    """What a message says it got: the type and a short repr."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# -- compiled nodes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    name: str  # canonical: "$id", "$label", "a.b", "$metadata.and"
    path: tuple[str, ...] | None  # None for $id and $label


@dataclass(frozen=True)
class _Cmp:
    field: _Field
    op: str  # "eq" | "in" | a range | "exists"
    operand: Any  # eq: (kind, key); in: tuple of them; a range: float; exists: bool

    def _values(self) -> tuple[tuple[int, Any], ...]:
        return (self.operand,) if self.op == "eq" else self.operand

    def test(self, get) -> bool:
        kind, key = get(self.field)
        if self.op == "exists":
            return (kind != MISSING) == self.operand
        if self.op in _RANGES:
            return kind == NUMBER and _RANGES[self.op](key, self.operand)
        return (kind, key) in self._values()

    def mask(self, columns: Mapping[str, Column], n: int) -> np.ndarray:
        col = columns[self.field.name]
        if self.op == "exists":
            return col.kind != MISSING if self.operand else col.kind == MISSING
        if self.op in _RANGES:
            return _RANGES[self.op](col.number, self.operand)  # NaN where not a number: False
        out = np.zeros(n, dtype=bool)
        by_kind: dict[int, list] = {}
        for kind, key in self._values():
            by_kind.setdefault(kind, []).append(key)
        if NUMBER in by_kind:
            out |= np.isin(col.number, np.asarray(by_kind[NUMBER], dtype=np.float64))
        codes = [c for c in map(col.code_of, by_kind.get(STRING, ())) if c >= 0]
        if codes:
            out |= (col.kind == STRING) & np.isin(col.code, np.asarray(codes, dtype=np.int32))
        if BOOL in by_kind:
            out |= (col.kind == BOOL) & np.isin(col.code, np.asarray(by_kind[BOOL], dtype=np.int32))
        return out

    def to_dict(self) -> dict:
        if self.op == "eq":
            return {self.field.name: _plain(self.operand)}
        if self.op == "in":
            return {self.field.name: {"in": [_plain(v) for v in self.operand]}}
        if self.op == "exists":
            return {self.field.name: {"exists": self.operand}}
        return {self.field.name: {self.op: _plain((NUMBER, self.operand))}}


@dataclass(frozen=True)
class _Bool:
    op: str  # "and" | "or" | "not" (one child)
    children: tuple[_Node, ...]

    def test(self, get) -> bool:
        if self.op == "not":
            return not self.children[0].test(get)
        combine = all if self.op == "and" else any
        return combine(c.test(get) for c in self.children)

    def mask(self, columns: Mapping[str, Column], n: int) -> np.ndarray:
        if self.op == "not":
            return ~self.children[0].mask(columns, n)
        out = self.children[0].mask(columns, n)
        for child in self.children[1:]:
            out = (out & child.mask(columns, n)) if self.op == "and" else (out | child.mask(columns, n))
        return out

    def to_dict(self) -> dict:
        if self.op == "not":
            return {"not": self.children[0].to_dict()}
        return {self.op: [c.to_dict() for c in self.children]}


_Node = Union[_Cmp, _Bool]


def _plain(value: tuple[int, Any]) -> Any:
    """A compiled value as JSON-ready Python: an integral number within 2**53 as an int."""
    kind, key = value
    if kind == NUMBER and key.is_integer() and abs(key) <= 2**53:
        return int(key)
    return key


def _fields_of(node: _Node) -> set[_Field]:
    if isinstance(node, _Cmp):
        return {node.field}
    return set().union(*map(_fields_of, node.children))


class Filter:
    """A parsed, validated filter (see the module docstring); make one with :func:`parse`.
    ``fields`` names the fields it reads, canonical and sorted: the columns :meth:`mask` needs.
    Filters are immutable, hashable, and equal when their canonical forms are."""

    __slots__ = ("_root", "_fields", "fields")

    def __init__(self, root: _Node) -> None:
        self._root = root
        self._fields = tuple(sorted(_fields_of(root), key=lambda f: f.name))
        self.fields: tuple[str, ...] = tuple(f.name for f in self._fields)

    def mask(self, columns: Mapping[str, Column], n: int) -> np.ndarray:
        """The rows that match, as a bool array of length ``n``: ``columns`` maps each name in
        :attr:`fields` to a Column of ``n`` rows (from :func:`build_columns`)."""
        for name in self.fields:
            col = columns.get(name)
            if col is None or len(col) != n:
                got = "none" if col is None else f"one of {len(col)} rows"
                raise InvalidArgumentError(f"Filter.mask needs a Column of {n} rows for {name!r}; got {got}.")
        return np.asarray(self._root.mask(columns, n), dtype=bool)

    def matches(self, metadata: dict | None, *, id: str, label: str | None = None) -> bool:
        """Whether one document (its decoded metadata, id and label) matches: the scan over
        documents whose fields have no column."""
        def get(field: _Field) -> tuple[int, Any]:
            if field.path is None:
                return _scalar(id if field.name == "$id" else label)
            return _scalar(_resolve(metadata, field.path))

        return bool(self._root.test(get))

    def to_dict(self) -> dict:
        """The canonical dict form; ``parse(f.to_dict()) == f``."""
        return self._root.to_dict()

    def to_json(self) -> str:
        """The canonical JSON text, as sent over gRPC."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._root == other._root

    def __hash__(self) -> int:
        return hash(self._root)

    def __repr__(self) -> str:
        return f"Filter({self.to_json()})"


# -- the parser ----------------------------------------------------------------------------------
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        dup = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"the key {dup!r} appears twice in one object")
    return out


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


def _decode(text: str) -> Any:
    if len(text) > MAX_JSON_BYTES or (4 * len(text) > MAX_JSON_BYTES and _utf8_len(text) > MAX_JSON_BYTES):
        raise _fail("filter", f"the JSON text is over {MAX_JSON_BYTES} bytes.")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _fail("filter", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}).") from None
    except (ValueError, RecursionError) as exc:  # a duplicate key, NaN, an over-long int, deep nesting
        raise _fail("filter", f"not valid JSON ({exc}).") from None


class _Parser:
    def __init__(self) -> None:
        self.clauses = 0

    def clause(self, pos: str) -> None:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise _fail(pos, f"the filter has more than {MAX_CLAUSES} clauses (and/or/not and field operators).")

    def condition(self, obj: Any, pos: str, depth: int) -> _Node | None:
        if not isinstance(obj, dict):
            raise _fail(pos, f"a condition must be an object (dict). Got {_type_name(obj)}.")
        if depth > MAX_DEPTH:
            raise _fail(pos, f"the filter nests more than {MAX_DEPTH} objects deep.")
        if not obj:
            if depth == 1:
                return None
            raise _fail(pos, "an empty condition; {} matches everything only as the whole filter.")
        parts: list[_Node] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise _fail(pos, f"a key must be a str. Got {_got(key)}.")
            kpos = _at(pos, key)
            if key in ("and", "or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise _fail(kpos, f"'{key}' takes a non-empty list of conditions. Got {_type_name(value)}.")
                if len(value) > MAX_CLAUSES:
                    raise _fail(kpos, f"'{key}' has {len(value)} conditions; the limit is {MAX_CLAUSES}.")
                self.clause(kpos)
                children = [self.condition(c, f"{kpos}[{i}]", depth + 1) for i, c in enumerate(value)]
                parts.append(_combine(key, children))
            elif key == "not":
                self.clause(kpos)
                parts.append(_Bool("not", (self.condition(value, kpos, depth + 1),)))
            else:
                field = _parse_field(key, kpos)
                if isinstance(value, dict):
                    if not value:
                        raise _fail(kpos, f"no operator; expected one or more of {', '.join(_OPERATORS)}.")
                    for op, operand in value.items():
                        if not isinstance(op, str):
                            raise _fail(kpos, f"an operator must be a str. Got {_got(op)}.")
                        parts.append(self.operator(field, op, operand, _at(kpos, op)))
                else:
                    parts.append(self.operator(field, "eq", value, kpos))
        return _combine("and", parts)

    def operator(self, field: _Field, op: str, operand: Any, pos: str) -> _Node:
        self.clause(pos)
        if op == "exists":
            if not isinstance(operand, (bool, np.bool_)):
                raise _fail(pos, f"'exists' takes true or false. Got {_type_name(operand)}.")
            return _Cmp(field, "exists", bool(operand))
        if op in _RANGES:
            if field.path is None:
                raise _fail(pos, f"{field.name} is a string; ranges apply to numbers.")
            kind, key = _value(operand, pos, field)
            if kind != NUMBER:
                raise _fail(pos, f"a range bound must be a number (int or float). Got {_got(operand)}.")
            return _Cmp(field, op, key)
        if op == "eq":
            value = _value(operand, pos, field)
            return _Cmp(field, "exists", False) if value == _NO_VALUE else _Cmp(field, "eq", value)
        if op == "in":
            if not isinstance(operand, (list, tuple)):
                raise _fail(pos, f"'in' takes a list of values. Got {_type_name(operand)}.")
            if len(operand) > MAX_IN_VALUES:
                raise _fail(pos, f"'in' has {len(operand)} values; the limit is {MAX_IN_VALUES}.")
            values = [_value(v, f"{pos}[{i}]", field) for i, v in enumerate(operand)]
            present = tuple(dict.fromkeys(v for v in values if v != _NO_VALUE))  # distinct, in order
            if _NO_VALUE not in values:
                return _Cmp(field, "in", present)
            missing = _Cmp(field, "exists", False)  # null in the list: "or missing"
            return _Bool("or", (_Cmp(field, "in", present), missing)) if present else missing
        raise _fail(pos, f"unknown operator {op!r}; expected one of {', '.join(_OPERATORS)}.")


def _combine(op: str, children: list[_Node]) -> _Node:
    flat: list[_Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, _Bool) and child.op == op else (child,))
    return flat[0] if len(flat) == 1 else _Bool(op, tuple(flat))


def _value(value: Any, pos: str, field: _Field) -> tuple[int, Any]:
    """A value in a filter as (kind, key), or (MISSING, None) for null."""
    kind, key = _scalar(value)
    if kind == OTHER:
        hint = " (for one of several values use {\"in\": [...]})" if isinstance(value, (list, tuple)) else ""
        raise _fail(pos, f"a value must be a str, number, bool or null. Got {_type_name(value)}{hint}.")
    if kind == NUMBER and not math.isfinite(key):
        raise _fail(pos, f"a number must be finite and within the float64 range. Got {_got(value)}.")
    if kind == STRING and len(key) * 4 > MAX_STRING_BYTES and _utf8_len(key) > MAX_STRING_BYTES:
        raise _fail(pos, f"a string value is over {MAX_STRING_BYTES} UTF-8 bytes.")
    if field.path is None and kind != STRING and not (kind == MISSING and field.name == "$label"):
        allowed = "strings or null" if field.name == "$label" else "strings"
        raise _fail(pos, f"{field.name} compares with {allowed}. Got {_got(value)}.")
    return kind, key


def _parse_field(name: str, pos: str) -> _Field:
    if len(name) > MAX_PATH_BYTES or (4 * len(name) > MAX_PATH_BYTES and _utf8_len(name) > MAX_PATH_BYTES):
        raise _fail(pos, f"the field path is over {MAX_PATH_BYTES} UTF-8 bytes.")
    if name in _RESERVED:
        return _Field(name, None)
    if name.startswith(_META):
        keys = tuple(name[len(_META):].split("."))
    elif name.startswith("$"):
        raise _fail(pos, f"unknown reserved field {name!r}; expected $id, $label or $metadata.<path>.")
    else:
        keys = tuple(name.split("."))
    if len(keys) > MAX_PATH_KEYS:
        raise _fail(pos, f"the field path is too deep: {len(keys)} keys; the limit is {MAX_PATH_KEYS}.")
    if not all(keys):
        raise _fail(pos, f"the field path {name!r} has an empty key (keys are separated by single dots).")
    plain = keys[0] not in _LOGICAL and not keys[0].startswith("$")
    return _Field(".".join(keys) if plain else _META + ".".join(keys), keys)


def parse(filter: dict | str | Filter | None) -> Filter | None:
    """The :class:`Filter` of a dict, of its JSON text, or of a Filter (returned as it is);
    ``None``, ``{}`` and ``""`` match everything and give None. Raises InvalidArgumentError
    naming the position of what is wrong (``filter.and[1].year.gte: ...``)."""
    if filter is None or isinstance(filter, Filter):
        return filter
    if isinstance(filter, str):
        if not filter:
            return None
        filter = _decode(filter)
        if not isinstance(filter, dict):
            raise _fail("filter", f"the JSON text must hold an object. Got {_type_name(filter)}.")
    elif not isinstance(filter, dict):
        raise InvalidTypeError(f"A filter must be a dict, its JSON text (str) or None. Got {_type_name(filter)}.")
    root = _Parser().condition(filter, "filter", 1)
    return None if root is None else Filter(root)


# -- columns -------------------------------------------------------------------------------------
_MAGIC = b"SSFCOL\x00\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHHIQQ")  # magic, version, reserved, crc32 of the payload, rows, strings


class Column:
    """One field's values over ``n`` documents (rows), typed for :meth:`Filter.mask`:

    - ``kind``: uint8, what each row holds (MISSING 0, BOOL 1, NUMBER 2, STRING 3, OTHER 4);
    - ``number``: float64, the number where ``kind`` is NUMBER, NaN elsewhere;
    - ``code``: int32, the index into ``strings`` where STRING, 0/1 where BOOL, -1 elsewhere;
    - ``strings``: the distinct strings, sorted (a dictionary: each is stored once).
    """

    __slots__ = ("kind", "number", "code", "strings")

    def __init__(self, kind: np.ndarray, number: np.ndarray, code: np.ndarray, strings: Sequence[str]) -> None:
        self.kind = np.asarray(kind, dtype=np.uint8)
        self.number = np.asarray(number, dtype=np.float64)
        self.code = np.asarray(code, dtype=np.int32)
        self.strings = tuple(strings)
        if not self.kind.ndim == 1 or not self.kind.shape == self.number.shape == self.code.shape:
            raise InvalidArgumentError("Column: kind, number and code must be 1-d arrays of one length.")

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> Column:
        """The column of raw values, one a row (None: missing), typed as filters compare them."""
        kinds: list[int] = []
        rows: dict[int, list[int]] = {NUMBER: [], STRING: [], BOOL: []}
        keys: dict[int, list] = {NUMBER: [], STRING: [], BOOL: []}
        for row, value in enumerate(values):
            kind, key = _scalar(value)
            kinds.append(kind)
            if key is not None:
                rows[kind].append(row)
                keys[kind].append(key)
        number = np.full(len(kinds), np.nan)
        number[rows[NUMBER]] = keys[NUMBER]
        code = np.full(len(kinds), -1, dtype=np.int32)
        code[rows[BOOL]] = keys[BOOL]
        strings = sorted(set(keys[STRING]))
        index = {s: i for i, s in enumerate(strings)}
        code[rows[STRING]] = [index[s] for s in keys[STRING]]
        return cls(np.array(kinds, dtype=np.uint8), number, code, strings)

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def present(self) -> np.ndarray:
        """The rows that hold a value (not missing, not null)."""
        return self.kind != MISSING

    def code_of(self, text: str) -> int:
        """The code of ``text`` in ``strings``, or -1 when no row holds it."""
        i = bisect_left(self.strings, text)
        return i if i < len(self.strings) and self.strings[i] == text else -1

    def take(self, rows: np.ndarray) -> Column:
        """The column of ``rows`` (indices or a bool mask), sharing the string dictionary."""
        return Column(self.kind[rows], self.number[rows], self.code[rows], self.strings)

    def to_bytes(self) -> bytes:
        """A versioned, checksummed serialisation (read with :meth:`from_bytes`)."""
        blobs = [s.encode("utf-8", "surrogatepass") for s in self.strings]
        offsets = np.zeros(len(blobs) + 1, dtype="<i8")
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        payload = b"".join([self.number.astype("<f8").tobytes(), offsets.tobytes(),  # 8-byte items first: aligned
                            self.code.astype("<i4").tobytes(), self.kind.tobytes(), *blobs])
        header = _HEADER.pack(_MAGIC, FORMAT_VERSION, 0, zlib.crc32(payload), len(self), len(blobs))
        return header + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Column:
        """The column :meth:`to_bytes` wrote; StorageCorruptionError when it fails its checks."""
        data = memoryview(data)
        if len(data) < _HEADER.size or bytes(data[:8]) != _MAGIC:
            raise StorageCorruptionError("a filter column is not in the simsearch column format.")
        _, version, _, crc, n, n_str = _HEADER.unpack_from(data)
        if version > FORMAT_VERSION:
            raise UnsupportedFormatError(f"a filter column has format version {version}; upgrade simsearch.")
        payload = data[_HEADER.size:]
        fixed = 13 * n + 8 * (n_str + 1)
        if len(payload) < fixed or zlib.crc32(payload) != crc:
            raise StorageCorruptionError("a filter column failed its checksum.")
        number = np.frombuffer(payload, "<f8", n, 0)
        offsets = np.frombuffer(payload, "<i8", n_str + 1, 8 * n)
        code = np.frombuffer(payload, "<i4", n, 8 * (n + n_str + 1))
        kind = np.frombuffer(payload, np.uint8, n, 8 * (n + n_str + 1) + 4 * n)
        blob = bytes(payload[fixed:])
        if offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) < 0) or np.any(kind > OTHER):
            raise StorageCorruptionError("a filter column is inconsistent.")
        strings = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(offsets[:-1], offsets[1:])]
        if np.any((kind == STRING) & ((code < 0) | (code >= n_str))) or any(map(operator.ge, strings, strings[1:])):
            raise StorageCorruptionError("a filter column is inconsistent.")
        return cls(kind, number, code, strings)

    def __repr__(self) -> str:
        return f"Column(rows={len(self)}, strings={len(self.strings)})"


def build_columns(metadata: Sequence[dict | str | None], fields: Iterable[str], *,
                  ids: Sequence[str] | None = None,
                  labels: Sequence[str | None] | None = None) -> dict[str, Column]:
    """The :class:`Column` of each of ``fields`` (as in :attr:`Filter.fields` or an index's
    ``indexed_fields``) over the documents, keyed by the canonical field name. Each metadata is
    a dict or its JSON text (decoded once here, for all the fields), None for none; ``$id`` and
    ``$label`` read ``ids`` and ``labels``."""
    if isinstance(fields, str):
        raise InvalidTypeError("build_columns: fields must be a list of field names, not one str.")
    parsed = []
    for i, name in enumerate(fields):
        if not isinstance(name, str):
            raise InvalidTypeError(f"fields[{i}]: a field name must be a str. Got {_type_name(name)}.")
        parsed.append(_parse_field(name, f"fields[{i}]"))
    n = len(metadata)
    out: dict[str, Column] = {}
    for field in parsed:
        if field.path is None:
            values = ids if field.name == "$id" else labels
            if values is None or len(values) != n:
                raise InvalidArgumentError(f"build_columns: {field.name} needs {n} {field.name[1:]}s.")
            out[field.name] = Column.from_values(values)
    paths = [f for f in parsed if f.path is not None and f.name not in out]
    if paths:
        docs = [json.loads(m) if isinstance(m, str) else m for m in metadata]
        for field in paths:
            out[field.name] = Column.from_values(_resolve(d, field.path) for d in docs)
    return out
