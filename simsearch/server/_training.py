"""Classifier training on the server: bounded, and stoppable.

* At most ``max_training_jobs`` trainings run at once. A call that finds no free slot waits for
  one within its deadline and is refused with RESOURCE_EXHAUSTED (naming the limit) just before
  the deadline; a call without a deadline is refused at once rather than queued without bound.
* The fit runs in a worker process (multiprocessing's forkserver, so nothing of the server's
  threads is forked), at a lower CPU priority and with one BLAS thread, so queries keep their
  latency. The handler polls the call: when the client cancels or the deadline passes, the worker
  is killed (SIGKILL), so a training stops within one poll interval; nothing is stored.
* Memory is bounded before the worker starts: the svm kernel cache (``cache_size``), its
  Nystroem/Fourier size (``n_components``) and the estimator's own estimate of its working memory
  (``fit_memory_bytes``) are checked against the server's limits; an excess is RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time

import grpc

from simsearch.errors import ResourceExhaustedError
from simsearch import SVC

from ._config import MiB, ServerConfig
from ._interceptors import StatusError

log = logging.getLogger("simsearch.server")

POLL_S = 0.05
_DEADLINE_MARGIN_S = 0.2  # answer RESOURCE_EXHAUSTED this long before the deadline, so it arrives
_CONTEXT = None
_CONTEXT_LOCK = threading.Lock()


def _mp_context():
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["simsearch.models", "simsearch.server._training"])
            _CONTEXT = ctx
        return _CONTEXT


def _worker(conn, model, X, y) -> None:  # pragma: no cover - runs in the worker process
    try:
        os.nice(10)
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            fitted = model.fit(X) if y is None else model.fit(X, y)
        conn.send(("ok", fitted))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the server
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _remaining(context) -> float | None:
    """Seconds left before the call's deadline; None without one (grpc reports a huge number)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e7 else remaining


class TrainingRunner:
    """The training slots and worker processes of one server."""

    def __init__(self, config: ServerConfig, metrics) -> None:
        self.config = config
        self.metrics = metrics
        self._slots = threading.BoundedSemaphore(config.max_training_jobs)

    # -- limits ---------------------------------------------------------------------------------
    def check_limits(self, model, X, y) -> None:
        cfg = self.config
        n, d = X.shape
        if isinstance(model, SVC):
            cache = float(model.cache_size) * MiB
            if cache > cfg.max_kernel_cache_mb * MiB:
                raise ResourceExhaustedError(
                    f"train_classifier: params cache_size={model.cache_size} MiB is over this server's limit "
                    f"max_kernel_cache_mb={cfg.max_kernel_cache_mb:g}; pass a smaller cache_size.")
            if model.approximation_size(n) > cfg.max_nystroem_components:
                raise ResourceExhaustedError(
                    f"train_classifier: params n_components={model.n_components} is over this server's limit "
                    f"max_nystroem_components={cfg.max_nystroem_components}; pass a smaller n_components.")
            n_classes = len(set(y.tolist())) if y is not None else 2
            need = model.fit_memory_bytes(n, d, n_classes)
        else:
            need = model.fit_memory_bytes(n, d)
        need += X.nbytes  # the worker's copy of the data
        if need > cfg.max_training_mb * MiB:
            raise ResourceExhaustedError(
                f"train_classifier: this training would need about {need / MiB:.0f} MiB ({n} vectors of dim {d}), "
                f"over this server's limit max_training_mb={cfg.max_training_mb:g}; train on fewer vectors "
                "(a filter), or with a smaller cache_size / n_components.")

    # -- slots ----------------------------------------------------------------------------------
    def _acquire(self, context) -> None:
        if self._slots.acquire(blocking=False):
            return
        limit = self.config.max_training_jobs
        refused = ResourceExhaustedError(
            f"train_classifier: {limit} training(s) already running, the limit max_training_jobs={limit} of this "
            "server; retry later or with a longer deadline to wait for a slot.")
        if _remaining(context) is None:
            raise refused
        self.metrics.training_waiting.inc()
        try:
            while True:
                remaining = _remaining(context)
                if remaining is None or remaining <= _DEADLINE_MARGIN_S:
                    raise refused
                if self._slots.acquire(timeout=min(POLL_S * 4, remaining - _DEADLINE_MARGIN_S)):
                    return
                if not context.is_active():
                    raise StatusError(grpc.StatusCode.CANCELLED, "the call was cancelled while waiting to train")
        finally:
            self.metrics.training_waiting.dec()

    def train(self, coll, name: str, kind_kwargs: dict, params, flt, context):
        """``coll.train_classifier`` in a slot, fitting in a worker process bound to ``context``."""
        self._acquire(context)
        self.metrics.training_running.inc()
        try:
            return coll.train_classifier(name, params=params, filter=flt, **kind_kwargs,
                                         fit=lambda model, X, y: self._fit(model, X, y, context))
        finally:
            self.metrics.training_running.dec()
            self._slots.release()

    # -- the worker -----------------------------------------------------------------------------
    def _fit(self, model, X, y, context):
        self.check_limits(model, X, y)
        ctx = _mp_context()
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(send, model, X, y), daemon=True, name="simsearch-training")
        started = time.monotonic()
        proc.start()
        send.close()
        log.info("training worker pid %d started (%d vectors of dim %d)", proc.pid, *X.shape)
        outcome = None
        try:
            while outcome is None:
                if receive.poll(POLL_S):
                    try:
                        outcome = receive.recv()
                    except EOFError:
                        outcome = ("died", None)
                elif not proc.is_alive() and not receive.poll(0):
                    outcome = ("died", None)
                elif not context.is_active():
                    # the client's own deadline timer fires a moment before the server's (which
                    # starts when the call arrives), so a cancel this close to it is the deadline
                    remaining = _remaining(context)
                    expired = remaining is not None and remaining <= _DEADLINE_MARGIN_S * 5
                    self._stop(proc, started, "deadline passed" if expired else "cancelled")
                    raise StatusError(grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED,
                                      "the training was stopped: " + ("deadline passed" if expired else "cancelled"))
        finally:
            receive.close()
            if proc.is_alive():
                self._stop(proc, started, "ended")
            proc.join(5)
        status, value = outcome
        if status == "died":
            raise ResourceExhaustedError(
                f"train_classifier: the training worker died (exit code {proc.exitcode}); if it ran out of memory, "
                "train on fewer vectors or with smaller params.")
        log.info("training worker pid %d finished in %.2fs", proc.pid, time.monotonic() - started)
        if status == "error":
            raise value
        return value

    @staticmethod
    def _stop(proc, started: float, why: str) -> None:
        proc.kill()
        proc.join(5)
        log.info("training worker pid %d stopped (%s) after %.2fs", proc.pid, why, time.monotonic() - started)
