"""Building, running and stopping a simsearch gRPC server.

:func:`create_server` binds and wires everything but does not start, so tests bind port 0 and
read the port back; :func:`serve` is what ``simsearch serve`` runs: start, wait for SIGTERM or
SIGINT, then shut down gracefully (health NOT_SERVING, drain in-flight calls within the grace
period, close the index).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from simsearch.wire import SERVICE, pb
from simsearch.errors import FailedPreconditionError
from simsearch.index import Document, Index

from ._config import ServerConfig
from ._metrics import CountingExecutor, ServerMetrics, start_metrics_http
from ._reflection import enable_reflection
from ._training import TrainingRunner
from ._interceptors import AccessLogInterceptor, AuthInterceptor, ErrorInterceptor
from ._servicer import ServerState, SimSearchServicer, method_handlers

log = logging.getLogger("simsearch.server")


class SimsearchServer:
    """A grpc.Server plus the index it serves; ``stop`` is the graceful shutdown."""

    def __init__(self, server: grpc.Server, index: Index, owns_index: bool, health_servicer, state: ServerState,
                 port: int) -> None:
        self.grpc_server = server
        self.index = index
        self.port = port
        self.config = state.config
        self._owns_index = owns_index
        self._health = health_servicer
        self._state = state
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._metrics_http = None
        self.metrics_port: int | None = None  # the bound metrics port once started (--metrics-port)

    @property
    def address(self) -> str:
        """``host:port`` as a client dials it."""
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self, *, serving: bool = True) -> "SimsearchServer":
        """Start taking calls. With ``serving=False`` health stays NOT_SERVING (calls are still
        served) until :meth:`set_serving`; ``serve`` does that while the kernels warm up."""
        if self.config.metrics_port is not None and self._metrics_http is None:
            try:
                self._metrics_http = start_metrics_http(self._state.metrics, self.config.metrics_host,
                                                        self.config.metrics_port)
            except OSError as exc:
                raise FailedPreconditionError(
                    f"cannot serve metrics on {self.config.metrics_host}:{self.config.metrics_port}: {exc}") from None
            self.metrics_port = self._metrics_http.server_port
        self.grpc_server.start()
        if serving:
            self.set_serving()
        return self

    def set_serving(self) -> None:
        """Health SERVING (ignored once a shutdown has begun)."""
        for service in ("", SERVICE):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._state.warm.set()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop taking calls, let in-flight ones finish for ``grace`` seconds (config default), close.

        Health turns NOT_SERVING first; a streamed ingest ends after its current batch with
        UNAVAILABLE and trailers that count what it committed. Returns a set Event, as
        ``grpc.Server.stop`` returns one, once everything is closed.
        """
        with self._stop_lock:
            if not self._stopped.is_set():
                grace = self.config.grace_s if grace is None else grace
                self._state.draining.set()
                self._health.enter_graceful_shutdown()
                self.grpc_server.stop(grace).wait()
                if self._metrics_http is not None:
                    self._metrics_http.shutdown()
                    self._metrics_http.server_close()
                if self._owns_index:
                    self.index.close()
                self._stopped.set()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> "SimsearchServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(0)


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None:
        return None
    with open(config.tls_cert, "rb") as fh:
        cert = fh.read()
    with open(config.tls_key, "rb") as fh:
        key = fh.read()
    return grpc.ssl_server_credentials([(key, cert)])


def create_server(config: ServerConfig, *, index: Index | None = None) -> tuple[SimsearchServer, int]:
    """A bound, not yet started server for ``config`` and the port it got (useful with port 0).

    Without ``index`` the server opens ``Index(config.data)`` (in memory when ``data`` is None)
    and closes it on stop; a passed ``index`` stays open and its own limits apply.
    """
    config = config.validated()
    owns = index is None
    if owns:
        index = Index(config.data, durability=config.durability, backend=config.backend,
                      max_batch=config.max_batch, max_text_bytes=config.max_text_bytes)
    try:
        state = ServerState(config)
        state.metrics = ServerMetrics(index)
        state.training = TrainingRunner(config, state.metrics)
        access = AccessLogInterceptor(state.metrics)
        state.in_flight = lambda: access.in_flight
        interceptors = ([AuthInterceptor(config.token)] if config.token else []) + [ErrorInterceptor(), access]
        limit = config.max_message_bytes
        server = grpc.server(
            CountingExecutor(max_workers=config.workers, thread_name_prefix="simsearch-rpc", gauge=state.metrics.queued),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_registered_method_handlers(SERVICE, method_handlers(SimSearchServicer(index, state)))
        health_servicer = health.HealthServicer()
        for service in ("", SERVICE):
            health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_reflection((pb.DESCRIPTOR.services_by_name["SimSearch"].full_name, health.SERVICE_NAME), server)
        creds = _credentials(config)
        try:
            port = server.add_secure_port(config.address, creds) if creds else server.add_insecure_port(config.address)
        except RuntimeError as exc:
            raise FailedPreconditionError(f"cannot listen on {config.address}: {exc}") from None
        if port == 0:
            raise FailedPreconditionError(f"cannot listen on {config.address} (in use, or not a local address?)")
    except BaseException:
        if owns:
            index.close()
        raise
    return SimsearchServer(server, index, owns, health_servicer, state, port), port


def _warm_up(backend: str) -> None:
    """Run the kernels once before the port opens, so the first callers do not pay for them: on
    the first start after an install numba compiles them (25 s measured on 2 busy cores, then
    cached on disk), and on later starts loading the cached code still takes ~0.2 s per kernel.
    Kernels are compiled per argument type, not per collection, so a throwaway in-memory
    collection going through upsert, near-duplicate queries, clusters and kNN warms them all.
    """
    try:
        with Index(None, backend=backend) as scratch:
            coll = scratch.create_collection("warm-up", dim=4, threshold=0.5)
            words = "simsearch warms up its kernels before the port opens".split()
            coll.upsert([
                Document(id=str(i), text=" ".join(words[i:] + words[:i]), vector=np.full(4, i + 1.0, np.float32))
                for i in range(len(words))
            ])
            coll.near_duplicates(" ".join(words), k=3, exact=True)
            coll.find_duplicates()
            coll.search(np.ones(4, np.float32), k=3)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the server from starting
        log.warning("kernel warm-up failed (the first calls will be slower): %s", exc)


def serve(config: ServerConfig, *, ready=None) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; a second signal stops at once.

    ``ready(server)`` is called once the server listens (the CLI prints the address there).
    """
    # Idle OpenMP threads (numba's parallel kernels) spin by default, and every server thread that
    # calls a kernel gets its own team; spinning teams then take the cores from the work (kNN p99s
    # of seconds on 2 cores). OpenMP reads this when it loads, which is after this point.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    server, port = create_server(config)
    # The port opens at once with health NOT_SERVING, so a load balancer or grpc_health_probe waits
    # for the warm-up; a call that arrives meanwhile is served (and pays for its own compile).
    server.start(serving=False)

    def warm_up() -> None:
        started = time.monotonic()
        _warm_up(server.index.backend)
        gc.collect()
        gc.freeze()  # the loaded index is long-lived: keep it out of every later GC pass
        log.info("kernels warm after %.1fs; health SERVING", time.monotonic() - started)
        server.set_serving()

    threading.Thread(target=warm_up, name="simsearch-warm-up", daemon=True).start()
    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum, frame):
        signals["count"] += 1
        if signals["count"] > 1:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            server.grpc_server.stop(0)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(server)
        while not stop.wait(0.5):
            pass
        log.info("shutting down: draining in-flight calls for up to %.1fs", config.grace_s)
        server.stop()
        log.info("stopped; the index is closed")
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
