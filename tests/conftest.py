"""Shared fixtures: the ``backend`` parametrisation over what is installed, and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from simsearch.backends import available_backends

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("numba", id="numba"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
]


def require_backend(name: str) -> str:
    if name not in available_backends():
        pytest.skip(f"backend {name!r} is not available here (CuPy needs a visible GPU)")
    return name


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    """Every backend that can run here; CuPy cases carry the ``gpu`` marker."""
    return require_backend(request.param)


@pytest.fixture(params=[p for p in BACKEND_PARAMS if p.id != "numpy"])
def fast_backend(request) -> str:
    """The accelerated backends, each compared against the numpy reference."""
    return require_backend(request.param)


@pytest.fixture
def grpc_server(tmp_path):
    """An in-process simsearch gRPC server on 127.0.0.1:0 over a fresh index in ``tmp_path``.

    Yields the started :class:`server.SimsearchServer`; ``grpc_server.address`` is the target.
    """
    from server import ServerConfig, create_server

    server, _ = create_server(ServerConfig(data=str(tmp_path / "grpc-server"), port=0, grace_s=2.0, workers=8))
    server.start()
    yield server
    server.stop(0)
