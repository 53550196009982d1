"""The device runtime of the GPU backend: array module, streams, transfers, memory, kernel launches.

Two modes, fixed when this module is imported:

* **device** (CUDA and CuPy present): CuPy owns device memory (its pool), streams, pinned host
  buffers, sorting, scans and cuBLAS; the kernels are numba-cuda functions, given CuPy arrays
  through ``__cuda_array_interface__`` without an implicit synchronisation. Every host thread has
  its own non-blocking stream and its own pinned staging buffers, so concurrent callers never
  share a buffer and every copy is ordered with the kernels that read it.
* **simulator** (``NUMBA_ENABLE_CUDASIM=1``): numpy arrays stand in for device arrays and numba's
  CUDA simulator runs the same kernels, one Python thread per CUDA thread, on a machine without
  CUDA or CuPy. The simulator swaps module globals during a launch, so launches are serialised by
  a lock (the host code around them still runs concurrently). Grids are capped at
  :data:`SIM_MAX_BLOCKS` blocks of at most :data:`SIM_MAX_THREADS` threads; kernels use grid-stride
  loops, so any launch shape computes the same result. Device memory is a fake budget,
  :data:`SIM_MEMORY` bytes, that :func:`empty` enforces, so memory plans and the
  split-on-out-of-memory path run in CI too.

Everything the GPU modules allocate, copy or launch goes through here; they never test for the
mode themselves except through :data:`xp` (the array module) and :data:`SIM`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numba import config as _numba_config

from ..errors import ResourceExhaustedError

SIM = bool(_numba_config.ENABLE_CUDASIM)

if SIM:
    xp = np
    _cp = None
else:  # CuPy first: without it numba.cuda is not imported at all (0.4-0.8 s that "auto" paid
    # on every machine without CuPy, only to learn that the GPU backend cannot be built)
    try:
        import cupy as _cp
    except ImportError as exc:
        raise ImportError(f"CuPy is not installed ({exc})") from exc
    xp = _cp  # pragma: no cover - needs CuPy

from numba import cuda  # noqa: E402  (after reading the mode: numba.cuda is the simulator then)

__all__ = [
    "SIM",
    "xp",
    "DeviceOutOfMemory",
    "kernel",
    "device_function",
    "launch",
    "grid_for",
    "block_for",
    "stream",
    "synchronize",
    "to_device",
    "to_host",
    "empty",
    "zeros",
    "full",
    "free_bytes",
    "release_cached",
    "split_on_oom",
    "probe",
    "describe",
]

SIM_MEMORY = 256 << 20  # the simulator's device memory budget, in bytes (tests lower it)
SIM_MAX_THREADS = 32  # threads per block under the simulator
SIM_MAX_BLOCKS = 4  # blocks per launch under the simulator
MAX_GRID_X = (1 << 31) - 1
STAGE_BYTES = 16 << 20  # per pinned staging buffer; each thread has two that alternate

_SIM_LOCK = threading.Lock()
_local = threading.local()


class DeviceOutOfMemory(MemoryError):
    """The device (or the simulator's budget) could not hold an allocation."""


# -- kernels ----------------------------------------------------------------------------------


def _errstate_in_sim_threads() -> None:
    """numpy scalars warn on the wrapping arithmetic the kernels rely on (uint32/uint64 products);
    numba's CUDA target wraps silently. numpy's error state is per thread, and the simulator runs
    every CUDA thread on a new Python thread, so each of those ignores overflow."""
    from numba.cuda.simulator import kernel as simkernel

    run = simkernel.BlockThread.run
    if getattr(run, "_simsearch_wrapped", False):
        return

    def wrapped(self):
        with np.errstate(over="ignore"):
            run(self)

    wrapped._simsearch_wrapped = True
    simkernel.BlockThread.run = wrapped


if SIM:
    _errstate_in_sim_threads()
else:  # pragma: no cover - device only
    # Small batches (one query, a short text) launch grids far below the device's occupancy on
    # purpose; numba-cuda would warn at every such launch (an error under warnings-as-errors).
    _numba_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0


def kernel(fn: Callable) -> Any:
    """A numba-cuda kernel (cached on disk on a real device)."""
    return cuda.jit(cache=not SIM)(fn)


def device_function(fn: Callable) -> Any:
    """A numba-cuda device function."""
    return cuda.jit(device=True)(fn)


def block_for(preferred: int) -> int:
    """Threads per block: ``preferred`` on a device, at most :data:`SIM_MAX_THREADS` simulated."""
    return min(preferred, SIM_MAX_THREADS) if SIM else preferred


def grid_for(items: int, block: int, *, cap: int = MAX_GRID_X) -> int:
    """Blocks for ``items`` work items at ``block`` per block (at least 1), for grid-stride kernels."""
    blocks = max(1, min(-(-max(items, 1) // block), cap, MAX_GRID_X))
    return min(blocks, SIM_MAX_BLOCKS) if SIM else blocks


def _arg(a: Any) -> Any:
    if _cp is not None and isinstance(a, _cp.ndarray):  # pragma: no cover - device only
        return cuda.as_cuda_array(a, sync=False)
    return a


def launch(kern: Any, grid, block, *args: Any) -> None:
    """Run ``kern`` on the calling thread's stream (serialised under the simulator)."""
    if SIM:
        with _SIM_LOCK:
            kern[grid, block](*args)
        return
    kern[grid, block, stream().numba](*[_arg(a) for a in args])  # pragma: no cover - device only


# -- streams ----------------------------------------------------------------------------------


class _Stream:
    """A thread's own non-blocking CuPy stream and numba's handle on it (no-ops simulated)."""

    def __init__(self) -> None:
        if SIM:
            self.cupy = None
            self.numba = None
        else:  # pragma: no cover - device only
            self.cupy = _cp.cuda.Stream(non_blocking=True)
            self.numba = cuda.external_stream(self.cupy.ptr)

    def __enter__(self):
        if self.cupy is not None:  # pragma: no cover - device only
            self.cupy.__enter__()
        return self

    def __exit__(self, *exc):
        if self.cupy is not None:  # pragma: no cover - device only
            self.cupy.__exit__(*exc)
        return False

    def synchronize(self) -> None:
        if self.cupy is not None:  # pragma: no cover - device only
            self.cupy.synchronize()


def stream() -> _Stream:
    """The calling thread's stream. Use ``with stream():`` around CuPy calls so that they run on
    it too, in order with this thread's copies and launches."""
    s = getattr(_local, "stream", None)
    if s is None:
        s = _local.stream = _Stream()
    return s


def synchronize() -> None:
    """Wait for everything queued on the calling thread's stream."""
    stream().synchronize()


# -- memory and transfers ---------------------------------------------------------------------


def _oom_types() -> tuple[type[BaseException], ...]:
    if _cp is None:
        return (DeviceOutOfMemory,)
    return (DeviceOutOfMemory, _cp.cuda.memory.OutOfMemoryError)  # pragma: no cover - device only


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` means the device ran out of memory (CuPy's pool, a driver call, or the
    simulator's budget)."""
    if isinstance(exc, _oom_types()):
        return True
    text = str(exc)
    return "CUDA_ERROR_OUT_OF_MEMORY" in text or "cudaErrorMemoryAllocation" in text


def _checked(nbytes: int) -> None:
    if SIM and nbytes > SIM_MEMORY:
        raise DeviceOutOfMemory(f"the simulated device holds {SIM_MEMORY} bytes; {nbytes} were asked for")


def empty(shape, dtype) -> Any:
    """An uninitialised device array (checked against the budget when simulated)."""
    dtype = np.dtype(dtype)
    _checked(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    try:
        return xp.empty(shape, dtype=dtype)
    except _oom_types() as exc:  # pragma: no cover - device only
        raise DeviceOutOfMemory(str(exc)) from exc


def zeros(shape, dtype) -> Any:
    """A zeroed device array, filled on the calling thread's stream."""
    return full(shape, 0, dtype)


def full(shape, value, dtype) -> Any:
    """A device array filled with ``value`` on the calling thread's stream (in order with the
    thread's copies and launches)."""
    out = empty(shape, dtype)
    with stream():
        out[...] = value
    return out


def free_bytes() -> int:
    """Device memory available to a new allocation: free on the device plus what CuPy's pool
    holds unused (the simulator's whole budget when simulated)."""
    if SIM:
        return SIM_MEMORY
    free, _ = _cp.cuda.runtime.memGetInfo()  # pragma: no cover - device only
    pool = _cp.get_default_memory_pool()  # pragma: no cover
    return int(free + pool.total_bytes() - pool.used_bytes())  # pragma: no cover


def release_cached() -> None:
    """Return CuPy's unused pooled blocks to the driver (after an out-of-memory error)."""
    if _cp is not None:  # pragma: no cover - device only
        _cp.get_default_memory_pool().free_all_blocks()


class _Staging:
    """A thread's two pinned host buffers and the events of the copies that last read them."""

    def __init__(self) -> None:
        self.bufs: list[np.ndarray | None] = [None, None]
        self.events: list[Any] = [None, None]

    def slot(self, i: int, nbytes: int) -> np.ndarray:  # pragma: no cover - device only
        ev = self.events[i]
        if ev is not None:
            ev.synchronize()  # the copy that last read this buffer has finished
            self.events[i] = None
        buf = self.bufs[i]
        if buf is None or buf.size < nbytes:
            mem = _cp.cuda.alloc_pinned_memory(max(nbytes, 1))
            buf = self.bufs[i] = np.frombuffer(mem, dtype=np.uint8, count=max(nbytes, 1))
        return buf[:nbytes]

    def mark(self, i: int) -> None:  # pragma: no cover - device only
        ev = _cp.cuda.Event()
        ev.record(stream().cupy)
        self.events[i] = ev


def _staging() -> _Staging:
    s = getattr(_local, "staging", None)
    if s is None:
        s = _local.staging = _Staging()
    return s


def to_device(host: np.ndarray) -> Any:
    """Copy a host array to a new device array on the calling thread's stream, through its two
    alternating pinned staging buffers (a private copy when simulated)."""
    host = np.ascontiguousarray(host)
    out = empty(host.shape, host.dtype)
    if SIM:
        out[...] = host
        return out
    flat_in = host.reshape(-1).view(np.uint8)  # pragma: no cover - device only
    flat_out = out.reshape(-1).view(_cp.uint8)  # pragma: no cover
    staging = _staging()  # pragma: no cover
    with stream():  # pragma: no cover
        for c, lo in enumerate(range(0, flat_in.size, STAGE_BYTES)):
            hi = min(lo + STAGE_BYTES, flat_in.size)
            buf = staging.slot(c % 2, hi - lo)
            buf[...] = flat_in[lo:hi]
            flat_out[lo:hi].set(buf, stream=stream().cupy)
            staging.mark(c % 2)
    return out  # pragma: no cover


def to_host(dev: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Copy a device array to host memory (``out`` when given) once the thread's stream has
    produced it; returns a host numpy array."""
    if SIM:
        if out is None:
            return np.array(dev, copy=True)
        out[...] = dev
        return out
    s = stream()  # pragma: no cover - device only
    host = dev.get(stream=s.cupy)  # pragma: no cover
    s.synchronize()  # pragma: no cover
    if out is None:  # pragma: no cover
        return host
    out[...] = host  # pragma: no cover
    return out  # pragma: no cover


def split_on_oom(run: Callable[[int, int], Any], lo: int, hi: int, what: str) -> list[Any]:
    """``[run(lo, hi)]``, or, when that runs out of device memory, the results of running each
    half the same way, in order. A single item that does not fit raises ResourceExhaustedError.
    ``run`` must not have side effects that a failed attempt leaves behind."""
    try:
        return [run(lo, hi)]
    except Exception as exc:
        if not is_oom(exc):
            raise
        release_cached()
        if hi - lo <= 1:
            raise ResourceExhaustedError(
                f"{what}: one item needs more device memory than the GPU has free ({exc}). Use a "
                "smaller input or backend='numba'."
            ) from None
    mid = (lo + hi) // 2
    return split_on_oom(run, lo, mid, what) + split_on_oom(run, mid, hi, what)


@contextlib.contextmanager
def on_stream() -> Iterator[None]:
    """Run the block's CuPy calls on the calling thread's stream."""
    with stream():
        yield


# -- the probe --------------------------------------------------------------------------------


@kernel
def _probe_kernel(out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = out[i] * 2 + 1


def probe() -> None:
    """Compile and run one numba-cuda kernel and one CuPy call on this thread's stream; raises
    whatever stops the GPU backend from working here (no device, no driver, no NVRTC, ...)."""
    if not SIM:  # pragma: no cover - device only
        if _cp.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("CuPy sees no CUDA device")
    x = to_device(np.arange(8, dtype=np.int64))
    launch(_probe_kernel, 1, block_for(32), x)
    with on_stream():
        total = int(to_host(xp.cumsum(x))[-1])
    if total != 64:
        raise RuntimeError(f"the device computed {total} for a probe whose answer is 64")


def describe() -> str:
    """A one-line name of where the kernels run, e.g. "GPU: NVIDIA H200 (CUDA 13.0)"."""
    if SIM:
        return "GPU: numba CUDA simulator (on the CPU)"
    props = _cp.cuda.runtime.getDeviceProperties(_cp.cuda.Device().id)  # pragma: no cover - device only
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])  # pragma: no cover
    ver = _cp.cuda.runtime.runtimeGetVersion()  # pragma: no cover
    return f"GPU: {name} (CUDA {ver // 1000}.{ver % 1000 // 10})"  # pragma: no cover
