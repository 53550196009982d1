"""Generated protobuf and gRPC code, by protocol version."""
