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
from simsearch.index import MAX_K, CollectionInfo, Index, UpsertResult
from simsearch.wire import pb

from ._config import MiB, ServerConfig
from ._interceptors import StatusError
from ._metrics import ServerMetrics, directory_bytes
from ._snapshots import Snapshots
from ._training import TrainingRunner


class ServerState:
    """What the servicer shares with the server wrapper: start time, draining flag, counters."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.draining = threading.Event()
        self.warm = threading.Event()  # set once the kernels are compiled and health is SERVING
        self.in_flight: Callable[[], int] = lambda: 0
        self.metrics = ServerMetrics()  # create_server replaces it with one that sees the index
        self.snapshots = Snapshots(config.snapshot_dir)
        self.training = TrainingRunner(config, self.metrics)


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
        if k is not None and self.max_k < MAX_K and k > self.max_k:  # the same status as the library's own ceiling
            raise InvalidArgumentError(f"The 'k' parameter must be an int in [1, {self.max_k}] on this server "
                                       f"(max_k={self.max_k}). Got {k} instead.")
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
        kwargs = {}
        if request.HasField("on_duplicate"):
            kwargs["on_duplicate"] = request.on_duplicate
        if request.HasField("duplicate_threshold"):
            kwargs["threshold"] = request.duplicate_threshold
        result = coll.upsert(wire.documents_from_pb(request), **kwargs)
        self.state.metrics.observe_ingest(result.upserted)
        return result

    def Upsert(self, request, context):
        return wire.upsert_result_to_pb(self._upsert(request))

    def UpsertStream(self, requests: Iterator, context):
        batches = upserted = replaced = skipped = 0
        duplicates: list = []
        try:
            for request in requests:
                if self.state.draining.is_set():
                    raise StatusError(grpc.StatusCode.UNAVAILABLE,
                                      f"the server is shutting down; {batches} batches of this stream were committed")
                _check_deadline(context)
                r = self._upsert(request)
                batches, upserted, replaced = batches + 1, upserted + r.upserted, replaced + r.replaced
                skipped += r.skipped
                duplicates.extend(r.duplicates)
        finally:
            context.set_trailing_metadata(((wire.COMMITTED_BATCHES_KEY, str(batches)),
                                           (wire.COMMITTED_DOCS_KEY, str(upserted))))
        total = UpsertResult(upserted=upserted, replaced=replaced, skipped=skipped, duplicates=tuple(duplicates))
        return wire.upsert_result_to_pb(total, pb.UpsertStreamResponse, batches=batches)

    def Delete(self, request, context):
        n = self._coll(request.collection).delete(list(request.ids), missing_ok=request.missing_ok)
        return pb.DeleteResponse(deleted=n)

    # -- reads -----------------------------------------------------------------------------
    def Get(self, request, context):
        docs = self._coll(request.collection).get(list(request.ids))
        return pb.GetResponse(documents=[wire.document_to_pb(d) for d in docs])

    def Count(self, request, context):
        return pb.CountResponse(count=self._coll(request.collection).count())

    def Scroll(self, request, context):
        kwargs = {} if not request.HasField("batch_size") else {"batch_size": request.batch_size}
        pages = self._coll(request.collection).scroll(
            request.filter_json or None, with_text=request.with_text, with_vector=request.with_vector,
            after=wire.optional(request, "after"), **kwargs)
        for page in pages:
            if not context.is_active():
                return
            yield wire.scroll_page_to_pb(page)

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
        found = self._coll(request.collection).find_duplicates(
            wire.optional(request, "threshold"), exact=wire.optional(request, "exact"),
            filter=request.filter_json or None, with_stats=True,
        )
        for c in found.results:
            if not context.is_active():
                return
            yield wire.cluster_to_pb(c)
        if request.with_stats:
            last = pb.Cluster()
            wire.query_stats_to_pb(found.stats, last.stats)
            yield last

    # -- classifiers -----------------------------------------------------------------------
    def TrainClassifier(self, request, context):
        coll = self._coll(request.collection)
        func = "train_classifier"
        kwargs = {"kind": request.kind} if request.HasField("kind") else {}
        info = self.state.training.train(
            coll, request.name, kwargs, wire.decode_json_object(request.params_json, "params_json", func),
            wire.decode_json_object(request.filter_json, "filter_json", func), context,
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
        found = coll.classify(vectors, ids=ids, model=request.model, filter=request.filter_json or None,
                              with_stats=True, **({} if k is None else {"k": k}))
        msg = wire.classifications_to_pb(found.results)
        wire.query_stats_to_pb(found.stats, msg.stats)
        return msg

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
            **self._server_stats(),
        )

    def _server_stats(self) -> dict:
        m, cfg = self.state.metrics, self.state.config
        rpcs = []
        for method, e in sorted(m.rpc_table().items()):
            buckets = sorted(e["buckets"])
            rpcs.append(pb.RpcStats(method=method, calls_by_code=e["codes"], latency_seconds_sum=e["sum"],
                                    latency_bucket_bounds=[b for b, _ in buckets],
                                    latency_bucket_counts=[c for _, c in buckets]))
        colls = []
        if m.index_collector is not None:
            for name, st in m.index_collector.index_stats():
                colls.append(pb.CollectionStats(name=name, documents=st["documents"], segments=st["segments"],
                                                bytes_on_disk=st["bytes_on_disk"],
                                                bytes_in_memory=st["bytes_in_memory"]))
        return dict(
            warm=self.state.warm.is_set(), rpcs=rpcs, collection_stats=colls,
            index_bytes_on_disk=directory_bytes(self.index.path),
            requests_queued=max(0, int(m.value(m.queued))),
            ingested_documents=int(m.value(m.ingested)),
            ingest_documents_per_second=m.ingest_per_second(),
            training_jobs_running=int(m.value(m.training_running)),
            training_jobs_waiting=int(m.value(m.training_waiting)),
            training_limits=pb.TrainingLimits(
                max_training_jobs=cfg.max_training_jobs,
                max_kernel_cache_bytes=int(cfg.max_kernel_cache_mb * MiB),
                max_nystroem_components=cfg.max_nystroem_components,
                max_training_bytes=int(cfg.max_training_mb * MiB)),
        )

    # -- snapshots -------------------------------------------------------------------------
    def Snapshot(self, request, context):
        return _snapshot_pb(self.state.snapshots.create(self.index, request.name))

    def ListSnapshots(self, request, context):
        return pb.ListSnapshotsResponse(snapshots=[_snapshot_pb(s) for s in self.state.snapshots.list()])

    def DeleteSnapshot(self, request, context):
        self.state.snapshots.delete(request.name)
        return pb.DeleteSnapshotResponse()


def _snapshot_pb(info) -> pb.SnapshotInfo:
    return pb.SnapshotInfo(name=info.name, size_bytes=info.size_bytes, created_unix_seconds=info.created_unix_seconds)


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


def _sized(response, limit: int | None):
    """``response`` if it fits the message limit. gRPC would refuse a larger one with a status that
    neither this server's interceptors nor its access log see; raising here gives the client the
    same RESOURCE_EXHAUSTED, with a message saying what to change, and the log the true status."""
    if limit is None:
        return response
    size = response.ByteSize()
    if size > limit:
        raise ResourceExhaustedError(
            f"the response is {size} bytes, larger than max_message_bytes={limit} of this server (--max-message-mb); "
            "ask for fewer results per call (smaller k, fewer queries or ids)."
        )
    return response


def _guard(behaviour: Callable, request_streaming: bool, response_streaming: bool = False,
           limit: int | None = None) -> Callable:
    """Refuse malformed requests, calls whose deadline passed while they were queued, and
    responses over the message limit."""
    if response_streaming:
        def streamed(request, context):
            _check_deadline(context)
            for response in behaviour(_checked(request), context):
                yield _sized(response, limit)

        return streamed

    if request_streaming:
        def stream_call(requests, context):
            _check_deadline(context)
            return _sized(behaviour((_checked(r) for r in requests), context), limit)

        return stream_call

    def call(request, context):
        _check_deadline(context)
        return _sized(behaviour(_checked(request), context), limit)

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
            _guard(getattr(servicer, m.name), m.client_streaming, m.server_streaming,
                   servicer.state.config.max_message_bytes),
            request_deserializer=_parser(getattr(pb, m.input_type.name)),
            response_serializer=getattr(pb, m.output_type.name).SerializeToString,
        )
    return out
