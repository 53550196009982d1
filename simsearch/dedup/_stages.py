"""Per-chunk steps of the dedup pipeline, shared by the local and the Ray engine.

Each calls the stage functions of :mod:`._core`, so both engines run exactly the code
:func:`simsearch.find_duplicates` runs, on pieces of the corpus (the engines call
``connected_components`` and ``merge_pairs`` of :mod:`._core` directly):

* :func:`signature_chunk`: texts -> band keys and non-empty flags (compute_signatures, compute_band_keys);
* :func:`band_pairs`: band keys of some documents -> candidate pairs in global ids (candidate_pairs_from_band_keys);
* :func:`verify_material`: texts -> what verification compares (shingle sets or signatures);
* :func:`verify_chunk`: candidate pairs -> verified pairs and Jaccard (verify_pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._arrays import offsets_from_sizes
from ..shingling import ShingleSets, shingle_hashes
from ._core import candidate_pairs_from_band_keys, compute_band_keys, compute_signatures, verify_pairs

__all__ = ["Params", "signature_chunk", "band_pairs", "verify_material", "concat_material", "verify_chunk",
           "representative_jaccard", "duplicate_id_groups"]


@dataclass(frozen=True)
class Params:
    """The resolved options every chunk needs (picklable, sent to Ray workers). ``backend`` is a
    concrete backend name, which each process resolves to its cached backend object."""

    threshold: float
    num_perm: int
    ngram: int
    shingle: str
    verify: str
    seed: int
    b: int
    r: int
    backend: str


def signature_chunk(texts: list[str], p: Params) -> tuple[np.ndarray, np.ndarray]:
    """(m, b) uint64 band keys and a bool per text, False for texts without shingles."""
    sigs = compute_signatures(texts, num_perm=p.num_perm, seed=p.seed, ngram=p.ngram, shingle=p.shingle,
                              backend=p.backend)
    return compute_band_keys(sigs, p.b, p.r, backend=p.backend)


def band_pairs(keys: np.ndarray, valid: np.ndarray | None, docs: np.ndarray | None, backend) -> np.ndarray:
    """Candidate pairs (ids ``docs``, default the row numbers; i < j, sorted unique) sharing a band key.

    ``keys`` holds any subset of the bands (columns), so bands can be split across calls or workers
    and the results united with :func:`simsearch.dedup.merge_pairs`.
    """
    if keys.shape[0] < 2:
        return np.empty((0, 2), dtype=np.int64)
    return candidate_pairs_from_band_keys(np.ascontiguousarray(keys), valid, doc_ids=docs, backend=backend)


def verify_material(texts: list[str], p: Params):
    """What verification compares: shingle sets for verify="exact", else signatures."""
    if p.verify == "exact":
        return shingle_hashes(texts, ngram=p.ngram, shingle=p.shingle, backend=p.backend)
    return compute_signatures(texts, num_perm=p.num_perm, seed=p.seed, ngram=p.ngram, shingle=p.shingle,
                              backend=p.backend)


def concat_material(parts: list, p: Params):
    """Concatenate per-batch materials (ShingleSets or signature arrays) in order.

    Empties ``parts`` while copying, so the peak is the result plus one part, not twice the result.
    """
    if p.verify != "exact":
        out = np.empty((sum(len(x) for x in parts), p.num_perm), dtype=np.uint32)
        _drain_into(out, parts, lambda x: x)
        return out
    offsets = offsets_from_sizes(np.concatenate([s.sizes() for s in parts]) if parts else np.empty(0, np.int64))
    hashes = np.empty(int(offsets[-1]), dtype=np.uint64)
    _drain_into(hashes, parts, lambda x: x.hashes)
    return ShingleSets(offsets, hashes)


def _drain_into(out: np.ndarray, parts: list, values) -> None:
    pos = 0
    parts.reverse()
    while parts:
        v = values(parts.pop())
        out[pos : pos + len(v)] = v
        pos += len(v)


def verify_chunk(rows: np.ndarray, material, p: Params, threshold: float | None = None):
    """(kept pairs, Jaccard) of ``rows`` pairs, which index the rows of ``material``.

    ``threshold`` defaults to the pipeline's; 0.0 keeps every pair and just measures it.
    """
    th = p.threshold if threshold is None else threshold
    if p.verify == "exact":
        return verify_pairs(rows, threshold=th, verify="exact", shingles=material, backend=p.backend)
    return verify_pairs(rows, threshold=th, verify=p.verify, signatures=material, backend=p.backend)


def representative_jaccard(clusters: np.ndarray, needed: np.ndarray, material, p: Params):
    """Members of clusters with two or more documents, and each one's Jaccard to its representative.

    Exact for verify="exact", the signature estimate otherwise; 1.0 for the representative itself.
    Every such member appears in a verified pair, so its material is among ``needed``.
    """
    n = clusters.shape[0]
    size = np.bincount(clusters, minlength=n)
    members = np.flatnonzero(size[clusters] > 1)
    reps = clusters[members]
    jac = np.ones(members.shape[0], dtype=np.float64)
    dup = members != reps
    rows = np.stack([np.searchsorted(needed, reps[dup]), np.searchsorted(needed, members[dup])], axis=1)
    if rows.shape[0]:
        _, jac[dup] = verify_chunk(rows, material, p, threshold=0.0)
    return members, jac


def duplicate_id_groups(id_hashes: np.ndarray) -> list[np.ndarray]:
    """Groups of document indices whose id hashes are equal (candidates for duplicate ids)."""
    order = np.argsort(id_hashes, kind="stable")
    h = id_hashes[order]
    same = np.flatnonzero(h[1:] == h[:-1])
    if not same.shape[0]:
        return []
    groups: dict[int, list[int]] = {}
    for k in same.tolist():
        groups.setdefault(int(h[k]), [int(order[k])]).append(int(order[k + 1]))
    return [np.unique(g) for g in groups.values()]

