"""Conversions between simsearch's value types and the ``simsearch.v1`` protobuf messages.

Both sides use this module: the client encodes arguments (raising the same exception classes as
the embedded :class:`~simsearch.Index` for values that cannot be encoded at all) and decodes
results into the dataclasses of :mod:`simsearch.index._types`; the server decodes requests and
encodes results. Everything that *can* be encoded is sent as given, so the server's library call
does the validating and a remote error carries the same message as the local one.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import numpy as np

from ._proto.v1 import simsearch_pb2 as pb
from ._validation import check_float, check_int, check_option
from .errors import InvalidArgumentError, InvalidTypeError
from .index._classify import Classification, ClassifierInfo
from .index._types import Cluster, CollectionConfig, CollectionInfo, Document, NearDuplicate, Neighbor, UpsertResult

__all__ = ["pb", "SERVICE", "ERROR_CLASS_KEY", "COMMITTED_BATCHES_KEY", "COMMITTED_DOCS_KEY"]

SERVICE = "simsearch.v1.SimSearch"
ERROR_CLASS_KEY = "simsearch-error-class"
COMMITTED_BATCHES_KEY = "simsearch-committed-batches"
COMMITTED_DOCS_KEY = "simsearch-committed-documents"

_INT64_MAX = (1 << 63) - 1
_F32 = np.dtype("<f4")
_CONFIG_FIELDS = [f.name for f in fields(CollectionConfig)]


def _string(value: str, where: str) -> str:
    """``value`` if protobuf can carry it (valid UTF-8), else an InvalidArgumentError that says why."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{where} holds a lone surrogate {value[exc.start]!r} at position {exc.start}; gRPC strings are UTF-8 "
            "and cannot carry it (the embedded Index can)."
        ) from None
    return value


# -- client side: arguments -> messages -------------------------------------------------------
def encode_int(value: Any, name: str, lo: int, hi: int, func: str, *, optional: bool = True) -> int | None:
    """An int field; a non-int or one beyond int64 raises what the library's check would."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not -_INT64_MAX <= value <= _INT64_MAX:
        check_int(value, name, lo, hi, func=func)  # raises the library's own message
    return int(value)


def encode_float(value: Any, name: str, lo: float, hi: float, func: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        check_float(value, name, lo, hi, func=func)
    return float(value)


def encode_option(value: Any, name: str, options: Iterable[str], func: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        check_option(value, name, options, func=func)
    return _string(value, f"The '{name}' parameter of {func}")


def encode_ids(ids: Any, func: str) -> pb.StringList:
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise InvalidTypeError(f"The 'ids' parameter of {func} must be a list of str. Got {type(ids).__name__}.")
    ids = list(ids)
    for i, v in enumerate(ids):
        if not isinstance(v, str):
            raise InvalidTypeError(f"{func} ids[{i}]: a document id must be a str. Got {type(v).__name__} instead.")
        _string(v, f"{func} ids[{i}]")
    return pb.StringList(values=ids)


def encode_texts(texts: Any, func: str) -> pb.StringList:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise InvalidTypeError(f"The 'texts' parameter of {func} must be a list of str.")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidTypeError(f"{func} texts[{i}] must be a str. Got {type(t).__name__}.")
        _string(t, f"{func} texts[{i}]")
    return pb.StringList(values=texts)


def encode_vector(value: Any, where: str, dim: int | None, collection: str) -> pb.Vector:
    """A float32 Vector; only what cannot be sent is checked here (the server checks the rest)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{where}: vector must be an array of floats.") from None
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise InvalidTypeError(f"{where}: vector must hold floats. Got dtype {arr.dtype}.")
    if arr.ndim != 1:
        if dim is None:
            raise InvalidArgumentError(f"{where}: collection {collection!r} has no vectors (created with dim=None).")
        raise InvalidArgumentError(
            f"{where}: vector must have shape ({dim},) for collection {collection!r}. Got {arr.shape}."
        )
    if arr.dtype != _F32:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, which the server refuses
            arr = arr.astype(_F32)
    return vector_to_pb(arr)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def vector_to_pb(arr: np.ndarray) -> pb.Vector:
    """A Vector from a 1-d float32 array, built from its packed wire form (field 1, length-delimited,
    little-endian floats), which is several times faster than filling the repeated field."""
    raw = arr.astype(_F32, copy=False).tobytes()
    return pb.Vector.FromString(b"\x0a" + _varint(len(raw)) + raw) if raw else pb.Vector()


def decode_vector(msg: pb.Vector) -> np.ndarray:
    """The float32 array of a Vector, read from its packed serialisation (falls back to the field)."""
    raw = msg.SerializeToString()
    if not raw:
        return np.empty(0, dtype=np.float32)
    i = 1
    while i < len(raw) and raw[i] & 0x80:
        i += 1
    start = i + 1
    if raw[0] == 0x0A and len(raw) - start == 4 * len(msg.values):
        return np.frombuffer(raw, dtype=_F32, offset=start).astype(np.float32)
    return np.array(msg.values, dtype=np.float32)  # unknown fields present: take the slow path


def encode_vectors(vectors: Any, func: str, dim: int | None, collection: str) -> pb.VectorList:
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        vectors = list(vectors)
    if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Iterable):
        raise InvalidTypeError(f"The 'vectors' parameter of {func} must be a list of vectors or a 2-d array.")
    return pb.VectorList(values=[encode_vector(v, f"{func} vectors[{i}]", dim, collection) for i, v in enumerate(vectors)])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json_object(value: dict | None, what: str, func: str) -> str:
    """A dict (already type-checked by the library's own check) as JSON text; None is "". numpy
    arrays and scalars become lists and numbers; NaN and infinity are kept for the server to judge."""
    if value is None:
        return ""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"The '{what}' of {func} must be JSON-serialisable to go over gRPC: {exc}") from None
    return _string(text, f"The '{what}' of {func}")


def encode_document(doc: Any, i: int, dim: int | None, collection: str) -> pb.Document:
    where = f"upsert docs[{i}]"
    if isinstance(doc, dict):
        unknown = set(doc) - {"id", "text", "metadata", "vector", "label"}
        if unknown:
            raise InvalidArgumentError(f"{where}: unknown fields {sorted(unknown)}")
        if "id" not in doc:
            raise InvalidArgumentError(f"{where}: missing 'id'")
        doc = Document(**doc)
    elif not isinstance(doc, Document):
        raise InvalidTypeError(f"{where}: expected a Document or dict. Got {type(doc).__name__}.")
    if not isinstance(doc.id, str):
        raise InvalidTypeError(f"{where}: a document id must be a str. Got {type(doc.id).__name__} instead.")
    msg = pb.Document(id=_string(doc.id, f"{where} id"))
    if doc.text is not None:
        if not isinstance(doc.text, str):
            raise InvalidTypeError(f"{where}: text must be a str or None. Got {type(doc.text).__name__}.")
        msg.text = _string(doc.text, f"{where} text")
    if doc.metadata:
        if not isinstance(doc.metadata, dict):
            raise InvalidTypeError(
                f"{where}: metadata must be a JSON object (dict). Got {type(doc.metadata).__name__}."
            )
        try:
            meta = json.dumps(doc.metadata, allow_nan=False, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"{where}: metadata is not JSON-serialisable: {exc}") from None
        msg.metadata_json = _string(meta, f"{where} metadata")
    elif doc.metadata is not None and not isinstance(doc.metadata, dict):
        raise InvalidTypeError(f"{where}: metadata must be a JSON object (dict). Got {type(doc.metadata).__name__}.")
    if doc.vector is not None:
        msg.vector.CopyFrom(encode_vector(doc.vector, where, dim, collection))
    if doc.label is not None:
        if not isinstance(doc.label, str):
            raise InvalidTypeError(f"{where}: label must be a str or None. Got {type(doc.label).__name__}.")
        msg.label = _string(doc.label, f"{where} label")
    return msg


def encode_documents(docs: Any, dim: int | None, collection: str) -> list[pb.Document]:
    if isinstance(docs, (Document, dict)) or not isinstance(docs, Iterable):
        raise InvalidTypeError("upsert takes a list of Document or dict.")
    return [encode_document(d, i, dim, collection) for i, d in enumerate(docs)]


def config_to_pb(config: CollectionConfig) -> pb.CollectionConfig:
    msg = pb.CollectionConfig(
        shingle=config.shingle, ngram=config.ngram, num_perm=config.num_perm, seed=config.seed,
        threshold=config.threshold, metric=config.metric, store_text=config.store_text,
        store_shingles=config.store_shingles,
    )
    if config.dim is not None:
        msg.dim = config.dim
    if config.weights is not None:
        msg.weights.false_positive, msg.weights.false_negative = config.weights
    return msg


# -- server side: messages -> arguments -------------------------------------------------------
def config_kwargs(msg: pb.CollectionConfig) -> dict[str, Any]:
    """The keyword arguments of ``create_collection`` that the message sets; the rest default."""
    out = {name: getattr(msg, name) for name in _CONFIG_FIELDS if name != "weights" and msg.HasField(name)}
    if msg.HasField("weights"):
        out["weights"] = (msg.weights.false_positive, msg.weights.false_negative)
    return out


def optional(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def decode_document(msg: pb.Document, i: int) -> Document:
    metadata: Any = {}
    if msg.metadata_json:
        try:
            metadata = json.loads(msg.metadata_json)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"upsert docs[{i}]: metadata_json is not valid JSON ({exc.msg}).") from None
    return Document(
        id=msg.id,
        text=msg.text if msg.HasField("text") else None,
        metadata=metadata,
        vector=decode_vector(msg.vector) if msg.HasField("vector") else None,
        label=msg.label if msg.HasField("label") else None,
    )


def decode_json_object(text: str, field: str, func: str) -> Any:
    """The value of a JSON text field ("" is None); the library checks that it is an object."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidArgumentError(f"{func}: {field} is not valid JSON ({getattr(exc, 'msg', exc)}).") from None


def document_to_pb(doc: Document) -> pb.Document:
    msg = pb.Document(id=doc.id)
    if doc.text is not None:
        msg.text = doc.text
    if doc.metadata:
        msg.metadata_json = json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True)
    if doc.vector is not None:
        msg.vector.CopyFrom(vector_to_pb(np.asarray(doc.vector, dtype=np.float32)))
    if doc.label is not None:
        msg.label = doc.label
    return msg


def info_to_pb(info: CollectionInfo) -> pb.CollectionInfo:
    return pb.CollectionInfo(name=info.name, config=config_to_pb(info.config), count=info.count)


def near_duplicates_to_pb(results: list[list[NearDuplicate]]) -> pb.QueryNearDuplicatesResponse:
    return pb.QueryNearDuplicatesResponse(results=[
        pb.NearDuplicateList(hits=[
            pb.NearDuplicate(id=h.id, jaccard=h.jaccard, estimated_jaccard=h.estimated_jaccard,
                             exact_jaccard=h.exact_jaccard)
            for h in hits
        ])
        for hits in results
    ])


def neighbors_to_pb(results: list[list[Neighbor]]) -> pb.SearchVectorsResponse:
    return pb.SearchVectorsResponse(results=[
        pb.NeighborList(neighbors=[pb.Neighbor(id=n.id, distance=n.distance) for n in hits]) for hits in results
    ])


def cluster_to_pb(c: Cluster) -> pb.Cluster:
    return pb.Cluster(representative=c.representative, ids=c.ids, jaccard=c.jaccard)


def classifier_info_to_pb(info: ClassifierInfo) -> pb.ClassifierInfo:
    return pb.ClassifierInfo(name=info.name, kind=info.kind, version=info.version, n_samples=info.n_samples,
                             dim=info.dim, classes=info.classes)


def classifications_to_pb(results: list[Classification]) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(results=[
        pb.Classification(label=r.label, probability=r.probability, component=r.component,
                          log_likelihood=r.log_likelihood, outlier=r.outlier,
                          neighbors=[pb.Neighbor(id=n.id, distance=n.distance) for n in r.neighbors])
        for r in results
    ])


# -- client side: messages -> results ---------------------------------------------------------
def config_from_pb(msg: pb.CollectionConfig) -> CollectionConfig:
    kwargs = config_kwargs(msg)
    kwargs.setdefault("dim", None)
    kwargs.setdefault("weights", None)
    return CollectionConfig(**kwargs)


def info_from_pb(msg: pb.CollectionInfo) -> CollectionInfo:
    return CollectionInfo(name=msg.name, config=config_from_pb(msg.config), count=msg.count)


def document_from_pb(msg: pb.Document) -> Document:
    return Document(
        id=msg.id,
        text=msg.text if msg.HasField("text") else None,
        metadata=json.loads(msg.metadata_json) if msg.metadata_json else {},
        vector=decode_vector(msg.vector) if msg.HasField("vector") else None,
        label=msg.label if msg.HasField("label") else None,
    )


def near_duplicates_from_pb(msg: pb.QueryNearDuplicatesResponse) -> list[list[NearDuplicate]]:
    return [
        [
            NearDuplicate(id=h.id, jaccard=h.jaccard, estimated_jaccard=h.estimated_jaccard,
                          exact_jaccard=h.exact_jaccard if h.HasField("exact_jaccard") else None)
            for h in lst.hits
        ]
        for lst in msg.results
    ]


def neighbors_from_pb(msg: pb.SearchVectorsResponse) -> list[list[Neighbor]]:
    return [[Neighbor(id=n.id, distance=n.distance) for n in lst.neighbors] for lst in msg.results]


def cluster_from_pb(msg: pb.Cluster) -> Cluster:
    return Cluster(representative=msg.representative, ids=tuple(msg.ids), jaccard=tuple(msg.jaccard))


def upsert_result_from_pb(msg) -> UpsertResult:
    return UpsertResult(upserted=msg.upserted, replaced=msg.replaced)


def classifier_info_from_pb(msg: pb.ClassifierInfo) -> ClassifierInfo:
    return ClassifierInfo(name=msg.name, kind=msg.kind, version=msg.version, n_samples=msg.n_samples, dim=msg.dim,
                          classes=tuple(msg.classes))


def classifications_from_pb(msg: pb.ClassifyResponse) -> list[Classification]:
    return [
        Classification(
            label=optional(r, "label"), probability=optional(r, "probability"), component=optional(r, "component"),
            log_likelihood=optional(r, "log_likelihood"), outlier=optional(r, "outlier"),
            neighbors=tuple(Neighbor(id=n.id, distance=n.distance) for n in r.neighbors),
        )
        for r in msg.results
    ]
