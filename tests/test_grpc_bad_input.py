"""The bad-input matrix: every RPC with malformed fields gets the right status code, and the
server still serves afterwards. Requests are built from the generated messages, as a client in
another language would build them."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from simsearch.server import ServerConfig, create_server
from simsearch.wire import pb

TOKEN = "matrix-token"
C = grpc.StatusCode
LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cfg = ServerConfig(data=str(tmp_path_factory.mktemp("matrix")), port=0, token=TOKEN, max_message_mb=LIMIT_MB,
                       max_batch=100, max_k=100, workers=4)
    srv, _ = create_server(cfg)
    srv.start()
    with grpc.insecure_channel(srv.address) as ch:
        call = _caller(ch)
        call("CreateCollection", pb.CreateCollectionRequest(name="docs", config=pb.CollectionConfig(dim=4)))
        call("CreateCollection", pb.CreateCollectionRequest(name="plain", config=pb.CollectionConfig(
            store_shingles=False)))
        call("Upsert", pb.UpsertRequest(collection="docs", documents=[
            pb.Document(id=f"d{i}", text=f"some words for document {i} here", vector=_vec([i, 1, 2, 3]))
            for i in range(10)] + [pb.Document(id="novec", text="a doc without a vector")]))
        call("Upsert", pb.UpsertRequest(collection="plain", documents=[pb.Document(id="p", text="plain words")]))
        for name, labels in (("labelled", "ab"), ("single", "a")):
            call("CreateCollection", pb.CreateCollectionRequest(name=name, config=pb.CollectionConfig(dim=4)))
            call("Upsert", pb.UpsertRequest(collection=name, documents=[
                pb.Document(id=f"l{i}", vector=_vec([i % 2, i, 1, 0]), label=labels[i % len(labels)],
                            metadata_json=f'{{"i": {i}}}') for i in range(12)]))
        call("TrainClassifier", pb.TrainClassifierRequest(collection="labelled", name="m",
                                                          params_json='{"kernel": "linear"}'))
        call("TrainClassifier", pb.TrainClassifierRequest(collection="docs", name="g", kind="gmm"))
    yield srv
    srv.stop(0)


def _vec(values):
    return pb.Vector(values=values)


def _caller(channel, token=TOKEN):
    methods = {m.name: m for m in pb.DESCRIPTOR.services_by_name["SimSearch"].methods}

    def call(name, request):
        m = methods[name]
        kind = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")[2 * m.client_streaming + m.server_streaming]
        fn = getattr(channel, kind)(f"/simsearch.v1.SimSearch/{name}",
                                    request_serializer=getattr(pb, m.input_type.name).SerializeToString,
                                    response_deserializer=getattr(pb, m.output_type.name).FromString)
        md = (("authorization", f"Bearer {token}"),) if token is not None else None
        if m.client_streaming:
            return fn(iter(request), metadata=md, timeout=10)
        out = fn(request, metadata=md, timeout=10)
        return list(out) if m.server_streaming else out

    return call


def _docs(n, prefix="n"):
    return [pb.Document(id=f"{prefix}{i}", text="x y z") for i in range(n)]


NAN = math.nan
NQ = pb.QueryNearDuplicatesRequest
SV = pb.SearchVectorsRequest
BIG = "x" * int(LIMIT_MB * 1024 * 1024 + 1000)

MATRIX = [
    # collections
    ("CreateCollection", pb.CreateCollectionRequest(name=""), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="bad name"), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="docs"), C.ALREADY_EXISTS),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(num_perm=0)), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(threshold=NAN)), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(metric="bogus")), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(dim=-1)), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(
        weights=pb.Weights(false_positive=0.9, false_negative=0.9))), C.INVALID_ARGUMENT),
    ("CreateCollection", pb.CreateCollectionRequest(name="n", config=pb.CollectionConfig(seed=-1)), C.INVALID_ARGUMENT),
    ("GetCollection", pb.GetCollectionRequest(), C.INVALID_ARGUMENT),
    ("GetCollection", pb.GetCollectionRequest(name="nope"), C.NOT_FOUND),
    ("DropCollection", pb.DropCollectionRequest(), C.INVALID_ARGUMENT),
    ("DropCollection", pb.DropCollectionRequest(name="nope"), C.NOT_FOUND),
    # writes
    ("Upsert", pb.UpsertRequest(documents=_docs(1)), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="nope", documents=_docs(1)), C.NOT_FOUND),
    ("Upsert", pb.UpsertRequest(collection="docs"), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=_docs(101)), C.RESOURCE_EXHAUSTED),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", vector=_vec([1, 2]))]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", vector=_vec([NAN] * 4))]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", vector=_vec([]))]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=_docs(2, "same")[:1] * 2), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", metadata_json="{")]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", metadata_json="[1]")]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="")]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", text="")]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="plain", documents=[pb.Document(id="w", vector=_vec([1.0]))]), C.INVALID_ARGUMENT),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", text=BIG)]), C.RESOURCE_EXHAUSTED),
    ("UpsertStream", [pb.UpsertRequest(collection="nope", documents=_docs(1))], C.NOT_FOUND),
    ("UpsertStream", [pb.UpsertRequest(collection="docs", documents=_docs(1, "s")),
                      pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", vector=_vec([NAN] * 4))])],
     C.INVALID_ARGUMENT),
    ("UpsertStream", [pb.UpsertRequest(collection="docs", documents=_docs(101))], C.RESOURCE_EXHAUSTED),
    ("UpsertStream", [pb.UpsertRequest(collection="docs", documents=[pb.Document(id="w", text=BIG)])], C.RESOURCE_EXHAUSTED),
    ("Delete", pb.DeleteRequest(collection="nope", ids=["d1"]), C.NOT_FOUND),
    ("Delete", pb.DeleteRequest(collection="docs", ids=["zzz"]), C.NOT_FOUND),
    ("Delete", pb.DeleteRequest(collection="docs", ids=[""]), C.INVALID_ARGUMENT),
    ("Delete", pb.DeleteRequest(collection="docs", ids=[f"x{i}" for i in range(101)]), C.RESOURCE_EXHAUSTED),
    # reads
    ("Get", pb.GetRequest(ids=["d1"]), C.INVALID_ARGUMENT),
    ("Get", pb.GetRequest(collection="nope", ids=["d1"]), C.NOT_FOUND),
    ("Get", pb.GetRequest(collection="docs", ids=["d1", "zzz"]), C.NOT_FOUND),
    ("Get", pb.GetRequest(collection="docs", ids=["d1"] * 101), C.RESOURCE_EXHAUSTED),
    ("Count", pb.CountRequest(), C.INVALID_ARGUMENT),
    ("Count", pb.CountRequest(collection="nope"), C.NOT_FOUND),
    # near-duplicates
    ("QueryNearDuplicates", NQ(collection="nope", texts=pb.StringList(values=["a b"])), C.NOT_FOUND),
    ("QueryNearDuplicates", NQ(collection="docs"), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a"]), ids=pb.StringList(values=["d1"])),
     C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", ids=pb.StringList(values=["zzz"])), C.NOT_FOUND),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"]), k=0), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"]), k=-5), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"]), k=101), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"]), threshold=NAN), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"]), threshold=2), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=[""])), C.INVALID_ARGUMENT),
    ("QueryNearDuplicates", NQ(collection="docs", texts=pb.StringList(values=["a b"] * 101)), C.RESOURCE_EXHAUSTED),
    ("QueryNearDuplicates", NQ(collection="plain", texts=pb.StringList(values=["a b"]), exact=True),
     C.FAILED_PRECONDITION),
    # vectors
    ("SearchVectors", SV(collection="nope", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])])), C.NOT_FOUND),
    ("SearchVectors", SV(collection="docs"), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2])])), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([NAN] * 4)])), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([])])), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])]), k=0), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])]), k=101),
     C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])] * 101)),
     C.RESOURCE_EXHAUSTED),
    ("SearchVectors", SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])]), metric="bogus"),
     C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", ids=pb.StringList(values=["zzz"])), C.NOT_FOUND),
    ("SearchVectors", SV(collection="docs", ids=pb.StringList(values=["novec"])), C.FAILED_PRECONDITION),
    ("SearchVectors", SV(collection="plain", vectors=pb.VectorList(values=[_vec([1.0])])), C.FAILED_PRECONDITION),
    # clusters
    ("FindDuplicates", pb.FindDuplicatesRequest(collection="nope"), C.NOT_FOUND),
    ("FindDuplicates", pb.FindDuplicatesRequest(collection="docs", threshold=NAN), C.INVALID_ARGUMENT),
    ("FindDuplicates", pb.FindDuplicatesRequest(collection="docs", threshold=-1), C.INVALID_ARGUMENT),
    ("FindDuplicates", pb.FindDuplicatesRequest(collection="plain", exact=True), C.FAILED_PRECONDITION),
]

TC = pb.TrainClassifierRequest
CL = pb.ClassifyRequest
V4 = pb.VectorList(values=[_vec([1, 2, 3, 4])])


def _mat(rows, dim, values=None, nbytes=None):
    """A packed Matrix; ``nbytes`` overrides the length of its data (to make it inconsistent)."""
    data = np.asarray(values if values is not None else np.ones(rows * dim), dtype="<f4").tobytes()
    return pb.Matrix(rows=rows, dim=dim, data=data if nbytes is None else (data * 2)[:nbytes])


def _packed_upsert(docs, matrix, coll="docs"):
    return pb.UpsertRequest(collection=coll, documents=docs, packed_vectors=matrix)


def _row(doc_id, row, **kw):
    return pb.Document(id=doc_id, vector_row=row, **kw)


M4 = _mat(1, 4)
INF = math.inf

# packed vector batches: inconsistent matrices, rows that no document or two documents name, and
# the library's own checks (dim, NaN, infinity) on packed vectors
MATRIX += [
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(1, 4, nbytes=15)), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(1, 4, nbytes=17)), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(2, 2, nbytes=8)), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], pb.Matrix(rows=3, dim=0)), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], pb.Matrix(rows=4_000_000_000, dim=1)), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 1)], M4), C.INVALID_ARGUMENT),  # row out of range
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[_row("w", 0)]), C.INVALID_ARGUMENT),  # no matrix
    ("Upsert", _packed_upsert([_row("w", 0), _row("x", 0)], _mat(2, 4)), C.INVALID_ARGUMENT),  # a row twice
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(2, 4)), C.INVALID_ARGUMENT),  # a row nobody names
    ("Upsert", _packed_upsert([pb.Document(id="w")], M4), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0, vector=_vec([1, 2, 3, 4]))], M4), C.INVALID_ARGUMENT),  # both forms
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(1, 3)), C.INVALID_ARGUMENT),  # wrong dim
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(1, 4, [1, NAN, 0, 0])), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], _mat(1, 4, [1, 0, -INF, 0])), C.INVALID_ARGUMENT),
    ("Upsert", _packed_upsert([_row("w", 0)], M4, coll="plain"), C.INVALID_ARGUMENT),  # no vectors there
    ("UpsertStream", [_packed_upsert([_row("s0", 0)], M4), _packed_upsert([_row("w", 0)], _mat(1, 4, nbytes=3))],
     C.INVALID_ARGUMENT),
    ("UpsertStream", [_packed_upsert([_row("w", 0)], _mat(1, 4, [INF] * 4))], C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=_mat(2, 4, nbytes=31)), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=pb.Matrix(rows=5, dim=0)), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=_mat(1, 2)), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=_mat(1, 4, [NAN] * 4)), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=_mat(2, 4, [1] * 7 + [INF])), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=M4, vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])])),
     C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=M4, ids=pb.StringList(values=["d1"])), C.INVALID_ARGUMENT),
    ("SearchVectors", SV(collection="docs", packed_vectors=_mat(101, 4)), C.RESOURCE_EXHAUSTED),
    ("SearchVectors", SV(collection="plain", packed_vectors=_mat(1, 1)), C.FAILED_PRECONDITION),
]

MATRIX += [
    # classifiers: training (each under the existing name "m", which must survive every failure)
    ("TrainClassifier", TC(collection="nope", name="m"), C.NOT_FOUND),
    ("TrainClassifier", TC(name="m"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="bad name"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", kind="forest"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", kind=""), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json="{"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json="[1]"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json='{"no_such": 1}'), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json='{"C": -1}'), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json='{"C": NaN}'), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json='{"C": "x"}'), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", params_json='{"probability": false}'),
     C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", kind="gmm", params_json='{"n_components": 0}'),
     C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", filter_json="{"), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", filter_json='"i"'), C.INVALID_ARGUMENT),
    ("TrainClassifier", TC(collection="labelled", name="m", filter_json='{"i": 99}'), C.FAILED_PRECONDITION),
    ("TrainClassifier", TC(collection="labelled", name="m", kind="gmm", params_json='{"n_components": 13}'),
     C.FAILED_PRECONDITION),
    ("TrainClassifier", TC(collection="docs", name="m"), C.FAILED_PRECONDITION),  # no labels
    ("TrainClassifier", TC(collection="single", name="m"), C.FAILED_PRECONDITION),  # one class
    ("TrainClassifier", TC(collection="plain", name="m", kind="gmm"), C.FAILED_PRECONDITION),  # no vectors
    ("ListClassifiers", pb.ListClassifiersRequest(), C.INVALID_ARGUMENT),
    ("ListClassifiers", pb.ListClassifiersRequest(collection="nope"), C.NOT_FOUND),
    # classifying
    ("Classify", CL(collection="nope", model="m", vectors=V4), C.NOT_FOUND),
    ("Classify", CL(collection="labelled", model="nope", vectors=V4), C.NOT_FOUND),
    ("Classify", CL(collection="labelled", vectors=V4), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="bad name", vectors=V4), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m"), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=V4, ids=pb.StringList(values=["l1"])),
     C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=pb.VectorList(values=[_vec([1, 2])])),
     C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=pb.VectorList(values=[_vec([NAN] * 4)])),
     C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=pb.VectorList(values=[_vec([])])), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=V4, k=0), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=V4, k=101), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])] * 101)),
     C.RESOURCE_EXHAUSTED),
    ("Classify", CL(collection="labelled", model="m", ids=pb.StringList(values=["zzz"])), C.NOT_FOUND),
    ("Classify", CL(collection="docs", model="g", ids=pb.StringList(values=["novec"])), C.FAILED_PRECONDITION),
    ("Classify", CL(collection="plain", model="m", vectors=pb.VectorList(values=[_vec([1.0])])), C.FAILED_PRECONDITION),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=_mat(1, 4, nbytes=12)), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=_mat(1, 2)), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=_mat(1, 4, [0, NAN, 0, 0])), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=_mat(1, 4, [0, 0, INF, 0])), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=M4, vectors=V4), C.INVALID_ARGUMENT),
    ("Classify", CL(collection="labelled", model="m", packed_vectors=_mat(101, 4)), C.RESOURCE_EXHAUSTED),
    # deleting
    ("DeleteClassifier", pb.DeleteClassifierRequest(collection="nope", name="m"), C.NOT_FOUND),
    ("DeleteClassifier", pb.DeleteClassifierRequest(collection="labelled", name="nope"), C.NOT_FOUND),
    ("DeleteClassifier", pb.DeleteClassifierRequest(collection="labelled", name=""), C.INVALID_ARGUMENT),
    # snapshots (this server has no --snapshot-dir; test_snapshots_rpc.py has one)
    ("Snapshot", pb.SnapshotRequest(name="s"), C.FAILED_PRECONDITION),
    ("Snapshot", pb.SnapshotRequest(name="../s"), C.FAILED_PRECONDITION),
    ("ListSnapshots", pb.ListSnapshotsRequest(), C.FAILED_PRECONDITION),
    ("DeleteSnapshot", pb.DeleteSnapshotRequest(name="s"), C.FAILED_PRECONDITION),
]

# every RPC with a wrong token and with none
GOOD = {
    "CreateCollection": pb.CreateCollectionRequest(name="t"), "GetCollection": pb.GetCollectionRequest(name="docs"),
    "ListCollections": pb.ListCollectionsRequest(), "DropCollection": pb.DropCollectionRequest(name="docs"),
    "Upsert": pb.UpsertRequest(collection="docs", documents=_docs(1)),
    "UpsertStream": [pb.UpsertRequest(collection="docs", documents=_docs(1))],
    "Delete": pb.DeleteRequest(collection="docs", ids=["d1"]), "Get": pb.GetRequest(collection="docs", ids=["d1"]),
    "Count": pb.CountRequest(collection="docs"),
    "QueryNearDuplicates": NQ(collection="docs", texts=pb.StringList(values=["a b"])),
    "SearchVectors": SV(collection="docs", vectors=pb.VectorList(values=[_vec([1, 2, 3, 4])])),
    "FindDuplicates": pb.FindDuplicatesRequest(collection="docs"), "Stats": pb.StatsRequest(),
    "TrainClassifier": TC(collection="labelled", name="m2"),
    "ListClassifiers": pb.ListClassifiersRequest(collection="labelled"),
    "Classify": CL(collection="labelled", model="m", vectors=V4),
    "DeleteClassifier": pb.DeleteClassifierRequest(collection="labelled", name="m"),
    "Snapshot": pb.SnapshotRequest(name="s"), "ListSnapshots": pb.ListSnapshotsRequest(),
    "DeleteSnapshot": pb.DeleteSnapshotRequest(name="s"),
}


def _assert_still_serving(srv) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING
        call = _caller(ch)
        assert call("Count", pb.CountRequest(collection="docs")).count in (11, 12)  # +1: a stream's good batch
        assert call("Get", pb.GetRequest(collection="docs", ids=["d3"])).documents[0].id == "d3"
        # failed trainings left the stored model as it was
        info = call("ListClassifiers", pb.ListClassifiersRequest(collection="labelled")).classifiers
        assert [(i.name, i.kind, i.n_samples, list(i.classes)) for i in info] == [("m", "svm", 12, ["a", "b"])]


@pytest.mark.parametrize("method, request_, code", MATRIX,
                         ids=[f"{i:02d}-{m}-{c.name}" for i, (m, _, c) in enumerate(MATRIX)])
def test_bad_input(server, method, request_, code):
    with grpc.insecure_channel(server.address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _caller(ch)(method, request_)
    assert info.value.code() == code, info.value.details()
    details = info.value.details()
    assert details and "Traceback" not in details
    if code == C.RESOURCE_EXHAUSTED:  # the message names the limit it hit
        assert any(w in details for w in ("max_batch", "max_k", "max_text_bytes", "larger than max")), details
    _assert_still_serving(server)


def test_every_rpc_is_covered():
    assert {m for m, _, _ in MATRIX} | {"ListCollections", "Stats"} == set(GOOD)


@pytest.mark.parametrize("token", ["wrong", None], ids=["bad-token", "no-token"])
@pytest.mark.parametrize("method", sorted(GOOD))
def test_bad_token(server, method, token):
    with grpc.insecure_channel(server.address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            _caller(ch, token=token)(method, GOOD[method])
    assert info.value.code() == C.UNAUTHENTICATED
    _assert_still_serving(server)
