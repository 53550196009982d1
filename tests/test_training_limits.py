"""Issue 16 §5: classifier training on the server is bounded and stoppable: at most
--max-training-jobs at once (others wait within their deadline or get RESOURCE_EXHAUSTED naming
the limit), a deadline or a cancel stops the worker within a second, memory bounds are refused up
front and shown in Stats, and queries keep their latency during a training."""

from __future__ import annotations

import re
import threading
import time

import grpc
import numpy as np
import psutil
import pytest

from simsearch import Index
from simsearch.client import Client, RemoteError
from simsearch.errors import ResourceExhaustedError
from simsearch.server import ServerConfig, create_server
from simsearch.wire import SERVICE, pb

from served import Served

N, DIM = 3000, 16
# An exact RBF svm on random labels with a tight tolerance: tens of seconds, far past any deadline here.
LONG = {"C": 100.0, "tol": 1e-6, "max_iter": 10_000_000}


def _fill(coll, n=N, dim=DIM, seed=0, unlabelled=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    for lo in range(0, n, 1000):
        coll.upsert([{"id": f"v{i}", "text": f"document {i} about topic {i % 50} and more words",
                      "vector": X[i], "label": None if i < unlabelled else ("a" if rng.random() < 0.5 else "b")}
                     for i in range(lo, min(n, lo + 1000))])
    return X


def _wait(pred, timeout=30.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached")


def _stopped_pids(err: str, why: str) -> list[int]:
    return [int(p) for p in re.findall(rf"training worker pid (\d+) stopped \({why}\)", err)]


def test_slots_deadline_and_cancel_of_a_served_process(tmp_path):
    with Served(tmp_path / "data", "--max-training-jobs", "1") as served:
        with Client(served.address, timeout=60) as client:
            coll = client.create_collection("v", dim=DIM)
            _fill(coll)
            stats = client.stats()
            assert stats["training_limits"]["max_training_jobs"] == 1
            # 1. a training past its deadline: DEADLINE_EXCEEDED, and its worker is gone within a second
            failures = []

            def long_training(timeout):
                with Client(served.address, timeout=timeout) as c:
                    try:
                        c.get_collection("v").train_classifier("long", params=LONG)
                    except RemoteError as exc:
                        failures.append((exc.code, time.monotonic()))

            t = threading.Thread(target=long_training, args=(6.0,))
            t.start()
            _wait(lambda: client.stats()["training_jobs_running"] == 1)
            # 2. no free slot: without a deadline refused at once, with one refused just before it
            with Client(served.address) as no_deadline:
                start = time.monotonic()
                with pytest.raises(ResourceExhaustedError, match="max_training_jobs=1"):
                    no_deadline.get_collection("v").train_classifier("other", kind="gmm")
                assert time.monotonic() - start < 2.0
            with Client(served.address, timeout=1.5) as short:
                start = time.monotonic()
                with pytest.raises(ResourceExhaustedError, match="max_training_jobs=1"):
                    short.get_collection("v").train_classifier("other", kind="gmm")
                assert 0.8 < time.monotonic() - start < 1.5  # it waited for a slot within its deadline
            t.join(30)
            assert [code for code, _ in failures] == ["DEADLINE_EXCEEDED"]
            deadline_at = failures[0][1]
            _wait(lambda: client.stats()["training_jobs_running"] == 0, timeout=5)
            stopped_after = time.monotonic() - deadline_at
            pids = _wait(lambda: _stopped_pids(served.stderr_text(), "deadline passed"), timeout=5)
            assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
            assert stopped_after < 1.0, stopped_after
            assert [i.name for i in coll.list_classifiers()] == []  # nothing stored
            # 3. a cancelled training stops within a second too
            with grpc.insecure_channel(served.address) as ch:
                call = ch.unary_unary(f"/{SERVICE}/TrainClassifier",
                                      request_serializer=pb.TrainClassifierRequest.SerializeToString,
                                      response_deserializer=pb.ClassifierInfo.FromString)
                import json

                fut = call.future(pb.TrainClassifierRequest(collection="v", name="c", params_json=json.dumps(LONG)))
                _wait(lambda: client.stats()["training_jobs_running"] == 1)
                time.sleep(0.5)
                cancelled_at = time.monotonic()
                fut.cancel()
                _wait(lambda: client.stats()["training_jobs_running"] == 0, timeout=5)
                assert time.monotonic() - cancelled_at < 1.0
            pids = _wait(lambda: _stopped_pids(served.stderr_text(), "cancelled"), timeout=5)
            assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
            # 4. a slot frees after each: a quick training succeeds
            info = coll.train_classifier("quick", kind="gmm", params={"n_components": 2})
            assert info.n_samples == N
    rc, err = served.terminate()
    assert rc == 0, err


def test_memory_bounds_are_refused_up_front_and_shown(tmp_path):
    server, _ = create_server(ServerConfig(data=None, port=0, max_kernel_cache_mb=64, max_nystroem_components=256,
                                           max_training_mb=80))
    server.start()
    try:
        with Client(server.address, timeout=60) as client:
            coll = client.create_collection("v", dim=DIM)
            _fill(coll)
            limits = client.stats()["training_limits"]
            assert limits == {"max_training_jobs": 1, "max_kernel_cache_bytes": 64 << 20,
                              "max_nystroem_components": 256, "max_training_bytes": 80 << 20}
            for params, limit in (({"cache_size": 128}, "max_kernel_cache_mb=64"),
                                  ({"cache_size": 16, "solver": "nystroem", "n_components": 512},
                                   "max_nystroem_components=256"),
                                  ({"cache_size": 64, "C": 1.0}, "max_training_mb=80")):
                start = time.monotonic()
                with pytest.raises(ResourceExhaustedError, match=limit):
                    coll.train_classifier("m", params=params)
                assert time.monotonic() - start < 5  # refused before any fitting
            assert client.stats()["training_jobs_running"] == 0
            info = coll.train_classifier("small", params={"cache_size": 16, "solver": "nystroem", "n_components": 64})
            assert info.n_samples == N and info.classes == ("a", "b")
    finally:
        server.stop(0)


def test_estimates_cover_the_kernel_cache_and_features():
    from simsearch.models import SVC, GaussianMixture

    small, big = SVC(cache_size=1).fit_memory_bytes(1000, 8), SVC(cache_size=512).fit_memory_bytes(1000, 8)
    assert big - small == 4 * 1000 * 1000 - (1 << 20)  # the whole 1000 x 1000 float32 matrix fits in 512 MiB
    ny = SVC(solver="nystroem", n_components=100).fit_memory_bytes(10_000, 8)
    assert ny >= 8 * 10_000 * 101
    assert SVC(solver="nystroem", n_components=100).approximation_size(50) == 50
    assert SVC().approximation_size(20_000) == 0 and SVC().approximation_size(20_001) == 1024  # auto: exact, then nystroem
    assert SVC(kernel="linear").approximation_size(10**6) == 0
    assert SVC(solver="fourier", n_components=300).approximation_size(10) == 300
    assert GaussianMixture(4, covariance_type="full").fit_memory_bytes(1000, 10) > \
        GaussianMixture(4, covariance_type="diag").fit_memory_bytes(1000, 10)


def test_svm_counts_the_unlabelled_vectors_it_skipped(tmp_path):
    server, _ = create_server(ServerConfig(data=None, port=0))
    server.start()
    try:
        with Index() as idx, Client(server.address, timeout=60) as client:
            for coll in (idx.create_collection("v", dim=DIM), client.create_collection("v", dim=DIM)):
                _fill(coll, n=60, unlabelled=7)
                info = coll.train_classifier("m", params={"kernel": "linear"})
                assert (info.n_samples, info.n_unlabelled) == (53, 7)
                assert coll.list_classifiers()[0].n_unlabelled == 7
                assert coll.train_classifier("g", kind="gmm").n_unlabelled == 0
    finally:
        server.stop(0)


def _p99(fn, n=150) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 99))


@pytest.mark.slow
def test_query_latency_during_training_stays_within_3x_idle(tmp_path):
    with Served(tmp_path / "data") as served:
        with Client(served.address, timeout=120) as client:
            coll = client.create_collection("v", dim=DIM)
            X = _fill(coll)
            _wait(lambda: client.stats()["warm"], timeout=120)
            near = lambda: coll.near_duplicates("document 7 about topic 7 and more words", k=5)  # noqa: E731
            knn = lambda: coll.search(X[3], k=10)  # noqa: E731
            _p99(near, 30), _p99(knn, 30)  # warm both paths
            idle = (_p99(near), _p99(knn))
            t = threading.Thread(target=lambda: pytest.raises(RemoteError, Client(served.address, timeout=25)
                                                              .get_collection("v").train_classifier, "long",
                                                              params=LONG))
            t.start()
            _wait(lambda: client.stats()["training_jobs_running"] == 1)
            time.sleep(1.0)
            busy = (_p99(near), _p99(knn))
            t.join(60)
    for (i, b), what in zip(zip(idle, busy), ("near-duplicates", "kNN")):
        assert b <= 3 * max(i, 0.002), f"{what} p99 {b * 1e3:.2f} ms during training vs {i * 1e3:.2f} ms idle"
