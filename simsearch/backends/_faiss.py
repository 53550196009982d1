"""faiss behind the same seam, for distances and exact kNN only (``backend="faiss"``).

faiss (faiss-cpu in the default install; faiss-gpu from the ``gpu`` extra, used when it sees a GPU)
runs an ``IndexFlat`` per call: L2 for sqeuclidean/euclidean, METRIC_L1 for manhattan, inner
product for ip, and inner product on unit vectors for cosine (zero vectors stay zero, so their
distance is 1.0 as on every other backend). faiss's heaps do not order equal scores by index, so
``knn`` asks it for ``2k + 16`` candidates and keeps the k best by (distance, index); the rare
rows whose tie group may run past those candidates are redone by the numpy kernel, so ties go
to the smaller index as on every other backend. It has no shingling or MinHash kernels, so it is not
one of ``BACKEND_NAMES``; :func:`simsearch.backends.get_knn_backend` hands it out.

On a GPU (faiss-gpu): every calling thread has its own ``StandardGpuResources`` (a
``threading.local``; one object is not safe to share between threads, and each reserves its own
temporary memory). faiss-GPU selects at most :data:`GPU_MAX_K` (2048) neighbours per query, so a
GPU search fetches ``min(2k + 16, 2048)`` candidates (the tie rule above still holds: rows whose
last candidate ties the k-th are redone), and a ``k`` above ``2048 - 16`` (or a GPU search that
faiss refuses, as builds with a 1024 limit do) runs on the CPU index instead, with the full
over-fetch. ``knn`` accepts the Protocol's ``cache_key`` and ignores it (the index is built per
call).
"""

from __future__ import annotations

import threading

import numpy as np

try:
    import faiss
except ImportError as exc:  # pragma: no cover - faiss-cpu is a default dependency
    raise ImportError(f"faiss is not installed ({exc})") from exc

from . import _numpy_distance as ref
from ._numpy_distance import unit_rows


def faiss_metric(metric: str) -> int:
    """The faiss MetricType that ranks like ``metric`` (cosine: on normalised vectors)."""
    if metric in ("sqeuclidean", "euclidean"):
        return faiss.METRIC_L2
    if metric == "manhattan":
        return faiss.METRIC_L1
    return faiss.METRIC_INNER_PRODUCT


def from_faiss(d: np.ndarray, metric: str) -> np.ndarray:
    """faiss's scores (squared L2, L1 or similarity) as our float32 distances."""
    d = np.asarray(d, dtype=np.float32)
    if metric == "euclidean":
        return np.sqrt(np.maximum(d, 0.0))
    if metric == "sqeuclidean":
        return np.maximum(d, 0.0)
    if metric == "manhattan":
        return d
    out = 1.0 - d
    return np.clip(out, 0.0, 2.0) if metric == "cosine" else out


GPU_MAX_K = 2048  # faiss-GPU's largest k (GPU_MAX_SELECTION_K)
_GPU_MARGIN = 16  # candidates beyond k a GPU search must be able to fetch (the tie rule)


class FaissBackend:
    name = "faiss"
    device = "CPU"

    def __init__(self) -> None:
        self._use_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        self._local = threading.local()

    def _gpu_resources(self):  # pragma: no cover - needs faiss-gpu and a device
        """The calling thread's own StandardGpuResources (created on its first GPU search)."""
        res = getattr(self._local, "gpu", None)
        if res is None:
            res = self._local.gpu = faiss.StandardGpuResources()
        return res

    def flat_index(self, dim: int, metric: str, *, gpu: bool = True):
        """An exact flat index; on the GPU when there is one and ``gpu`` allows it."""
        index = faiss.IndexFlat(dim, faiss_metric(metric))
        if gpu and self._use_gpu:  # pragma: no cover - needs faiss-gpu and a device
            try:
                index = faiss.index_cpu_to_gpu(self._gpu_resources(), 0, index)
            except RuntimeError:
                pass  # a metric the GPU flat index lacks stays on the CPU
        return index

    def _search(self, base, queries, k: int, metric: str):
        """faiss's (scores, ids) of ``extra`` candidates per query, and how many were fetched."""
        n = len(base)
        on_gpu = self._use_gpu and k + _GPU_MARGIN <= GPU_MAX_K
        extra = min(n, 2 * k + 16, GPU_MAX_K) if on_gpu else min(n, 2 * k + 16)
        index = self.flat_index(base.shape[1], metric, gpu=on_gpu)
        index.add(base)
        try:
            d, i = index.search(queries, extra)
        except RuntimeError:
            if not on_gpu:
                raise
            extra = min(n, 2 * k + 16)  # e.g. a build whose GPU limit is 1024: redo on the CPU
            index = self.flat_index(base.shape[1], metric, gpu=False)
            index.add(base)
            d, i = index.search(queries, extra)
        return d, i, extra

    def knn(self, base, queries, k, metric, cache_key=None):
        if metric == "cosine":
            base, queries = unit_rows(base), unit_rows(queries)
        # faiss's heaps do not order equal scores by index; fetch extra candidates and sort them by
        # (score, index), so that tie groups up to ``extra - k`` long go to the smaller indices.
        d, i, extra = self._search(base, queries, k, metric)
        d = from_faiss(d, metric)
        order = np.lexsort((i, d), axis=-1)
        d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1).astype(np.int64)
        # Where even the last candidate ties the k-th, the tie group may go on past what faiss
        # returned: redo those (rare) rows with the reference kernel.
        unsure = np.nonzero(d[:, extra - 1] <= d[:, k - 1])[0] if extra < len(base) else []
        if len(unsure):
            d_ref, i_ref = ref.knn(base, queries[unsure], k, metric)
            d[unsure, :k], i[unsure, :k] = d_ref, i_ref
        return d[:, :k], i[:, :k]

    def pairwise(self, x, y, metric):
        if metric == "cosine":
            x, y = unit_rows(x), unit_rows(y)
        if len(x) == 0 or len(y) == 0:
            return np.zeros((len(x), len(y)), dtype=np.float32)
        out = from_faiss(faiss.pairwise_distances(x, y, faiss_metric(metric)), metric)
        return ref.fix_cancellation(x, y, out, metric)


def create() -> FaissBackend:
    return FaissBackend()
