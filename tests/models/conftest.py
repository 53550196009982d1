"""Fixtures for the estimator tests: the ``xp`` namespace and standardised scikit-learn datasets."""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Run these tests with one BLAS thread.

    On a busy two-core machine OpenBLAS's spinning threads can make a 64 x 64 GEMM 20x slower;
    these tests check results, not speed, so they take the stable path.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# cudaErrorInsufficientDriver (no NVIDIA driver at all) and cudaErrorNoDevice: "no GPU here".
_NO_DEVICE_STATUS = (35, 100)


def _require_gpu() -> bool:
    return os.environ.get("SIMSEARCH_REQUIRE_GPU", "") not in ("", "0")


def _no_gpu(why: str):
    """Skip: there is no GPU to test on here; a failure instead under SIMSEARCH_REQUIRE_GPU=1."""
    if _require_gpu():
        pytest.fail(f"{why} (SIMSEARCH_REQUIRE_GPU=1)")
    pytest.skip(why)


def _cupy_installed() -> bool:
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):  # a parent import failed, or the import is blocked
        return False


def cupy_or_skip():
    """Return the cupy module. Skip when CuPy is not installed or sees no CUDA device; fail when
    it is installed but broken (it does not import, the runtime raises anything but "no device",
    a first array operation fails), and fail instead of skipping under SIMSEARCH_REQUIRE_GPU=1."""
    if not _cupy_installed():
        _no_gpu("CuPy is not installed")
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - any failure of an installed CuPy is a broken install
        pytest.fail(f"CuPy is installed but does not import: {type(exc).__name__}: {exc}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - only "no device" skips; anything else fails
        if getattr(exc, "status", None) in _NO_DEVICE_STATUS:
            _no_gpu(f"CuPy sees no CUDA device ({exc})")
        pytest.fail(f"CuPy's CUDA runtime is broken: {type(exc).__name__}: {exc}")
    if count < 1:
        _no_gpu("CuPy sees no CUDA device")
    try:
        total = int(cupy.arange(4).sum())
    except Exception as exc:  # noqa: BLE001 - a device that cannot run a kernel is broken
        pytest.fail(f"CuPy sees {count} device(s) but cannot run a kernel: {type(exc).__name__}: {exc}")
    if total != 6:
        pytest.fail(f"CuPy computed sum(arange(4)) = {total}, not 6")
    return cupy


@pytest.fixture
def cp():
    """The cupy module; skips the test when CuPy or a CUDA device is missing (see cupy_or_skip)."""
    return cupy_or_skip()


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array namespace a test body runs with: numpy always, cupy when marked gpu and present."""
    return np if request.param == "numpy" else cupy_or_skip()


@functools.lru_cache(maxsize=None)
def _load(name: str):
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X.astype(np.float64), y


@functools.lru_cache(maxsize=None)
def _split(name: str, seed: int, test_size: float):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = _load(name)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


@pytest.fixture(scope="session")
def split():
    """``split(name, seed)`` -> standardised, stratified (Xtr, Xte, ytr, yte) of a scikit-learn dataset."""

    def get(name: str, seed: int = 0, test_size: float = 0.3):
        return tuple(a.copy() for a in _split(name, seed, test_size))

    return get


@pytest.fixture(scope="session")
def standardised():
    """``standardised(name)`` -> (X, y) of a whole scikit-learn dataset, standardised."""

    def get(name: str):
        from sklearn.preprocessing import StandardScaler

        X, y = _load(name)
        return StandardScaler().fit_transform(X), y.copy()

    return get
