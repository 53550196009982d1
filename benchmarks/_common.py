"""Shared benchmark plumbing: environment facts, median timing, JSON lines and a text table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from importlib import metadata


def git_commit() -> str:
    """The commit of the simsearch being measured: the checkout its package was imported from
    (a base run from a worktree on PYTHONPATH names the worktree's commit), else the cwd's."""
    try:
        import simsearch

        where = os.path.dirname(os.path.dirname(os.path.abspath(simsearch.__file__)))
    except ImportError:
        where = None
    for git in ([] if where is None else [["git", "-C", where]]) + [["git"]]:  # an installed wheel: the cwd's
        try:
            out = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


def versions(*packages: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in ("simsearch", "numpy", "numba") + packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = ""
    try:
        import cupy as cp

        if cp.cuda.runtime.getDeviceCount() > 0:
            gpu = " + " + cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001 - no CuPy or no device: CPU only
        pass
    return f"{cpu} ({os.cpu_count()} cores){gpu}"


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs (GPU synced by ``sync``)."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Reporter:
    """Prints one JSON line per result and, at the end, a human-readable table."""

    def __init__(self, bench: str, *packages: str) -> None:
        self.meta = {"bench": bench, "device": device(), "versions": versions(*packages), "commit": git_commit()}
        self.rows: list[dict] = []

    def add(self, **row) -> dict:
        row = {**row}
        self.rows.append(row)
        print(json.dumps({**self.meta, **row}), flush=True)
        return row

    def table(self, columns: list[str]) -> str:
        widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in self.rows)) for c in columns}
        lines = [
            "| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
            "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|",
        ]
        for r in self.rows:
            lines.append("| " + " | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) + " |")
        header = f"{self.meta['bench']} on {self.meta['device']}, commit {self.meta['commit']}, {self.meta['versions']}"
        return header + "\n\n" + "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)
