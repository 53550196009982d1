"""The gRPC server in process: generated code, health, reflection, auth, TLS, limits, deadlines,
internal errors, malformed bytes and graceful shutdown."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from simsearch.server import ServerConfig, create_server
from simsearch.wire import pb
from simsearch.wire import pb_grpc
from simsearch.client import Client, RemoteError
from simsearch.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from simsearch.index import Collection, Index

ROOT = Path(__file__).resolve().parent.parent


def _start(tmp_path, **kw):
    server, _ = create_server(ServerConfig(data=str(tmp_path / "srv"), port=0, workers=4, grace_s=2.0, **kw))
    return server.start()


def _docs(n, prefix="d", dim=None):
    rng = np.random.default_rng(0)
    return [{"id": f"{prefix}{i}", "text": f"document number {i} about {prefix} and more words here",
             **({"vector": rng.normal(size=dim).tolist()} if dim else {})} for i in range(n)]


# -- protocol -------------------------------------------------------------------------------
def test_generated_code_is_up_to_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    GRPCIO_TOOLS_VERSION = gen.GRPCIO_TOOLS_VERSION
    try:
        have = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        pytest.skip("grpcio-tools is not installed (pip install '.[codegen]')")
    if have != GRPCIO_TOOLS_VERSION:
        pytest.skip(f"grpcio-tools {have} is installed, the pin is {GRPCIO_TOOLS_VERSION}")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"regenerating the protos changes them:\n{proc.stdout}\n{proc.stderr}"


def test_service_declares_every_rpc():
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["SimSearch"].methods}
    assert methods == {
        "CreateCollection", "GetCollection", "ListCollections", "DropCollection", "Upsert", "UpsertStream", "Delete",
        "Get", "Count", "Scroll", "QueryNearDuplicates", "SearchVectors", "FindDuplicates", "Stats",
        "TrainClassifier", "ListClassifiers", "Classify", "DeleteClassifier",
        "Snapshot", "ListSnapshots", "DeleteSnapshot",
    }
    assert pb.DESCRIPTOR.package == "simsearch.v1"


def test_generated_stub_round_trip(grpc_server):
    """What a client generated from the .proto alone sees (here the committed Python stub)."""
    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = pb_grpc.SimSearchStub(ch)
        info = stub.CreateCollection(pb.CreateCollectionRequest(name="c", config=pb.CollectionConfig(dim=3)))
        assert info.config.num_perm == 128 and info.config.dim == 3 and info.config.metric == "cosine"
        docs = [pb.Document(id=f"x{i}", text=f"the same words again and again {i // 2}",
                            vector=pb.Vector(values=[i, 1.0, 0.0])) for i in range(6)]
        acked = stub.UpsertStream(iter([pb.UpsertRequest(collection="c", documents=docs[:3]),
                                        pb.UpsertRequest(collection="c", documents=docs[3:])]))
        assert (acked.batches, acked.upserted, acked.replaced) == (2, 6, 0)
        resp = stub.SearchVectors(pb.SearchVectorsRequest(collection="c", vectors=pb.VectorList(
            values=[pb.Vector(values=[5.0, 1.0, 0.0])]), k=2, metric="euclidean"))
        assert [n.id for n in resp.results[0].neighbors] == ["x5", "x4"]
        got = stub.Get(pb.GetRequest(collection="c", ids=["x2"])).documents[0]
        assert list(got.vector.values) == [2.0, 1.0, 0.0] and not got.HasField("label")
        clusters = list(stub.FindDuplicates(pb.FindDuplicatesRequest(collection="c", threshold=0.5)))
        assert clusters and all(len(c.ids) == len(c.jaccard) for c in clusters)


# -- health, reflection ---------------------------------------------------------------------
def test_health_and_reflection(grpc_server):
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(grpc_server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "simsearch.v1.SimSearch"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
                health_pb2.HealthCheckResponse.SERVING
        db = ProtoReflectionDescriptorDatabase(ch)
        assert {"simsearch.v1.SimSearch", "grpc.health.v1.Health"} <= set(db.get_services())
        pool = descriptor_pool.DescriptorPool(db)
        service = pool.FindServiceByName("simsearch.v1.SimSearch")
        method = service.methods_by_name["CreateCollection"]
        # a client with nothing but the reflected schema: build messages from the descriptors
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        call = ch.unary_unary("/simsearch.v1.SimSearch/CreateCollection",
                              request_serializer=req_cls.SerializeToString, response_deserializer=resp_cls.FromString)
        info = call(req_cls(name="reflected"))
        assert info.name == "reflected" and info.config.shingle == "word"


# -- auth and TLS ---------------------------------------------------------------------------
def test_bearer_token(tmp_path):
    server = _start(tmp_path, token="s3cret-token")
    try:
        with Client(server.address, token="s3cret-token") as good:
            good.create_collection("c")
            assert good.stats()["auth_required"] is True
        for token in (None, "wrong", "s3cret-token-but-longer"):
            with Client(server.address, token=token) as bad:
                with pytest.raises(UnauthenticatedError, match="bearer token"):
                    bad.get_collection("c")
                with pytest.raises(UnauthenticatedError):
                    bad.get_collection("c").find_duplicates()  # server streaming too
        with grpc.insecure_channel(server.address) as ch:  # health needs no token
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            stream = ch.stream_unary("/simsearch.v1.SimSearch/UpsertStream",
                                     request_serializer=pb.UpsertRequest.SerializeToString,
                                     response_deserializer=pb.UpsertStreamResponse.FromString)
            with pytest.raises(grpc.RpcError) as info:
                stream(iter([pb.UpsertRequest(collection="c", documents=[pb.Document(id="a")])]))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with Client(server.address, token="s3cret-token") as good:
            assert good.get_collection("c").count() == 0  # the rejected stream wrote nothing
    finally:
        server.stop(0)


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command line to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    server = _start(tmp_path, tls_cert=str(cert), tls_key=str(key), token="t")
    try:
        with Client(server.address, token="t", tls=str(cert)) as client:
            c = client.create_collection("c")
            c.upsert(_docs(3))
            assert c.count() == 3 and client.stats()["tls"] is True
        with Client(server.address, token="t", tls=cert.read_bytes(), timeout=2) as client:
            assert client.get_collection("c").count() == 3
        with Client(server.address, token="t", timeout=2) as plaintext:  # plaintext to a TLS port fails
            with pytest.raises(RemoteError) as info:
                plaintext.list_collections()
            assert info.value.code == "UNAVAILABLE"
    finally:
        server.stop(0)


# -- limits ---------------------------------------------------------------------------------
def test_limits_name_themselves_and_server_keeps_serving(tmp_path):
    server = _start(tmp_path, max_message_mb=0.25, max_batch=20, max_k=50, max_text_bytes=2000)
    try:
        with Client(server.address) as client:
            c = client.create_collection("c", dim=4)
            c.upsert(_docs(10, dim=4))
            with pytest.raises(ResourceExhaustedError, match="max_batch is 20"):
                c.upsert(_docs(21))
            with pytest.raises(ResourceExhaustedError, match="max_batch is 20"):
                c.get([f"d{i}" for i in range(21)])
            with pytest.raises(ResourceExhaustedError, match="max_text_bytes"):
                c.upsert([{"id": "long", "text": "word " * 500}])
            with pytest.raises(InvalidArgumentError, match="max_k=50"):  # the status of k over the library's ceiling
                c.near_duplicates("document number 1", k=51)
            with pytest.raises(InvalidArgumentError, match="max_k=50"):
                c.search([0.0, 1.0, 0.0, 0.0], k=51)
            assert len(c.search([0.0, 1.0, 0.0, 0.0], k=50)) == 10
            with pytest.raises(ResourceExhaustedError, match="max message size.*--max-message-mb"):
                c.upsert([{"id": "huge", "text": "word " * 60_000}])  # the client leaves text limits to the server
            with pytest.raises(InvalidArgumentError, match="over 65536 bytes"):  # the library's check, client side
                c.upsert([{"id": "huge", "metadata": {"blob": "x" * 300_000}}])
            stats = client.stats()
            assert stats["limits"] == {"max_message_bytes": 262144, "max_batch": 20, "max_k": 50,
                                       "max_text_bytes": 2000}
            assert c.count() == 10  # nothing half-written, and still serving
    finally:
        server.stop(0)


# -- deadlines ------------------------------------------------------------------------------
def test_deadline_expired_in_queue_is_not_run(tmp_path, monkeypatch):
    """With one worker busy, a call whose deadline passes while it waits is refused, not run."""
    started = threading.Event()
    original = Collection.count

    def slow_count(self):
        started.set()
        time.sleep(0.8)
        return original(self)

    server, _ = create_server(ServerConfig(data=str(tmp_path / "srv"), port=0, workers=1))
    server.start()
    try:
        with Client(server.address) as client, Client(server.address, timeout=0.2) as quick:
            c = client.create_collection("c")
            qc = quick.get_collection("c")
            monkeypatch.setattr(Collection, "count", slow_count)
            slow = threading.Thread(target=c.count)
            slow.start()
            assert started.wait(5)
            with pytest.raises(RemoteError) as info:
                qc.upsert(_docs(3))  # queued behind the slow count until its deadline passes
            assert info.value.code == "DEADLINE_EXCEEDED"
            slow.join()
            monkeypatch.setattr(Collection, "count", original)
            assert c.count() == 0
    finally:
        server.stop(0)


def test_servicer_refuses_expired_calls():
    from simsearch.server._interceptors import StatusError
    from simsearch.server._servicer import _guard

    class Ctx:
        def time_remaining(self):
            return 0.0

    ran = []
    with pytest.raises(StatusError) as info:
        _guard(lambda req, ctx: ran.append(req), False)(pb.CountRequest(), Ctx())
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and not ran


# -- errors ---------------------------------------------------------------------------------
def test_unknown_error_is_internal_with_generic_message(grpc_server, monkeypatch, caplog):
    def broken(self, ids):
        raise ZeroDivisionError("secret detail /etc/passwd")

    with Client(grpc_server.address) as client:
        c = client.create_collection("c")
        c.upsert(_docs(2))
        monkeypatch.setattr(Collection, "get", broken)
        with caplog.at_level(logging.ERROR, logger="simsearch.server"):
            with pytest.raises(RemoteError) as info:
                c.get(["d0"])
        assert info.value.code == "INTERNAL"
        msg = str(info.value)
        assert "ref " in msg and "secret" not in msg and "Traceback" not in msg
        ref = msg.split("ref ")[1].split(")")[0]
        logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
        assert ref in logged and "ZeroDivisionError" in caplog.text
        monkeypatch.undo()
        assert c.get(["d0"])[0].id == "d0"  # still serving


def test_error_class_survives_the_wire(grpc_server):
    """The trailing metadata names the class, so subclasses sharing a status come back exact."""
    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = pb_grpc.SimSearchStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Count(pb.CountRequest(collection="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("simsearch-error-class", "NotFoundError") in tuple(info.value.trailing_metadata())
    with Client(grpc_server.address) as client:
        client.create_collection("p", store_shingles=False)
        with pytest.raises(FailedPreconditionError, match="store_shingles"):
            client.get_collection("p").near_duplicates("some words here", exact=True)
        with pytest.raises(NotFoundError):
            client.get_collection("nope")


def test_malformed_bytes_are_invalid_argument(grpc_server):
    with grpc.insecure_channel(grpc_server.address) as ch:
        for method in ("Count", "Upsert", "SearchVectors"):
            raw = ch.unary_unary(f"/simsearch.v1.SimSearch/{method}")
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\x0a\xff\xff\xff\xff\x0f")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert "not a valid simsearch.v1." in info.value.details()
        stream = ch.stream_unary("/simsearch.v1.SimSearch/UpsertStream")
        with pytest.raises(grpc.RpcError) as info:
            stream(iter([b"\x12\x03abc"]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert pb_grpc.SimSearchStub(ch).Stats(pb.StatsRequest()).version


# -- shutdown -------------------------------------------------------------------------------
def test_graceful_stop_drains_in_flight_calls_then_closes(tmp_path, monkeypatch):
    started = threading.Event()
    original = Collection.count

    def slow_count(self):
        if not started.is_set():  # only the first call is the slow in-flight one
            started.set()
            time.sleep(2.0)
        return original(self)

    index = Index(tmp_path / "idx")
    server, _ = create_server(ServerConfig(port=0, grace_s=5.0), index=index)  # the Watch holds it to the end
    server.start()
    client = Client(server.address)
    c = client.create_collection("c")
    c.upsert(_docs(4))
    watch_channel = grpc.insecure_channel(server.address)
    watch = health_pb2_grpc.HealthStub(watch_channel).Watch(health_pb2.HealthCheckRequest(service="simsearch.v1.SimSearch"))
    statuses = []
    watcher = threading.Thread(target=lambda: statuses.extend(r.status for r in _until_error(watch)))
    watcher.start()
    deadline = time.monotonic() + 5
    while not statuses and time.monotonic() < deadline:  # the watch has seen the server up
        time.sleep(0.01)
    monkeypatch.setattr(Collection, "count", slow_count)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("count", c.count()))
    t.start()
    assert started.wait(5)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    # draining: new calls are refused (polled: on a busy machine the stop takes a moment to begin),
    # health tells watchers NOT_SERVING, and the in-flight call is still running meanwhile
    deadline = time.monotonic() + 1.5
    code = None
    while code != "UNAVAILABLE" and time.monotonic() < deadline:
        try:
            with Client(server.address, timeout=1) as probe:
                probe.list_collections()
        except RemoteError as exc:
            code = exc.code
        time.sleep(0.02)
    assert code == "UNAVAILABLE"
    assert t.is_alive()
    t.join(10)
    stopper.join(10)
    watcher.join(5)
    watch_channel.close()
    assert result["count"] == 4  # the in-flight call finished
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert statuses[:1] == [serving] and not_serving in statuses
    assert server.wait_for_termination(0)
    assert index.list_collections()  # a passed-in index is left open for its owner
    index.close()
    client.close()


def _until_error(stream):
    try:
        yield from stream
    except grpc.RpcError:
        return


def test_owned_index_is_closed_on_stop(tmp_path):
    server = _start(tmp_path)
    with Client(server.address) as client:
        client.create_collection("c").upsert(_docs(3))
    server.stop()
    with pytest.raises(FailedPreconditionError, match="closed"):
        server.index.list_collections()
    with Index(tmp_path / "srv") as reopened:
        assert reopened.get_collection("c").count() == 3


def test_classifiers_trained_over_grpc_survive_a_restart(tmp_path):
    """Models live in the data directory: a restarted server, and the embedded Index on the same
    files, list them and classify exactly as the first server did."""
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(size=(20, 3)), rng.normal(loc=4.0, size=(20, 3))]).astype(np.float32)
    docs = [{"id": f"v{i}", "vector": X[i], "label": "far" if i >= 20 else "near"} for i in range(40)]
    Q = np.vstack([X[::7] + 0.1, np.full((1, 3), 30.0)]).astype(np.float32)

    def snapshot(coll):
        return (coll.list_classifiers(), coll.classify(Q, model="s", k=3), coll.classify(ids=["v0", "v39"], model="g"))

    server = _start(tmp_path)
    with Client(server.address) as client:
        coll = client.create_collection("c", dim=3, metric="euclidean")
        coll.upsert(docs)
        coll.train_classifier("s", kind="svm", params={"kernel": "rbf"})
        coll.train_classifier("g", kind="gmm", params={"n_components": 2})
        coll.train_classifier("gone", kind="gmm")
        coll.delete_classifier("gone")
        before = snapshot(coll)
    server.stop()
    assert [i.name for i in before[0]] == ["g", "s"] and before[2][1].component != before[2][0].component
    server = _start(tmp_path)
    try:
        with Client(server.address) as client:
            assert snapshot(client.get_collection("c")) == before
    finally:
        server.stop()
    with Index(tmp_path / "srv") as reopened:
        assert snapshot(reopened.get_collection("c")) == before


def test_config_validation():
    with pytest.raises(InvalidArgumentError, match="tls-key"):
        create_server(ServerConfig(port=0, tls_cert="c.pem"))
    with pytest.raises(InvalidArgumentError, match="max_k"):
        create_server(ServerConfig(port=0, max_k=0))
