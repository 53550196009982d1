"""What both engines share on the driver: progress output, the engine result, the duplicate-id check."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .._arrays import offsets_from_sizes
from ..errors import InputDataError
from ._io import ReadConfig, Unit, location, unit_ids
from ._stages import duplicate_id_groups


class Progress:
    """tqdm bars (one per stage) and log lines on stderr; all silent when ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def bar(self, desc: str, total: int | None = None, unit: str = "doc"):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"dedup {desc}", unit=unit, unit_scale=True, file=sys.stderr,
                    disable=self.quiet, dynamic_ncols=True, leave=True)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


class StageClock:
    """Seconds per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + (now - self._t)
        self._t = now


@dataclass
class EngineResult:
    """What an engine hands back: per-unit counts, verified pairs, clusters, and the verification
    material (shingle sets or signatures) and ids of the ``needed`` documents (those in candidates)."""

    counts: np.ndarray
    candidates: int
    pairs: np.ndarray
    jaccard: np.ndarray
    clusters: np.ndarray
    needed: np.ndarray
    material: object
    needed_ids: list[str] | None
    seconds: dict[str, float] = field(default_factory=dict)
    device: str = "CPU"
    peak_rss_scope: str = "process"
    backend: str = ""


def needs_ids(unit_format: str, cfg: ReadConfig) -> bool:
    """Whether documents carry their own ids (else the id is the global index)."""
    return unit_format == "text" or cfg.id_field is not None


def check_unique_ids(id_hashes: np.ndarray | None, units: list[Unit], counts: np.ndarray, cfg: ReadConfig) -> None:
    """Raise InputDataError naming both places when two documents share an id.

    Ids are compared by 64-bit hash first; equal hashes are confirmed by re-reading those ids.
    """
    if id_hashes is None:
        return
    groups = duplicate_id_groups(id_hashes)
    if not groups:
        return
    off = offsets_from_sizes(counts)
    docs = np.unique(np.concatenate(groups))
    found: dict[int, tuple[str, str, int | None]] = {}
    for k, unit in enumerate(units):
        lo, hi = np.searchsorted(docs, [off[k], off[k + 1]])
        if hi > lo:
            for row, val in unit_ids(unit, cfg, docs[lo:hi] - off[k]).items():
                found[int(off[k] + row)] = val
    clashes = []
    for g in groups:
        first: dict[str, int] = {}
        for d in g.tolist():
            i = found[d][0]
            if i in first:
                clashes.append((d, first[i]))
            else:
                first[i] = d
    if clashes:
        d, d0 = min(clashes)
        (i, path, line), (_, path0, line0) = found[d], found[d0]
        fmt = units[0].format
        raise InputDataError(
            f"{location(fmt, path, line)}: duplicate id {i!r} (first seen at {location(fmt, path0, line0)})",
            path=path, line=line)
