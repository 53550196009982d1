"""The local engine: the dedup stages streamed over the input in batches, in this process.

Memory holds band keys (8 bytes x bands per document), one flag and one id hash per document,
and, for verification, the shingle sets (or signatures) of the documents that appear in
candidate pairs. Texts are only ever held one batch at a time.
"""

from __future__ import annotations

import numpy as np

from .._arrays import offsets_from_sizes
from ._common import EngineResult, Progress, StageClock, check_unique_ids, needs_ids
from ._io import ReadConfig, Unit, hash_ids, read_unit
from ._core import connected_components, merge_pairs
from ._stages import Params, band_pairs, concat_material, signature_chunk, verify_chunk, \
    verify_material

__all__ = ["run_local", "band_groups"]

# Band columns per candidate-join call: bounds the join's scratch (about 20 bytes per key) to ~80 MB.
_KEYS_PER_JOIN = 4_000_000


def band_groups(n: int, b: int) -> list[tuple[int, int]]:
    """Column ranges of the band-key matrix joined one at a time."""
    g = max(1, min(b, _KEYS_PER_JOIN // max(n, 1)))
    return [(s, min(b, s + g)) for s in range(0, b, g)]


def run_local(units: list[Unit], cfg: ReadConfig, p: Params, ui: Progress, clock: StageClock,
              total_hint: int | None) -> EngineResult:
    with_ids = bool(units) and needs_ids(units[0].format, cfg)
    counts, keys, valid, hashes = _signatures(units, cfg, p, ui, total_hint, with_ids)
    n = int(counts.sum())
    check_unique_ids(hashes, units, counts, cfg)
    clock.lap("signatures")

    cand = _candidates(keys, valid, n, p, ui)
    del keys
    clock.lap("candidates")

    needed = np.unique(cand)
    material, needed_ids = _read_needed(units, cfg, p, counts, needed, with_ids, ui)
    rows = np.searchsorted(needed, cand)
    kept_rows, jac = verify_chunk(rows, material, p)
    pairs = needed[kept_rows] if kept_rows.size else np.empty((0, 2), dtype=np.int64)
    clock.lap("verify")

    clusters = connected_components(n, pairs, backend=p.backend)
    clock.lap("components")
    return EngineResult(counts, int(cand.shape[0]), pairs, jac, clusters, needed, material, needed_ids)


def _signatures(units, cfg, p, ui, total_hint, with_ids):
    """Pass 1: band keys, non-empty flags and id hashes of every document, batch by batch."""
    counts = np.zeros(len(units), dtype=np.int64)
    keys, valid, hashes = [], [], []
    with ui.bar("signatures", total_hint) as bar:
        for k, unit in enumerate(units):
            for batch in read_unit(unit, cfg, want_ids=with_ids):
                kk, vv = signature_chunk(batch.texts, p)
                keys.append(kk)
                valid.append(vv)
                if with_ids:
                    hashes.append(hash_ids(batch.ids))
                counts[k] += len(batch.texts)
                bar.update(len(batch.texts))
    valid = np.concatenate(valid) if valid else np.empty(0, dtype=bool)
    hashes = (np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)) if with_ids else None
    return counts, keys, valid, hashes


def _candidates(keys: list[np.ndarray], valid: np.ndarray, n: int, p: Params, ui: Progress) -> np.ndarray:
    """Pass over the band keys in column groups; the union of their pairs."""
    parts = []
    groups = band_groups(n, p.b)
    with ui.bar("candidates", p.b, unit="band") as bar:
        for lo, hi in groups:
            cols = np.concatenate([k[:, lo:hi] for k in keys]) if keys else np.empty((0, hi - lo), np.uint64)
            parts.append(band_pairs(cols, valid, None, p.backend))
            del cols
            bar.update(hi - lo)
    return merge_pairs(parts)


def _read_needed(units, cfg, p, counts, needed, with_ids, ui):
    """Pass 2: re-read only the documents in candidate pairs; their shingle sets (or signatures) and ids."""
    off = offsets_from_sizes(counts)
    parts, ids = [], []
    with ui.bar("verify", int(needed.shape[0])) as bar:
        for k, unit in enumerate(units):
            lo, hi = np.searchsorted(needed, [off[k], off[k + 1]])
            if hi == lo:
                continue
            for batch in read_unit(unit, cfg, select=needed[lo:hi] - off[k], want_ids=with_ids):
                parts.append(verify_material(batch.texts, p))
                if with_ids:
                    ids.extend(batch.ids)
                bar.update(len(batch.texts))
    return concat_material(parts, p), (ids if with_ids else None)
