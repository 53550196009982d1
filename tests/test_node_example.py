"""Issue 16 acceptance: examples/node/example.js, a client written from protos/ alone, against a
real ``simsearch serve`` with a token (sent per call, as grpc-js needs on plaintext). Runs when
``node`` is on the PATH and @grpc/grpc-js and @grpc/proto-loader are installed or installable
with npm (into a cache outside the checkout); skipped, saying which, otherwise."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from served import Served

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"


def _node_modules() -> Path:
    local = EXAMPLE / "node_modules"
    if (local / "@grpc" / "grpc-js").is_dir() and (local / "@grpc" / "proto-loader").is_dir():
        return local
    spec = (EXAMPLE / "package.json").read_bytes()
    cache = Path(os.environ.get("SIMSEARCH_NODE_CACHE", Path.home() / ".cache" / "simsearch")) / \
        f"node-example-{hashlib.sha256(spec).hexdigest()[:12]}"
    modules = cache / "node_modules"
    if (modules / "@grpc" / "grpc-js").is_dir() and (modules / "@grpc" / "proto-loader").is_dir():
        return modules
    if shutil.which("npm") is None:
        pytest.skip("@grpc/grpc-js and @grpc/proto-loader are not installed and npm is not on the PATH")
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "package.json", cache / "package.json")
    try:
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=cache,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of @grpc/grpc-js and @grpc/proto-loader timed out (no registry?)")
    if proc.returncode != 0 or not (modules / "@grpc" / "grpc-js").is_dir():
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"npm could not install @grpc/grpc-js and @grpc/proto-loader: {last}")
    return modules


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on the PATH")
def test_node_example_against_a_served_process(tmp_path):
    modules = _node_modules()
    token = tmp_path / "token"
    token.write_text("node-token\n")
    os.chmod(token, 0o600)
    with Served(tmp_path / "data", "--token-file", str(token)) as served:
        env = {**os.environ, "NODE_PATH": str(modules)}
        proc = subprocess.run(["node", str(EXAMPLE / "example.js"), served.address, str(token)], capture_output=True,
                              text=True, timeout=120, env=env)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        steps = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [(s["step"], s["ok"]) for s in steps] == [
            ("health", True), ("create", True), ("upsert", True), ("query", True), ("error", True)]
        assert steps[-1]["code"] == "NOT_FOUND" and steps[-1]["error_class"] == "NotFoundError"
        # without the token the same example fails at its first authenticated call
        bad = subprocess.run(["node", str(EXAMPLE / "example.js"), served.address], capture_output=True, text=True,
                             timeout=120, env=env)
        assert bad.returncode == 1 and "UNAUTHENTICATED" in bad.stderr, (bad.stdout, bad.stderr)
    rc, err = served.terminate()
    assert rc == 0, err
