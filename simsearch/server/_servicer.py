"""The ``simsearch.v1.SimSearch`` servicer: decode the request, call :class:`simsearch.Index`, encode.

Validation and errors are the library's own (the errors interceptor maps them to status codes);
this layer adds only what exists because of the network: the server's ``max_k``, deadlines,
malformed bytes, and draining on shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
from google.protobuf.message import DecodeError

import simsearch
from simsearch import wire
from simsearch.errors import InvalidArgumentError, ResourceExhaustedError
from simsearch.index import MAX_K, CollectionInfo, Index
from simsearch.wire import pb

from ._config import ServerConfig
from ._interceptors import StatusError


class ServerState:
    """What the servicer shares with the server wrapper: start time, draining flag, counters."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.draining = threading.Event()
        self.in_flight: Callable[[], int] = lambda: 0


def _check_deadline(context: grpc.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise StatusError(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before the server ran it")


class SimSearchServicer:
    """One method per RPC of ``simsearch.v1.SimSearch``; see protos/simsearch/v1/simsearch.proto."""

    def __init__(self, index: Index, state: ServerState) -> None:
        self.index = index
        self.state = state
        self.max_k = state.config.max_k

    def _coll(self, name: str):
        return self.index.get_collection(name)

    def _k(self, msg) -> int | None:
        k = wire.optional(msg, "k")
        if k is not None and self.max_k < MAX_K and k > self.max_k:
            raise ResourceExhaustedError(f"k={k} is over this server's limit max_k={self.max_k}.")
        return k

    # -- collections -----------------------------------------------------------------------
    def CreateCollection(self, request, context):
        kwargs = wire.config_kwargs(request.config) if request.HasField("config") else {}
        coll = self.index.create_collection(request.name, exist_ok=request.exist_ok, **kwargs)
        return wire.info_to_pb(CollectionInfo(coll.name, coll.config, coll.count()))

    def GetCollection(self, request, context):
        coll = self._coll(request.name)
        return wire.info_to_pb(CollectionInfo(coll.name, coll.config, coll.count()))

    def ListCollections(self, request, context):
        return pb.ListCollectionsResponse(collections=[wire.info_to_pb(i) for i in self.index.list_collections()])

    def DropCollection(self, request, context):
        self.index.drop_collection(request.name)
        return pb.DropCollectionResponse()

    # -- writes ----------------------------------------------------------------------------
    def _upsert(self, request):
        coll = self._coll(request.collection)
        return coll.upsert(wire.documents_from_pb(request))

    def Upsert(self, request, context):
        r = self._upsert(request)
        return pb.UpsertResponse(upserted=r.upserted, replaced=r.replaced)

    def UpsertStream(self, requests: Iterator, context):
        batches = upserted = replaced = 0
        try:
            for request in requests:
                if self.state.draining.is_set():
                    raise StatusError(grpc.StatusCode.UNAVAILABLE,
                                      f"the server is shutting down; {batches} batches of this stream were committed")
                _check_deadline(context)
                r = self._upsert(request)
                batches, upserted, replaced = batches + 1, upserted + r.upserted, replaced + r.replaced
        finally:
            context.set_trailing_metadata(((wire.COMMITTED_BATCHES_KEY, str(batches)),
                                           (wire.COMMITTED_DOCS_KEY, str(upserted))))
        return pb.UpsertStreamResponse(batches=batches, upserted=upserted, replaced=replaced)

    def Delete(self, request, context):
        n = self._coll(request.collection).delete(list(request.ids), missing_ok=request.missing_ok)
        return pb.DeleteResponse(deleted=n)

    # -- reads -----------------------------------------------------------------------------
    def Get(self, request, context):
        docs = self._coll(request.collection).get(list(request.ids))
        return pb.GetResponse(documents=[wire.document_to_pb(d) for d in docs])

    def Count(self, request, context):
        return pb.CountResponse(count=self._coll(request.collection).count())

    # -- queries ---------------------------------------------------------------------------
    def QueryNearDuplicates(self, request, context):
        coll = self._coll(request.collection)
        texts = list(request.texts.values) if request.HasField("texts") else None
        ids = list(request.ids.values) if request.HasField("ids") else None
        out = coll.near_duplicates_batch(
            texts=texts, ids=ids, threshold=wire.optional(request, "threshold"), k=self._k(request), exact=request.exact,
            filter=request.filter_json or None, with_stats=True,
        )
        msg = wire.near_duplicates_to_pb(out.results)
        wire.query_stats_to_pb(out.stats, msg.stats)
        return msg

    def SearchVectors(self, request, context):
        coll = self._coll(request.collection)
        kwargs = {}
        k = self._k(request)
        if k is not None:
            kwargs["k"] = k
        if request.HasField("metric"):
            kwargs["metric"] = request.metric
        vectors = wire.vectors_from_pb(request, "search")
        ids = list(request.ids.values) if request.HasField("ids") else None
        out = coll.search_batch(vectors=vectors, ids=ids, filter=request.filter_json or None, exact=request.exact,
                                with_stats=True, **kwargs)
        msg = wire.neighbors_to_pb(out.results)
        wire.query_stats_to_pb(out.stats, msg.stats)
        return msg

    def FindDuplicates(self, request, context):
        clusters = self._coll(request.collection).find_duplicates(
            wire.optional(request, "threshold"), exact=wire.optional(request, "exact"),
            filter=request.filter_json or None,
        )
        for c in clusters:
            if not context.is_active():
                return
            yield wire.cluster_to_pb(c)

    # -- classifiers -----------------------------------------------------------------------
    def TrainClassifier(self, request, context):
        coll = self._coll(request.collection)
        func = "train_classifier"
        kwargs = {"kind": request.kind} if request.HasField("kind") else {}
        info = coll.train_classifier(
            request.name, params=wire.decode_json_object(request.params_json, "params_json", func),
            filter=wire.decode_json_object(request.filter_json, "filter_json", func), **kwargs,
        )
        return wire.classifier_info_to_pb(info)

    def ListClassifiers(self, request, context):
        infos = self._coll(request.collection).list_classifiers()
        return pb.ListClassifiersResponse(classifiers=[wire.classifier_info_to_pb(i) for i in infos])

    def Classify(self, request, context):
        coll = self._coll(request.collection)
        k = self._k(request)
        vectors = wire.vectors_from_pb(request, "classify")
        ids = list(request.ids.values) if request.HasField("ids") else None
        results = coll.classify(vectors, ids=ids, model=request.model, filter=request.filter_json or None,
                                **({} if k is None else {"k": k}))
        return wire.classifications_to_pb(results)

    def DeleteClassifier(self, request, context):
        self._coll(request.collection).delete_classifier(request.name)
        return pb.DeleteClassifierResponse()

    # -- server ----------------------------------------------------------------------------
    def Stats(self, request, context):
        cfg = self.state.config
        return pb.StatsResponse(
            version=simsearch.__version__,
            uptime_seconds=time.monotonic() - self.state.started,
            limits=pb.Limits(max_message_bytes=cfg.max_message_bytes, max_batch=self.index.max_batch,
                             max_k=self.max_k, max_text_bytes=self.index.max_text_bytes),
            collections=[wire.info_to_pb(i) for i in self.index.list_collections()],
            requests_in_flight=self.state.in_flight(),
            auth_required=cfg.token is not None,
            tls=cfg.tls_cert is not None,
        )


class _Malformed:
    """Stands in for a request whose bytes did not parse, so the error becomes INVALID_ARGUMENT."""

    def __init__(self, type_name: str, exc: Exception) -> None:
        self.error = InvalidArgumentError(f"the request is not a valid simsearch.v1.{type_name} message ({exc}).")


def _parser(cls) -> Callable[[bytes], object]:
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError) as exc:
            return _Malformed(cls.__name__, exc)

    return parse


def _checked(request):
    if isinstance(request, _Malformed):
        raise request.error
    return request


def _guard(behaviour: Callable, request_streaming: bool) -> Callable:
    """Refuse malformed requests and calls whose deadline passed while they were queued."""
    if request_streaming:
        def stream_call(requests, context):
            _check_deadline(context)
            return behaviour((_checked(r) for r in requests), context)

        return stream_call

    def call(request, context):
        _check_deadline(context)
        return behaviour(_checked(request), context)

    return call


_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(servicer: SimSearchServicer) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers for every method the .proto declares, built from its descriptor."""
    out = {}
    for m in pb.DESCRIPTOR.services_by_name["SimSearch"].methods:
        factory = _FACTORIES[(m.client_streaming, m.server_streaming)]
        out[m.name] = factory(
            _guard(getattr(servicer, m.name), m.client_streaming),
            request_deserializer=_parser(getattr(pb, m.input_type.name)),
            response_serializer=getattr(pb, m.output_type.name).SerializeToString,
        )
    return out
