"""``cupy_or_skip`` (tests/models/conftest.py) skips only when there is no GPU to test on.

A missing CuPy or a CuPy that sees no device skips (fails under SIMSEARCH_REQUIRE_GPU=1); a CuPy
that is installed but broken fails, so a broken GPU install can never pass as "skipped". The
scenarios are played with stand-in ``cupy`` modules.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).with_name("conftest.py"))
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


class FakeRuntimeError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{text} (status {status})")
        self.status = status


def fake_cupy(count=1, runtime_error=None, arange_error=None):
    mod = types.ModuleType("cupy")
    mod.__spec__ = importlib.machinery.ModuleSpec("cupy", None)

    def device_count():
        if runtime_error is not None:
            raise runtime_error
        return count

    def arange(n):
        if arange_error is not None:
            raise arange_error
        return np.arange(n)

    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count))
    mod.arange = arange
    return mod


def outcome():
    """("skip" | "fail" | "ok", message) of cupy_or_skip(): both outcomes are caught here, so a
    regression that skips where it should fail reports as a failure of the test."""
    try:
        conftest.cupy_or_skip()
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    except pytest.fail.Exception as exc:
        return "fail", str(exc)
    return "ok", ""


@pytest.fixture
def no_require(monkeypatch):
    monkeypatch.delenv("SIMSEARCH_REQUIRE_GPU", raising=False)


NO_GPU = {
    "not installed": None,
    "no driver": fake_cupy(runtime_error=FakeRuntimeError(35, "cudaErrorInsufficientDriver")),
    "no device": fake_cupy(runtime_error=FakeRuntimeError(100, "cudaErrorNoDevice")),
    "zero devices": fake_cupy(count=0),
}
BROKEN = {
    "runtime error": fake_cupy(runtime_error=FakeRuntimeError(999, "cudaErrorUnknown")),
    "no libcudart": fake_cupy(runtime_error=OSError("libcudart.so.13: cannot open shared object file")),
    "kernels fail": fake_cupy(arange_error=RuntimeError("nvrtc: NVRTC_ERROR_COMPILATION")),
}


@pytest.mark.parametrize("case", list(NO_GPU))
def test_no_gpu_skips(monkeypatch, no_require, case):
    monkeypatch.setitem(sys.modules, "cupy", NO_GPU[case])
    assert outcome()[0] == "skip"


@pytest.mark.parametrize("case", list(NO_GPU))
def test_no_gpu_fails_when_a_gpu_is_required(monkeypatch, case):
    monkeypatch.setenv("SIMSEARCH_REQUIRE_GPU", "1")
    monkeypatch.setitem(sys.modules, "cupy", NO_GPU[case])
    kind, message = outcome()
    assert kind == "fail" and "SIMSEARCH_REQUIRE_GPU=1" in message


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_install_fails(monkeypatch, no_require, case):
    monkeypatch.setitem(sys.modules, "cupy", BROKEN[case])
    assert outcome()[0] == "fail"


def test_a_working_cupy_is_returned(monkeypatch, no_require):
    mod = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", mod)
    assert conftest.cupy_or_skip() is mod


class _BrokenCupyFinder:
    """Finds a "cupy" whose import raises, like a wheel built for another CUDA."""

    def find_spec(self, name, path=None, target=None):
        if name != "cupy":
            return None
        return importlib.machinery.ModuleSpec("cupy", self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError("CuPy is not correctly installed: libcublas.so.13 not found")


def test_an_installed_cupy_that_does_not_import_fails(monkeypatch, no_require):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenCupyFinder(), *sys.meta_path])
    kind, message = outcome()
    assert kind == "fail" and "does not import" in message
