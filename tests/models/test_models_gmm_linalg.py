"""GaussianMixture raises InvalidArgumentError for a singular or collapsed covariance on CuPy
exactly where it does on numpy.

CuPy's ``linalg`` returns garbage for a matrix that is not positive definite unless
``cupyx.errstate(linalg="raise")`` is set. On the CPU the CuPy path is checked with a stand-in
namespace that behaves that way (numpy arithmetic; cholesky and solve that only raise under the
stand-in errstate), which also proves the numpy path never imports cupyx; the gpu-marked tests run
the real thing.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import threading
import types

import numpy as np
import pytest

from simsearch.errors import InvalidArgumentError
from simsearch.models import GaussianMixture, _gmm

COLLAPSED = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
NOT_PD = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1


def _fake_cupy_pair():
    """(a "cupy" namespace, its "cupyx") whose linalg ignores errors unless errstate says raise."""
    state = threading.local()
    entered: list[str] = []

    @contextlib.contextmanager
    def errstate(*, linalg=None, **_):
        entered.append(linalg)
        old = getattr(state, "linalg", "ignore")
        state.linalg = linalg or old
        try:
            yield
        finally:
            state.linalg = old

    def checked(fn):
        def run(*args):
            try:
                return fn(*args)
            except np.linalg.LinAlgError:
                if getattr(state, "linalg", "ignore") == "raise":
                    raise
                return np.full_like(args[0], 0.5)  # finite garbage, like an unchecked cuSOLVER call
        return run

    fake = types.ModuleType("cupy")
    fake.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    fake.__getattr__ = lambda name: getattr(np, name)  # numpy arithmetic for everything else
    fake.linalg = types.SimpleNamespace(cholesky=checked(np.linalg.cholesky), solve=checked(np.linalg.solve))
    cupyx = types.ModuleType("cupyx")
    cupyx.errstate = errstate
    return fake, cupyx, entered


def test_cupy_namespace_raises_where_numpy_raises(monkeypatch):
    fake, cupyx, entered = _fake_cupy_pair()
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        _gmm._precision_cholesky(np, NOT_PD[None], "full")
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        _gmm._precision_cholesky(fake, NOT_PD[None], "full")
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        _gmm._precision_cholesky(fake, NOT_PD, "tied")
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        _gmm._precision_cholesky_from_precisions(fake, -np.eye(2)[None], "full")
    assert entered and set(entered) == {"raise"}
    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(_gmm._precision_cholesky(fake, good[None], "full"),
                               _gmm._precision_cholesky(np, good[None], "full"))


def test_the_numpy_path_never_touches_cupyx(monkeypatch):
    broken = types.ModuleType("cupyx")

    def errstate(**_):
        raise AssertionError("cupyx.errstate was used for numpy input")

    broken.errstate = errstate
    monkeypatch.setitem(sys.modules, "cupyx", broken)
    with pytest.raises(InvalidArgumentError, match="increase reg_covar"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(COLLAPSED)
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        GaussianMixture(1, precisions_init=-np.eye(2)[None]).fit(np.zeros((5, 2)))
    GaussianMixture(2, random_state=0).fit(COLLAPSED)  # the default regularisation copes


@pytest.mark.gpu
def test_cupy_collapsed_component_raises_like_numpy(cp):
    with pytest.raises(InvalidArgumentError, match="increase reg_covar"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(cp.asarray(COLLAPSED))
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        GaussianMixture(1, precisions_init=cp.asarray(-np.eye(2)[None])).fit(cp.zeros((5, 2)))
    with pytest.raises(InvalidArgumentError, match="ill-defined"):
        _gmm._precision_cholesky(cp, cp.asarray(NOT_PD[None]), "full")
    GaussianMixture(2, random_state=0).fit(cp.asarray(COLLAPSED))
