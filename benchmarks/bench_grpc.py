"""gRPC service over loopback against the same calls in process, from one run.

* ``ingest``: documents/s into an on-disk index, in process (``Collection.upsert`` per batch)
  and over gRPC (``RemoteCollection.upsert_stream``, one stream of batches).
* ``near_dup``: near-duplicate queries/s (queries inside batched requests count one each) and
  p50/p99 latency per request, with 1, 8 and 32 concurrent clients sending single-query requests,
  and with batched requests; in process: one thread calling the collection.
* ``knn``: vector kNN queries/s, likewise.

The server runs as ``simsearch serve`` in its own process (``--server subprocess``, as deployed;
it gets its own interpreter lock) or in this one (``--server inprocess``). Concurrent clients
are ``AsyncClient`` instances driven from one asyncio loop, so the client side costs little.
``agree`` is the fraction of gRPC answers equal to the in-process answers for the same queries
(the remote path must not change results). ``srv_ms`` is the server process's CPU time per request
(subprocess servers only): the server holds one interpreter lock, so 1000 / srv_ms bounds its
requests/s. The ``grpc-echo`` rows send the same single-query near-duplicate requests to a bare
grpcio server (same thread pool, no interceptors, no index) that answers with a fixed response: the
floor that grpcio itself sets. The ``grpc-idle`` / ``grpc+training`` rows are single-client
latencies just before and during a classifier training on the server (``vs_idle``: the p99 ratio),
and ``train_stop`` is how long that training took to stop once its deadline passed (p50_ms).
``python benchmarks/bench_grpc.py --smoke`` is tiny.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# The policy `simsearch serve` runs with (see server._app.serve); the in-process side gets the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter  # noqa: E402

from simsearch.aio_client import AsyncClient  # noqa: E402
from simsearch.client import Client  # noqa: E402
from simsearch.index import Document, Index  # noqa: E402

COLUMNS = ["op", "mode", "clients", "batch", "n", "per_s", "p50_ms", "p99_ms", "srv_ms", "agree", "vs_idle"]


def make_docs(n: int, dim: int, seed: int) -> list[Document]:
    """~60-word documents from a 20k-word vocabulary; every 10th is a light edit of an earlier one."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    docs, texts = [], []
    for i in range(n):
        if i % 10 == 9 and texts:
            words = texts[int(rng.integers(len(texts)))].split()
            words[int(rng.integers(len(words)))] = str(vocab[int(rng.integers(len(vocab)))])
        else:
            words = list(vocab[np.minimum(rng.zipf(1.3, 60) - 1, len(vocab) - 1)])
        text = " ".join(words)
        texts.append(text)
        docs.append(Document(id=f"doc{i}", text=text, vector=rng.normal(size=dim).astype(np.float32)))
    return docs


def _listen(cmd: list[str]):
    """(address, stop, pid) of a server process that prints ``listening on host:port`` first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+:\d+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"{cmd[0]} did not start: {line!r}")

    def stop():
        proc.terminate()
        proc.wait(60)

    return match.group(1), stop, proc.pid


def start_server(data: str, workers: int, inprocess: bool):
    """(address, stop, pid) of a server over ``data``; pid is None in process."""
    if inprocess:
        from simsearch.server import ServerConfig, create_server

        srv, _ = create_server(ServerConfig(data=data, port=0, workers=workers))
        srv.start()
        return srv.address, lambda: srv.stop(0), None
    script = Path(sys.executable).parent / "simsearch"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "simsearch"]
    return _listen(cmd + ["serve", "--data", data, "--port", "0", "--workers", str(workers), "--log-level", "warning"])


def echo_server(workers: int, dim: int) -> None:
    """A bare grpcio server (what ``grpc.server`` costs per call): GetCollection and
    QueryNearDuplicates answer fixed messages; runs until SIGTERM."""
    from concurrent import futures

    import grpc

    from simsearch.wire import SERVICE, info_to_pb, pb
    from simsearch.index import CollectionConfig, CollectionInfo

    info = info_to_pb(CollectionInfo("bench", CollectionConfig(dim=dim), 0))
    hits = pb.QueryNearDuplicatesResponse(results=[pb.NearDuplicateList(
        hits=[pb.NearDuplicate(id="doc1", jaccard=1.0, estimated_jaccard=1.0)])])
    handlers = {
        "GetCollection": grpc.unary_unary_rpc_method_handler(
            lambda request, context: info, request_deserializer=pb.GetCollectionRequest.FromString,
            response_serializer=pb.CollectionInfo.SerializeToString),
        "QueryNearDuplicates": grpc.unary_unary_rpc_method_handler(
            lambda request, context: hits, request_deserializer=pb.QueryNearDuplicatesRequest.FromString,
            response_serializer=pb.QueryNearDuplicatesResponse.SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_registered_method_handlers(SERVICE, handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"echo server: listening on 127.0.0.1:{port}", flush=True)
    stop.wait()
    server.stop(0)


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(lat: list[float], q: float) -> float:
    return round(1e3 * float(np.percentile(lat, q)), 3) if lat else None


def run_local(fn, requests: list, batch: int) -> dict:
    """Times ``fn`` per request on a worker thread, as the server calls the library (numba's parallel
    kernels show long stalls when called from the main thread right after a large upsert)."""
    lat: list[float] = []
    wall: list[float] = []

    def work():
        start = time.perf_counter()
        for r in requests:
            t = time.perf_counter()
            fn(r)
            lat.append(time.perf_counter() - t)
        wall.append(time.perf_counter() - start)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return {"n": len(requests) * batch, "per_s": round(len(requests) * batch / wall[0], 1),
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}


async def _run_remote(address: str, call, requests: list, clients: int, batch: int, pid: int | None):
    """``clients`` AsyncClients share the requests; ``call(collection, request)`` is awaited."""
    conns = [AsyncClient(address) for _ in range(clients)]
    colls = [await c.get_collection("bench") for c in conns]
    lat: list[float] = []
    answers: list = [None] * len(requests)
    todo = iter(range(len(requests)))

    async def worker(coll):
        for i in todo:
            t = time.perf_counter()
            answers[i] = await call(coll, requests[i])
            lat.append(time.perf_counter() - t)

    for coll in colls:  # warm-up: connect, one call each
        await call(coll, requests[0])
    cpu, start = _cpu_s(pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in colls))
    wall, cpu_end = time.perf_counter() - start, _cpu_s(pid)
    for c in conns:
        await c.close()
    stats = {"n": len(requests) * batch, "per_s": round(len(requests) * batch / wall, 1),
             "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
             "srv_ms": None if cpu is None or cpu_end is None else round(1e3 * (cpu_end - cpu) / len(requests), 3)}
    return stats, answers


def bench_queries(rep, op: str, local, server: tuple, args, single: list, batched: list, one, many) -> None:
    """``one(coll, q)`` / ``many(coll, qs)`` query a local or remote collection (remote: awaitables)."""
    expect = [one(local, q) for q in single]  # also the warm-up
    rep.add(op=op, mode="inprocess", clients=1, batch=1, **run_local(lambda q: one(local, q), single, 1))
    rep.add(op=op, mode="inprocess", clients=1, batch=args.query_batch,
            **run_local(lambda qs: many(local, qs), batched, args.query_batch))
    address, pid = server
    for clients in args.clients:
        stats, answers = asyncio.run(_run_remote(address, one, single, clients, 1, pid))
        agree = round(float(np.mean([a == e for a, e in zip(answers, expect)])), 4)
        rep.add(op=op, mode="grpc", clients=clients, batch=1, agree=agree, **stats)
    for clients in args.batch_clients:
        stats, _ = asyncio.run(_run_remote(address, many, batched, clients, args.query_batch, pid))
        rep.add(op=op, mode="grpc", clients=clients, batch=args.query_batch, **stats)


def bench_during_training(rep, client, server: tuple, args, texts: list, vectors: list) -> None:
    """Single-client near-duplicate and kNN latency while the server trains a classifier, against
    idle just before (``vs_idle`` is the p99 ratio; issue 16 asks for at most 3), and how long a
    training takes to stop once its deadline passes (``train_stop``: p50_ms is that time)."""
    address, pid = server
    rng = np.random.default_rng(args.seed + 2)
    n, dim = args.train_docs, args.dim
    X = rng.normal(size=(n, dim)).astype(np.float32)
    coll = client.create_collection("train", dim=dim)
    for lo in range(0, n, 1000):
        coll.upsert([Document(id=f"t{i}", vector=X[i], label="ab"[int(rng.integers(2))]) for i in range(lo, min(n, lo + 1000))])
    # an exact RBF svm on random labels with a tight tolerance: it runs until its deadline
    params = {"C": 100.0, "tol": 1e-6, "max_iter": 10_000_000}
    ops = (("near_dup", texts, lambda c, q: c.near_duplicates(q)), ("knn", vectors, lambda c, q: c.search(q, k=10)))
    idle = {op: asyncio.run(_run_remote(address, call, qs, 1, 1, pid))[0] for op, qs, call in ops}
    failed: list = []
    deadline = args.train_seconds

    def train():
        with Client(address, timeout=deadline) as c:
            try:
                c.get_collection("train").train_classifier("busy", params=params)
            except Exception as exc:  # noqa: BLE001 - DEADLINE_EXCEEDED is the point
                failed.append((getattr(exc, "code", type(exc).__name__), time.monotonic()))

    t = threading.Thread(target=train)
    t.start()
    while client.stats()["training_jobs_running"] == 0 and t.is_alive():
        time.sleep(0.02)
    time.sleep(0.5)
    busy = {}
    for op, qs, call in ops:
        busy[op] = asyncio.run(_run_remote(address, call, qs, 1, 1, pid))[0]
    training_ran = t.is_alive()
    t.join()
    while client.stats()["training_jobs_running"]:
        time.sleep(0.005)
    stop_ms = round(1e3 * (time.monotonic() - failed[0][1]), 1) if failed else None
    for op, _, _ in ops:
        rep.add(op=op, mode="grpc-idle", clients=1, batch=1, **idle[op])
        rep.add(op=op, mode="grpc+training" if training_ran else "grpc+training(ended early)", clients=1, batch=1,
                vs_idle=round(busy[op]["p99_ms"] / idle[op]["p99_ms"], 2), **busy[op])
    rep.add(op="train_stop", mode="grpc", clients=1, batch=1, n=n, p50_ms=stop_ms,
            agree=failed[0][0] if failed else "no deadline hit")


def bench_echo(rep, args, texts: list[str]) -> None:
    """The grpc-echo rows: single-query near-duplicate requests against :func:`echo_server`."""
    address, stop, pid = _listen([sys.executable, __file__, "--echo-server", "--workers", str(args.workers),
                                  "--dim", str(args.dim)])
    try:
        for clients in args.clients:
            stats, _ = asyncio.run(_run_remote(address, lambda c, q: c.near_duplicates(q), texts, clients, 1, pid))
            rep.add(op="near_dup", mode="grpc-echo", clients=clients, batch=1, **stats)
    finally:
        stop()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--ingest-batch", type=int, default=1_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=3_000, help="single-query requests per measurement")
    p.add_argument("--query-batch", type=int, default=64)
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    p.add_argument("--batch-clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--workers", type=int, default=16, help="server threads")
    p.add_argument("--server", choices=["subprocess", "inprocess"], default="subprocess")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-docs", type=int, default=5_000, help="labelled vectors of the during-training rows")
    p.add_argument("--train-seconds", type=float, default=30.0, help="deadline of the background training")
    p.add_argument("--no-training", action="store_true", help="skip the during-training rows")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--only-ingest", action="store_true", help="only the two ingest rows (in process, over gRPC)")
    p.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)  # the grpc-echo rows' server
    args = p.parse_args(argv)
    if args.echo_server:
        return echo_server(args.workers, args.dim)
    if args.smoke:
        args.docs, args.ingest_batch, args.queries, args.query_batch = 2_000, 250, 60, 8
        args.clients, args.batch_clients = [1, 8], [1]
        args.train_docs, args.train_seconds = 2_000, 6.0
    rep = Reporter("bench_grpc", "grpcio", "protobuf")
    docs = make_docs(args.docs, args.dim, args.seed)
    batches = [docs[i : i + args.ingest_batch] for i in range(0, len(docs), args.ingest_batch)]
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(len(docs), size=args.queries)
    texts = [docs[i].text for i in picks]
    vectors = [rng.normal(size=args.dim).astype(np.float32) for _ in range(args.queries)]
    nb = max(1, args.queries // args.query_batch)
    text_batches = [texts[i * args.query_batch:(i + 1) * args.query_batch] for i in range(nb)]
    vec_batches = [vectors[i * args.query_batch:(i + 1) * args.query_batch] for i in range(nb)]

    gc.collect()
    gc.freeze()  # the corpus is long-lived; without this, GC passes over it dominate the p99s
    with tempfile.TemporaryDirectory() as tmp:
        with Index(Path(tmp) / "local") as index:
            warm = index.create_collection("warm", dim=args.dim)
            warm.upsert(docs[:50])  # JIT warm-up outside the timing
            warm.near_duplicates(docs[0].text)
            local = index.create_collection("bench", dim=args.dim)
            start = time.perf_counter()
            for b in batches:
                local.upsert(b)
            wall = time.perf_counter() - start
            rep.add(op="ingest", mode="inprocess", clients=1, batch=args.ingest_batch, n=len(docs),
                    per_s=round(len(docs) / wall, 1))
            # the local collection's background work (merges, its HNSW build) ends before the
            # server starts: in this process it would take a core from the gRPC rows' server
            if hasattr(local, "wait_indexed"):
                local.wait_indexed()
            engine = getattr(local, "_engine", None)
            if engine is not None:
                engine.wait_merges()

            address, stop, pid = start_server(str(Path(tmp) / "served"), args.workers, args.server == "inprocess")
            try:
                with Client(address, timeout=600) as client:
                    client.wait_ready(60)
                    w = client.create_collection("warm", dim=args.dim)
                    w.upsert_stream([docs[:50]])
                    w.near_duplicates(docs[0].text)
                    remote = client.create_collection("bench", dim=args.dim)
                    start = time.perf_counter()
                    result = remote.upsert_stream(iter(batches))
                    wall = time.perf_counter() - start
                    assert result.upserted == len(docs)
                    rep.add(op="ingest", mode="grpc", clients=1, batch=args.ingest_batch, n=len(docs),
                            per_s=round(len(docs) / wall, 1))
                if args.only_ingest:
                    return
                bench_queries(rep, "near_dup", local, (address, pid), args, texts, text_batches,
                              lambda c, q: c.near_duplicates(q), lambda c, qs: c.near_duplicates_batch(texts=qs))
                bench_queries(rep, "knn", local, (address, pid), args, vectors, vec_batches,
                              lambda c, q: c.search(q, k=10), lambda c, qs: c.search_batch(vectors=qs, k=10))
                if not args.no_training:
                    with Client(address, timeout=600) as client:
                        bench_during_training(rep, client, (address, pid), args, texts, vectors)
            finally:
                stop()
    bench_echo(rep, args, texts)
    print()
    print(rep.table(COLUMNS))


if __name__ == "__main__":
    main()
