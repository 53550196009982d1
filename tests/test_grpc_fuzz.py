"""Hypothesis fuzzing of request messages: whatever a client sends, no answer is INTERNAL or
UNKNOWN, i.e. every bad request is refused with a status that says what was wrong."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsearch.server import ServerConfig, create_server
from simsearch.wire import pb

METHODS = {m.name: m for m in pb.DESCRIPTOR.services_by_name["SimSearch"].methods}
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    cfg = ServerConfig(data=str(tmp_path_factory.mktemp("fuzz")), port=0, max_batch=50, max_k=200,
                       max_message_mb=1, workers=4, durability="normal")
    srv, _ = create_server(cfg)
    srv.start()
    ch = grpc.insecure_channel(srv.address)
    call = _caller(ch)
    call("CreateCollection", pb.CreateCollectionRequest(name="docs", config=pb.CollectionConfig(dim=3)))
    call("CreateCollection", pb.CreateCollectionRequest(name="chars", config=pb.CollectionConfig(
        shingle="char", ngram=3, num_perm=32, store_shingles=False)))
    for coll in ("docs", "chars"):
        call("Upsert", pb.UpsertRequest(collection=coll, documents=[
            pb.Document(id=f"d{i}", text=f"fuzz corpus text {i % 4} with words", metadata_json='{"i": 1}',
                        vector=pb.Vector(values=[i, 1.0, -1.0]) if coll == "docs" else None, label=f"l{i % 2}")
            for i in range(12)]))
    yield ch
    ch.close()
    srv.stop(0)


def _caller(channel):
    def call(name, request):
        m = METHODS[name]
        kind = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")[2 * m.client_streaming + m.server_streaming]
        fn = getattr(channel, kind)(f"/simsearch.v1.SimSearch/{name}",
                                    request_serializer=lambda x: x if isinstance(x, bytes) else x.SerializeToString(),
                                    response_deserializer=getattr(pb, m.output_type.name).FromString)
        if m.client_streaming:
            return fn(iter(request), timeout=20)
        out = fn(request, timeout=20)
        return list(out) if m.server_streaming else out

    return call


# -- strategies -----------------------------------------------------------------------------
def _mostly(good, bad):
    """``good`` about two draws in three, else ``bad`` (hypothesis alone favours the varied branch)."""
    return st.integers(0, 2).flatmap(lambda i: good if i else bad)


names = _mostly(st.sampled_from(["docs", "chars"]),
                st.sampled_from(["nope", "", "x" * 129, "bad name", "é"]) | st.text(max_size=20))
ids = _mostly(st.sampled_from(["d1", "d2", "d5", "d7", "new1", "new2"]),
              st.sampled_from(["zzz", "", "x" * 300]) | st.text(max_size=10))
texts = _mostly(st.sampled_from(["fuzz corpus text 1 with words", "fuzz corpus text 3 with more words", "abc def"]),
                st.sampled_from(["", " ", "...", "a" * 5000]) | st.text(max_size=200))
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
doubles = st.floats(allow_nan=True, allow_infinity=True)
ints = st.sampled_from([0, 1, 3, 10, 200, 201, 10_001, -1, 2**62]) | st.integers(-(2**63), 2**63 - 1)
metrics = st.sampled_from(["cosine", "euclidean", "sqeuclidean", "manhattan", "bogus", ""]) | st.text(max_size=8)
json_texts = st.sampled_from(["", "{}", '{"a": [1, 2]}', "[1]", "{", "null", '"s"', '{"a": NaN}', "1e999"])


def _opt(strategy):
    return st.none() | strategy


def _msg(cls, **fields):
    """A message of ``cls`` with each field drawn from its strategy or left unset (the collection
    name is always drawn, from a strategy that also yields "")."""
    required = {k: fields.pop(k) for k in ("collection", "name") if k in fields}
    return st.fixed_dictionaries(required, optional=fields).map(
        lambda kw: cls(**{k: v for k, v in kw.items() if v is not None}))


good_vectors = st.builds(pb.Vector, values=st.lists(st.floats(-10, 10, width=32), min_size=3, max_size=3))
vectors = _mostly(good_vectors, st.builds(pb.Vector, values=st.lists(floats, max_size=5)))
documents = _msg(pb.Document, id=ids, text=texts, metadata_json=json_texts, vector=vectors,
                 vector_row=st.integers(0, 3) | st.sampled_from([2**32 - 1]), label=_opt(ids))


def _packed(rows: int, dim: int, values: list[float]) -> pb.Matrix:
    return pb.Matrix(rows=rows, dim=dim, data=np.asarray(values[: rows * dim], dtype="<f4").tobytes())


good_matrices = st.integers(0, 3).flatmap(lambda rows: st.builds(
    _packed, st.just(rows), st.just(3), st.lists(st.floats(-10, 10, width=32), min_size=3 * rows, max_size=3 * rows)))
matrices = _mostly(good_matrices, st.builds(pb.Matrix, rows=st.sampled_from([0, 1, 2, 2**32 - 1]) | st.integers(0, 9),
                                            dim=st.sampled_from([0, 1, 3, 2**32 - 1]) | st.integers(0, 9),
                                            data=st.binary(max_size=64))
                   | st.integers(1, 3).flatmap(lambda rows: st.builds(
                       _packed, st.just(rows), st.sampled_from([2, 3, 4]), st.lists(floats, min_size=12, max_size=12))))
string_lists = st.builds(pb.StringList, values=st.lists(texts, max_size=4))
id_lists = st.builds(pb.StringList, values=st.lists(ids, max_size=4))
configs = _msg(pb.CollectionConfig, shingle=st.sampled_from(["word", "char", "x"]), ngram=ints, num_perm=ints,
               seed=ints, threshold=doubles, weights=st.builds(pb.Weights, false_positive=doubles,
                                                               false_negative=doubles),
               dim=ints, metric=metrics, store_text=st.booleans(), store_shingles=st.booleans())
models = _mostly(st.sampled_from(["m", "g"]),
                 st.sampled_from(["", "nope", "bad name", "x" * 129]) | st.text(max_size=8))
params_texts = json_texts | st.sampled_from([
    '{"kernel": "linear"}', '{"C": -1}', '{"C": true}', '{"gamma": 0}', '{"probability": false}',
    '{"n_components": 2}', '{"n_components": 0}', '{"n_components": 1e3}', '{"covariance_type": "tied"}',
    '{"reg_covar": 0}', '{"max_iter": 0}', '{"means_init": [[0, 0, 0]]}', '{"random_state": -1}',
    '{"solver": "nystroem", "n_components": 4}', '{"tol": NaN}', '{"no_such": 1}'])
upserts = _msg(pb.UpsertRequest, collection=names, documents=st.lists(documents, max_size=4), packed_vectors=matrices)

REQUESTS = {
    "CreateCollection": _msg(pb.CreateCollectionRequest, name=names, config=configs, exist_ok=st.booleans()),
    "GetCollection": _msg(pb.GetCollectionRequest, name=names),
    "ListCollections": st.just(pb.ListCollectionsRequest()),
    "DropCollection": _msg(pb.DropCollectionRequest, name=names.filter(lambda n: n not in ("docs", "chars"))),
    "Upsert": upserts,
    "UpsertStream": st.lists(upserts, max_size=3),
    "Delete": _msg(pb.DeleteRequest, collection=names, ids=st.lists(ids.filter(lambda i: i != "d0"), max_size=4),
                   missing_ok=st.booleans()),
    "Get": _msg(pb.GetRequest, collection=names, ids=st.lists(ids, max_size=4)),
    "Count": _msg(pb.CountRequest, collection=names),
    "QueryNearDuplicates": _msg(pb.QueryNearDuplicatesRequest, collection=names, texts=string_lists, ids=id_lists,
                                threshold=doubles, k=ints, exact=st.booleans()),
    "SearchVectors": _msg(pb.SearchVectorsRequest, collection=names,
                          vectors=st.builds(pb.VectorList, values=st.lists(vectors, max_size=3)), ids=id_lists,
                          packed_vectors=matrices, k=ints, metric=metrics),
    "FindDuplicates": _msg(pb.FindDuplicatesRequest, collection=names, threshold=doubles, exact=st.booleans()),
    "Stats": st.just(pb.StatsRequest()),
    "TrainClassifier": _msg(pb.TrainClassifierRequest, collection=names, name=models,
                            kind=st.sampled_from(["svm", "gmm", "", "forest"]), params_json=params_texts,
                            filter_json=json_texts | st.sampled_from(['{"i": 1}', '{"i": 2}'])),
    "ListClassifiers": _msg(pb.ListClassifiersRequest, collection=names),
    "Classify": _msg(pb.ClassifyRequest, collection=names, model=models,
                     vectors=st.builds(pb.VectorList, values=st.lists(vectors, max_size=3)), ids=id_lists,
                     packed_vectors=matrices, k=ints),
    "DeleteClassifier": _msg(pb.DeleteClassifierRequest, collection=names, name=models),
}
calls = st.one_of([st.tuples(st.just(name), strategy) for name, strategy in REQUESTS.items()])


def _check(call, name, request):
    try:
        call(name, request)
    except grpc.RpcError as exc:
        assert exc.code() not in BAD, f"{name} answered {exc.code().name}: {exc.details()}\nrequest: {request}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(call=calls)
def test_fuzzed_requests_never_internal(channel, call):
    name, request = call
    _check(_caller(channel), name, request)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(METHODS)), data=st.binary(max_size=64))
def test_fuzzed_bytes_never_internal(channel, name, data):
    _check(_caller(channel), name, [data] if METHODS[name].client_streaming else data)
