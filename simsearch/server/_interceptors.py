"""Server interceptors, outermost first: bearer-token auth, exception -> status, access log.

Each wraps the behaviour function of a method handler. Only the errors interceptor ever aborts a
simsearch call, so no other layer has to tell grpc's own abort exception from an error.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable

import grpc

from simsearch.wire import ERROR_CLASS_KEY, SERVICE
from simsearch.errors import status_for_exception

log = logging.getLogger("simsearch.server")
access_log = logging.getLogger("simsearch.server.access")

_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_OWN_PREFIX = f"/{SERVICE}/"
_MAX_DETAILS = 4096
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class StatusError(Exception):
    """A status that no library exception stands for (DEADLINE_EXCEEDED, UNAVAILABLE ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _kind(handler: grpc.RpcMethodHandler) -> str:
    return _KINDS[2 * handler.request_streaming + handler.response_streaming]


def _wrap(handler: grpc.RpcMethodHandler | None, wrapper: Callable) -> grpc.RpcMethodHandler | None:
    """The same handler with its behaviour passed through ``wrapper(behaviour, response_streaming)``."""
    if handler is None:
        return None
    kind = _kind(handler)
    return handler._replace(**{kind: wrapper(getattr(handler, kind), handler.response_streaming)})


class AuthInterceptor(grpc.ServerInterceptor):
    """Every call but health needs ``authorization: Bearer <token>``, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def intercept_service(self, continuation, details):
        if details.method.startswith(_HEALTH_PREFIX):
            return continuation(details)
        got = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else value
                break
        scheme, _, credentials = (got or b"").strip().partition(b" ")
        # RFC 7235: the auth-scheme is case-insensitive; the token itself is compared exactly
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._expected):
            return continuation(details)
        reason = "missing" if not got else "wrong"
        log.warning("rejected %s: %s bearer token", details.method, reason)

        def deny(behaviour, streaming):
            def denied(request, context):
                context.set_trailing_metadata(((ERROR_CLASS_KEY, "UnauthenticatedError"),))
                context.abort(grpc.StatusCode.UNAUTHENTICATED,
                              f"{reason} bearer token; send the metadata 'authorization: Bearer <token>'")

            if streaming:
                def denied_stream(request, context):
                    denied(request, context)
                    yield  # pragma: no cover - never reached

                return denied_stream
            return denied

        return _wrap(continuation(details), deny)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Exceptions become status codes through :data:`simsearch.errors.GRPC_STATUS`.

    The exception's class name travels in the trailing metadata so the client can raise the same
    class. Anything not in the table is INTERNAL with a generic message and a reference; the
    traceback goes only to the server log, under that reference.
    """

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if not details.method.startswith(_OWN_PREFIX):
            return handler  # health and reflection report their own statuses
        method = details.method

        def wrapper(behaviour, streaming):
            if streaming:
                def call_stream(request, context):
                    try:
                        yield from behaviour(request, context)
                    except Exception as exc:  # noqa: BLE001 - every error becomes a status
                        _abort(context, exc, method)

                return call_stream

            def call(request, context):
                try:
                    return behaviour(request, context)
                except Exception as exc:  # noqa: BLE001
                    _abort(context, exc, method)

            return call

        return _wrap(handler, wrapper)


def status_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, StatusError):
        return exc.code
    return getattr(grpc.StatusCode, status_for_exception(exc))


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    code = status_of(exc)
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        raise exc  # the client went away while we read its stream; nothing to answer
    if code == grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        log.error("internal error in %s (ref %s)", method, ref, exc_info=exc)
        message = f"internal server error (ref {ref}); the server log has the details"
    else:
        message = str(exc)
        if len(message) > _MAX_DETAILS:
            message = message[: _MAX_DETAILS - 1] + "…"
    trailers = list(getattr(context, "trailing_metadata", lambda: ())() or ())
    trailers.append((ERROR_CLASS_KEY, type(exc).__name__))
    context.set_trailing_metadata(tuple(trailers))
    context.abort(code, message)


def received_status(method: str, context, exc: BaseException | None) -> str:
    """The status name the client got: the error's, a code set on the context (health,
    reflection), or CANCELLED / DEADLINE_EXCEEDED when the client left before the answer."""
    if exc is not None and method.startswith(_OWN_PREFIX):
        return status_of(exc).name
    code = getattr(context.code(), "name", None)
    if code is not None:
        return code
    if exc is None and not context.is_active():
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "OK" if exc is None else "UNKNOWN"


class AccessLogInterceptor(grpc.ServerInterceptor):
    """One INFO line per call on ``simsearch.server.access``: method, status, milliseconds, peer; and
    the same call in the server's metrics (count by status, latency, in flight)."""

    def __init__(self, metrics=None) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self._metrics = metrics

    def _enter(self) -> float:
        with self._lock:
            self.in_flight += 1
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        return time.perf_counter()

    def _leave(self, method: str, start: float, context, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - start
        with self._lock:
            self.in_flight -= 1
        code = received_status(method, context, exc)
        if self._metrics is not None:
            self._metrics.in_flight.dec()
            self._metrics.observe_call(method, code, seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %.2fms peer=%s", method, code, 1e3 * seconds, context.peer())

    def intercept_service(self, continuation, details):
        method = details.method

        def wrapper(behaviour, streaming):
            if streaming:
                def call_stream(request, context):
                    start, err = self._enter(), None
                    try:
                        yield from behaviour(request, context)
                    except BaseException as exc:
                        err = exc
                        raise
                    finally:
                        self._leave(method, start, context, err)

                return call_stream

            def call(request, context):
                start, err = self._enter(), None
                try:
                    return behaviour(request, context)
                except BaseException as exc:
                    err = exc
                    raise
                finally:
                    self._leave(method, start, context, err)

            return call

        return _wrap(continuation(details), wrapper)
