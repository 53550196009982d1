"""Issue 16 §3: the Snapshot, ListSnapshots and DeleteSnapshot RPCs under --snapshot-dir, against a
real ``simsearch serve``: consistent online copies (taken during writes), names that cannot leave
the directory, and a clear refusal when snapshots are off."""

from __future__ import annotations

import os
import threading

import grpc
import pytest

from simsearch import Index
from simsearch.client import Client
from simsearch.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from simsearch.server import ServerConfig, create_server
from simsearch.wire import SERVICE, pb

from served import Served

BATCH = 20


def _batch(b: int) -> list[dict]:
    return [{"id": f"b{b}-{i}", "text": f"snapshot batch {b} document {i} words"} for i in range(BATCH)]


def test_snapshots_of_a_served_process(tmp_path):
    snaps = tmp_path / "snaps"
    with Served(tmp_path / "data", "--snapshot-dir", str(snaps)) as served:
        with Client(served.address, timeout=60) as client:
            c = client.create_collection("docs")
            c.upsert(_batch(0))
            stop = threading.Event()
            written = []

            def writer():
                with Client(served.address, timeout=60) as w:
                    wc = w.get_collection("docs")
                    b = 1
                    while not stop.is_set() and b < 200:
                        wc.upsert(_batch(b))
                        written.append(b)
                        b += 1

            t = threading.Thread(target=writer)
            t.start()
            try:
                infos = [client.snapshot(f"s{i}") for i in range(3)]
            finally:
                stop.set()
                t.join()
            auto = client.snapshot()
            assert auto.name.startswith("snapshot-")
            for info in infos:
                assert info.size_bytes > 0 and info.created_unix_seconds > 0
                assert info.size_bytes == sum(f.stat().st_size for f in (snaps / info.name).rglob("*") if f.is_file())
            assert [s.name for s in client.list_snapshots()] == sorted(["s0", "s1", "s2", auto.name])
            # each snapshot is a whole number of the atomic batches, and opens as an index
            counts = []
            for info in infos:
                with Index(snaps / info.name) as snap:
                    n = snap.get_collection("docs").count()
                    assert n % BATCH == 0 and BATCH <= n <= BATCH * (1 + len(written))
                    counts.append(n)
            assert counts == sorted(counts)
            for bad in ("..", "../evil", "/tmp/evil", str(tmp_path / "evil"), "a/b", ".hidden", "a\\b", "x" * 129):
                with pytest.raises(InvalidArgumentError):
                    client.snapshot(bad)
                with pytest.raises(InvalidArgumentError):
                    client.delete_snapshot(bad)
            assert not (tmp_path / "evil").exists() and sorted(os.listdir(snaps)) == sorted(["s0", "s1", "s2", auto.name])
            with pytest.raises(AlreadyExistsError):
                client.snapshot("s0")
            client.delete_snapshot("s1")
            assert [s.name for s in client.list_snapshots()] == sorted(["s0", "s2", auto.name])
            with pytest.raises(NotFoundError):
                client.delete_snapshot("s1")
            with grpc.insecure_channel(served.address) as ch:  # the status codes themselves
                call = ch.unary_unary(f"/{SERVICE}/Snapshot", request_serializer=pb.SnapshotRequest.SerializeToString,
                                      response_deserializer=pb.SnapshotInfo.FromString)
                with pytest.raises(grpc.RpcError) as info:
                    call(pb.SnapshotRequest(name="../up"), timeout=30)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert call(pb.SnapshotRequest(name="raw"), timeout=30).name == "raw"
    rc, err = served.terminate()
    assert rc == 0, err


def test_snapshots_refused_without_snapshot_dir(tmp_path):
    server, _ = create_server(ServerConfig(data=str(tmp_path / "d"), port=0))
    server.start()
    try:
        with Client(server.address, timeout=30) as client:
            for call in (client.snapshot, client.list_snapshots, lambda: client.delete_snapshot("x")):
                with pytest.raises(FailedPreconditionError, match="--snapshot-dir"):
                    call()
    finally:
        server.stop(0)
    assert os.listdir(tmp_path) == ["d"]


def test_symlink_in_snapshot_dir_is_not_followed(tmp_path):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.symlink(outside, snaps / "link")
    server, _ = create_server(ServerConfig(data=None, port=0, snapshot_dir=str(snaps)))
    server.start()
    try:
        with Client(server.address, timeout=30) as client:
            with pytest.raises(InvalidArgumentError, match="outside"):
                client.delete_snapshot("link")
            assert client.list_snapshots() == []
    finally:
        server.stop(0)
    assert (outside / "keep").exists()


def test_async_client_snapshots(tmp_path):
    import asyncio

    from simsearch.aio_client import AsyncClient

    server, _ = create_server(ServerConfig(data=None, port=0, snapshot_dir=str(tmp_path / "s")))
    server.start()

    async def go():
        async with AsyncClient(server.address, timeout=30) as client:
            coll = await client.create_collection("c")
            await coll.upsert(_batch(0))
            info = await client.snapshot("a1")
            assert info.name == "a1" and info.size_bytes > 0
            assert [s.name for s in await client.list_snapshots()] == ["a1"]
            with pytest.raises(InvalidArgumentError):
                await client.snapshot("../x")
            await client.delete_snapshot("a1")
            assert await client.list_snapshots() == []

    try:
        asyncio.run(go())
    finally:
        server.stop(0)
