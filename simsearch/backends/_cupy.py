"""The GPU backend (``backend="cupy"``): every kernel of the Backend Protocol on an NVIDIA GPU.

The kernels are numba-cuda functions; CuPy owns device memory, streams, pinned host buffers,
sorting and cuBLAS (see :mod:`._device`). With ``NUMBA_ENABLE_CUDASIM=1`` the same backend runs
its kernels on numba's CUDA simulator, with numpy arrays standing in for device arrays, which is
how CI tests every GPU kernel and every line of host code around them. Results are bit-equal to
the numpy backend (integers) or equal within tolerance (floats).
"""

from __future__ import annotations

from . import _device as D
from ._cuda_distance import CudaDistanceKernels
from ._cuda_lsh import CudaLSHKernels
from ._cuda_text import CudaTextKernels


class CupyBackend(CudaTextKernels, CudaLSHKernels, CudaDistanceKernels):
    name = "cupy"

    def __init__(self) -> None:
        self.simulated = D.SIM
        self.device = D.describe()
        self.host = None  # the CPU backend for host-resident data; set by the registry

    # Host-side helpers of the distance kernels: they work on host arrays, so the host twin runs them.
    def exact_pairs(self, x, y, rows, cols, metric):
        return self.host.exact_pairs(x, y, rows, cols, metric)

    def unit_rows(self, x):
        return self.host.unit_rows(x)


def create() -> CupyBackend:
    """The GPU backend, after a probe that compiles and runs a kernel (raises when it cannot)."""
    D.probe()
    return CupyBackend()
