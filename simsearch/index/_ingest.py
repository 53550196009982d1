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

from ..minhash import is_empty
from ..shingling import ShingleSets, shingle_hashes
from ..validation import check_option, check_param

__all__ = [
    "DUPLICATE_JACCARD_FIELD",
    "DUPLICATE_OF_FIELD",
    "ON_DUPLICATE",
    "Decision",
    "by_position",
    "check_on_duplicate",
    "decide",
    "tag_metadata",
]

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


def decide(coll, ids: list[str], texts: list[str | None], sigs: np.ndarray, mode: str, threshold: float,
           exact: bool) -> Decision:
    """The on_duplicate decision for one batch; the caller holds ``coll``'s write lock.

    ``sigs`` (n, num_perm) are the batch's signatures (empty rows for documents without shingles).
    With ``exact``, shingle sets are computed only for the documents that have a candidate (in
    the collection or in the batch), so a batch without near-duplicates costs one LSH probe.
    """
    n = len(ids)
    has = np.flatnonzero(~is_empty(sigs)) if n else np.zeros(0, np.int64)
    stored = np.ones(n, dtype=bool)
    matches: dict[int, tuple[str, float]] = {}
    if not len(has):
        return Decision(matches, stored)
    eng = coll._engine
    own = eng.rowids_of([ids[i] for i in has])
    keys = eng.k.band_keys(np.ascontiguousarray(sigs[has]), eng.b, eng.r)
    q, src, rows = eng.candidates(sigs[has], keys)
    cand = eng.rowids_at(src, rows)
    mine = cand != own[q]  # the stored document of the same id is replaced, not matched
    q, src, rows, cand = q[mine], src[mine], rows[mine], cand[mine]
    ia, ib = _batch_candidates(has, keys)
    need = np.union1d(has[np.unique(q)], np.r_[ia, ib]).astype(np.int64)
    sets = None
    if exact and len(need):
        cfg = coll.config
        sets = by_position(shingle_hashes([texts[i] for i in need], ngram=cfg.ngram, shingle=cfg.shingle,
                                          backend=coll._index._backend), need.tolist(), n)
    best = _best_stored(coll, has, texts, sigs, sets, q, src, rows, cand, threshold)
    earlier = _verify_pairs(coll, ia, ib, sigs, sets, threshold)
    for j in sorted(set(best) | set(earlier)):
        options = [best[j]] if j in best else []
        options += [(jac, ids[i]) for i, jac in earlier.get(j, ()) if stored[i]]
        if options:
            jac, of = min(options, key=lambda o: (-o[0], o[1]))
            matches[j] = (of, float(jac))
            stored[j] = mode != "skip"
    return Decision(matches, stored)


def _best_stored(coll, has, texts, sigs, sets, q, src, rows, cand, threshold: float) -> dict[int, tuple[float, str]]:
    """Batch position -> (Jaccard, id) of its best stored match among the candidate pairs
    (``q`` indexes ``has``; ``src``/``rows`` locate the candidate, ``cand`` is its rowid): all
    pairs scored in one pair-Jaccard call (exact over ``sets`` and the candidates' cached or
    stored shingle sets, else the signature estimate), the highest score kept, ties to the smaller id."""
    if not len(q):
        return {}
    eng = coll._engine
    be = coll._index._backend
    if sets is None:
        score = eng.estimate(sigs[has], q, src, rows)
    else:
        from .._arrays import offsets_from_sizes

        uniq, inv = np.unique(cand, return_inverse=True)
        asked = has[np.unique(q)].tolist()
        by_text = {texts[i]: i for i in asked}

        def known(text):  # a stored copy of a batch text has the batch text's set: not shingled again
            i = by_text.get(text)
            return None if i is None else sets.hashes[sets.offsets[i]:sets.offsets[i + 1]].copy()

        found = eng.cached_shingles(uniq.tolist(), lambda missing: coll._read_shingle_sets(missing, known))
        c_sets = [found[int(r)] for r in uniq.tolist()]
        c_off = offsets_from_sizes([len(x) for x in c_sets])
        c_hash = np.concatenate(c_sets) if c_sets else np.empty(0, np.uint64)
        score = be.host.pair_jaccard_sets(sets.offsets, sets.hashes, c_off, c_hash, has[q], inv.astype(np.int64))
    ok = np.flatnonzero(score >= threshold)
    if not len(ok):
        return {}
    qq, sc = q[ok], score[ok]
    order = np.lexsort((-sc, qq))  # by query, then highest score first
    qq, sc, pos = qq[order], sc[order], ok[order]
    start = np.flatnonzero(np.r_[True, qq[1:] != qq[:-1]])
    top = np.repeat(sc[start], np.diff(np.r_[start, len(qq)]))
    tied = np.flatnonzero(sc == top)  # each query's best-scoring pairs (usually one)
    ext = eng.gather(src[pos[tied]], rows[pos[tied]], "ext")
    out: dict[int, tuple[float, str]] = {}
    for j, e in zip(tied.tolist(), ext):
        d = int(has[qq[j]])
        if d not in out or e < out[d][1]:  # ties to the smaller id
            out[d] = (float(sc[j]), e)
    return out


def _batch_candidates(has: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j, batch positions, unique, in (i, j) order) of the batch itself:
    documents sharing a band key (``keys``, one row per position in ``has``, under the
    collection's banding). Every pair of each group of equal keys, made by numpy per band."""
    e = np.empty(0, np.int64)
    m = len(has)
    if m < 2:
        return e, e
    span = int(has.max()) + 1
    codes = []
    for j in range(keys.shape[1]):
        order = np.argsort(keys[:, j], kind="stable")
        k = keys[order, j]
        new = np.r_[True, k[1:] != k[:-1]]
        start = np.flatnonzero(new)
        size = np.diff(np.r_[start, m])
        if size.max() < 2:
            continue
        gid = np.cumsum(new) - 1
        after = size[gid] - (np.arange(m) - start[gid]) - 1  # later members of each one's group
        total = int(after.sum())
        first = np.repeat(np.arange(m), after)
        second = first + 1 + np.arange(total) - np.repeat(np.cumsum(after) - after, after)
        pa, pb = has[order[first]], has[order[second]]
        codes.append(np.minimum(pa, pb) * span + np.maximum(pa, pb))
    if not codes:
        return e, e
    uniq = np.unique(np.concatenate(codes))
    return uniq // span, uniq % span


def _verify_pairs(coll, ia, ib, sigs, sets, threshold: float) -> dict[int, list[tuple[int, float]]]:
    """j -> [(i, Jaccard)] of the candidate pairs that reach ``threshold`` (exact with ``sets``)."""
    if not len(ia):
        return {}
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
