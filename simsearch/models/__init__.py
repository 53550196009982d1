"""Classifiers for retrieved feature vectors: :class:`SVC` and :class:`GaussianMixture`.

Both follow the scikit-learn estimator contract and run on numpy or CuPy arrays; the namespace is
taken from the input (:func:`get_namespace`), and results stay on the input's device. Both
serialise to a JSON-safe, versioned dict with ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from ._base import FORMAT_VERSION, ConvergenceWarning, get_namespace
from ._gmm import GaussianMixture
from ._svm import SVC

__all__ = ["SVC", "GaussianMixture", "get_namespace", "ConvergenceWarning", "FORMAT_VERSION"]
