"""The backend seam: one Protocol of kernels, one module per backend, picked once by name.

``get_backend("auto")`` returns CuPy when it sees a GPU, else numba, else numpy; the environment
variable ``SIMSEARCH_BACKEND`` overrides what "auto" means. numba and CuPy are imported lazily,
inside their modules, so importing simsearch never needs them. All backends return bit-equal
integer results; float kernels agree within tolerance.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Protocol, runtime_checkable

import numpy as np

from .._validation import check_option
from ..errors import BackendUnavailableError

__all__ = [
    "Backend",
    "BACKEND_NAMES",
    "KNN_BACKEND_NAMES",
    "get_backend",
    "get_knn_backend",
    "available_backends",
    "resolve_backend_name",
]

BACKEND_NAMES = ("numpy", "numba", "cupy")
_MODULES = {"numpy": "._numpy", "numba": "._numba", "cupy": "._cupy"}
_EXTRAS = {"numba": "numba (part of the default install: pip install simsearch)", "cupy": "simsearch[gpu]"}
# faiss serves distances and kNN only (no shingling/MinHash), so it is not one of BACKEND_NAMES.
KNN_BACKEND_NAMES = BACKEND_NAMES + ("faiss",)
_MODULES["faiss"] = "._faiss"
_EXTRAS["faiss"] = "faiss-cpu (part of the default install), or simsearch[gpu] for faiss-gpu"


@runtime_checkable
class Backend(Protocol):
    """Kernels every backend implements. Arrays in and out are host numpy arrays."""

    name: str

    def shingle_hashes(self, texts: list[str], ngram: int, shingle: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique uint64 shingle hashes per text, as CSR (offsets int64 (n+1), hashes)."""

    def minhash_texts(self, texts: list[str], ngram: int, shingle: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """uint32 (n, num_perm) signatures straight from texts."""

    def minhash_hashes(self, offsets: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """uint32 (n, num_perm) signatures from CSR hash sets (uint32 or uint64 hashes)."""

    def pairwise(self, x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
        """float32 (len(x), len(y)) distances; x, y are checked C-contiguous float32 (simsearch.distance)."""

    def knn(self, base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k: float32 distances and int64 base rows, each (len(queries), k), sorted, ties to
        the smaller row. Memory stays bounded by blocks whatever the sizes."""


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Backend:
    try:
        module = importlib.import_module(_MODULES[name], __name__)
        backend = module.create()
    except ImportError as exc:
        raise BackendUnavailableError(
            f"The {name!r} backend is not available ({exc}). Install {_EXTRAS.get(name, name)}."
        ) from exc
    return backend


def _cupy_has_device() -> bool:
    try:
        _load("cupy")
    except BackendUnavailableError:
        return False
    return True


def resolve_backend_name(name: str = "auto") -> str:
    """Map "auto" (or the SIMSEARCH_BACKEND override) to a concrete installed backend name."""
    check_option(name, "backend", ("auto",) + BACKEND_NAMES)
    if name == "auto":
        name = os.environ.get("SIMSEARCH_BACKEND", "auto") or "auto"
        check_option(name, "SIMSEARCH_BACKEND", ("auto",) + BACKEND_NAMES)
    if name != "auto":
        return name
    if _cupy_has_device():
        return "cupy"
    try:
        _load("numba")
        return "numba"
    except BackendUnavailableError:
        return "numpy"


def get_backend(name: str = "auto") -> Backend:
    """Return the backend called ``name`` ("auto", "numpy", "numba" or "cupy")."""
    return _load(resolve_backend_name(name))


def available_backends() -> list[str]:
    """Names of the backends that import and (for CuPy) see a device."""
    out = []
    for name in BACKEND_NAMES:
        try:
            _load(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


def get_knn_backend(name: str = "auto") -> Backend:
    """The backend for distances and kNN: any of :data:`BACKEND_NAMES`, "auto", or "faiss"."""
    check_option(name, "backend", ("auto",) + KNN_BACKEND_NAMES)
    return _load("faiss") if name == "faiss" else get_backend(name)
