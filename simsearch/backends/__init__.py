"""The backend seam: one Protocol of kernels, one module per backend, resolved once at the API edge.

``get_backend("auto")`` returns the GPU backend when it works on a real device, else numba, else
numpy; the environment variable ``SIMSEARCH_BACKEND`` overrides what "auto" means. Public
functions take ``backend="auto" | "numpy" | "numba" | "cupy"`` or a :class:`Backend` object,
resolve it once with :func:`get_backend`, and hand the object down; algorithms call its kernels
and never branch on its name.

numba and CuPy are imported lazily, inside their modules, so importing simsearch never needs
them. Building a backend is tried once per process: a failure of any kind (CuPy missing, no
device, a driver or NVRTC error, a warning raised as an error) is remembered, "auto" falls back
to numba with one logged warning that names the cause, and an explicit request raises
:class:`~simsearch.errors.BackendUnavailableError` with it.

Integer kernels return bit-equal results on every backend; float kernels agree within tolerance.
With ``NUMBA_ENABLE_CUDASIM=1`` the "cupy" backend runs its kernels on numba's CUDA simulator
(see :mod:`._device`); "auto" never picks the simulator.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np

from ..validation import check_option
from ..errors import BackendUnavailableError

__all__ = [
    "Backend",
    "BackendLike",
    "BACKEND_NAMES",
    "KNN_BACKEND_NAMES",
    "get_backend",
    "get_knn_backend",
    "available_backends",
    "backend_problem",
    "resolve_backend_name",
]

log = logging.getLogger("simsearch.backends")

BACKEND_NAMES = ("numpy", "numba", "cupy")
# faiss serves distances and kNN only (no shingling/MinHash), so it is not one of BACKEND_NAMES.
KNN_BACKEND_NAMES = BACKEND_NAMES + ("faiss",)
_MODULES = {"numpy": "._numpy", "numba": "._numba", "cupy": "._cupy", "faiss": "._faiss"}
_EXTRAS = {
    "numba": "numba (part of the default install: pip install simsearch)",
    "cupy": "simsearch[gpu] (CUDA 12) or simsearch[gpu-cuda13], and a visible NVIDIA GPU",
    "faiss": "simsearch[cpu] for faiss-cpu, or simsearch[gpu] for faiss with GPU support",
}


@runtime_checkable
class Backend(Protocol):
    """Kernels every backend implements. Arrays in and out are host numpy arrays.

    Definitions (band keys, band tables, packed pairs) are in :mod:`._numpy_lsh`, the reference.
    """

    name: str
    device: str  # "CPU", or "GPU: <device name>"
    host: Backend  # the backend for data kept in host memory (band tables): itself on the CPU

    # -- text and MinHash ---------------------------------------------------------------
    def shingle_hashes(self, texts: list[str], ngram: int, shingle: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique uint64 shingle hashes per text, as CSR (offsets int64 (n+1), hashes)."""

    def minhash_texts(self, texts: list[str], ngram: int, shingle: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """uint32 (n, num_perm) signatures straight from texts."""

    def minhash_hashes(self, offsets: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """uint32 (n, num_perm) signatures from CSR hash sets (uint32 or uint64 hashes)."""

    # -- LSH ------------------------------------------------------------------------------
    def band_keys(self, sigs: np.ndarray, b: int, r: int) -> np.ndarray:
        """uint64 (n, b) band keys of uint32 signatures (n, >= b*r)."""

    def bucket_sort(self, keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Band table (skeys (b, m) uint64, srows (b, m) int32, directory (b, 2**d+1) int32, d)
        over the rows where ``valid`` is True."""

    def lookup(self, skeys, srows, directory, d, mask, qkeys, qvalid) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets int64 (nq+1), rows int64) of the table rows (mask True) sharing a band key
        with each valid query, rows ascending."""

    def scan(self, keys, mask, qkeys, qvalid) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` against an unsorted (m, b) key array (an append buffer)."""

    def self_join(self, skeys, srows, mask) -> np.ndarray:
        """Packed uint64 row pairs ``(a << 32) | b``, a < b, both mask True, sharing a key in any
        band; sorted, unique."""

    def pair_jaccard_sets(self, off_a, hash_a, off_b, hash_b, ia, ib) -> np.ndarray:
        """float64 exact Jaccard of the sorted unique sets A[ia[k]] and B[ib[k]]; 0.0 when either
        is empty."""

    def pair_jaccard_sigs(self, sig_a, sig_b, ia, ib) -> np.ndarray:
        """float64 estimated Jaccard (equal positions / num_perm); 0.0 when either is empty."""

    def connected_components(self, n: int, pairs: np.ndarray) -> np.ndarray:
        """int64 label of each of ``n`` nodes: the smallest node index in its component."""

    # -- vectors --------------------------------------------------------------------------
    def pairwise(self, x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
        """float32 (len(x), len(y)) distances; x, y are checked C-contiguous float32 (simsearch.distance)."""

    def knn(self, base: np.ndarray, queries: np.ndarray, k: int, metric: str,
            cache_key: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k candidates: float32 distances and int64 base rows, each (len(queries), k), sorted,
        ties to the smaller row. :func:`simsearch.distance.exact_knn` makes them exact. Memory
        stays bounded by blocks whatever the sizes. ``cache_key`` names an unchanged base (a
        device backend may keep it resident between calls under that key)."""

    def exact_pairs(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    metric: str) -> np.ndarray:
        """float64 distances between x[rows] and y[cols], computed directly (no cancellation)."""

    def unit_rows(self, x: np.ndarray) -> np.ndarray:
        """float32 copy of x with every non-zero row scaled to unit length (zero rows stay zero)."""


# What public functions accept as ``backend=``: a name, or a backend object resolved earlier.
BackendLike = Union[str, Backend]

_lock = threading.RLock()
_built: dict[str, Any] = {}
_failed: dict[str, str] = {}
_warned: set[str] = set()


def _build(name: str) -> Any:
    module = importlib.import_module(_MODULES[name], __name__)
    backend = module.create()
    if name in ("cupy", "faiss"):  # composed: host-resident work goes to the CPU backend
        backend.host = _load("numba") if backend_problem("numba") is None else _load("numpy")
    return backend


def _load(name: str) -> Any:
    """The backend called ``name``, built once per process; a failure is remembered too."""
    backend = _built.get(name)
    if backend is not None:
        return backend
    with _lock:
        if name in _built:
            return _built[name]
        if name not in _failed:
            try:
                _built[name] = _build(name)
                return _built[name]
            except Exception as exc:  # any failure to build means "not available here"
                _failed[name] = f"{type(exc).__name__}: {exc}"
        raise BackendUnavailableError(
            f"The {name!r} backend is not available ({_failed[name]}). Install {_EXTRAS.get(name, name)}."
        )


def backend_problem(name: str) -> str | None:
    """Why backend ``name`` cannot be built here (None when it can)."""
    try:
        _load(name)
    except BackendUnavailableError:
        return _failed[name]
    return None


def _gpu_for_auto() -> bool:
    """Whether "auto" should use the GPU backend: it builds, on a real device (not the simulator).
    A GPU backend that is installed but fails is reported once, as a warning."""
    try:
        backend = _load("cupy")
    except BackendUnavailableError:
        cause = _failed["cupy"]
        missing = "CuPy is not installed" in cause
        if not missing and "cupy" not in _warned:
            _warned.add("cupy")
            log.warning("simsearch: the GPU backend is unavailable, using numba instead (%s)", cause)
        return False
    return not getattr(backend, "simulated", False)


def resolve_backend_name(name: str = "auto") -> str:
    """Map "auto" (or the SIMSEARCH_BACKEND override) to a concrete installed backend name."""
    if not isinstance(name, str):
        return name.name
    check_option(name, "backend", ("auto",) + BACKEND_NAMES)
    if name == "auto":
        name = os.environ.get("SIMSEARCH_BACKEND", "auto") or "auto"
        check_option(name, "SIMSEARCH_BACKEND", ("auto",) + BACKEND_NAMES)
    if name != "auto":
        return name
    if _gpu_for_auto():
        return "cupy"
    return "numba" if backend_problem("numba") is None else "numpy"


def get_backend(name: Any = "auto") -> Backend:
    """The backend for ``name`` ("auto", "numpy", "numba", "cupy"), or ``name`` itself when it is
    already a backend object."""
    if not isinstance(name, str):
        return name
    return _load(resolve_backend_name(name))


def available_backends() -> list[str]:
    """Names of the backends that build here ("cupy": on a device, or on the CUDA simulator)."""
    return [name for name in BACKEND_NAMES if backend_problem(name) is None]


def get_knn_backend(name: Any = "auto") -> Backend:
    """The backend for distances and kNN: a backend object, any of :data:`BACKEND_NAMES`, "auto",
    or "faiss"."""
    if not isinstance(name, str):
        return name
    check_option(name, "backend", ("auto",) + KNN_BACKEND_NAMES)
    return _load("faiss") if name == "faiss" else get_backend(name)
