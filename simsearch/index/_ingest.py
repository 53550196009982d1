"""Dedup on ingest: which documents of an upsert batch near-duplicate what is already kept.

``Collection.upsert(docs, on_duplicate=..., threshold=...)`` decides here, under the collection's
write lock, so the decision and the insert are one step: two concurrent upserts of near-identical
texts never both get in under ``"skip"``.

The rule is sequential: the batch behaves as if its documents were upserted one by one, in order.
A document is a near-duplicate when its Jaccard (exact when the collection stores shingles, else
the signature estimate) reaches ``threshold`` with

* a document already in the collection, other than the stored document of the same id (which it
  replaces), or
* an earlier document of the same batch that is stored: under ``"skip"`` a skipped document is not
  stored, so later documents are not compared with it (the streaming "first kept" rule of
  ``simsearch dedup --rule first-kept``); under ``"tag"`` every document is stored.

Candidates come from the collection's LSH banding (tuned for recall at the collection's threshold;
a pair the banding misses is not found, as for ``near_duplicates``). Of several matches the one
with the highest Jaccard is reported, ties to the smaller id. Documents without text, or whose
text has no shingles, duplicate nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..lsh import LSHIndex
from ..minhash import is_empty
from ..shingling import ShingleSets
from ..validation import check_option, check_param

__all__ = ["ON_DUPLICATE", "DUPLICATE_OF_FIELD", "DUPLICATE_JACCARD_FIELD", "Decision", "check_on_duplicate",
           "decide", "by_position", "tag_metadata"]

ON_DUPLICATE = ("insert", "skip", "tag")
# Under on_duplicate="tag" a near-duplicate is stored with these two metadata keys set (replacing
# any value the document gave them): the id it duplicates and the Jaccard. A filter selects them,
# e.g. {"_duplicate_of": {"exists": True}} or {"not": {"_duplicate_of": {"exists": True}}}.
DUPLICATE_OF_FIELD = "_duplicate_of"
DUPLICATE_JACCARD_FIELD = "_duplicate_jaccard"

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class Decision:
    """Per batch document (by position): ``(id it duplicates, Jaccard)`` or absent; and whether each is stored."""

    matches: dict[int, tuple[str, float]]
    stored: np.ndarray  # bool per batch document


def check_on_duplicate(on_duplicate, threshold, default_threshold: float, func: str = "upsert"):
    """The validated ``(on_duplicate, threshold)``; ``threshold`` None means the collection's."""
    on_duplicate = check_option(on_duplicate, "on_duplicate", ON_DUPLICATE, func=func)
    if threshold is None:
        return on_duplicate, default_threshold
    return on_duplicate, check_param("threshold", threshold, func=func, rule="collection_threshold")


def decide(coll, ids: list[str], sigs: np.ndarray, sets, mode: str, threshold: float) -> Decision:
    """The on_duplicate decision for one batch; the caller holds ``coll``'s write lock.

    ``sigs`` (n, num_perm) are the batch's signatures (empty rows for documents without shingles),
    ``sets`` their shingle sets by position (None: rank by the signature estimate).
    """
    n = len(ids)
    has = np.flatnonzero(~is_empty(sigs)) if n else np.zeros(0, np.int64)
    stored = np.ones(n, dtype=bool)
    matches: dict[int, tuple[str, float]] = {}
    if not len(has):
        return Decision(matches, stored)
    own = coll._docs.rowids_of([ids[i] for i in has])
    hits = coll._ranked_matches(sigs[has], None if sets is None else [sets[int(i)] for i in has],
                                [int(r) for r in own], threshold, 1)
    best = {int(i): (h[0].jaccard, h[0].id) for i, h in zip(has, hits) if h}
    earlier = _batch_pairs(coll, has, sigs, sets, threshold)
    for j in has.tolist():
        options = [best[j]] if j in best else []
        options += [(jac, ids[i]) for i, jac in earlier.get(j, ()) if stored[i]]
        if options:
            jac, of = min(options, key=lambda o: (-o[0], o[1]))
            matches[j] = (of, float(jac))
            stored[j] = mode != "skip"
    return Decision(matches, stored)


def _batch_pairs(coll, has: np.ndarray, sigs: np.ndarray, sets, threshold: float) -> dict[int, list[tuple[int, float]]]:
    """j -> [(i, Jaccard)] for verified pairs i < j within the batch (positions), from the
    collection's banding."""
    if len(has) < 2:
        return {}
    cfg = coll.config
    b, r = coll._lsh.params
    lsh = LSHIndex(num_perm=cfg.num_perm, params=(b, r), seed=cfg.seed, backend=coll._index._backend.name)
    lsh.insert(has.astype(np.int64), sigs[has])
    pairs = lsh.candidate_pairs()
    if not len(pairs):
        return {}
    ia, ib = pairs.min(axis=1), pairs.max(axis=1)
    be = coll._index._backend
    if sets is None:
        jac = be.pair_jaccard_sigs(sigs, sigs, ia, ib)
    else:
        jac = be.pair_jaccard_sets(sets.offsets, sets.hashes, sets.offsets, sets.hashes, ia, ib)
    out: dict[int, list[tuple[int, float]]] = {}
    for i, j, v in zip(ia.tolist(), ib.tolist(), jac.tolist()):
        if v >= threshold:
            out.setdefault(j, []).append((i, v))
    return out


def by_position(sets: ShingleSets, texted: list[int], n: int) -> ShingleSets:
    """``sets`` of the documents at positions ``texted`` as sets of all ``n`` positions (empty elsewhere)."""
    sizes = np.zeros(n, dtype=np.int64)
    sizes[texted] = np.diff(sets.offsets)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return ShingleSets(offsets, sets.hashes)


def tag_metadata(metadata: str, of: str, jaccard: float) -> str:
    """The stored metadata text of a tagged near-duplicate."""
    value = json.loads(metadata) if metadata and metadata != "{}" else {}
    value[DUPLICATE_OF_FIELD] = of
    value[DUPLICATE_JACCARD_FIELD] = jaccard
    return _ENCODER.encode(value)
