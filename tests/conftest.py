"""Shared fixtures: the ``backend`` parametrisation over what is installed, and hypothesis profiles.

Where the GPU kernels run: a run that selects the ``gpu`` marker (``pytest -m gpu``, or
``-m "gpu or cuda"``) uses the real device; every other run (the default suite) sets
``NUMBA_ENABLE_CUDASIM=1`` before numba is imported, so ``backend="cupy"`` runs the same kernels
on numba's CUDA simulator, on the CPU, and the ``cuda``-marked tests compare them with numpy.
An explicit ``NUMBA_ENABLE_CUDASIM`` in the environment wins. ``SIMSEARCH_REQUIRE_GPU=1`` turns
"no usable GPU backend" from a skip into a failure.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

from simsearch.backends import available_backends, backend_problem

REQUIRE_GPU = os.environ.get("SIMSEARCH_REQUIRE_GPU", "") not in ("", "0")


def _selects_gpu(markexpr: str) -> bool:
    expr = " ".join(markexpr.replace("(", " ").replace(")", " ").split())
    return "gpu" in expr.split() and "not gpu" not in expr


def pytest_configure(config):
    if "NUMBA_ENABLE_CUDASIM" in os.environ:
        return
    if _selects_gpu(config.getoption("markexpr") or ""):
        return
    if "numba.cuda" in sys.modules:
        raise pytest.UsageError("numba.cuda was imported before the CUDA simulator could be chosen")
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:
        import numba

        numba.config.reload_config()

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
    """``name`` if that backend works here; else skip, or fail under SIMSEARCH_REQUIRE_GPU=1."""
    if name not in available_backends():
        why = f"backend {name!r} is not available here: {backend_problem(name)}"
        if REQUIRE_GPU and name == "cupy":
            pytest.fail(why + " (SIMSEARCH_REQUIRE_GPU=1)")
        pytest.skip(why)
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
    from simsearch.server import ServerConfig, create_server

    server, _ = create_server(ServerConfig(data=str(tmp_path / "grpc-server"), port=0, grace_s=2.0, workers=8))
    server.start()
    yield server
    server.stop(0)
