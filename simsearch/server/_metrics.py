"""What the server measures, once: Prometheus metrics (``--metrics-port``) and the ``Stats`` RPC
read the same registry.

Per RPC, by the status the client received: ``simsearch_grpc_server_handled_total`` and the
latency histogram ``simsearch_grpc_server_handling_seconds`` (label names as go-grpc-prometheus).
Server-wide: in-flight calls, calls queued for a worker thread, documents ingested (a counter,
and a rate over the last minute), training jobs running and waiting. Per collection, read at
scrape time: documents, segments, bytes on disk and in memory, from ``Collection.stats()`` where
the engine offers it, else from what every collection has (the count, and an estimate of its
signatures and vectors in memory); the index's files on disk are summed as a whole.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from concurrent import futures

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATE_WINDOW_S = 60.0


def split_method(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    _, service, name = (method.split("/") + ["", ""])[:3]
    return service, name


def collection_stats(coll) -> dict:
    """documents, segments (None if the engine has none), bytes_on_disk (None if unknown per
    collection), bytes_in_memory of one collection."""
    own = getattr(coll, "stats", None)
    got = own() if callable(own) else {}
    if not isinstance(got, dict):
        got = {k: getattr(got, k) for k in ("documents", "segments", "bytes_on_disk", "bytes_in_memory")
               if hasattr(got, k)}
    documents = got.get("documents", got.get("count"))
    if documents is None:
        documents = coll.count()
    cfg = coll.config
    in_memory = got.get("bytes_in_memory")
    if in_memory is None:  # the search structures hold a signature and a vector per document
        in_memory = documents * (4 * cfg.num_perm + 4 * (cfg.dim or 0) + 16)
    return {"documents": int(documents), "segments": got.get("segments"),
            "bytes_on_disk": got.get("bytes_on_disk"), "bytes_in_memory": int(in_memory)}


def directory_bytes(path: str | None) -> int | None:
    if path is None:
        return None
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:  # removed while we walked
                pass
    return total


class _IndexCollector:
    """Per-collection gauges, computed when scraped."""

    def __init__(self, index) -> None:
        self.index = index

    def collect(self):
        docs = GaugeMetricFamily("simsearch_collection_documents", "Live documents", labels=["collection"])
        segs = GaugeMetricFamily("simsearch_collection_segments", "Segments of the collection", labels=["collection"])
        disk = GaugeMetricFamily("simsearch_collection_bytes_on_disk", "Bytes on disk", labels=["collection"])
        mem = GaugeMetricFamily("simsearch_collection_bytes_in_memory", "Bytes in memory", labels=["collection"])
        total = GaugeMetricFamily("simsearch_index_bytes_on_disk", "Bytes of every file of the index")
        try:
            stats = self.index_stats()
        except Exception:  # noqa: BLE001 - a closed index (shutting down) has nothing to report
            stats = []
        for name, s in stats:
            docs.add_metric([name], s["documents"])
            mem.add_metric([name], s["bytes_in_memory"])
            if s["segments"] is not None:
                segs.add_metric([name], s["segments"])
            if s["bytes_on_disk"] is not None:
                disk.add_metric([name], s["bytes_on_disk"])
        on_disk = directory_bytes(self.index.path)
        if on_disk is not None:
            total.add_metric([], on_disk)
        return [docs, segs, disk, mem, total]

    def index_stats(self) -> list[tuple[str, dict]]:
        from simsearch.errors import NotFoundError

        out = []
        for info in self.index.list_collections():
            try:
                out.append((info.name, collection_stats(self.index.get_collection(info.name))))
            except NotFoundError:  # dropped since the listing
                pass
        return out


class ServerMetrics:
    """The registry of one server (not the process-global one, so servers in one process, as in
    the tests, keep their numbers apart) and the hooks that feed it."""

    def __init__(self, index=None) -> None:
        self.registry = r = CollectorRegistry()
        self.handled = Counter("simsearch_grpc_server_handled", "RPCs completed, by the status the client received",
                               ["grpc_service", "grpc_method", "grpc_code"], registry=r)
        self.latency = Histogram("simsearch_grpc_server_handling_seconds", "RPC latency in the server",
                                 ["grpc_service", "grpc_method"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("simsearch_grpc_server_in_flight", "RPCs being handled now", registry=r)
        self.queued = Gauge("simsearch_grpc_server_queue_depth", "RPCs waiting for a worker thread", registry=r)
        self.ingested = Counter("simsearch_ingested_documents", "Documents upserted", registry=r)
        self.ingest_rate = Gauge("simsearch_ingest_documents_per_second",
                                 f"Documents upserted per second over the last {RATE_WINDOW_S:.0f} s", registry=r)
        self.ingest_rate.set_function(self.ingest_per_second)
        self.training_running = Gauge("simsearch_training_jobs_running", "Classifier trainings running", registry=r)
        self.training_waiting = Gauge("simsearch_training_jobs_waiting", "Trainings waiting for a slot", registry=r)
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()
        self.index_collector = None
        if index is not None:
            self.index_collector = _IndexCollector(index)
            r.register(self.index_collector)

    # -- hooks ----------------------------------------------------------------------------------
    def observe_call(self, method: str, code: str, seconds: float) -> None:
        service, name = split_method(method)
        self.handled.labels(service, name, code).inc()
        self.latency.labels(service, name).observe(seconds)

    def observe_ingest(self, n: int) -> None:
        if n <= 0:
            return
        self.ingested.inc(n)
        now = time.monotonic()
        with self._lock:
            self._window.append((now, n))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._window and self._window[0][0] < now - RATE_WINDOW_S:
            self._window.popleft()

    def ingest_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            n = sum(c for _, c in self._window)
        return n / RATE_WINDOW_S

    # -- reading back (the Stats RPC) -----------------------------------------------------------
    @staticmethod
    def value(metric) -> float:
        """The value of an unlabelled counter or gauge."""
        for family in metric.collect():
            for s in family.samples:
                if not s.name.endswith("_created"):
                    return s.value
        return 0.0

    def rpc_table(self) -> dict[str, dict]:
        """method -> {"codes": {code: count}, "sum": seconds, "buckets": [(le, cumulative count)]}."""
        out: dict[str, dict] = {}
        for family in self.registry.collect():
            if family.name == "simsearch_grpc_server_handled":
                for s in family.samples:
                    if s.name.endswith("_total"):
                        key = f"{s.labels['grpc_service']}/{s.labels['grpc_method']}"
                        entry = out.setdefault(key, {"codes": {}, "sum": 0.0, "buckets": []})
                        entry["codes"][s.labels["grpc_code"]] = int(s.value)
            elif family.name == "simsearch_grpc_server_handling_seconds":
                for s in family.samples:
                    key = f"{s.labels['grpc_service']}/{s.labels['grpc_method']}"
                    entry = out.setdefault(key, {"codes": {}, "sum": 0.0, "buckets": []})
                    if s.name.endswith("_sum"):
                        entry["sum"] = float(s.value)
                    elif s.name.endswith("_bucket"):
                        entry["buckets"].append((float(s.labels["le"]), int(s.value)))
        return out


class CountingExecutor(futures.ThreadPoolExecutor):
    """A thread pool that counts the tasks waiting for a thread (the server's queue depth)."""

    def __init__(self, *args, gauge: Gauge, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gauge = gauge

    def submit(self, fn, /, *args, **kwargs):
        gauge = self._gauge
        gauge.inc()

        def run():
            gauge.dec()
            return fn(*args, **kwargs)

        try:
            return super().submit(run)
        except BaseException:
            gauge.dec()
            raise


def start_metrics_http(metrics: ServerMetrics, host: str, port: int):
    """Serve ``/metrics`` (Prometheus text format) on ``host:port``; returns the HTTP server."""
    from prometheus_client import start_http_server

    httpd, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return httpd
