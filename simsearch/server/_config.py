"""Settings of a simsearch gRPC server: where the data lives, how to listen, and the limits."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from simsearch.errors import InvalidArgumentError
from simsearch.index import MAX_K

from simsearch.validation import check_float, check_int, check_option

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """What ``simsearch serve`` takes on its command line.

    ``data=None`` keeps the index in memory (tests). ``token`` is the bearer token itself; the CLI
    reads it from ``--token-file`` so that it never shows in the process list. ``max_batch`` and
    ``max_text_bytes`` are handed to :class:`simsearch.Index`, whose errors name them; ``max_k``
    caps ``k`` below the library's own ceiling.
    """

    data: str | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_mb: float = 64.0
    workers: int = 16
    max_batch: int = 100_000
    max_k: int = MAX_K
    max_text_bytes: int = 16 * MiB
    grace_s: float = 10.0
    durability: str = "full"
    backend: str = "auto"
    metrics_port: int | None = None  # None: no metrics endpoint; 0 picks a free port
    metrics_host: str = "127.0.0.1"
    snapshot_dir: str | None = None  # None: the snapshot RPCs are refused
    max_training_jobs: int = 1
    max_kernel_cache_mb: float = 1024.0
    max_nystroem_components: int = 4096
    max_training_mb: float = 4096.0

    def validated(self) -> "ServerConfig":
        f = "ServerConfig"
        check_int(self.port, "port", 0, 65535, func=f)
        check_int(self.workers, "workers", 1, 1024, func=f)
        check_float(self.max_message_mb, "max_message_mb", 0.0, 2047.0, lo_open=True, func=f)
        check_int(self.max_batch, "max_batch", 1, 10_000_000, func=f)
        check_int(self.max_k, "max_k", 1, MAX_K, func=f)
        check_int(self.max_text_bytes, "max_text_bytes", 1, 1 << 31, func=f)
        check_float(self.grace_s, "grace_s", 0.0, 3600.0, func=f)
        check_option(self.durability, "durability", ("full", "normal"), func=f)
        if self.metrics_port is not None:
            check_int(self.metrics_port, "metrics_port", 0, 65535, func=f)
        check_int(self.max_training_jobs, "max_training_jobs", 1, 1024, func=f)
        check_float(self.max_kernel_cache_mb, "max_kernel_cache_mb", 0.0, 1 << 20, func=f)
        check_int(self.max_nystroem_components, "max_nystroem_components", 1, 1 << 20, func=f)
        check_float(self.max_training_mb, "max_training_mb", 0.0, 1 << 24, lo_open=True, func=f)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgumentError("TLS needs both a certificate (--tls-cert) and its private key (--tls-key).")
        if self.token is not None and (not self.token or self.token != self.token.strip()):
            raise InvalidArgumentError("The token must be non-empty and have no surrounding whitespace.")
        return self

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * MiB)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace stripped); refuses an empty file."""
    with open(path, encoding="utf-8") as fh:
        token = fh.read().strip()
    if not token:
        raise InvalidArgumentError(f"the token file {path} is empty")
    if os.name == "posix" and os.stat(path).st_mode & 0o077:
        logging.getLogger("simsearch.server").warning("the token file %s is readable by other users; chmod 600 it", path)
    return token
