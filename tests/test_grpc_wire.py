"""The codec (``simsearch.wire``): packed vector batches, the older per-vector form, metadata
JSON handled once per side, and the one document check shared by ``Collection.upsert`` and the
clients."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import grpc
import numpy as np
import pytest

from simsearch.client import Client
from simsearch.errors import SimsearchError
from simsearch.index import Document, Index, MetadataJSON, check_documents
from simsearch.index import _document
from simsearch.server import ServerConfig, create_server
from simsearch.wire import pb, pb_grpc
import simsearch.wire as wire

DIM = 4


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


# -- the codec alone --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (1, 1), (0, 4), (200, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_matrix_round_trip(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    x = (rng.normal(size=shape) * 100).astype(dtype)
    msg = pb.Matrix.FromString(wire.matrix_to_pb(x).SerializeToString())
    assert (msg.rows, msg.dim, len(msg.data)) == (shape[0], shape[1], 4 * shape[0] * shape[1])
    back = wire.matrix_from_pb(msg, "t")
    assert back.dtype == np.float32 and back.shape == shape
    assert np.array_equal(back, x.astype(np.float32))  # bit-exact for float32, one cast otherwise
    # little-endian, row-major, as the .proto says
    assert msg.data == x.astype("<f4").tobytes(order="C")


def test_matrix_from_pb_is_a_view_of_the_bytes():
    msg = wire.matrix_to_pb(_vectors(3))
    back = wire.matrix_from_pb(msg, "t")
    assert not back.flags.owndata and not back.flags.writeable  # frombuffer, no copy


@pytest.mark.parametrize("rows, dim, nbytes", [(2, 4, 31), (2, 4, 33), (2, 4, 0), (1, 0, 0), (3, 0, 4),
                                               (2**32 - 1, 1, 8)])
def test_matrix_with_wrong_size_is_refused(rows, dim, nbytes):
    with pytest.raises(SimsearchError) as info:
        wire.matrix_from_pb(pb.Matrix(rows=rows, dim=dim, data=b"\0" * nbytes), "search packed_vectors")
    assert type(info.value).__name__ == "InvalidArgumentError"
    assert "search packed_vectors" in str(info.value)


def test_client_upsert_request_is_packed_and_decodes_to_the_same_documents():
    vecs = _vectors(5)
    docs = [Document(id="a", text="some text", metadata={"k": [1, 2], "é": "ü"}, vector=vecs[0], label="x"),
            {"id": "b"},
            {"id": "c", "vector": vecs[1].astype(np.float64)},
            {"id": "d", "vector": list(map(float, vecs[2])), "metadata": {"z": None}},
            Document(id="e", metadata=MetadataJSON('{"raw":  true}'), vector=vecs[3])]
    norm = check_documents(docs, dim=DIM, collection="c")
    req = wire.upsert_request("c", norm, DIM)
    assert all(not d.HasField("vector") for d in req.documents)  # no per-document Vector messages
    assert [d.vector_row if d.HasField("vector_row") else None for d in req.documents] == [0, None, 1, 2, 3]
    assert (req.packed_vectors.rows, req.packed_vectors.dim) == (4, DIM)
    assert req.documents[0].metadata_json == '{"k": [1, 2], "é": "ü"}'  # encoded once, by the library's check
    assert req.documents[4].metadata_json == '{"raw":  true}'  # given as text: sent as given
    assert not req.documents[1].metadata_json
    back = wire.documents_from_pb(pb.UpsertRequest.FromString(req.SerializeToString()))
    assert [d.id for d in back] == list("abcde")
    assert all(isinstance(d.metadata, MetadataJSON) for d in back if d.metadata)
    assert [d.metadata for d in back] == ['{"k": [1, 2], "é": "ü"}', {}, {}, '{"z": null}', '{"raw":  true}']
    got = [d.vector for d in back]
    assert got[1] is None and all(np.array_equal(g, vecs[j]) for g, j in zip(got[:1] + got[2:], range(4)))
    assert back[0].text == "some text" and back[0].label == "x" and back[1].text is None


def test_client_search_request_is_packed():
    from simsearch.client import RemoteCollection
    from simsearch.index import CollectionConfig, CollectionInfo

    class NoClient:
        target = "-"

    rc = RemoteCollection(NoClient(), CollectionInfo("c", CollectionConfig(dim=DIM), 0))
    q = _vectors(3)
    for vectors in (q, list(q), [list(map(float, v)) for v in q]):
        req = rc._search_request(vectors, None, 5, None)
        assert not req.HasField("vectors") and req.HasField("packed_vectors")
        assert np.array_equal(wire.matrix_from_pb(req.packed_vectors, "t"), q)
    req = rc._classify_request(q, None, "m", 3)
    assert not req.HasField("vectors") and np.array_equal(wire.matrix_from_pb(req.packed_vectors, "t"), q)
    empty = rc._search_request([], None, 5, None)
    assert empty.HasField("packed_vectors") and empty.packed_vectors.rows == 0


# -- the older per-vector form, from raw protobuf messages ------------------------------------
def _stub(server):
    channel = grpc.insecure_channel(server.address)
    return channel, pb_grpc.SimSearchStub(channel)


def test_old_and_packed_forms_give_the_same_answers(grpc_server):
    """A client built from an older .proto sends ``Document.vector`` and ``VectorList``; the server
    reads both forms, and mixed in one request, with the same results as the packed form."""
    X = _vectors(12, seed=1)
    Q = _vectors(3, seed=2)
    labels = ["p" if x[0] > 0 else "n" for x in X]
    old_docs = [pb.Document(id=f"v{i}", text=f"words of document {i // 2}", vector=pb.Vector(values=X[i].tolist()),
                            label=labels[i], metadata_json=json.dumps({"i": i})) for i in range(12)]
    channel, stub = _stub(grpc_server)
    with channel:
        for name in ("old", "packed", "mixed"):
            stub.CreateCollection(pb.CreateCollectionRequest(name=name, config=pb.CollectionConfig(dim=DIM)))
        stub.Upsert(pb.UpsertRequest(collection="old", documents=old_docs))
        packed = pb.UpsertRequest(collection="packed",
                                  packed_vectors=pb.Matrix(rows=12, dim=DIM, data=X[::-1].tobytes()))
        for i, d in enumerate(old_docs):
            m = packed.documents.add()
            m.CopyFrom(d)
            m.ClearField("vector")
            m.vector_row = 11 - i  # rows in any order
        stub.Upsert(packed)
        mixed = pb.UpsertRequest(collection="mixed", packed_vectors=pb.Matrix(rows=6, dim=DIM, data=X[1::2].tobytes()))
        for i, d in enumerate(old_docs):
            m = mixed.documents.add()
            m.CopyFrom(d)
            if i % 2:
                m.ClearField("vector")
                m.vector_row = i // 2
        stub.UpsertStream(iter([mixed]))
        ids = [f"v{i}" for i in range(12)]
        gets = {n: stub.Get(pb.GetRequest(collection=n, ids=ids)) for n in ("old", "packed", "mixed")}
        assert gets["old"] == gets["packed"] == gets["mixed"]
        assert [list(d.vector.values) for d in gets["old"].documents] == X.tolist()
        old_q = pb.VectorList(values=[pb.Vector(values=q.tolist()) for q in Q])
        new_q = pb.Matrix(rows=3, dim=DIM, data=Q.tobytes())
        for name in ("old", "packed", "mixed"):
            a = stub.SearchVectors(pb.SearchVectorsRequest(collection=name, vectors=old_q, k=4))
            b = stub.SearchVectors(pb.SearchVectorsRequest(collection=name, packed_vectors=new_q, k=4))
            assert a == b and len(a.results) == 3 and all(len(r.neighbors) == 4 for r in a.results)
        stub.TrainClassifier(pb.TrainClassifierRequest(collection="old", name="m", params_json='{"kernel": "linear"}'))
        a = stub.Classify(pb.ClassifyRequest(collection="old", model="m", vectors=old_q, k=2))
        b = stub.Classify(pb.ClassifyRequest(collection="old", model="m", packed_vectors=new_q, k=2))
        assert a == b and len(a.results) == 3
    with Client(grpc_server.address) as client:  # and the Python client reads what old clients wrote
        coll = client.get_collection("old")
        assert np.array_equal(np.stack([d.vector for d in coll.get(ids)]), X)
        assert coll.search_batch(vectors=Q, k=4) == client.get_collection("packed").search_batch(vectors=Q, k=4)


# -- one document check, through Index and Client ---------------------------------------------
BAD_DOCS = {
    "not a list": {"id": "a"},
    "empty": [],
    "not a doc": [3.5],
    "unknown field": [{"id": "a", "vec": [1.0]}],
    "missing id": [{"text": "x"}],
    "int id": [{"id": 7}],
    "empty id": [{"id": ""}],
    "long id": [{"id": "ü" * 129}],
    "duplicate ids": [{"id": "a"}, {"id": "b"}, {"id": "a"}],
    "text int": [{"id": "a", "text": 5}],
    "text empty": [{"id": "a", "text": ""}],
    "metadata str": [{"id": "a", "metadata": '{"a": 1}'}],
    "metadata tuple": [{"id": "a", "metadata": (1,)}],
    "metadata nan": [{"id": "a", "metadata": {"x": math.nan}}],
    "metadata inf": [{"id": "a", "metadata": {"x": [math.inf]}}],
    "metadata bytes": [{"id": "a", "metadata": {"x": b"1"}}],
    "metadata key": [{"id": "a", "metadata": {("t",): 1}}],
    "metadata big": [{"id": "a", "metadata": {"x": "y" * 70_000}}],
    "metadata big unicode": [{"id": "a", "metadata": {"x": "€" * 22_000}}],
    "label int": [{"id": "a", "label": 1}],
    "label empty": [{"id": "a", "label": ""}],
    "label long": [{"id": "a", "label": "x" * 257}],
    "vector dim": [{"id": "a", "vector": [1.0, 2.0]}],
    "vector nan": [{"id": "ok", "vector": [1.0] * DIM}, {"id": "a", "vector": [1.0, math.nan, 0, 0]}],
    "vector huge": [{"id": "a", "vector": [1e39] * DIM}],
    "vector 2-d": [{"id": "a", "vector": np.ones((2, 2))}],
    "vector str": [{"id": "a", "vector": ["1"] * DIM}],
    "vector bool": [{"id": "a", "vector": [True] * DIM}],
    "vector ragged": [{"id": "a", "vector": [1.0] * DIM}, {"id": "b", "vector": [1.0] * (DIM + 1)}],
    "vector None inside": [{"id": "a", "vector": [1.0, None, 2.0, 3.0]}],
}


def _error(fn):
    try:
        fn()
    except SimsearchError as exc:
        return type(exc).__name__, str(exc)
    return None


@pytest.mark.parametrize("label", sorted(BAD_DOCS))
def test_document_check_is_shared_by_index_and_client(tmp_path, grpc_server, label):
    batch = BAD_DOCS[label]
    with Index(tmp_path / "local") as index:
        local = _error(lambda: index.create_collection("c", dim=DIM).upsert(batch))
    with Client(grpc_server.address) as client:
        remote = _error(lambda: client.create_collection("c", dim=DIM).upsert(batch))
        assert client.get_collection("c").count() == 0
    assert local is not None, "the batch was accepted"
    assert remote == local
    if not label.startswith("vector"):  # vectors are checked batched, after the documents
        direct = _error(lambda: check_documents(batch, dim=DIM, collection="c"))
        assert direct == local  # the client's check is the library's own function


def test_vector_into_a_collection_without_vectors_is_refused_alike(tmp_path, grpc_server):
    batch = [{"id": "a", "vector": [1.0, 2.0]}]
    with Index(tmp_path / "local") as index:
        local = _error(lambda: index.create_collection("c").upsert(batch))
    with Client(grpc_server.address) as client:
        remote = _error(lambda: client.create_collection("c").upsert(batch))
    assert remote == local == _error(lambda: check_documents(batch, dim=None, collection="c"))
    assert local[0] == "InvalidArgumentError" and "has no vectors" in local[1]


# -- metadata JSON: once per side -------------------------------------------------------------
class _Counts:
    """Counts every JSON encode and decode in this process (json.dumps and json.loads included,
    and the document checks' own encoder of metadata dicts, made once from json's C encoder)."""

    def __init__(self, monkeypatch):
        self.encode = self.decode = 0
        real_encode, real_decode = json.JSONEncoder.encode, json.JSONDecoder.decode
        real_dict = _document._encode_dict

        def encode(enc, o):
            self.encode += 1
            return real_encode(enc, o)

        def encode_dict(o):
            self.encode += 1
            return real_dict(o)

        monkeypatch.setattr(_document, "_encode_dict", encode_dict)

        def decode(dec, s, *a, **kw):
            self.decode += 1
            return real_decode(dec, s, *a, **kw)

        monkeypatch.setattr(json.JSONEncoder, "encode", encode)
        monkeypatch.setattr(json.JSONDecoder, "decode", decode)


def test_metadata_is_encoded_once_by_the_client_and_parsed_once_by_the_server(grpc_server, monkeypatch):
    n = 25
    docs = [Document(id=f"m{i}", text=f"text {i}", metadata={"i": i, "tags": ["a", "b"], "w": 0.5})
            for i in range(n)]
    with Client(grpc_server.address) as client:
        coll = client.create_collection("c")
        coll.upsert([Document(id="warm", text="warm up", metadata={"x": 1})])  # lazy imports decode JSON too
        counts = _Counts(monkeypatch)
        coll.upsert(docs)  # client and server share this process and its json module
        assert (counts.encode, counts.decode) == (n, n)  # was 2n encodes and n decodes
        monkeypatch.undo()
        assert [d.metadata for d in coll.get([d.id for d in docs])] == [d.metadata for d in docs]
        assert coll.count() == n + 1


def test_metadata_text_is_stored_as_sent_and_got_back_reserialised(tmp_path):
    index = Index(tmp_path / "idx")
    server, _ = create_server(ServerConfig(port=0), index=index)
    server.start()
    sent = '{ "b" : 1,\n  "a": [1, 2.5e3, "é\\u00e9"], "c": {"x": null} }'
    try:
        channel, stub = _stub(server)
        with channel:
            stub.CreateCollection(pb.CreateCollectionRequest(name="c"))
            stub.Upsert(pb.UpsertRequest(collection="c", documents=[pb.Document(id="a", metadata_json=sent)]))
            got = stub.Get(pb.GetRequest(collection="c", ids=["a"])).documents[0].metadata_json
        with sqlite3.connect(Path(tmp_path / "idx" / "simsearch.db")) as db:
            (stored,), = db.execute("SELECT metadata FROM documents WHERE ext_id = 'a'").fetchall()
        assert stored == sent  # byte for byte
        assert got == '{"a": [1, 2500.0, "éé"], "b": 1, "c": {"x": null}}'  # re-serialised, keys sorted
        assert json.loads(got) == json.loads(sent) == index.get_collection("c").get(["a"])[0].metadata
    finally:
        server.stop(0)
        index.close()


@pytest.mark.parametrize("text", ["{", "[1]", "null", '"s"', '{"a": NaN}', '{"a": -Infinity}', '{"a": 1e999}',
                                  '{"a": ' + "[" * 5000 + "]" * 5000 + "}", '{"a": ' + "9" * 5000 + "}",
                                  '{"a": "' + "x" * 65_530 + '"}', '{"a": 1} x'])
def test_bad_metadata_text_is_invalid_argument(grpc_server, text):
    channel, stub = _stub(grpc_server)
    with channel:
        stub.CreateCollection(pb.CreateCollectionRequest(name="c", exist_ok=True))
        with pytest.raises(grpc.RpcError) as info:
            stub.Upsert(pb.UpsertRequest(collection="c", documents=[pb.Document(id="a", metadata_json=text)]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert info.value.details().startswith("upsert docs[0]: metadata")
        assert stub.Count(pb.CountRequest(collection="c")).count == 0
