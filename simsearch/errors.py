"""Exception hierarchy of simsearch and the single table that maps it to gRPC status codes.

Every exception the library raises on purpose derives from :class:`SimsearchError` and also from
the builtin a Python user would expect (``ValueError``, ``TypeError``, ``KeyError`` ...), so that
existing ``except ValueError`` clauses keep working. The server maps exceptions to status codes
through :data:`GRPC_STATUS` and the client maps them back through :func:`error_for_status`, so a
remote call raises the same class as the local one.
"""

from __future__ import annotations

__all__ = [
    "SimsearchError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "NotFoundError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "ResourceExhaustedError",
    "StorageCorruptionError",
    "UnsupportedFormatError",
    "NotFittedError",
    "BackendUnavailableError",
    "UnauthenticatedError",
    "InputDataError",
    "GRPC_STATUS",
    "status_for_exception",
    "error_for_status",
]


class SimsearchError(Exception):
    """Root of every error simsearch raises deliberately."""


class InvalidArgumentError(SimsearchError, ValueError):
    """A value is out of range, malformed or inconsistent (NaN, wrong dimension, bad id...)."""


class InvalidTypeError(SimsearchError, TypeError):
    """An argument has the wrong type (None instead of str, float array instead of uint32...)."""


class NotFoundError(SimsearchError, KeyError):
    """A collection, document id or model does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(SimsearchError, ValueError):
    """Something that must be unique (a collection name, an id in one batch) exists already."""


class FailedPreconditionError(SimsearchError, RuntimeError):
    """The call is well formed but the state does not allow it (e.g. no vectors to train on)."""


class ResourceExhaustedError(SimsearchError, ValueError):
    """A configured limit (batch size, message size, k, text length) was exceeded."""


class StorageCorruptionError(SimsearchError, RuntimeError):
    """Stored data failed a checksum or structural check; nothing was answered from it."""


class UnsupportedFormatError(FailedPreconditionError):
    """The on-disk format was written by a newer simsearch than this one."""


class NotFittedError(SimsearchError, ValueError, AttributeError):
    """An estimator was used before ``fit``; like scikit-learn's, it is also an AttributeError."""


class BackendUnavailableError(SimsearchError, ImportError):
    """A backend or optional extra is not installed or has no device; the message names the extra."""


class UnauthenticatedError(SimsearchError, PermissionError):
    """A remote call was made with a missing or wrong bearer token."""


class InputDataError(InvalidArgumentError):
    """An input file of a batch job is unreadable or holds a bad record (malformed JSON, a missing
    field, a duplicate id). The message starts with the place, ``path:line:``; ``path`` and
    ``line`` (1-based line or row, None for a whole file) hold it too."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


# The single exception -> gRPC status table. Keys are checked most-specific first (see
# status_for_exception), values are names of grpc.StatusCode members so this module does not
# import grpc.
GRPC_STATUS: dict[type[BaseException], str] = {
    UnsupportedFormatError: "FAILED_PRECONDITION",
    NotFittedError: "FAILED_PRECONDITION",
    InputDataError: "INVALID_ARGUMENT",
    InvalidArgumentError: "INVALID_ARGUMENT",
    InvalidTypeError: "INVALID_ARGUMENT",
    NotFoundError: "NOT_FOUND",
    AlreadyExistsError: "ALREADY_EXISTS",
    FailedPreconditionError: "FAILED_PRECONDITION",
    ResourceExhaustedError: "RESOURCE_EXHAUSTED",
    StorageCorruptionError: "DATA_LOSS",
    BackendUnavailableError: "FAILED_PRECONDITION",
    UnauthenticatedError: "UNAUTHENTICATED",
}

# Status name -> the class a client raises for it. A status several classes share maps to the
# most general of them.
_CLASS_FOR_STATUS: dict[str, type[SimsearchError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "DATA_LOSS": StorageCorruptionError,
    "UNAUTHENTICATED": UnauthenticatedError,
}


def _error_classes() -> dict[str, type[SimsearchError]]:
    return {
        cls.__name__: cls
        for cls in GRPC_STATUS
        if isinstance(cls, type) and issubclass(cls, SimsearchError)
    }


def status_for_exception(exc: BaseException) -> str:
    """Return the gRPC status name for ``exc``; anything not in the table is ``INTERNAL``."""
    for cls in type(exc).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return "INTERNAL"


def error_for_status(status: str, message: str, class_name: str | None = None) -> SimsearchError:
    """Rebuild the exception a local call would have raised from a status name.

    ``class_name`` (sent by the server in trailing metadata) picks the exact subclass when it is
    one of ours and agrees with the status; otherwise the status alone decides.
    """
    classes = _error_classes()
    if class_name in classes and GRPC_STATUS[classes[class_name]] == status:
        return classes[class_name](message)
    cls = _CLASS_FOR_STATUS.get(status, SimsearchError)
    return cls(message)
