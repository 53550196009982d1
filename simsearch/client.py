"""``simsearch.Client``: the remote twin of :class:`simsearch.Index`, over gRPC.

``Client(target)`` has the methods of ``Index`` (``create_collection``, ``get_collection``,
``list_collections``, ``drop_collection``, ``close``) and its collections have the methods of
``Collection``, with the same arguments, the same result dataclasses and the same exception
classes: a status from the server is turned back into the :mod:`simsearch.errors` class the local
call would raise (the server names it in the trailing metadata). Failures outside the library
(server unreachable, deadline exceeded, internal error) raise :class:`RemoteError`.

Differences from the embedded index: ``snapshot`` writes on the server's disk, under its
``--snapshot-dir`` (``Client.snapshot``, ``list_snapshots``, ``delete_snapshot``), and ``restore``
is not offered; strings must be valid UTF-8 (no lone surrogates); a handle to a collection that was
dropped and recreated under the same name talks to the new one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from . import wire
from .wire import pb
from .errors import (
    GRPC_STATUS,
    InvalidArgumentError,
    InvalidTypeError,
    ResourceExhaustedError,
    SimsearchError,
    error_for_status,
)
from .index import (
    MAX_K,
    METRICS,
    Classification,
    ClassifierInfo,
    Cluster,
    CollectionConfig,
    CollectionInfo,
    Document,
    NearDuplicate,
    Neighbor,
    ScrollPage,
    SearchResult,
    UpsertResult,
    check_collection_name,
    check_documents,
    check_id,
    check_on_duplicate,
    check_filter,
    check_kind,
    check_model_name,
    check_params,
    parse_filter,
)

__all__ = ["Client", "RemoteCollection", "RemoteError", "SnapshotInfo"]

DEFAULT_TARGET = "127.0.0.1:50051"
_TABLE_STATUSES = frozenset(GRPC_STATUS.values())


class RemoteError(SimsearchError, ConnectionError):
    """A remote call failed outside the library: the server was unreachable or shutting down
    (UNAVAILABLE), the deadline passed, the call was cancelled, or the server hit an internal
    error. ``code`` is the gRPC status name; UNAVAILABLE and DEADLINE_EXCEEDED are worth a retry.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def translate_error(code: grpc.StatusCode, details: str | None, trailers) -> SimsearchError:
    """The simsearch exception for a failed call (see the module docstring)."""
    name = code.name if code is not None else "UNKNOWN"
    details = details or ""
    meta = {k: v for k, v in (trailers or ())}
    cls_name = meta.get(wire.ERROR_CLASS_KEY)
    if name not in _TABLE_STATUSES:
        exc: SimsearchError = RemoteError(name, details)
    else:
        if name == "RESOURCE_EXHAUSTED" and cls_name is None:  # from gRPC itself: the message size limit
            details += " (the message is over the server's max message size; send smaller batches or start the " \
                       "server with a larger --max-message-mb)"
            exc = ResourceExhaustedError(details)
        else:
            exc = error_for_status(name, details, cls_name)
    exc.grpc_code = name
    if wire.COMMITTED_BATCHES_KEY in meta:
        exc.committed_batches = int(meta[wire.COMMITTED_BATCHES_KEY])
        exc.committed_documents = int(meta.get(wire.COMMITTED_DOCS_KEY, 0))
    return exc


def channel_credentials(tls: Any) -> grpc.ChannelCredentials | None:
    """None for plaintext; ``True``: system roots; a path or PEM bytes: that CA; or credentials as is."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if isinstance(tls, bytes):
        return grpc.ssl_channel_credentials(root_certificates=tls)
    if isinstance(tls, (str, os.PathLike)):
        with open(tls, "rb") as fh:
            return grpc.ssl_channel_credentials(root_certificates=fh.read())
    raise InvalidTypeError(
        f"tls must be None, True, a CA certificate path, PEM bytes or grpc.ChannelCredentials. Got {type(tls).__name__}."
    )


CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def method_table(channel) -> dict[str, Any]:
    """A multi-callable per RPC of the .proto, for a sync or an asyncio channel."""
    out = {}
    for m in pb.DESCRIPTOR.services_by_name["SimSearch"].methods:
        kind = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")[2 * m.client_streaming + m.server_streaming]
        out[m.name] = getattr(channel, kind)(
            f"/{wire.SERVICE}/{m.name}",
            request_serializer=getattr(pb, m.input_type.name).SerializeToString,
            response_deserializer=getattr(pb, m.output_type.name).FromString,
            _registered_method=True,
        )
    return out


class Requests:
    """Request building shared by the sync and asyncio collections (``name``, ``config`` set)."""

    name: str
    config: CollectionConfig

    def _upsert_request(self, docs, on_duplicate: str = "insert", threshold=None) -> pb.UpsertRequest:
        """Checked by the library's ``check_documents``, as ``Collection.upsert`` checks (the
        server applies its own max_batch and max_text_bytes); metadata is JSON-encoded there, once."""
        check_on_duplicate(on_duplicate, threshold, self.config.threshold)
        docs = check_documents(docs, dim=self.config.dim, collection=self.name)
        return wire.upsert_request(self.name, docs, self.config.dim,
                                   None if on_duplicate == "insert" else on_duplicate, threshold)

    def _scroll_request(self, filter, batch_size, with_text, with_vector, after) -> pb.ScrollRequest:
        """Checked as ``Collection.scroll`` checks its arguments (the server applies max_batch)."""
        func = "scroll"
        flt = parse_filter(filter)
        for name, val in (("with_text", with_text), ("with_vector", with_vector)):
            if not isinstance(val, bool):
                raise InvalidTypeError(f"The '{name}' parameter of {func} must be a bool.")
        if after is not None:
            after = check_id(after, f"The 'after' parameter of {func}")
        return wire.scroll_request(self.name, "" if flt is None else flt.to_json(), batch_size, with_text,
                                   with_vector, after)

    def _delete_request(self, ids, missing_ok) -> pb.DeleteRequest:
        return pb.DeleteRequest(collection=self.name, ids=wire.encode_ids(ids, "delete"), missing_ok=bool(missing_ok))

    def _get_request(self, ids) -> pb.GetRequest:
        return pb.GetRequest(collection=self.name, ids=wire.encode_ids(ids, "get"))

    def _near_request(self, texts, ids, threshold, k, exact, filter=None) -> pb.QueryNearDuplicatesRequest:
        func = "near_duplicates"
        if not isinstance(exact, bool):
            raise InvalidTypeError(f"The 'exact' parameter of {func} must be a bool.")
        req = pb.QueryNearDuplicatesRequest(
            collection=self.name, exact=exact,
            threshold=wire.encode_float(threshold, "threshold", 0.0, 1.0, func, lo_open=True),
            k=wire.encode_int(k, "k", 1, MAX_K, func), filter_json=_filter_json(filter),
        )
        if texts is not None:
            req.texts.CopyFrom(wire.encode_texts(texts, func))
        if ids is not None:
            req.ids.CopyFrom(pb.StringList(values=wire.encode_ids(ids, func)))
        return req

    def _search_request(self, vectors, ids, k, metric, filter=None, exact=False) -> pb.SearchVectorsRequest:
        func = "search"
        if not isinstance(exact, bool):
            raise InvalidTypeError(f"The 'exact' parameter of {func} must be a bool.")
        req = pb.SearchVectorsRequest(
            collection=self.name, k=wire.encode_int(k, "k", 1, MAX_K, func, optional=False),
            metric=wire.encode_option(metric, "metric", METRICS, func), filter_json=_filter_json(filter), exact=exact,
        )
        if vectors is not None:
            wire.encode_vectors(vectors, func, self.config.dim, self.name, req.packed_vectors)
        if ids is not None:
            req.ids.CopyFrom(pb.StringList(values=wire.encode_ids(ids, func)))
        return req

    def _find_request(self, threshold, exact, filter=None, with_stats=False) -> pb.FindDuplicatesRequest:
        req = pb.FindDuplicatesRequest(
            collection=self.name, threshold=wire.encode_float(threshold, "threshold", 0.0, 1.0, "find_duplicates",
                                                          lo_open=True),
            exact=None if exact is None else bool(exact), filter_json=_filter_json(filter),
        )
        if not isinstance(with_stats, bool):
            raise InvalidTypeError("The 'with_stats' parameter of find_duplicates must be a bool.")
        req.with_stats = with_stats
        return req

    @staticmethod
    def _clusters(msgs: list, with_stats: bool) -> list[Cluster] | SearchResult:
        """FindDuplicates' messages as clusters; asked ``with_stats``, the last one holds the stats."""
        if not with_stats:
            return [wire.cluster_from_pb(c) for c in msgs]
        last = msgs[-1] if msgs and msgs[-1].HasField("stats") else pb.Cluster()
        body = msgs[:-1] if msgs and msgs[-1].HasField("stats") else msgs
        return SearchResult([wire.cluster_from_pb(c) for c in body], wire.query_stats_from_pb(last.stats))

    @staticmethod
    def _classified(msg, with_stats: bool) -> list[Classification] | SearchResult:
        out = wire.classifications_from_pb(msg)
        return SearchResult(out, wire.query_stats_from_pb(msg.stats)) if with_stats else out

    def _train_request(self, name, kind, params, filter) -> pb.TrainClassifierRequest:
        """Checked as ``Collection.train_classifier`` checks its arguments, in the same order."""
        func = "train_classifier"
        name = check_model_name(name)
        if not isinstance(kind, str):
            check_kind(kind)  # raises the library's message
        params = check_params(params)
        filter = check_filter(filter)
        return pb.TrainClassifierRequest(
            collection=self.name, name=name, kind=wire.encode_string(kind, f"The 'kind' parameter of {func}"),
            params_json=wire.encode_json_object(params, "params", func),
            filter_json=wire.encode_json_object(filter, "filter", func),
        )

    def _classify_request(self, vectors, ids, model, k, filter=None, with_stats=False) -> pb.ClassifyRequest:
        """Checked as ``Collection.classify`` checks its arguments, in the same order."""
        func = "classify"
        req = pb.ClassifyRequest(collection=self.name, model=check_model_name(model),
                                 k=wire.encode_int(k, "k", 1, MAX_K, func, optional=False),
                                 filter_json=_filter_json(filter))
        if not isinstance(with_stats, bool):
            raise InvalidTypeError(f"The 'with_stats' parameter of {func} must be a bool.")
        if (vectors is None) == (ids is None):
            raise InvalidArgumentError(f"{func} takes either vectors or ids, not both and not neither.")
        if vectors is not None:
            wire.encode_vectors(vectors, func, self.config.dim, self.name, req.packed_vectors)
        else:
            req.ids.CopyFrom(pb.StringList(values=wire.encode_ids(ids, func)))
        return req

    def _model_request(self, cls, name):
        return cls(collection=self.name, name=check_model_name(name))

    def _stream_requests(self, batches, failure: list, on_duplicate: str = "insert", threshold=None):
        """UpsertRequests from ``batches``; a batch that cannot be encoded ends the stream cleanly
        (so the server acknowledges what came before) and its error goes to ``failure``."""
        try:
            for docs in batches:
                yield self._upsert_request(docs, on_duplicate, threshold)
        except Exception as exc:  # noqa: BLE001 - re-raised by the caller after the ack
            failure.append(exc)

    @staticmethod
    def _stream_result(resp: pb.UpsertStreamResponse, failure: list) -> UpsertResult:
        result = wire.upsert_result_from_pb(resp)
        if failure:
            exc = failure[0]
            exc.committed_batches, exc.committed_documents = resp.batches, resp.upserted
            raise exc
        return result


def _filter_json(filter) -> str:
    """The canonical JSON text of a filter ("" for none), parsed here as Collection parses it, so
    a bad filter raises the same error before anything is sent."""
    flt = parse_filter(filter)
    return "" if flt is None else flt.to_json()


def create_request(name, shingle, ngram, num_perm, seed, threshold, weights, dim, metric, store_text,
                   store_shingles, exist_ok, **index_options) -> pb.CreateCollectionRequest:
    """Validated like ``Index.create_collection`` (same messages), then sent with every field set."""
    name = check_collection_name(name)
    config = CollectionConfig(
        shingle=shingle, ngram=ngram, num_perm=num_perm, seed=seed, threshold=threshold,
        weights=tuple(weights) if isinstance(weights, list) else weights, dim=dim, metric=metric,
        store_text=store_text, store_shingles=store_shingles, **index_options,
    ).validated()
    return pb.CreateCollectionRequest(name=name, config=wire.config_to_pb(config), exist_ok=bool(exist_ok))


class RemoteCollection(Requests):
    """A collection on a simsearch server; the methods and results of :class:`simsearch.Collection`."""

    def __init__(self, client: "Client", info: CollectionInfo) -> None:
        self._client = client
        self.name = info.name
        self.config = info.config

    def __repr__(self) -> str:
        return f"RemoteCollection({self.name!r}, target={self._client.target!r})"

    def __reduce__(self):
        """Pickles as what reconnects to it (target, token, TLS, timeout, name), e.g. for Ray workers;
        TLS given as grpc.ChannelCredentials cannot be pickled."""
        if isinstance(self._client._args[2], grpc.ChannelCredentials):
            raise InvalidTypeError("a RemoteCollection whose Client has tls=grpc.ChannelCredentials cannot be "
                                   "pickled; pass tls as True, a CA path or PEM bytes.")
        return _reconnect, (self._client._args, self.name)

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, docs: Sequence[Document | dict], *, on_duplicate: str = "insert",
               threshold: float | None = None) -> UpsertResult:
        """Insert or replace a batch of documents atomically; returns after the server's commit.
        ``on_duplicate`` and ``threshold``: see ``Collection.upsert``."""
        req = self._upsert_request(docs, on_duplicate, threshold)
        return wire.upsert_result_from_pb(self._client._call("Upsert", req))

    def upsert_stream(self, batches: Iterable[Sequence[Document | dict]], *, on_duplicate: str = "insert",
                      threshold: float | None = None) -> UpsertResult:
        """Send many batches on one stream; each commits on arrival. Returns the totals (and every
        skipped or tagged document, with ``on_duplicate``).

        If the stream fails, the exception has ``committed_batches`` and ``committed_documents``:
        those first batches are durably committed (each batch is atomic), the rest are not.
        """
        check_on_duplicate(on_duplicate, threshold, self.config.threshold)
        failure: list = []
        resp = self._client._call("UpsertStream", self._stream_requests(batches, failure, on_duplicate, threshold))
        return self._stream_result(resp, failure)

    def scroll(self, filter: dict | str | None = None, *, batch_size: int = 1000, with_text: bool = False,
               with_vector: bool = False, after: str | None = None) -> Iterator[ScrollPage]:
        """Pages of documents in id order over the Scroll RPC; see ``Collection.scroll``. The
        arguments are checked at once; the pages stream as the iterator is consumed."""
        req = self._scroll_request(filter, batch_size, with_text, with_vector, after)
        return self._client._stream("Scroll", req, wire.scroll_page_from_pb)

    def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> int:
        return self._client._call("Delete", self._delete_request(ids, missing_ok)).deleted

    # -- reads -----------------------------------------------------------------------------
    def count(self) -> int:
        return self._client._call("Count", pb.CountRequest(collection=self.name)).count

    def get(self, ids: Sequence[str]) -> list[Document]:
        return [wire.document_from_pb(d) for d in self._client._call("Get", self._get_request(ids)).documents]

    # -- queries ---------------------------------------------------------------------------
    def near_duplicates(self, text: str | None = None, *, id: str | None = None, threshold: float | None = None,
                        k: int | None = None, exact: bool = False, filter: dict | str | None = None,
                        ) -> list[NearDuplicate]:
        texts = None if text is None else [text]
        ids = None if id is None else [id]
        return self.near_duplicates_batch(texts=texts, ids=ids, threshold=threshold, k=k, exact=exact,
                                          filter=filter)[0]

    def near_duplicates_batch(self, texts=None, ids=None, *, threshold: float | None = None, k: int | None = None,
                              exact: bool = False, filter: dict | str | None = None,
                              with_stats: bool = False) -> list[list[NearDuplicate]] | SearchResult:
        req = self._near_request(texts, ids, threshold, k, exact, filter)
        msg = self._client._call("QueryNearDuplicates", req)
        out = wire.near_duplicates_from_pb(msg)
        return SearchResult(out, wire.query_stats_from_pb(msg.stats)) if with_stats else out

    def search(self, vector=None, *, id: str | None = None, k: int = 10, metric: str | None = None,
               filter: dict | str | None = None, exact: bool = False) -> list[Neighbor]:
        vectors = None if vector is None else [vector]
        ids = None if id is None else [id]
        return self.search_batch(vectors=vectors, ids=ids, k=k, metric=metric, filter=filter, exact=exact)[0]

    def search_batch(self, vectors=None, ids=None, *, k: int = 10, metric: str | None = None,
                     filter: dict | str | None = None, exact: bool = False,
                     with_stats: bool = False) -> list[list[Neighbor]] | SearchResult:
        req = self._search_request(vectors, ids, k, metric, filter, exact)
        msg = self._client._call("SearchVectors", req)
        out = wire.neighbors_from_pb(msg)
        return SearchResult(out, wire.query_stats_from_pb(msg.stats)) if with_stats else out

    def find_duplicates(self, threshold: float | None = None, *, exact: bool | None = None,
                        filter: dict | str | None = None, with_stats: bool = False) -> list[Cluster] | SearchResult:
        req = self._find_request(threshold, exact, filter, with_stats)
        return self._clusters(self._client._call("FindDuplicates", req), with_stats)

    # -- classifiers -----------------------------------------------------------------------
    def train_classifier(self, name: str, kind: str = "svm", params: dict | None = None,
                         filter: dict | None = None) -> ClassifierInfo:
        """Train and store a model on the server; see ``Collection.train_classifier``. ``params``
        and ``filter`` travel as JSON (numpy arrays and scalars become lists and numbers)."""
        req = self._train_request(name, kind, params, filter)
        return wire.classifier_info_from_pb(self._client._call("TrainClassifier", req))

    def list_classifiers(self) -> list[ClassifierInfo]:
        resp = self._client._call("ListClassifiers", pb.ListClassifiersRequest(collection=self.name))
        return [wire.classifier_info_from_pb(i) for i in resp.classifiers]

    def classify(self, vectors=None, *, ids=None, model: str, k: int = 10, filter: dict | str | None = None,
                 with_stats: bool = False) -> list[Classification] | SearchResult:
        req = self._classify_request(vectors, ids, model, k, filter, with_stats)
        return self._classified(self._client._call("Classify", req), with_stats)

    def delete_classifier(self, name: str) -> None:
        self._client._call("DeleteClassifier", self._model_request(pb.DeleteClassifierRequest, name))


class Client:
    """A connection to ``simsearch serve``; mirrors :class:`simsearch.Index`.

    ``token`` is sent as ``authorization: Bearer <token>``; ``tls`` is None (plaintext), True
    (system CAs), a CA certificate path or PEM bytes, or ``grpc.ChannelCredentials``. ``timeout``
    (seconds) is the deadline of every call; None waits as long as it takes.
    """

    def __init__(self, target: str = DEFAULT_TARGET, token: str | None = None, tls: Any = None, *,
                 timeout: float | None = None, options: Sequence[tuple[str, Any]] = ()) -> None:
        self.target = target
        self.timeout = timeout
        self._args = (target, token, tls, timeout, tuple(options))
        creds = channel_credentials(tls)
        opts = CHANNEL_OPTIONS + list(options)
        self._channel = grpc.secure_channel(target, creds, opts) if creds else grpc.insecure_channel(target, opts)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._methods = method_table(self._channel)

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request):
        try:
            result = self._methods[method](request, timeout=self.timeout, metadata=self._metadata)
            if method == "FindDuplicates":
                result = list(result)
            return result
        except grpc.RpcError as exc:
            raise translate_error(exc.code(), exc.details(), exc.trailing_metadata()) from None

    def _stream(self, method: str, request, convert):
        """The converted messages of a server-streaming call, as they arrive (errors translated)."""
        try:
            for msg in self._methods[method](request, timeout=self.timeout, metadata=self._metadata):
                yield convert(msg)
        except grpc.RpcError as exc:
            raise translate_error(exc.code(), exc.details(), exc.trailing_metadata()) from None

    def wait_ready(self, timeout: float = 10.0) -> "Client":
        """Block until the channel connects (RemoteError UNAVAILABLE after ``timeout`` seconds)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RemoteError("UNAVAILABLE", f"no simsearch server at {self.target} after {timeout}s") from None
        return self

    # -- collections -----------------------------------------------------------------------
    def create_collection(self, name: str, *, shingle: str = "word", ngram: int = 5, num_perm: int = 128,
                          seed: int = 1, threshold: float = 0.8, weights: tuple[float, float] | None = None,
                          dim: int | None = None, metric: str = "cosine", store_text: bool = True,
                          store_shingles: bool = True, vector_index: str = "auto", hnsw_m: int = 32,
                          ef_construction: int = 80, ef_search: int = 64, nlist: int | None = None,
                          nprobe: int | None = None, indexed_fields: Sequence[str] = (),
                          exist_ok: bool = False) -> RemoteCollection:
        req = create_request(name, shingle, ngram, num_perm, seed, threshold, weights, dim, metric, store_text,
                             store_shingles, exist_ok, vector_index=vector_index, hnsw_m=hnsw_m,
                             ef_construction=ef_construction, ef_search=ef_search, nlist=nlist, nprobe=nprobe,
                             indexed_fields=indexed_fields)
        return RemoteCollection(self, wire.info_from_pb(self._call("CreateCollection", req)))

    def get_collection(self, name: str) -> RemoteCollection:
        req = pb.GetCollectionRequest(name=check_collection_name(name))
        return RemoteCollection(self, wire.info_from_pb(self._call("GetCollection", req)))

    def list_collections(self) -> list[CollectionInfo]:
        resp = self._call("ListCollections", pb.ListCollectionsRequest())
        return [wire.info_from_pb(i) for i in resp.collections]

    def drop_collection(self, name: str) -> None:
        self._call("DropCollection", pb.DropCollectionRequest(name=check_collection_name(name)))

    def stats(self) -> dict[str, Any]:
        """Server version, uptime, limits, collections (CollectionInfo), in-flight and queued calls,
        per-RPC counts and latencies, per-collection sizes, ingest rate and training jobs (the
        numbers of the server's Prometheus metrics)."""
        return stats_from_pb(self._call("Stats", pb.StatsRequest()))

    # -- snapshots (on the server's disk, under its --snapshot-dir) -------------------------
    def snapshot(self, name: str = "") -> SnapshotInfo:
        """Write a consistent online snapshot of the whole index on the server; "" picks a name."""
        return _snapshot_info(self._call("Snapshot", snapshot_request(name)))

    def list_snapshots(self) -> list[SnapshotInfo]:
        return [_snapshot_info(s) for s in self._call("ListSnapshots", pb.ListSnapshotsRequest()).snapshots]

    def delete_snapshot(self, name: str) -> None:
        self._call("DeleteSnapshot", pb.DeleteSnapshotRequest(name=snapshot_request(name).name))


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot on the server: its directory name under --snapshot-dir, size and creation time."""

    name: str
    size_bytes: int
    created_unix_seconds: float


def snapshot_request(name: Any) -> pb.SnapshotRequest:
    """The name is checked by the server (its rules depend on its --snapshot-dir); here only its type."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"A snapshot name must be a str. Got {type(name).__name__}.")
    return pb.SnapshotRequest(name=wire.encode_string(name, "A snapshot name"))


def _snapshot_info(msg: pb.SnapshotInfo) -> SnapshotInfo:
    return SnapshotInfo(msg.name, msg.size_bytes, msg.created_unix_seconds)


def _reconnect(args, name: str) -> RemoteCollection:
    target, token, tls, timeout, options = args
    client = Client(target, token, tls, timeout=timeout, options=options)
    return client.get_collection(name)


def stats_from_pb(msg: pb.StatsResponse) -> dict[str, Any]:
    lim = msg.limits
    return {
        "version": msg.version,
        "uptime_seconds": msg.uptime_seconds,
        "limits": {"max_message_bytes": lim.max_message_bytes, "max_batch": lim.max_batch, "max_k": lim.max_k,
                   "max_text_bytes": lim.max_text_bytes},
        "collections": [wire.info_from_pb(i) for i in msg.collections],
        "requests_in_flight": msg.requests_in_flight,
        "auth_required": msg.auth_required,
        "tls": msg.tls,
        "warm": msg.warm,
        "requests_queued": msg.requests_queued,
        "ingested_documents": msg.ingested_documents,
        "ingest_documents_per_second": msg.ingest_documents_per_second,
        "training_jobs_running": msg.training_jobs_running,
        "training_jobs_waiting": msg.training_jobs_waiting,
        "training_limits": {f.name: getattr(msg.training_limits, f.name)
                            for f in msg.training_limits.DESCRIPTOR.fields},
        "index_bytes_on_disk": wire.optional(msg, "index_bytes_on_disk"),
        "collection_stats": {c.name: {"documents": c.documents, "segments": wire.optional(c, "segments"),
                                      "bytes_on_disk": wire.optional(c, "bytes_on_disk"),
                                      "bytes_in_memory": c.bytes_in_memory} for c in msg.collection_stats},
        "rpcs": {r.method: {"calls_by_code": dict(r.calls_by_code), "latency_seconds_sum": r.latency_seconds_sum,
                            "latency_buckets": list(zip(r.latency_bucket_bounds, r.latency_bucket_counts))}
                 for r in msg.rpcs},
    }
