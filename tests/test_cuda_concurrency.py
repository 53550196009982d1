"""The GPU backend under concurrency: 16 threads at once get exactly what a serial run gets.

On the CUDA simulator in the default suite (where simulated launches are serialised, so these
tests check the host code around them: per-thread streams, staging buffers, plans, caches), and
on the device under ``-m "gpu or cuda"``.
"""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

import simsearch
from simsearch.backends import get_backend
from simsearch.errors import BackendUnavailableError

pytestmark = pytest.mark.cuda

THREADS = 16

try:
    GPU = get_backend("cupy")
except BackendUnavailableError as exc:  # the default suite always has the simulator
    GPU = None
    pytest.skip(f"no GPU backend here: {exc}", allow_module_level=True)


def _texts(seed: int, n: int = 6) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "Σίσυφος", "İstanbul", "naïve", "x_y", "42", "日本語"]
    base = " ".join(rng.choice(words, 12))
    return [base] + [base + " " + " ".join(rng.choice(words, int(rng.integers(0, 4)))) for _ in range(n - 1)]


def _work(seed: int):
    """One thread's share, small: MinHash of texts, find_duplicates or kNN, by ``seed % 3``."""
    texts = _texts(seed, n=4)
    if seed % 3 == 0:
        return (simsearch.minhash(texts, num_perm=16, ngram=2, backend=GPU),)
    if seed % 3 == 1:
        dup = simsearch.find_duplicates(texts, threshold=0.5, num_perm=16, ngram=2, backend=GPU)
        return dup.pairs, dup.jaccard, dup.clusters
    rng = np.random.default_rng(seed)
    base = rng.integers(-3, 4, (40, 5)).astype(np.float32)
    return simsearch.distance.knn(base, base[:3] + np.float32(0.5), 4, "euclidean", backend=GPU)


def test_sixteen_threads_match_a_serial_run():
    serial = [_work(s) for s in range(THREADS)]
    got: list = [None] * THREADS
    errors: list = []
    barrier = threading.Barrier(THREADS)

    def run(s):
        try:
            barrier.wait()
            got[s] = _work(s)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[0]
    for s in range(THREADS):
        for a, b in zip(got[s], serial[s]):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    # and the serial GPU run is the numpy reference
    ref = simsearch.minhash(_texts(3, n=4), num_perm=16, ngram=2, backend="numpy")
    np.testing.assert_array_equal(serial[3][0], ref)


def test_a_gpu_collection_under_concurrent_clients_stores_numba_signatures(tmp_path):
    """The server's concurrency workload against a server whose index runs on the GPU backend:
    every stored signature equals numba's signature of the stored text."""
    import test_grpc_concurrency as TC

    from simsearch.client import Client
    from simsearch.server import ServerConfig, create_server

    data = tmp_path / "gpu-server"
    server, _ = create_server(ServerConfig(data=str(data), port=0, grace_s=2.0, workers=8, backend="cupy"))
    server.start()
    try:
        assert server.index.backend == "cupy"
        with Client(server.address) as client:
            client.create_collection("c", dim=TC.DIM, threshold=0.5, num_perm=32)
        errors: list = []
        written: set = set()
        lock = threading.Lock()
        logs = [[] for _ in range(THREADS)]
        threads = [threading.Thread(target=TC._worker, args=(server.address, t, logs[t], written, lock, errors),
                                    kwargs={"ops": 4}) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors[0]
    finally:
        server.stop(0)
        server.index.close()
    db = sqlite3.connect(str(data / "simsearch.db"))
    rows = db.execute("SELECT ext_id, text, signature FROM documents WHERE signature IS NOT NULL").fetchall()
    db.close()
    assert rows
    texts = [r[1] for r in rows]
    want = simsearch.minhash(texts, num_perm=32, seed=1, ngram=5, backend="numba")
    got = np.stack([np.frombuffer(r[2], dtype="<u4") for r in rows])
    np.testing.assert_array_equal(got, want)
