"""Issue 16 §4, "make the behaviour consistent": one status for k over any limit, a refused
query threshold of 0, exist_ok naming the differing field, gmm labels that are its classes, the
Bearer scheme in any case, and an access log that records the status the client received.
In process (fast) and against a real ``simsearch serve`` subprocess."""

from __future__ import annotations

import logging
import os

import grpc
import numpy as np
import pytest

from simsearch import Index
from simsearch.client import Client
from simsearch.errors import AlreadyExistsError, InvalidArgumentError, ResourceExhaustedError, UnauthenticatedError
from simsearch.index import MAX_K
from simsearch.server import ServerConfig, create_server
from simsearch.wire import SERVICE, pb

from served import Served


def _start(tmp_path, **kw):
    server, _ = create_server(ServerConfig(data=str(tmp_path / "srv"), port=0, grace_s=1.0, workers=4, **kw))
    return server.start()


def _call(channel, method, request, response, metadata=None):
    fn = channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=type(request).SerializeToString,
                             response_deserializer=response.FromString)
    return fn(request, metadata=metadata, timeout=30)


def test_k_over_either_limit_is_invalid_argument(tmp_path):
    for max_k, k in ((MAX_K, MAX_K + 1), (20, 21)):
        server = _start(tmp_path / str(max_k), max_k=max_k)
        try:
            with Client(server.address, timeout=30) as client:
                c = client.create_collection("c", dim=2)
                c.upsert([{"id": "a", "text": "one two three four five six", "vector": [1.0, 0.0]}])
                with grpc.insecure_channel(server.address) as ch:
                    for method, req, resp in (
                        ("QueryNearDuplicates", pb.QueryNearDuplicatesRequest(
                            collection="c", texts=pb.StringList(values=["one two"]), k=k),
                         pb.QueryNearDuplicatesResponse),
                        ("SearchVectors", pb.SearchVectorsRequest(collection="c", ids=pb.StringList(values=["a"]), k=k),
                         pb.SearchVectorsResponse),
                    ):
                        with pytest.raises(grpc.RpcError) as info:
                            _call(ch, method, req, resp)
                        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (max_k, method)
                        assert str(max_k) in info.value.details()
                assert len(c.search([1.0, 0.0], k=max_k)) == 1  # k at the limit is accepted
        finally:
            server.stop(0)


def test_query_threshold_zero_is_refused_locally_and_remotely(tmp_path):
    with Index() as idx:
        c = idx.create_collection("c")
        c.upsert([{"id": "a", "text": "one two three four five six"}])
        with pytest.raises(InvalidArgumentError, match=r"threshold.*\(0\.0, 1\.0\]"):
            c.near_duplicates("one two three four five six", threshold=0.0)
        with pytest.raises(InvalidArgumentError, match="threshold"):
            c.find_duplicates(0.0)
        assert [h.id for h in c.near_duplicates("one two three four five six", threshold=1e-9)] == ["a"]
    server = _start(tmp_path)
    try:
        with Client(server.address, timeout=30) as client:
            rc = client.create_collection("c")
            with pytest.raises(InvalidArgumentError, match="threshold"):
                rc.near_duplicates("one two three", threshold=0.0)
            with pytest.raises(InvalidArgumentError, match="threshold"):
                rc.find_duplicates(0.0)
    finally:
        server.stop(0)


def test_exist_ok_names_the_differing_field(tmp_path):
    server = _start(tmp_path)
    try:
        with Client(server.address, timeout=30) as client:
            client.create_collection("c", ngram=3, threshold=0.7)
            assert client.create_collection("c", ngram=3, threshold=0.7, exist_ok=True).name == "c"
            with pytest.raises(AlreadyExistsError, match=r"ngram=3 \(asked 4\)") as info:
                client.create_collection("c", ngram=4, threshold=0.7, exist_ok=True)
            assert "threshold" not in str(info.value)
            with pytest.raises(AlreadyExistsError, match="already exists$"):  # same config, no exist_ok
                client.create_collection("c", ngram=3, threshold=0.7)
    finally:
        server.stop(0)


def test_gmm_label_is_one_of_its_classes(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))]).astype(np.float32)
    with Index() as idx:
        c = idx.create_collection("c", dim=2)
        c.upsert([{"id": str(i), "vector": x} for i, x in enumerate(X)])
        info = c.train_classifier("g", kind="gmm", params={"n_components": 2})
        results = c.classify(X[[0, 30]], model="g", k=1)
    assert [r.label for r in results] == [str(r.component) for r in results]
    assert {r.label for r in results} == set(info.classes)


@pytest.mark.parametrize("header, ok", [
    ("Bearer tok-1", True), ("bearer tok-1", True), ("BEARER tok-1", True), ("bEaReR  tok-1 ", True),
    ("Basic tok-1", False), ("Bearertok-1", False), ("Bearer tok-2", False), ("tok-1", False),
])
def test_bearer_scheme_is_case_insensitive(tmp_path, header, ok):
    server = _start(tmp_path, token="tok-1")
    try:
        with grpc.insecure_channel(server.address) as ch:
            if ok:
                _call(ch, "ListCollections", pb.ListCollectionsRequest(), pb.ListCollectionsResponse,
                      metadata=(("authorization", header),))
            else:
                with pytest.raises(grpc.RpcError) as info:
                    _call(ch, "ListCollections", pb.ListCollectionsRequest(), pb.ListCollectionsResponse,
                          metadata=(("authorization", header),))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)


def test_too_large_response_is_logged_as_the_client_saw_it(tmp_path, caplog):
    server = _start(tmp_path, max_message_mb=0.05)  # 52 428 bytes
    try:
        with Client(server.address, timeout=30) as client:
            c = client.create_collection("c", store_shingles=False)
            docs = [{"id": f"d{i}", "text": f"document {i} " + "word " * 1500} for i in range(8)]  # ~7.5 KB each
            for d in docs:
                c.upsert([d])
            with caplog.at_level(logging.INFO, logger="simsearch.server.access"):
                with pytest.raises(ResourceExhaustedError, match="max_message_bytes=52428.*fewer") as info:
                    c.get([d["id"] for d in docs])
                assert info.value.grpc_code == "RESOURCE_EXHAUSTED"
                assert len(c.get(["d0", "d1"])) == 2
            lines = [r.getMessage() for r in caplog.records if "/Get " in r.getMessage()]
            assert lines and lines[0].split()[1] == "RESOURCE_EXHAUSTED" and lines[1].split()[1] == "OK", lines
    finally:
        server.stop(0)


def test_consistency_against_a_served_process(tmp_path):
    """The same points through ``simsearch serve``: bearer in lower case, k, threshold 0, exist_ok."""
    token = tmp_path / "token"
    token.write_text("tok-9\n")
    os.chmod(token, 0o600)
    with Served(tmp_path / "data", "--token-file", str(token), "--max-k", "30", "--max-message-mb", "0.05") as served:
        with grpc.insecure_channel(served.address) as ch:
            md = (("authorization", "bearer tok-9"),)
            _call(ch, "CreateCollection", pb.CreateCollectionRequest(name="c", config=pb.CollectionConfig(ngram=2)),
                  pb.CollectionInfo, metadata=md)
            for req in (pb.QueryNearDuplicatesRequest(collection="c", texts=pb.StringList(values=["a b"]), k=31),
                        pb.QueryNearDuplicatesRequest(collection="c", texts=pb.StringList(values=["a b"]), threshold=0.0)):
                with pytest.raises(grpc.RpcError) as info:
                    _call(ch, "QueryNearDuplicates", req, pb.QueryNearDuplicatesResponse, metadata=md)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as info:
                _call(ch, "CreateCollection", pb.CreateCollectionRequest(
                    name="c", config=pb.CollectionConfig(ngram=3), exist_ok=True), pb.CollectionInfo, metadata=md)
            assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS and "ngram=2 (asked 3)" in info.value.details()
        with Client(served.address, token="nope", timeout=30) as bad:
            with pytest.raises(UnauthenticatedError):
                bad.list_collections()
        with Client(served.address, token="tok-9", timeout=60) as client:
            big = client.create_collection("big", dim=2, store_shingles=False)
            rng = np.random.default_rng(1)
            for i in range(8):
                big.upsert([{"id": f"d{i}", "text": f"document {i} " + "word " * 1500,
                             "vector": rng.normal(size=2) + (0 if i < 4 else 10)}])
            with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
                big.get([f"d{i}" for i in range(8)])
            big.train_classifier("g", kind="gmm", params={"n_components": 2})
            results = big.classify(ids=["d0", "d7"], model="g", k=1)
            assert [r.label for r in results] == [str(r.component) for r in results]
            assert {r.label for r in results} == set(big.list_classifiers()[0].classes)
    _, err = served.terminate()
    assert "/simsearch.v1.SimSearch/QueryNearDuplicates INVALID_ARGUMENT" in err
    assert "/simsearch.v1.SimSearch/Get RESOURCE_EXHAUSTED" in err and "/simsearch.v1.SimSearch/Get OK" not in err
