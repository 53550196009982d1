"""Issue 16 §3-4: the port opens at once with health NOT_SERVING until the kernels are warm
(calls meanwhile are served), and reflection answers as grpc.reflection.v1 and v1alpha. Against
real ``simsearch serve`` subprocesses."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from simsearch.client import Client
from simsearch.server._reflection import V1_SERVICE, ensure_v1_descriptor

from served import Served

NOT_SERVING, SERVING = health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING


def _health_until_serving(address: str, timeout: float, during=None) -> tuple[list[int], list]:
    """Health statuses from now until SERVING; ``during()`` runs once while NOT_SERVING is seen."""
    seen, results = [], []
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            status = stub.Check(health_pb2.HealthCheckRequest(service="simsearch.v1.SimSearch"), timeout=10).status
            seen.append(status)
            if status == SERVING:
                return seen, results
            if during is not None and not results:
                results.append((during(), stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status))
            time.sleep(0.02)
    raise AssertionError(f"health never turned SERVING within {timeout}s: {seen[-5:]}")


def _reflect(address: str, service: str, request_cls, response_cls, request) -> list:
    with grpc.insecure_channel(address) as ch:
        call = ch.stream_stream(f"/{service}/ServerReflectionInfo", request_serializer=request_cls.SerializeToString,
                                response_deserializer=response_cls.FromString)
        return list(call(iter([request]), timeout=30))


def _v1_classes():
    ensure_v1_descriptor()
    pool = descriptor_pool.Default()
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.reflection.v1.{n}"))
                 for n in ("ServerReflectionRequest", "ServerReflectionResponse"))


def test_health_turns_serving_after_warm_up_and_reflection_v1(tmp_path):
    with Served(tmp_path / "data") as served:
        seen, _ = _health_until_serving(served.address, 120)
        assert seen[-1] == SERVING and set(seen[:-1]) <= {NOT_SERVING}, seen
        req_v1, resp_v1 = _v1_classes()
        for service, req_cls, resp_cls in ((V1_SERVICE, req_v1, resp_v1),
                                           ("grpc.reflection.v1alpha.ServerReflection",
                                            reflection_pb2.ServerReflectionRequest,
                                            reflection_pb2.ServerReflectionResponse)):
            [resp] = _reflect(served.address, service, req_cls, resp_cls, req_cls(list_services=""))
            names = {s.name for s in resp.list_services_response.service}
            assert {"simsearch.v1.SimSearch", "grpc.health.v1.Health", V1_SERVICE,
                    "grpc.reflection.v1alpha.ServerReflection"} <= names, (service, names)
            [resp] = _reflect(served.address, service, req_cls, resp_cls,
                              req_cls(file_containing_symbol="simsearch.v1.SimSearch"))
            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in resp.file_descriptor_response.file_descriptor_proto]
            methods = {m.name for f in files for s in f.service if s.name == "SimSearch" for m in s.method}
            assert {"QueryNearDuplicates", "Stats", "TrainClassifier"} <= methods
        # v1 describes itself, so a client can reflect the reflection service too
        [resp] = _reflect(served.address, V1_SERVICE, req_v1, resp_v1, req_v1(file_containing_symbol=V1_SERVICE))
        [fdp] = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in resp.file_descriptor_response.file_descriptor_proto]
        assert fdp.package == "grpc.reflection.v1" and fdp.service[0].name == "ServerReflection"
        assert {m.name for m in fdp.message_type} >= {"ServerReflectionRequest", "ServerReflectionResponse"}
    _, err = served.terminate()
    assert "health SERVING" in err


@pytest.mark.slow
def test_first_start_serves_calls_while_not_serving(tmp_path):
    """A fresh numba cache, as after an install: tens of seconds of compiling with the port open."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    with Served(tmp_path / "data", env=env) as served:
        def call_meanwhile():
            with Client(served.address, timeout=120) as client:
                c = client.create_collection("early")
                c.upsert([{"id": "a", "text": "a call during the warm-up is served"}])
                return c.count()

        seen, results = _health_until_serving(served.address, 300, during=call_meanwhile)
        assert seen[0] == NOT_SERVING and seen[-1] == SERVING
        assert results and results[0][0] == 1, results  # served, not refused
    _, err = served.terminate()
    assert "health SERVING" in err
