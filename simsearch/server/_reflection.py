"""Server reflection as ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection implements only v1alpha, and newer tools (grpcurl, Postman, grpc-js's
reflection client) ask v1 first. The two protocols are the same messages under another package
name, so v1 is served by the same servicer: its descriptor is v1alpha's with the package renamed
(added once to the default pool, so v1 is itself reflectable), and its method handler
(de)serialises with the v1alpha classes, whose wire format is identical.

The descriptors served are the ones compiled into simsearch/_proto, which protoc's Python plugin
strips of comments; ``protos/`` is the documentation (see the README).
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _v1_file_proto() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(fdp)
    old = f".{fdp.package}."
    fdp.name, fdp.package = _V1_FILE, V1_PACKAGE
    fdp.ClearField("options")
    for msg in fdp.message_type:
        for field in msg.field:
            if field.type_name.startswith(old):
                field.type_name = f".{V1_PACKAGE}." + field.type_name[len(old):]
    for service in fdp.service:
        for m in service.method:
            m.input_type = f".{V1_PACKAGE}." + m.input_type[len(old):]
            m.output_type = f".{V1_PACKAGE}." + m.output_type[len(old):]
    return fdp


def ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool | None = None):
    """The v1 reflection file descriptor, added to ``pool`` (the default) on first use."""
    pool = pool or descriptor_pool.Default()
    try:
        return pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(_v1_file_proto().SerializeToString())
        return pool.FindFileByName(_V1_FILE)


def enable_reflection(service_names, server: grpc.Server) -> None:
    """Serve reflection (v1 and v1alpha) for ``service_names`` plus the reflection services."""
    ensure_v1_descriptor()
    servicer = reflection.ReflectionServicer(tuple(service_names) + (V1_SERVICE, V1ALPHA_SERVICE))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": handler}),))
