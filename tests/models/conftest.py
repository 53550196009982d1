"""Fixtures for the estimator tests: the ``xp`` namespace and standardised scikit-learn datasets."""

from __future__ import annotations

import functools

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


def cupy_or_skip():
    """Return the cupy module, or skip the test when CuPy or a CUDA device is missing."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as exc:  # ImportError, CUDARuntimeError, ...
        pytest.skip(f"CuPy with a CUDA device is not available ({exc})")
    return cupy


@pytest.fixture
def cp():
    """The cupy module; skips the test when CuPy or a CUDA device is missing."""
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
