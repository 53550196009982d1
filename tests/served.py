"""``simsearch serve`` as a real subprocess, for the tests of issue 16 (metrics, health, snapshots,
training limits, the CLI client): a free port, the address read from its first line of output."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path


def simsearch_command() -> list[str]:
    script = Path(sys.executable).parent / "simsearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "simsearch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running ``simsearch serve``; ``address`` once it prints that it listens. Its stderr is
    collected on a thread (``stderr_text()``), so a chatty access log never blocks it."""

    def __init__(self, data: Path, *extra: str, env: dict | None = None, start_timeout: float = 90) -> None:
        self.proc = subprocess.Popen(
            simsearch_command() + ["serve", "--data", str(data), "--port", "0", "--grace", "5", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self._err: list[str] = []
        threading.Thread(target=lambda: self._err.extend(iter(self.proc.stderr.readline, "")), daemon=True).start()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=start_timeout)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"simsearch serve did not start within {start_timeout} s") from None
        match = re.search(r"listening on (\S+:\d+)", line)
        if match is None:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"unexpected first line {line!r}; stderr: {self.stderr_text()}")
        self.address = match.group(1)
        self.first_line = line

    def stderr_text(self) -> str:
        return "".join(self._err)

    def terminate(self, timeout: float = 30) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.returncode, self.stderr_text()

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()
