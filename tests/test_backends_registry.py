"""The backend registry: built once, failures remembered, "auto" falls back with one warning."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import simsearch
from simsearch import backends
from simsearch.errors import BackendUnavailableError


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as a new process sees it (nothing built, tried or warned yet)."""
    monkeypatch.setattr(backends, "_built", {})
    monkeypatch.setattr(backends, "_failed", {})
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.delenv("SIMSEARCH_BACKEND", raising=False)
    return backends


def _failing_gpu(monkeypatch, error: BaseException):
    """Make building the GPU backend fail with ``error``; returns the list of attempts."""
    real = backends._build
    attempts = []

    def build(name):
        if name == "cupy":
            attempts.append(name)
            raise error
        return real(name)

    monkeypatch.setattr(backends, "_build", build)
    return attempts


@pytest.mark.parametrize("error", [
    RuntimeError("libnvrtc.so.13: cannot open shared object file"),
    OSError("CUDA driver version is insufficient for CUDA runtime version"),
    UserWarning("a warning turned into an error by the warnings filter"),
])
def test_a_gpu_that_fails_to_build_falls_back_to_numba_with_one_warning(fresh_registry, monkeypatch, caplog, error):
    attempts = _failing_gpu(monkeypatch, error)
    with caplog.at_level(logging.WARNING, logger="simsearch.backends"):
        names = [fresh_registry.resolve_backend_name("auto") for _ in range(50)]
        sigs = simsearch.minhash(["a gpu that does not work must not stop this"], num_perm=16)
    assert set(names) == {"numba"}
    assert attempts == ["cupy"]  # probed once; the failure is cached, not retried per call
    warned = [r for r in caplog.records if r.name == "simsearch.backends"]
    assert len(warned) == 1 and str(error) in warned[0].getMessage() and type(error).__name__ in warned[0].getMessage()
    np.testing.assert_array_equal(sigs, simsearch.minhash(["a gpu that does not work must not stop this"],
                                                          num_perm=16, backend="numpy"))
    with pytest.raises(BackendUnavailableError, match="simsearch\\[gpu\\]") as info:
        fresh_registry.get_backend("cupy")  # asked for by name: the cause, and what to install
    assert str(error) in str(info.value)
    assert "cupy" not in fresh_registry.available_backends()


def test_cupy_not_installed_is_silent(fresh_registry, monkeypatch, caplog):
    _failing_gpu(monkeypatch, ImportError("CuPy is not installed (No module named 'cupy')"))
    with caplog.at_level(logging.WARNING, logger="simsearch.backends"):
        assert fresh_registry.resolve_backend_name("auto") == "numba"
    assert not [r for r in caplog.records if r.name == "simsearch.backends"]


def test_auto_never_picks_the_simulator(fresh_registry):
    """Under NUMBA_ENABLE_CUDASIM=1 (the default suite) the GPU backend builds, on the simulator,
    but "auto" means numba: the simulator is for tests, not for speed."""
    from simsearch.backends import _device

    if not _device.SIM:
        pytest.skip("this run uses a real device")
    assert fresh_registry.get_backend("cupy").simulated
    assert fresh_registry.resolve_backend_name("auto") == "numba"


def test_backends_are_built_once_and_shared(fresh_registry):
    a, b = fresh_registry.get_backend("numba"), fresh_registry.get_backend("numba")
    assert a is b and a.host is a
    assert fresh_registry.get_backend(a) is a  # an object passes through unresolved


def test_the_gpu_backend_hands_host_work_to_the_cpu_backend(fresh_registry):
    from simsearch.backends import _device

    if not _device.SIM:
        pytest.skip("this run uses a real device")
    gpu = fresh_registry.get_backend("cupy")
    assert gpu.host is fresh_registry.get_backend("numba")


def test_the_environment_override_is_checked(fresh_registry, monkeypatch):
    monkeypatch.setenv("SIMSEARCH_BACKEND", "numpy")
    assert fresh_registry.resolve_backend_name("auto") == "numpy"
    monkeypatch.setenv("SIMSEARCH_BACKEND", "tpu")
    with pytest.raises(simsearch.errors.InvalidArgumentError, match="SIMSEARCH_BACKEND"):
        fresh_registry.resolve_backend_name("auto")


def test_warnings_as_errors_do_not_break_auto(fresh_registry, monkeypatch):
    """With every warning an error (as in this suite's filterwarnings), a GPU probe that warns is
    a failed probe, not an exception out of every "auto" call."""
    def build(name):
        if name == "cupy":
            warnings.warn("CUDA path could not be detected", RuntimeWarning)
        return real(name)

    real = backends._build
    monkeypatch.setattr(backends, "_build", build)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fresh_registry.resolve_backend_name("auto") == "numba"


def test_auto_without_cupy_never_imports_numba_cuda():
    """Where CuPy is absent, "auto" learns that from one failed import and never imports
    numba.cuda (0.4-0.8 s per process, and the CUDA driver probe that comes with it)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['cupy'] = None\n"  # import cupy -> ImportError, wherever CuPy is installed
        "from simsearch import backends\n"
        "assert backends.resolve_backend_name('auto') == 'numba'\n"
        "assert 'CuPy is not installed' in (backends.backend_problem('cupy') or '')\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "SIMSEARCH_BACKEND")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
