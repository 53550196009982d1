"""The one check of what a document may hold, shared by ``Collection.upsert`` and the remote clients.

:func:`check_documents` turns a batch of :class:`Document` or dicts into normalised Documents
whose ``metadata`` is the checked JSON text that storage keeps, so the embedded index and
``simsearch.Client`` raise the same exception, with the same message, for the same bad document. :class:`MetadataJSON` also lets a caller that already holds the text (the
gRPC server, with what a client sent) pass it through: it is parsed once to check it and then
stored as given, never decoded to a dict and encoded again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, ResourceExhaustedError
from ._types import MAX_ID_BYTES, MAX_LABEL_BYTES, MAX_METADATA_BYTES, Document

__all__ = ["MetadataJSON", "batch_list", "check_chunk", "check_document", "check_documents", "check_id", "check_ids", "check_vector",
           "plain_ids"]

_FIELDS = frozenset({"id", "text", "metadata", "vector", "label"})
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, sort_keys=True)


def _make_encode():
    """``_ENCODER.encode`` for a dict, made once: ``JSONEncoder.encode`` builds a new C encoder on
    every call (~60 % of its time for a small dict). This one has no circular-reference markers:
    a dict that contains itself fails with RecursionError, which the caller turns into
    InvalidArgumentError, as it does the encoder's own ValueError. The same text as ``encode``
    (tested); ``encode`` itself where the interpreter has no C encoder."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - not CPython
        return _ENCODER.encode
    c_encode = make(None, _ENCODER.default, json.encoder.encode_basestring, None, _ENCODER.key_separator,
                    _ENCODER.item_separator, True, False, False)
    join = "".join

    def encode(value: dict) -> str:
        return join(c_encode(value, 0))

    return encode


_encode_dict = _make_encode()


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _not_finite(token: str):
    raise ValueError(f"{token} is not a JSON number")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e999 parses as infinity
        raise ValueError(f"{token[:40]} is out of the range of a float")
    return value


_DECODER = json.JSONDecoder(parse_constant=_not_finite, parse_float=_finite_float)  # made once: ~2 us a call


class MetadataJSON(str):
    """A document's metadata as the text of a JSON object, checked when made: valid JSON, an
    object, finite numbers only, at most ``MAX_METADATA_BYTES`` UTF-8 bytes.

    As ``Document.metadata`` it is stored byte for byte as given (``get`` returns the decoded
    dict, as for any metadata). ``where`` starts the error messages.
    """

    __slots__ = ()

    def __new__(cls, text: str, where: str = "metadata") -> MetadataJSON:
        if not isinstance(text, str):
            raise InvalidTypeError(f"{where}: metadata JSON must be a str. Got {type(text).__name__}.")
        if isinstance(text, MetadataJSON):
            return text
        if len(text) > MAX_METADATA_BYTES or (4 * len(text) > MAX_METADATA_BYTES and _utf8_len(text) > MAX_METADATA_BYTES):
            raise InvalidArgumentError(f"{where}: metadata is over {MAX_METADATA_BYTES} bytes as JSON.")
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{where}: metadata is not valid JSON ({exc.msg}).") from None
        except (ValueError, RecursionError) as exc:  # NaN, 1e999, over-long ints, too deeply nested
            raise InvalidArgumentError(f"{where}: metadata is not valid JSON ({exc}).") from None
        if not isinstance(value, dict):
            raise InvalidTypeError(f"{where}: metadata must be a JSON object (dict). Got {type(value).__name__}.")
        return str.__new__(cls, text)


def check_id(value: Any, where: str) -> str:
    """``value`` if it is a document id (a str of 1 to MAX_ID_BYTES UTF-8 bytes), else a typed error."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{where}: a document id must be a str. Got {type(value).__name__} instead.")
    n = len(value) if value.isascii() else _utf8_len(value)
    if not 1 <= n <= MAX_ID_BYTES:
        raise InvalidArgumentError(f"{where}: a document id must be 1 to {MAX_ID_BYTES} UTF-8 bytes. Got {n} bytes.")
    return value


def check_ids(ids: Any, func: str, *, max_batch: int | None) -> list[str]:
    """``ids`` as a list of document ids (at most ``max_batch``; None: no limit), else a typed error."""
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise InvalidTypeError(f"The 'ids' parameter of {func} must be a list of str. Got {type(ids).__name__}.")
    ids = list(ids)
    if max_batch is not None and len(ids) > max_batch:
        raise ResourceExhaustedError(f"{func} got {len(ids)} ids; the limit max_batch is {max_batch}.")
    return [check_id(v, f"{func} ids[{i}]") for i, v in enumerate(ids)]


def _metadata_text(metadata: Any, where: str) -> str:
    """The JSON text storage keeps for ``metadata`` (a dict, a MetadataJSON or None), as a plain
    str: sqlite3 binds a str subclass through its adapter lookup, ~0.5 us a row slower."""
    if isinstance(metadata, MetadataJSON):
        return str(metadata)
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidTypeError(f"{where}: metadata must be a JSON object (dict). Got {type(metadata).__name__}.")
    if not metadata:
        return "{}"
    try:
        text = _encode_dict(metadata)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{where}: metadata is not JSON-serialisable: {exc}") from None
    if len(text) * 4 > MAX_METADATA_BYTES and _utf8_len(text) > MAX_METADATA_BYTES:
        raise InvalidArgumentError(f"{where}: metadata is over {MAX_METADATA_BYTES} bytes as JSON.")
    return text


def check_document(doc: Any, i: int, dim: int | None, collection: str, max_text_bytes: int | None = None) -> Document:
    """Document ``i`` of an upsert batch (a Document or a dict of its fields), checked and
    normalised: ``metadata`` becomes the JSON text that storage keeps (a str: encoded from a dict,
    or a :class:`MetadataJSON` as given); the vector is left as given (``upsert`` checks the
    vectors, batched). ``max_text_bytes=None`` skips the text length check (the
    remote client leaves it to the server, whose limit it does not know)."""
    where = f"upsert docs[{i}]"
    if isinstance(doc, dict):
        unknown = doc.keys() - _FIELDS
        if unknown:
            raise InvalidArgumentError(f"{where}: unknown fields {sorted(unknown)}")
        if "id" not in doc:
            raise InvalidArgumentError(f"{where}: missing 'id'")
        doc = Document(**doc)
    elif not isinstance(doc, Document):
        raise InvalidTypeError(f"{where}: expected a Document or dict. Got {type(doc).__name__}.")
    check_id(doc.id, where)
    text = doc.text
    if text is not None:
        if not isinstance(text, str):
            raise InvalidTypeError(f"{where}: text must be a str or None. Got {type(text).__name__}.")
        if not text:
            raise InvalidArgumentError(f"{where}: text is empty; pass text=None for a document without text.")
        # UTF-8 takes at most 4 bytes per code point (1 for ASCII): encode only near the limit
        if max_text_bytes is not None:
            nbytes = len(text) if text.isascii() or 4 * len(text) <= max_text_bytes else _utf8_len(text)
            if nbytes > max_text_bytes:
                raise ResourceExhaustedError(f"{where}: text is {nbytes} bytes; the limit max_text_bytes is {max_text_bytes}.")
    m = doc.metadata
    metadata = "{}" if m is None or (type(m) is dict and not m) else _metadata_text(m, where)
    label = doc.label
    if label is not None:
        if not isinstance(label, str):
            raise InvalidTypeError(f"{where}: label must be a str or None. Got {type(label).__name__}.")
        if not 1 <= _utf8_len(label) <= MAX_LABEL_BYTES:
            raise InvalidArgumentError(f"{where}: label must be 1 to {MAX_LABEL_BYTES} UTF-8 bytes.")
    if doc.vector is not None and dim is None:
        raise InvalidArgumentError(f"{where}: collection {collection!r} has no vectors (created with dim=None).")
    return Document(doc.id, text, metadata, doc.vector, label)


def batch_list(docs: Any, *, max_batch: int | None = None) -> list:
    """``docs`` as a list, checked as a batch (not yet document by document): a non-empty list of
    at most ``max_batch`` items (None: no limit), else a typed error."""
    if isinstance(docs, (Document, dict)) or not isinstance(docs, Iterable):
        raise InvalidTypeError("upsert takes a list of Document or dict.")
    docs = list(docs)
    if not docs:
        raise InvalidArgumentError("upsert got an empty batch.")
    if max_batch is not None and len(docs) > max_batch:
        raise ResourceExhaustedError(f"upsert got {len(docs)} documents; the limit max_batch is {max_batch}.")
    return docs


def plain_ids(docs: list) -> list[str] | None:
    """The ids of a batch (from :func:`batch_list`) when each item is a Document or a dict whose
    id is valid and the ids are distinct, so a writer can look them up before it checks the rest
    of each document; None otherwise (:func:`check_documents` then says what is wrong)."""
    ids = []
    add = ids.append
    for d in docs:
        t = type(d)
        if t is Document:
            e = d.id
        elif t is dict:
            e = d.get("id")
        else:
            return None
        if type(e) is not str or not e or (len(e) if e.isascii() else _utf8_len(e)) > MAX_ID_BYTES:
            return None
        add(e)
    return ids if len(set(ids)) == len(ids) else None


def check_chunk(docs: list, start: int, *, dim: int | None, collection: str,
                max_text_bytes: int | None = None) -> list[Document]:
    """Documents ``start``, ``start + 1``, ... of an upsert batch, each through
    :func:`check_document` (the positions name them in the errors); not the batch checks."""
    return [check_document(d, start + i, dim, collection, max_text_bytes) for i, d in enumerate(docs)]


def check_documents(docs: Any, *, dim: int | None, collection: str, max_batch: int | None = None,
                    max_text_bytes: int | None = None) -> list[Document]:
    """An upsert batch checked as ``Collection.upsert`` checks it: a non-empty list of at most
    ``max_batch`` documents (None: no limit) with distinct ids, each through :func:`check_document`."""
    docs = batch_list(docs, max_batch=max_batch)
    norm = check_chunk(docs, 0, dim=dim, collection=collection, max_text_bytes=max_text_bytes)
    seen: dict[str, int] = {}
    for i, d in enumerate(norm):
        if d.id in seen:
            raise InvalidArgumentError(f"upsert: duplicate id {d.id!r} at positions {seen[d.id]} and {i} of one batch.")
        seen[d.id] = i
    return norm


def check_vector(value: Any, where: str, *, dim: int | None, collection: str) -> np.ndarray:
    """``value`` as a float32 vector of shape ``(dim,)`` with finite values, else a typed error
    saying what was wrong. (``Collection._check_vector`` is this check; it should call it.)"""
    if dim is None:
        raise InvalidArgumentError(f"{where}: collection {collection!r} has no vectors (created with dim=None).")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{where}: vector must be an array of floats.") from None
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise InvalidTypeError(f"{where}: vector must hold floats. Got dtype {arr.dtype}.")
    if arr.shape != (dim,):
        raise InvalidArgumentError(f"{where}: vector must have shape ({dim},) for collection {collection!r}. Got {arr.shape}.")
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 becomes inf: refused below
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{where}: vector holds NaN or infinity, or values too large for float32.")
    return arr
