"""The shared estimator machinery: namespace dispatch, lazy CuPy, serialisation helpers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from simsearch.errors import BackendUnavailableError, InvalidArgumentError
from simsearch.models import GaussianMixture, SVC, get_namespace
from simsearch.models._base import logsumexp


def test_numpy_lists_and_scalars_give_numpy():
    assert get_namespace(np.zeros(3), [1, 2], 3.0, None) is np
    assert get_namespace() is np


def test_importing_simsearch_models_does_not_import_cupy():
    code = "import sys, simsearch, simsearch.models; sys.exit('cupy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_logsumexp_is_stable():
    a = np.array([[1000.0, 1000.0], [-1000.0, -np.inf], [-np.inf, -np.inf]])
    out = logsumexp(np, a)
    assert out[0] == pytest.approx(1000.0 + np.log(2.0))
    assert out[1] == pytest.approx(-1000.0)
    assert out[2] == -np.inf


def test_from_dict_cupy_namespace_needs_cupy():
    data = SVC().to_dict()
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="simsearch\\[gpu\\]"):
            SVC.from_dict(data, namespace="cupy")
    with pytest.raises(InvalidArgumentError, match="'numpy' or 'cupy'"):
        GaussianMixture.from_dict(GaussianMixture().to_dict(), namespace="torch")


@pytest.mark.gpu
def test_mixed_devices_are_refused(cp):
    with pytest.raises(InvalidArgumentError, match="mix numpy and CuPy"):
        get_namespace(np.zeros(3), cp.zeros(3))
    assert get_namespace(cp.zeros(3), [1.0]) is cp
    with pytest.raises(InvalidArgumentError, match="mix numpy and CuPy"):
        SVC().fit(cp.zeros((4, 2)), np.array([0, 1, 0, 1]))


@pytest.mark.gpu
def test_from_dict_onto_the_device(cp):
    X = np.random.default_rng(0).normal(size=(50, 3))
    model = GaussianMixture(2, random_state=0).fit(X)
    dev = GaussianMixture.from_dict(model.to_dict(), namespace="cupy")
    assert isinstance(dev.means_, cp.ndarray)
    np.testing.assert_allclose(dev.score_samples(cp.asarray(X)).get(), model.score_samples(X))
