"""``simsearch serve`` as a real subprocess: end to end with a token, graceful SIGTERM, restart,
and SIGTERM in the middle of a streamed ingest (every acknowledged batch survives)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simsearch.client import Client, RemoteError
from simsearch.errors import UnauthenticatedError

BATCH = 25


def _command() -> list[str]:
    script = Path(sys.executable).parent / "simsearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "simsearch"]


class Served:
    """A ``simsearch serve`` process on a free port; ``address`` once it prints that it listens."""

    def __init__(self, data: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            _command() + ["serve", "--data", str(data), "--port", "0", "--grace", "10", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("simsearch serve did not start within 60 s") from None
        match = re.search(r"listening on (\S+:\d+)", line)
        if match is None:
            self.proc.kill()
            raise AssertionError(f"unexpected first line {line!r}; stderr: {self.proc.stderr.read()}")
        self.address = match.group(1)

    def terminate(self, timeout: float = 30) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def _batch(b: int, prefix: str = "s") -> list[dict]:
    return [{"id": f"{prefix}{b}-{i}", "text": f"streamed batch {b} document {i} with a few words",
             "metadata": {"b": b}} for i in range(BATCH)]


def test_serve_end_to_end_with_token_and_restart(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    os.chmod(token_file, 0o600)
    data = tmp_path / "data"
    served = Served(data, "--token-file", str(token_file))
    try:
        with Client(served.address, token="tok-123", timeout=30) as client:
            coll = client.create_collection("docs")
            coll.upsert(_batch(0))
            assert [h.id for h in coll.near_duplicates(_batch(0)[1]["text"])] == ["s0-1"]
        with Client(served.address, token="nope", timeout=30) as bad:
            with pytest.raises(UnauthenticatedError):
                bad.list_collections()
    finally:
        rc, err = served.terminate()
    assert rc == 0, err
    assert "shutting down" in err and "the index is closed" in err
    assert "/simsearch.v1.SimSearch/Upsert OK" in err  # the access log

    served = Served(data, "--token-file", str(token_file))
    try:
        with Client(served.address, token="tok-123", timeout=30) as client:
            assert client.get_collection("docs").count() == BATCH
    finally:
        assert served.terminate()[0] == 0


def test_sigterm_during_streamed_ingest_keeps_every_acked_batch(tmp_path):
    data = tmp_path / "data"
    served = Served(data, "--log-level", "warning")
    sent = threading.Event()
    unary_acked: list[int] = []
    outcome: dict = {}

    def stream():
        def batches():
            for b in range(100_000):
                if b == 20:
                    sent.set()
                yield _batch(b)

        try:
            outcome["result"] = client.get_collection("docs").upsert_stream(batches())
        except RemoteError as exc:
            outcome["error"] = exc

    def unary():
        coll = client.get_collection("docs")
        for b in range(100_000):
            try:
                coll.upsert(_batch(b, prefix="u"))
            except RemoteError:
                return
            unary_acked.append(b)

    try:
        client = Client(served.address, timeout=60)
        client.create_collection("docs")
        workers = [threading.Thread(target=stream), threading.Thread(target=unary)]
        for w in workers:
            w.start()
        assert sent.wait(60)
        deadline = time.monotonic() + 60
        while client.get_collection("docs").count() < 10 * BATCH and time.monotonic() < deadline:
            time.sleep(0.05)  # let the stream commit a few batches (the first one JIT-compiles)
        rc, err = served.terminate()
        for w in workers:
            w.join(60)
        client.close()
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    assert rc == 0, err
    exc = outcome.get("error")
    assert exc is not None and exc.code == "UNAVAILABLE", outcome
    committed = exc.committed_batches
    assert committed >= 1 and exc.committed_documents == committed * BATCH

    served = Served(data, "--log-level", "warning")
    try:
        with Client(served.address, timeout=30) as client:
            coll = client.get_collection("docs")
            kept = coll.get([d["id"] for b in range(committed) for d in _batch(b)])
            assert [d.metadata["b"] for d in kept] == [b for b in range(committed) for _ in range(BATCH)]
            assert coll.delete([d["id"] for d in _batch(committed)], missing_ok=True) == 0  # nothing past the ack
            if unary_acked:
                assert len(coll.get([d["id"] for b in unary_acked for d in _batch(b, prefix="u")])) == \
                    len(unary_acked) * BATCH
            assert coll.count() >= (committed + len(unary_acked)) * BATCH
    finally:
        assert served.terminate()[0] == 0


def test_serve_refuses_a_port_in_use(tmp_path, grpc_server):
    port = grpc_server.port
    proc = subprocess.run(_command() + ["serve", "--data", str(tmp_path / "d"), "--port", str(port)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_wheel_installs_the_server_as_simsearch_server_only(tmp_path):
    """``pip install .`` puts one top-level package on sys.path: ``import server`` cannot work."""
    import zipfile
    from importlib import util

    if util.find_spec("hatchling") is None:
        pytest.skip("hatchling is not installed (needed to build the wheel without network)")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("simsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"simsearch"}
    assert {"simsearch/server/__init__.py", "simsearch/wire.py"} <= set(names)
