"""The codec between simsearch's values and the ``simsearch.v1`` protobuf messages.

Like qdrant-client's ``conversions``, this module only converts: the clients build requests and
read responses with it, the server reads requests and builds responses. It holds no rules about
what a value may be. The library validates, once, in the call the server makes; where a client
cannot even encode an argument (a vector of strings, an int where a str goes) the codec raises
what the library's own check raises for it (``simsearch.index.check_vector`` ...), so a remote
call fails as the local one does. The generated code is reached through this module too:
:data:`pb` (messages), :data:`pb_grpc` (stubs) and :data:`SERVICE`.

Vectors: a batch in a request crosses as one :class:`pb.Matrix` (``rows`` x ``dim``
little-endian float32, row-major): one ``tobytes`` of the batch on the sending side, one
``frombuffer`` on the receiving side. The older per-vector ``pb.Vector`` messages are still read.

Metadata: a client encodes a dict to JSON once (``check_documents`` does, as the embedded index
does); the server checks that text once (:class:`simsearch.index.MetadataJSON`) and the index
stores it as sent. ``Get`` answers re-serialise it from the stored value.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

import numpy as np

from ._proto.v1 import simsearch_pb2 as pb
from ._proto.v1 import simsearch_pb2_grpc as pb_grpc
from .validation import check_float, check_int, check_option
from .errors import InvalidArgumentError, InvalidTypeError
from .index import (
    Classification,
    ClassifierInfo,
    Cluster,
    CollectionConfig,
    CollectionInfo,
    Document,
    MetadataJSON,
    NearDuplicate,
    Neighbor,
    QueryStats,
    UpsertResult,
    Duplicate,
    ScrollPage,
    check_ids,
    check_vector,
)

__all__ = [
    "pb",
    "pb_grpc",
    "SERVICE",
    "ERROR_CLASS_KEY",
    "COMMITTED_BATCHES_KEY",
    "COMMITTED_DOCS_KEY",
    "encode_string",
    "encode_int",
    "encode_float",
    "encode_option",
    "encode_ids",
    "encode_texts",
    "encode_json_object",
    "matrix_to_pb",
    "matrix_from_pb",
    "vectors_to_matrix",
    "encode_vectors",
    "vectors_from_pb",
    "vector_to_pb",
    "vector_from_pb",
    "upsert_request",
    "documents_from_pb",
    "document_to_pb",
    "document_from_pb",
    "decode_json_object",
    "optional",
    "config_to_pb",
    "config_from_pb",
    "config_kwargs",
    "info_to_pb",
    "info_from_pb",
    "near_duplicates_to_pb",
    "near_duplicates_from_pb",
    "neighbors_to_pb",
    "neighbors_from_pb",
    "cluster_to_pb",
    "cluster_from_pb",
    "upsert_result_from_pb",
    "upsert_result_to_pb",
    "scroll_request",
    "scroll_page_to_pb",
    "scroll_page_from_pb",
    "classifier_info_to_pb",
    "classifier_info_from_pb",
    "classifications_to_pb",
    "classifications_from_pb",
]

SERVICE = "simsearch.v1.SimSearch"
ERROR_CLASS_KEY = "simsearch-error-class"
COMMITTED_BATCHES_KEY = "simsearch-committed-batches"
COMMITTED_DOCS_KEY = "simsearch-committed-documents"

_INT64_MAX = (1 << 63) - 1
_F32 = np.dtype("<f4")
_CONFIG_FIELDS = [f.name for f in fields(CollectionConfig)]


# -- strings ----------------------------------------------------------------------------------
def encode_string(value: str, where: str) -> str:
    """``value`` if protobuf can carry it (valid UTF-8), else an InvalidArgumentError that says why."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{where} holds a lone surrogate {value[exc.start]!r} at position {exc.start}; gRPC strings are UTF-8 "
            "and cannot carry it (the embedded Index can)."
        ) from None
    return value


def _first_unencodable(named: Iterable[tuple[str, Any]]) -> None:
    """Raise :func:`encode_string`'s error for the first str of ``(where, value)`` that is not UTF-8."""
    for where, value in named:
        if isinstance(value, str):
            encode_string(value, where)


# -- client side: arguments -> messages -------------------------------------------------------
def encode_int(value: Any, name: str, lo: int, hi: int, func: str, *, optional: bool = True) -> int | None:
    """An int64 field; a non-int or one beyond int64 raises what the library's check would."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not -_INT64_MAX <= value <= _INT64_MAX:
        check_int(value, name, lo, hi, func=func)  # raises the library's own message
    return int(value)


def encode_float(value: Any, name: str, lo: float, hi: float, func: str, *, lo_open: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        check_float(value, name, lo, hi, lo_open=lo_open, func=func)
    return float(value)


def encode_option(value: Any, name: str, options: Iterable[str], func: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        check_option(value, name, options, func=func)
    return encode_string(value, f"The '{name}' parameter of {func}")


def encode_ids(ids: Any, func: str) -> list[str]:
    """Document ids, checked by the library's :func:`~simsearch.index.check_ids` (the server
    applies its ``max_batch``)."""
    ids = check_ids(ids, func, max_batch=None)
    _first_unencodable((f"{func} ids[{i}]", v) for i, v in enumerate(ids) if not v.isascii())
    return ids


def encode_texts(texts: Any, func: str) -> pb.StringList:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise InvalidTypeError(f"The 'texts' parameter of {func} must be a list of str.")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidTypeError(f"{func} texts[{i}] must be a str. Got {type(t).__name__}.")
    try:
        return pb.StringList(values=texts)
    except UnicodeEncodeError:
        _first_unencodable((f"{func} texts[{i}]", t) for i, t in enumerate(texts))
        raise


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
    return encode_string(text, f"The '{what}' of {func}")


# -- vectors ----------------------------------------------------------------------------------
def matrix_to_pb(matrix: np.ndarray, out: pb.Matrix | None = None) -> pb.Matrix:
    """A 2-d numeric array as a Matrix, filled into ``out`` (a request's field) when given: one
    ``tobytes`` of the whole batch (plus one cast when it is not float32)."""
    out = pb.Matrix() if out is None else out
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 is inf: the server refuses it
        matrix = np.ascontiguousarray(matrix, dtype=_F32)
    out.SetInParent()
    out.rows, out.dim = matrix.shape
    out.data = matrix.tobytes()
    return out


def matrix_from_pb(msg: pb.Matrix, where: str) -> np.ndarray:
    """The (rows, dim) float32 array of a Matrix, a read-only view of its bytes (no copy)."""
    rows, dim, data = msg.rows, msg.dim, msg.data
    if len(data) != 4 * rows * dim:
        raise InvalidArgumentError(
            f"{where}: {rows} rows of dim {dim} are {4 * rows * dim} bytes of float32. Got {len(data)} bytes."
        )
    if rows and not dim:
        raise InvalidArgumentError(f"{where}: dim is 0 but rows is {rows}; a vector needs at least one value.")
    return np.frombuffer(data, dtype=_F32).reshape(rows, dim)


def _as_matrix(values: Any) -> np.ndarray | None:
    """``values`` as one (n, d) numeric array with d >= 1 when they stack into one, else None."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError):  # ragged, or not numbers
            return None
    if arr.ndim != 2 or arr.dtype.kind not in "fiu" or not arr.shape[1]:
        return None
    return arr


def vectors_to_matrix(values: Any, where: Callable[[int], str], dim: int | None, collection: str) -> np.ndarray:
    """The vectors ``values`` stacked into one (n, d) array, to send packed; the server checks
    them. Vectors that do not stack into one numeric matrix (ragged, not numbers, not 1-d) cannot
    be sent: the library's :func:`~simsearch.index.check_vector` raises for the first bad one
    (``where(i)`` names vector i), as the embedded index does."""
    if not len(values):
        return np.empty((0, dim or 0), _F32)
    arr = _as_matrix(values)
    if arr is None:
        arr = np.stack([check_vector(v, where(i), dim=dim, collection=collection) for i, v in enumerate(values)])
    return arr


def _query_list(vectors: Any, func: str) -> Any:
    if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Iterable):
        raise InvalidTypeError(f"The 'vectors' parameter of {func} must be a list of vectors or a 2-d array.")
    return vectors if isinstance(vectors, (list, tuple, np.ndarray)) else list(vectors)


def encode_vectors(vectors: Any, func: str, dim: int | None, collection: str, out: pb.Matrix) -> None:
    """Query vectors (a list of vectors or a 2-d array) packed into the Matrix ``out``."""
    vectors = _query_list(vectors, func)
    matrix_to_pb(vectors_to_matrix(vectors, lambda i: f"{func} vectors[{i}]", dim, collection), out)


def vector_to_pb(arr: np.ndarray) -> pb.Vector:
    """A Vector (the older per-vector form) from a 1-d array, built from its packed wire form
    (field 1, length-delimited, little-endian floats): several times faster than filling the
    repeated field."""
    raw = np.asarray(arr).astype(_F32, copy=False).tobytes()
    return pb.Vector.FromString(b"\x0a" + _varint(len(raw)) + raw) if raw else pb.Vector()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def vector_from_pb(msg: pb.Vector) -> np.ndarray:
    """The float32 array of a Vector, read from its packed serialisation (falls back to the field)."""
    raw = msg.SerializeToString()
    if not raw:
        return np.empty(0, dtype=np.float32)
    i = 1
    while i < len(raw) and raw[i] & 0x80:
        i += 1
    start = i + 1
    if raw[0] == 0x0A and len(raw) - start == 4 * len(msg.values):
        return np.frombuffer(raw, dtype=_F32, offset=start)
    return np.array(msg.values, dtype=np.float32)  # unknown fields present: take the slow path


def vectors_from_pb(msg, func: str) -> np.ndarray | list[np.ndarray] | None:
    """The query vectors of a SearchVectors or Classify request: a (n, dim) array from
    ``packed_vectors``, a list of arrays from the older ``vectors``, or None when neither is set."""
    packed, listed = msg.HasField("packed_vectors"), msg.HasField("vectors")
    if packed and listed:
        raise InvalidArgumentError(f"{func}: the request sets both vectors and packed_vectors; send one.")
    if packed:
        return matrix_from_pb(msg.packed_vectors, f"{func} packed_vectors")
    if listed:
        return [vector_from_pb(v) for v in msg.vectors.values]
    return None


# -- documents --------------------------------------------------------------------------------
def upsert_request(collection: str, docs: list[Document], dim: int | None, on_duplicate: str | None = None,
                   threshold: float | None = None) -> pb.UpsertRequest:
    """An UpsertRequest of documents normalised by :func:`~simsearch.index.check_documents`
    (metadata as its JSON text), their vectors in one ``packed_vectors`` Matrix; ``on_duplicate``
    and ``threshold`` as given (None: unset)."""
    req = pb.UpsertRequest(collection=collection, on_duplicate=on_duplicate,
                           duplicate_threshold=None if threshold is None else float(threshold))
    add = req.documents.add
    vectors, owners = [], []
    for i, d in enumerate(docs):
        kw: dict[str, Any] = {"id": d.id}
        if d.text is not None:
            kw["text"] = d.text
        if d.metadata and d.metadata != "{}":
            kw["metadata_json"] = d.metadata
        if d.label is not None:
            kw["label"] = d.label
        if d.vector is not None:
            kw["vector_row"] = len(vectors)
            vectors.append(d.vector)
            owners.append(i)
        try:
            add(**kw)
        except UnicodeEncodeError:
            names = {"id": "id", "text": "text", "metadata_json": "metadata", "label": "label"}
            _first_unencodable((f"upsert docs[{i}] {names[k]}", v) for k, v in kw.items() if k in names)
            raise
    if vectors:
        matrix_to_pb(vectors_to_matrix(vectors, lambda j: f"upsert docs[{owners[j]}]", dim, collection),
                     req.packed_vectors)
    return req


def documents_from_pb(msg: pb.UpsertRequest) -> list[Document]:
    """The documents of an UpsertRequest, for ``Collection.upsert`` (which checks them): vectors
    are rows of the packed batch (views, no copy) or older per-document Vectors; metadata is the
    sent JSON text, parsed once to check it (:class:`~simsearch.index.MetadataJSON`)."""
    matrix = matrix_from_pb(msg.packed_vectors, "upsert packed_vectors") if msg.HasField("packed_vectors") else None
    rows: list[int] = []
    out = []
    for i, d in enumerate(msg.documents):
        vector = None
        if d.HasField("vector_row"):
            r = d.vector_row
            if d.HasField("vector"):
                raise InvalidArgumentError(f"upsert docs[{i}]: sets both vector and vector_row; send one.")
            if matrix is None or r >= len(matrix):
                have = "no packed_vectors" if matrix is None else f"{len(matrix)} rows in packed_vectors"
                raise InvalidArgumentError(f"upsert docs[{i}]: vector_row is {r} but the request has {have}.")
            vector = matrix[r]
            rows.append(r)
        elif d.HasField("vector"):
            vector = vector_from_pb(d.vector)
        meta = d.metadata_json
        out.append(Document(
            id=d.id,
            text=d.text if d.HasField("text") else None,
            metadata=MetadataJSON(meta, f"upsert docs[{i}]") if meta else {},
            vector=vector,
            label=d.label if d.HasField("label") else None,
        ))
    if matrix is not None and (len(rows) != len(matrix) or len(set(rows)) != len(rows)):
        raise InvalidArgumentError(
            f"upsert: packed_vectors has {len(matrix)} rows but documents name {len(set(rows))} distinct rows "
            f"({len(rows)} in all); each row must belong to exactly one document."
        )
    return out


def document_to_pb(doc: Document) -> pb.Document:
    """A stored document as a GetResponse sends it: the vector in the older per-document form,
    metadata re-serialised from the stored value (keys sorted)."""
    msg = pb.Document(id=doc.id)
    if doc.text is not None:
        msg.text = doc.text
    if doc.metadata:
        msg.metadata_json = json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True)
    if doc.vector is not None:
        msg.vector.CopyFrom(vector_to_pb(doc.vector))
    if doc.label is not None:
        msg.label = doc.label
    return msg


def document_from_pb(msg: pb.Document) -> Document:
    return Document(
        id=msg.id,
        text=msg.text if msg.HasField("text") else None,
        metadata=json.loads(msg.metadata_json) if msg.metadata_json else {},
        vector=vector_from_pb(msg.vector).copy() if msg.HasField("vector") else None,
        label=msg.label if msg.HasField("label") else None,
    )


# -- server side: messages -> arguments -------------------------------------------------------
def config_kwargs(msg: pb.CollectionConfig) -> dict[str, Any]:
    """The keyword arguments of ``create_collection`` that the message sets; the rest default."""
    out = {name: getattr(msg, name) for name in _CONFIG_FIELDS
           if name not in ("weights", "indexed_fields") and msg.HasField(name)}
    if msg.indexed_fields:
        out["indexed_fields"] = tuple(msg.indexed_fields)
    if msg.HasField("weights"):
        out["weights"] = (msg.weights.false_positive, msg.weights.false_negative)
    return out


def optional(msg, name: str):
    """The value of an ``optional`` field, None when unset."""
    return getattr(msg, name) if msg.HasField(name) else None


def decode_json_object(text: str, field: str, func: str) -> Any:
    """The value of a JSON text field ("" is None); the library checks that it is an object."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidArgumentError(f"{func}: {field} is not valid JSON ({getattr(exc, 'msg', exc)}).") from None


# -- results -> messages (server) -------------------------------------------------------------
def config_to_pb(config: CollectionConfig) -> pb.CollectionConfig:
    msg = pb.CollectionConfig(
        shingle=config.shingle, ngram=config.ngram, num_perm=config.num_perm, seed=config.seed,
        threshold=config.threshold, metric=config.metric, store_text=config.store_text,
        store_shingles=config.store_shingles, vector_index=config.vector_index, hnsw_m=config.hnsw_m,
        ef_construction=config.ef_construction, ef_search=config.ef_search, indexed_fields=config.indexed_fields,
    )
    if config.nlist is not None:
        msg.nlist = config.nlist
    if config.nprobe is not None:
        msg.nprobe = config.nprobe
    if config.dim is not None:
        msg.dim = config.dim
    if config.weights is not None:
        msg.weights.false_positive, msg.weights.false_negative = config.weights
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


def query_stats_to_pb(stats: QueryStats, out: pb.QueryStats) -> None:
    out.path, out.vector_index, out.metadata_scan = stats.path, stats.vector_index, stats.metadata_scan
    if stats.allowed is not None:
        out.allowed = stats.allowed


def query_stats_from_pb(msg: pb.QueryStats) -> QueryStats:
    return QueryStats(msg.path, msg.vector_index, msg.allowed if msg.HasField("allowed") else None,
                      msg.metadata_scan)


def neighbors_to_pb(results: list[list[Neighbor]]) -> pb.SearchVectorsResponse:
    return pb.SearchVectorsResponse(results=[
        pb.NeighborList(neighbors=[pb.Neighbor(id=n.id, distance=n.distance) for n in hits]) for hits in results
    ])


def cluster_to_pb(c: Cluster) -> pb.Cluster:
    return pb.Cluster(representative=c.representative, ids=c.ids, jaccard=c.jaccard)


def classifier_info_to_pb(info: ClassifierInfo) -> pb.ClassifierInfo:
    return pb.ClassifierInfo(name=info.name, kind=info.kind, version=info.version, n_samples=info.n_samples,
                             dim=info.dim, classes=info.classes, n_unlabelled=info.n_unlabelled)


def classifications_to_pb(results: list[Classification]) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(results=[
        pb.Classification(label=r.label, probability=r.probability, component=r.component,
                          log_likelihood=r.log_likelihood, outlier=r.outlier,
                          neighbors=[pb.Neighbor(id=n.id, distance=n.distance) for n in r.neighbors])
        for r in results
    ])


# -- messages -> results (client) -------------------------------------------------------------
def config_from_pb(msg: pb.CollectionConfig) -> CollectionConfig:
    kwargs = config_kwargs(msg)
    kwargs.setdefault("dim", None)
    kwargs.setdefault("weights", None)
    return CollectionConfig(**kwargs)


def info_from_pb(msg: pb.CollectionInfo) -> CollectionInfo:
    return CollectionInfo(name=msg.name, config=config_from_pb(msg.config), count=msg.count)


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
    """An UpsertResponse or UpsertStreamResponse as the UpsertResult it encodes."""
    return UpsertResult(upserted=msg.upserted, replaced=msg.replaced, skipped=msg.skipped,
                        duplicates=tuple(Duplicate(d.id, d.duplicate_of, d.jaccard) for d in msg.duplicates))


def upsert_result_to_pb(result: UpsertResult, cls=None, **extra):
    """``result`` as an UpsertResponse (or ``cls``, e.g. UpsertStreamResponse, with ``extra`` fields)."""
    cls = pb.UpsertResponse if cls is None else cls
    return cls(upserted=result.upserted, replaced=result.replaced, skipped=result.skipped,
               duplicates=[pb.Duplicate(id=d.id, duplicate_of=d.duplicate_of, jaccard=d.jaccard)
                           for d in result.duplicates], **extra)


def scroll_request(collection: str, filter_json: str, batch_size, with_text, with_vector, after) -> pb.ScrollRequest:
    """A ScrollRequest of arguments as given (the server's ``Collection.scroll`` checks them)."""
    func = "scroll"
    return pb.ScrollRequest(
        collection=collection, filter_json=filter_json,
        batch_size=encode_int(batch_size, "batch_size", 1, _INT64_MAX, func),
        with_text=with_text, with_vector=with_vector,
        after=None if after is None else encode_string(after, f"The 'after' parameter of {func}"),
    )


def scroll_page_to_pb(page: ScrollPage) -> pb.ScrollPage:
    return pb.ScrollPage(documents=[document_to_pb(d) for d in page.documents], cursor=page.cursor)


def scroll_page_from_pb(msg: pb.ScrollPage) -> ScrollPage:
    return ScrollPage(documents=tuple(document_from_pb(d) for d in msg.documents), cursor=optional(msg, "cursor"))


def classifier_info_from_pb(msg: pb.ClassifierInfo) -> ClassifierInfo:
    return ClassifierInfo(name=msg.name, kind=msg.kind, version=msg.version, n_samples=msg.n_samples, dim=msg.dim,
                          classes=tuple(msg.classes), n_unlabelled=msg.n_unlabelled)


def classifications_from_pb(msg: pb.ClassifyResponse) -> list[Classification]:
    return [
        Classification(
            label=optional(r, "label"), probability=optional(r, "probability"), component=optional(r, "component"),
            log_likelihood=optional(r, "log_likelihood"), outlier=optional(r, "outlier"),
            neighbors=tuple(Neighbor(id=n.id, distance=n.distance) for n in r.neighbors),
        )
        for r in msg.results
    ]
