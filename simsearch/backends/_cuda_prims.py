"""The shared hash primitives of :mod:`._hashprims`, compiled once for the GPU (numba-cuda device
functions; plain Python calls under the CUDA simulator). Every GPU kernel module uses this one build."""

from __future__ import annotations

from . import _device as D
from ._hashprims import compile_all

GPU = compile_all(D.device_function)
