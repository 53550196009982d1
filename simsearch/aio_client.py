"""``simsearch.AsyncClient``: :class:`simsearch.Client` for asyncio, on ``grpc.aio``.

Same methods, arguments, results and exceptions as the sync client, each a coroutine::

    async with AsyncClient("127.0.0.1:50051") as client:
        docs = await client.get_collection("docs")
        hits = await docs.near_duplicates("some text")
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
from grpc import aio

from . import wire
from .wire import pb
from .client import (
    CHANNEL_OPTIONS,
    DEFAULT_TARGET,
    RemoteError,
    Requests,
    channel_credentials,
    create_request,
    method_table,
    SnapshotInfo,
    _snapshot_info,
    snapshot_request,
    stats_from_pb,
    translate_error,
)
from .index import (
    Classification,
    ClassifierInfo,
    Cluster,
    CollectionInfo,
    Document,
    NearDuplicate,
    Neighbor,
    ScrollPage,
    SearchResult,
    UpsertResult,
    check_collection_name,
    check_on_duplicate,
)


__all__ = ["AsyncClient", "AsyncRemoteCollection"]


class AsyncRemoteCollection(Requests):
    """A collection on a simsearch server, for asyncio; see :class:`simsearch.client.RemoteCollection`."""

    def __init__(self, client: "AsyncClient", info: CollectionInfo) -> None:
        self._client = client
        self.name = info.name
        self.config = info.config

    def __repr__(self) -> str:
        return f"AsyncRemoteCollection({self.name!r}, target={self._client.target!r})"

    async def upsert(self, docs: Sequence[Document | dict], *, on_duplicate: str = "insert",
                     threshold: float | None = None) -> UpsertResult:
        req = self._upsert_request(docs, on_duplicate, threshold)
        return wire.upsert_result_from_pb(await self._client._call("Upsert", req))

    async def upsert_stream(self, batches: Iterable[Sequence[Document | dict]] | AsyncIterable, *,
                            on_duplicate: str = "insert", threshold: float | None = None) -> UpsertResult:
        """Many batches on one stream (a sync or async iterable); see ``RemoteCollection.upsert_stream``."""
        check_on_duplicate(on_duplicate, threshold, self.config.threshold)
        failure: list = []
        if isinstance(batches, AsyncIterable):
            requests = self._async_stream_requests(batches, failure, on_duplicate, threshold)
        else:
            requests = self._stream_requests(batches, failure, on_duplicate, threshold)
        resp = await self._client._call("UpsertStream", requests)
        return self._stream_result(resp, failure)

    async def _async_stream_requests(self, batches: AsyncIterable, failure: list, on_duplicate: str = "insert",
                                     threshold=None):
        try:
            async for docs in batches:
                yield self._upsert_request(docs, on_duplicate, threshold)
        except Exception as exc:  # noqa: BLE001 - re-raised after the ack
            failure.append(exc)

    async def delete(self, ids: Sequence[str], *, missing_ok: bool = False) -> int:
        return (await self._client._call("Delete", self._delete_request(ids, missing_ok))).deleted

    def scroll(self, filter: dict | str | None = None, *, batch_size: int = 1000, with_text: bool = False,
               with_vector: bool = False, after: str | None = None) -> AsyncIterator[ScrollPage]:
        """Pages of documents in id order, an async iterator (``async for page in coll.scroll()``);
        see ``Collection.scroll``. The arguments are checked at once."""
        req = self._scroll_request(filter, batch_size, with_text, with_vector, after)
        return self._client._stream("Scroll", req, wire.scroll_page_from_pb)

    async def count(self) -> int:
        return (await self._client._call("Count", pb.CountRequest(collection=self.name))).count

    async def get(self, ids: Sequence[str]) -> list[Document]:
        return [wire.document_from_pb(d) for d in (await self._client._call("Get", self._get_request(ids))).documents]

    async def near_duplicates(self, text: str | None = None, *, id: str | None = None,
                              threshold: float | None = None, k: int | None = None,
                              exact: bool = False, filter: dict | str | None = None) -> list[NearDuplicate]:
        texts = None if text is None else [text]
        ids = None if id is None else [id]
        return (await self.near_duplicates_batch(texts=texts, ids=ids, threshold=threshold, k=k, exact=exact,
                                                 filter=filter))[0]

    async def near_duplicates_batch(self, texts=None, ids=None, *, threshold: float | None = None,
                                    k: int | None = None, exact: bool = False, filter: dict | str | None = None,
                                    with_stats: bool = False) -> list[list[NearDuplicate]] | SearchResult:
        req = self._near_request(texts, ids, threshold, k, exact, filter)
        msg = await self._client._call("QueryNearDuplicates", req)
        out = wire.near_duplicates_from_pb(msg)
        return SearchResult(out, wire.query_stats_from_pb(msg.stats)) if with_stats else out

    async def search(self, vector=None, *, id: str | None = None, k: int = 10,
                     metric: str | None = None, filter: dict | str | None = None,
                     exact: bool = False) -> list[Neighbor]:
        vectors = None if vector is None else [vector]
        ids = None if id is None else [id]
        return (await self.search_batch(vectors=vectors, ids=ids, k=k, metric=metric, filter=filter,
                                        exact=exact))[0]

    async def search_batch(self, vectors=None, ids=None, *, k: int = 10,
                           metric: str | None = None, filter: dict | str | None = None, exact: bool = False,
                           with_stats: bool = False) -> list[list[Neighbor]] | SearchResult:
        req = self._search_request(vectors, ids, k, metric, filter, exact)
        msg = await self._client._call("SearchVectors", req)
        out = wire.neighbors_from_pb(msg)
        return SearchResult(out, wire.query_stats_from_pb(msg.stats)) if with_stats else out

    async def find_duplicates(self, threshold: float | None = None, *, exact: bool | None = None,
                              filter: dict | str | None = None,
                              with_stats: bool = False) -> list[Cluster] | SearchResult:
        req = self._find_request(threshold, exact, filter, with_stats)
        return self._clusters(await self._client._call("FindDuplicates", req), with_stats)

    async def train_classifier(self, name: str, kind: str = "svm", params: dict | None = None,
                               filter: dict | None = None) -> ClassifierInfo:
        req = self._train_request(name, kind, params, filter)
        return wire.classifier_info_from_pb(await self._client._call("TrainClassifier", req))

    async def list_classifiers(self) -> list[ClassifierInfo]:
        resp = await self._client._call("ListClassifiers", pb.ListClassifiersRequest(collection=self.name))
        return [wire.classifier_info_from_pb(i) for i in resp.classifiers]

    async def classify(self, vectors=None, *, ids=None, model: str, k: int = 10, filter: dict | str | None = None,
                       with_stats: bool = False) -> list[Classification] | SearchResult:
        req = self._classify_request(vectors, ids, model, k, filter, with_stats)
        return self._classified(await self._client._call("Classify", req), with_stats)

    async def delete_classifier(self, name: str) -> None:
        await self._client._call("DeleteClassifier", self._model_request(pb.DeleteClassifierRequest, name))


class AsyncClient:
    """A ``grpc.aio`` connection to ``simsearch serve``; see :class:`simsearch.Client` for the arguments."""

    def __init__(self, target: str = DEFAULT_TARGET, token: str | None = None, tls: Any = None, *,
                 timeout: float | None = None, options: Sequence[tuple[str, Any]] = ()) -> None:
        self.target = target
        self.timeout = timeout
        creds = channel_credentials(tls)
        opts = CHANNEL_OPTIONS + list(options)
        self._channel = aio.secure_channel(target, creds, opts) if creds else aio.insecure_channel(target, opts)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._methods = method_table(self._channel)

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request):
        try:
            call = self._methods[method](request, timeout=self.timeout, metadata=self._metadata)
            if method == "FindDuplicates":
                return [msg async for msg in call]
            return await call
        except grpc.RpcError as exc:
            raise translate_error(exc.code(), exc.details(), exc.trailing_metadata()) from None

    async def _stream(self, method: str, request, convert):
        try:
            async for msg in self._methods[method](request, timeout=self.timeout, metadata=self._metadata):
                yield convert(msg)
        except grpc.RpcError as exc:
            raise translate_error(exc.code(), exc.details(), exc.trailing_metadata()) from None

    async def wait_ready(self, timeout: float = 10.0) -> "AsyncClient":
        import asyncio

        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise RemoteError("UNAVAILABLE", f"no simsearch server at {self.target} after {timeout}s") from None
        return self

    async def create_collection(self, name: str, *, shingle: str = "word", ngram: int = 5, num_perm: int = 128,
                                seed: int = 1, threshold: float = 0.8, weights: tuple[float, float] | None = None,
                                dim: int | None = None, metric: str = "cosine", store_text: bool = True,
                                store_shingles: bool = True, vector_index: str = "auto", hnsw_m: int = 32,
                                ef_construction: int = 80, ef_search: int = 64, nlist: int | None = None,
                                nprobe: int | None = None, indexed_fields: Sequence[str] = (),
                                exist_ok: bool = False) -> AsyncRemoteCollection:
        req = create_request(name, shingle, ngram, num_perm, seed, threshold, weights, dim, metric, store_text,
                             store_shingles, exist_ok, vector_index=vector_index, hnsw_m=hnsw_m,
                             ef_construction=ef_construction, ef_search=ef_search, nlist=nlist, nprobe=nprobe,
                             indexed_fields=indexed_fields)
        return AsyncRemoteCollection(self, wire.info_from_pb(await self._call("CreateCollection", req)))

    async def get_collection(self, name: str) -> AsyncRemoteCollection:
        req = pb.GetCollectionRequest(name=check_collection_name(name))
        return AsyncRemoteCollection(self, wire.info_from_pb(await self._call("GetCollection", req)))

    async def list_collections(self) -> list[CollectionInfo]:
        resp = await self._call("ListCollections", pb.ListCollectionsRequest())
        return [wire.info_from_pb(i) for i in resp.collections]

    async def drop_collection(self, name: str) -> None:
        await self._call("DropCollection", pb.DropCollectionRequest(name=check_collection_name(name)))

    async def stats(self) -> dict[str, Any]:
        return stats_from_pb(await self._call("Stats", pb.StatsRequest()))

    # -- snapshots (on the server's disk, under its --snapshot-dir) -------------------------
    async def snapshot(self, name: str = "") -> SnapshotInfo:
        return _snapshot_info(await self._call("Snapshot", snapshot_request(name)))

    async def list_snapshots(self) -> list[SnapshotInfo]:
        return [_snapshot_info(s) for s in (await self._call("ListSnapshots", pb.ListSnapshotsRequest())).snapshots]

    async def delete_snapshot(self, name: str) -> None:
        await self._call("DeleteSnapshot", pb.DeleteSnapshotRequest(name=snapshot_request(name).name))
