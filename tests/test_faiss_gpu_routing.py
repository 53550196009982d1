"""The faiss backend's GPU routing, with faiss-gpu stood in by the CPU index (no device needed).

A fake ``index_cpu_to_gpu`` wraps the CPU flat index in an object that refuses k above faiss-GPU's
selection limit, exactly as faiss-gpu does, and records which thread used which
StandardGpuResources. The routing must keep every search within the limit, send larger k to the
CPU index, give the CPU answer, and give each thread its own resources.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np
import pytest

from simsearch.backends import get_backend

faiss = pytest.importorskip("faiss")

from simsearch import distance
from simsearch.backends import _faiss as F


class FakeResources:
    made: ClassVar[list[FakeResources]] = []

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.users: set[int] = set()
        FakeResources.made.append(self)


class FakeGpuIndex:
    """A CPU flat index behind faiss-GPU's k limit."""

    searches: ClassVar[list[int]] = []

    def __init__(self, res: FakeResources, index, limit: int) -> None:
        self.res, self.index, self.limit = res, index, limit

    def add(self, x) -> None:
        self.index.add(x)

    def search(self, x, k):
        self.res.users.add(threading.get_ident())
        if k > self.limit:
            raise RuntimeError(f"GPU index only supports min/max-K selection up to {self.limit} (requested {k})")
        FakeGpuIndex.searches.append(k)
        return self.index.search(x, k)


@pytest.fixture
def gpu_faiss(monkeypatch):
    """A FaissBackend that believes it has a GPU; ``limit`` is the fake GPU's largest k."""
    FakeResources.made.clear()
    FakeGpuIndex.searches.clear()

    def make(limit: int = F.GPU_MAX_K) -> F.FaissBackend:
        monkeypatch.setattr(faiss, "StandardGpuResources", FakeResources, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, dev, index: FakeGpuIndex(res, index, limit),
                            raising=False)
        be = F.FaissBackend()
        be._use_gpu = True
        be.host = get_backend("numba")  # what the registry composes in
        return be

    return make


def data(seed: int, n: int, nq: int, d: int = 4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(nq, d)).astype(np.float32)


@pytest.mark.parametrize(
    ("k", "gpu_k"),
    [(10, 36), (1500, F.GPU_MAX_K), (F.GPU_MAX_K - 16, F.GPU_MAX_K), (F.GPU_MAX_K - 15, None), (3000, None)],
)
def test_gpu_search_stays_within_the_selection_limit(gpu_faiss, k, gpu_k):
    base, queries = data(1, 4000, 3)
    be = gpu_faiss()
    got = be.knn(base, queries, k, "sqeuclidean", cache_key=("index", 1))
    assert FakeGpuIndex.searches == ([] if gpu_k is None else [gpu_k])
    want = F.FaissBackend().knn(base, queries, k, "sqeuclidean")  # the CPU index
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_a_gpu_that_refuses_k_falls_back_to_the_cpu(gpu_faiss):
    base, queries = data(2, 3000, 2)
    be = gpu_faiss(limit=1024)  # older faiss-gpu builds
    got = be.knn(base, queries, 600, "euclidean")
    assert FakeGpuIndex.searches == []  # 1216 candidates were refused
    want = F.FaissBackend().knn(base, queries, 600, "euclidean")
    np.testing.assert_array_equal(got[1], want[1])


def test_exact_knn_through_the_gpu_route_is_exact(gpu_faiss):
    base, queries = data(3, 2500, 4)
    base[100:140] = base[7]  # a tie group longer than the over-fetch margin
    queries[0] = base[7]
    be = gpu_faiss()
    got = distance.exact_knn(be, base, queries, 1100, "sqeuclidean", 1.0)
    want = distance.knn(base, queries, 1100, "sqeuclidean", backend="numpy")
    np.testing.assert_array_equal(got[1], want[1])
    assert max(FakeGpuIndex.searches) <= F.GPU_MAX_K


def test_every_thread_has_its_own_gpu_resources(gpu_faiss):
    base, queries = data(4, 300, 2)
    be = gpu_faiss()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def run():
        try:
            start.wait()
            for _ in range(3):
                be.knn(base, queries, 5, "ip")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(FakeResources.made) == 8
    assert all(r.users == {r.owner} for r in FakeResources.made)
