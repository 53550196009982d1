"""``simsearch dedup --against``: NEW deduplicated against a collection, and the first-kept rule.

The rule (``rule="first-kept"``, the one ``--against`` uses) is streaming: documents are taken
in input order and a document is dropped if and only if it is a near-duplicate (a verified pair,
Jaccard >= threshold) of an earlier **kept** document; every document of the collection counts
as kept and earlier than all of NEW. A dropped document's representative is the collection
document it matches (the best match, ties to the smaller id), else its earliest kept
near-duplicate in NEW. So deduplicating a corpus in pieces, each ``--against`` the collection and
``--add``-ed to it, keeps exactly what one first-kept run over the whole corpus keeps, provided
the pieces come in the order of the whole and the collection has the run's banding (the same
threshold, num_perm, seed, ngram and shingle, and no explicit weights; the candidate pairs are then
the same): :func:`resolve_settings` takes the collection's settings where the run leaves them
unset and refuses a different one, :func:`check_compatible` refuses another banding. The ``components`` rule (the default without ``--against``) keeps one document per
connected component, which is not stable under splitting: A~B~C keeps A alone, but a run over
{A, B} then one over {C} keeps A and C.

``--add`` (:func:`add_kept`) upserts the kept documents with ``on_duplicate="skip"`` at the run's
threshold, so the collection decides again under its write lock: a document that near-duplicates
one another writer stored after the query is not stored, and is reported as matched in the
collection (the documents dropped for it stay dropped).

A NEW document is never compared with the collection document of its own id: that is the same
document (an earlier ``--add`` of it), which makes a rerun after an interrupted ``--add``
harmless.

Where the collection lives: ``against`` is a :class:`~simsearch.Collection` (an index directory
the caller opened; the CLI's ``--against DIR``) or a ``RemoteCollection`` (a server; the CLI's
``--against-address``). With the Ray engine the workers query the server themselves: a
``RemoteCollection`` pickles as its address, token and collection name and reconnects in each
worker, so ``--engine ray`` needs ``--against-address`` (serve an index directory with
``simsearch serve --data DIR`` first); an embedded Collection is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._arrays import offsets_from_sizes
from ..backends import get_backend
from ..banding import choose_params
from ..errors import FailedPreconditionError, InvalidArgumentError, InvalidTypeError
from ..index import Collection
from ..shingling import ShingleSets, shingle_hashes
from ._io import ReadConfig, Unit, read_records, read_unit
from ._stages import Params

__all__ = [
    "RULES",
    "AddFields",
    "SETTINGS",
    "Matches",
    "add_kept",
    "check_against",
    "check_compatible",
    "first_kept",
    "first_kept_clusters",
    "match_batch",
    "query_units",
    "resolve_settings",
    "with_collection_pairs",
]

RULES = ("components", "first-kept")
_QUERY_DOCS = 1000  # documents per near_duplicates_batch call (bounds a gRPC message)


@dataclass
class Matches:
    """NEW documents (global indices, ascending) that near-duplicate a collection document."""

    index: np.ndarray
    ids: list[str]  # the collection document each one matches
    jaccard: np.ndarray
    own_ids: list[str]  # the NEW document's own id

    @classmethod
    def empty(cls) -> Matches:
        return cls(np.empty(0, np.int64), [], np.empty(0, np.float64), [])

    @classmethod
    def concat(cls, parts: list[Matches]) -> Matches:
        parts = [m for m in parts if len(m.index)]
        if not parts:
            return cls.empty()
        out = cls(np.concatenate([m.index for m in parts]), [i for m in parts for i in m.ids],
                  np.concatenate([m.jaccard for m in parts]), [i for m in parts for i in m.own_ids])
        order = np.argsort(out.index, kind="stable")
        return cls(out.index[order], [out.ids[i] for i in order], out.jaccard[order],
                   [out.own_ids[i] for i in order])


def check_against(against, engine: str):
    """``against`` if it is a collection handle the engine can use, else a typed error."""
    if not (hasattr(against, "near_duplicates_batch") and hasattr(against, "upsert") and hasattr(against, "config")):
        raise InvalidTypeError("The 'against' parameter of dedup.run must be a Collection (Index(DIR).get_collection) "
                               f"or a RemoteCollection (Client(ADDRESS).get_collection). Got {type(against).__name__}.")
    if engine == "ray" and isinstance(against, Collection):
        raise InvalidArgumentError("dedup --engine ray --against: the Ray workers query a server; serve the index "
                                   "(simsearch serve --data DIR) and pass --against-address HOST:PORT (a "
                                   "RemoteCollection).")
    return against


# The settings a run and its collection must share for the two-halves equality, and their defaults.
SETTINGS = (("threshold", 0.8), ("num_perm", 128), ("ngram", 5), ("shingle", "word"), ("seed", 1))


def resolve_settings(coll, given: dict) -> dict:
    """The run's hashing and threshold settings. A setting left None is the collection's (with
    ``against``) or the default; one given must equal the collection's, else a
    FailedPreconditionError names it: only then do the run and the collection find the same
    candidate pairs, which the first-kept rule's split-run equality needs."""
    out = {}
    for name, default in SETTINGS:
        val = given.get(name)
        if coll is None:
            out[name] = default if val is None else val
            continue
        have = getattr(coll.config, name)
        if val is not None and val != have:
            raise FailedPreconditionError(
                f"dedup --against: {name}={val!r} but collection {coll.name!r} was created with {name}={have!r}; "
                f"leave --{name.replace('_', '-')} unset (the collection's is used) or pass {have}.")
        out[name] = have
    return out


def check_compatible(coll, *, threshold: float, num_perm: int, verify: str, bands: tuple[int, int]) -> bool:
    """Refuse a collection whose banding is not the run's (explicit ``weights``, or ``verify="none"``),
    or exact verification without stored shingles; returns whether to verify exactly."""
    cfg = coll.config
    theirs = choose_params(threshold, num_perm, "exact", cfg.weights)
    if theirs != tuple(bands):
        why = (f"weights={cfg.weights!r}" if cfg.weights is not None else f"verify={verify!r}")
        raise FailedPreconditionError(
            f"dedup --against: the run bands its signatures as {bands[0]} x {bands[1]} but collection {coll.name!r} "
            f"as {theirs[0]} x {theirs[1]} ({why}); they must find the same candidates: use --verify exact or "
            "estimate, and a collection created without weights.")
    exact = verify == "exact"
    if exact and not cfg.store_shingles:
        raise FailedPreconditionError(
            f"dedup --against: collection {coll.name!r} does not store shingles, so its Jaccard cannot be exact; "
            "pass --verify estimate.")
    return exact


def match_batch(coll, texts: list[str], own_ids: list[str], p: Params, exact: bool) -> tuple[list[int], list[str], list[float]]:
    """(positions, collection ids, Jaccard) of the texts that near-duplicate a collection document
    other than the one of their own id: the best match, ties to the smaller id.

    With ``exact`` and a collection that stores its texts, every LSH candidate is fetched once per
    batch (``get``) and verified here in one batched kernel call, as the pipeline verifies its own
    pairs; otherwise the collection ranks (``near_duplicates_batch``)."""
    sets = shingle_hashes(texts, ngram=p.ngram, shingle=p.shingle, backend=p.backend)
    ask = np.flatnonzero(sets.sizes() > 0).tolist()  # a text without shingles duplicates nothing
    pos, ids, jac = [], [], []
    batched = exact and coll.config.store_text
    for lo in range(0, len(ask), _QUERY_DOCS):
        chunk = ask[lo : lo + _QUERY_DOCS]
        if batched:
            found = _verified_matches(coll, sets, texts, chunk, own_ids, p)
        else:
            hits = coll.near_duplicates_batch(texts=[texts[i] for i in chunk], threshold=p.threshold, k=2,
                                              exact=exact)
            found = []
            for i, h in zip(chunk, hits):
                other = [x for x in h if x.id != own_ids[i]]
                if other:
                    found.append((i, other[0].id, other[0].jaccard))
        for i, of, v in found:
            pos.append(i)
            ids.append(of)
            jac.append(v)
    return pos, ids, jac


# Below every LSH candidate's signature estimate (a candidate shares r of num_perm values), above 0.
_ALL_CANDIDATES = 1e-6


def _verified_matches(coll, sets: ShingleSets, texts: list[str], chunk: list[int], own_ids: list[str], p: Params):
    """[(position, collection id, exact Jaccard)] of the best verified match of each text in ``chunk``."""
    hits = coll.near_duplicates_batch(texts=[texts[i] for i in chunk], threshold=_ALL_CANDIDATES, exact=False)
    cand = [[x.id for x in h if x.id != own_ids[i]] for i, h in zip(chunk, hits)]
    uniq = sorted({c for cs in cand for c in cs})
    if not uniq:
        return []
    stored = coll.get(uniq)
    theirs = shingle_hashes([d.text for d in stored], ngram=p.ngram, shingle=p.shingle, backend=p.backend)
    col = {c: k for k, c in enumerate(uniq)}
    qa = np.array([q for q, cs in enumerate(cand) for _ in cs], dtype=np.int64)
    qb = np.array([col[c] for cs in cand for c in cs], dtype=np.int64)
    mine = np.asarray(chunk, dtype=np.int64)
    be = get_backend(p.backend)
    v = be.pair_jaccard_sets(sets.offsets, sets.hashes, theirs.offsets, theirs.hashes, mine[qa], qb)
    best: dict[int, tuple[float, str]] = {}
    for q, c, x in zip(qa.tolist(), qb.tolist(), v.tolist()):
        if x >= p.threshold:
            key = (-x, uniq[c])
            if q not in best or key < best[q]:
                best[q] = key
    return [(chunk[q], of, -negj) for q, (negj, of) in sorted(best.items())]


def _unit_matches(coll, unit: Unit, cfg: ReadConfig, p: Params, exact: bool, offset: int, with_ids: bool) -> Matches:
    parts = []
    for batch in read_unit(unit, cfg, want_ids=with_ids):
        glob = offset + batch.rows
        own = batch.ids if with_ids else [str(g) for g in glob.tolist()]
        pos, ids, jac = match_batch(coll, batch.texts, own, p, exact)
        parts.append(Matches(glob[pos].astype(np.int64), ids, np.asarray(jac, np.float64), [own[i] for i in pos]))
    return Matches.concat(parts)


def query_units(coll, units: list[Unit], cfg: ReadConfig, p: Params, counts: np.ndarray, exact: bool,
                with_ids: bool, ui) -> Matches:
    """Stream NEW again, batch by batch, and ask the collection for each batch's near-duplicates."""
    off = offsets_from_sizes(counts)
    parts = []
    with ui.bar("against", int(counts.sum())) as bar:
        for k, unit in enumerate(units):
            parts.append(_unit_matches(coll, unit, cfg, p, exact, int(off[k]), with_ids))
            bar.update(int(counts[k]))
    return Matches.concat(parts)


def first_kept(n: int, pairs: np.ndarray, jaccard: np.ndarray, blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first-kept rule: ``rep[j]`` is ``j`` for a kept document, -1 for one dropped for a
    collection match (``blocked``), else the earliest kept ``i < j`` with a verified pair (i, j);
    ``rep_jaccard`` is the pair's Jaccard (1.0 for kept ones, NaN for blocked ones)."""
    rep = np.arange(n, dtype=np.int64)
    rep_jac = np.ones(n, dtype=np.float64)
    rep[blocked] = -1
    rep_jac[blocked] = np.nan
    if not len(pairs):
        return rep, rep_jac
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))  # by j, then i: the earliest i first
    a, b, jac = pairs[order, 0].tolist(), pairs[order, 1].tolist(), jaccard[order].tolist()
    kept = rep == np.arange(n)
    for i, j, v in zip(a, b, jac):
        if kept[j] and kept[i]:  # j's earlier neighbours come in ascending i, each already final
            kept[j] = False
            rep[j], rep_jac[j] = i, v
    return rep, rep_jac


@dataclass(frozen=True)
class AddFields:
    """Which input fields ``--add`` maps to what: ``text_field`` is the text, ``id_field`` (or a
    text file's path) the id, ``label`` (``--label-field``) the label and ``vector``
    (``--vector-field``) the vector; every other field of the record is metadata."""

    label: str | None = None
    vector: str | None = None


def _plain(value):
    """A Parquet value as JSON can hold it: dates and times as ISO 8601 text, decimals as floats."""
    import datetime
    import decimal

    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _document(unit: Unit, cfg: ReadConfig, fields: AddFields, row: int, rec: dict) -> dict:
    rec = dict(rec)
    text = rec.pop(cfg.text_field)
    if unit.format == "text":
        doc_id = unit.paths[row]
    else:
        v = rec.pop(cfg.id_field)
        doc_id = v if isinstance(v, str) else str(v)
    doc = {"id": doc_id, "text": text}
    for key, name in (("label", fields.label), ("vector", fields.vector)):
        if name is not None and rec.get(name) is not None:
            doc[key] = rec.pop(name)
    doc["metadata"] = {k: _plain(v) for k, v in rec.items() if k not in (fields.label, fields.vector)}
    return doc


def add_kept(coll, units: list[Unit], cfg: ReadConfig, counts: np.ndarray, keep: np.ndarray, threshold: float,
             fields: AddFields, ui) -> tuple[int, Matches]:
    """``--add``: upsert the kept documents (id, text, metadata, and label / vector as ``fields``
    maps them) into the collection, batch by batch, each batch atomic and with
    ``on_duplicate="skip"`` at the run's ``threshold``: the collection checks each document again
    under its write lock, so one that another writer stored since the run queried (a near-duplicate
    of it) is not stored twice. Returns how many were added and, as Matches, the ones that check
    skipped (each with the stored document it duplicates)."""
    off = offsets_from_sizes(counts)
    added, late = 0, []
    with ui.bar("add", int(keep.sum())) as bar:
        for k, unit in enumerate(units):
            rows = np.flatnonzero(keep[off[k] : off[k + 1]]).astype(np.int64)
            if not len(rows):
                continue
            for got, recs in read_records(unit, cfg, rows):
                docs = [_document(unit, cfg, fields, r, rec) for r, rec in zip(got.tolist(), recs)]
                glob = int(off[k]) + got
                for lo in range(0, len(docs), _QUERY_DOCS):
                    part = docs[lo : lo + _QUERY_DOCS]
                    res = coll.upsert(part, on_duplicate="skip", threshold=threshold)
                    added += res.upserted
                    if res.duplicates:
                        pos = {d["id"]: lo + i for i, d in enumerate(part)}
                        dup = sorted(res.duplicates, key=lambda d: pos[d.id])
                        late.append(Matches(np.array([glob[pos[d.id]] for d in dup], np.int64),
                                            [d.duplicate_of for d in dup],
                                            np.array([d.jaccard for d in dup], np.float64), [d.id for d in dup]))
                    bar.update(len(part))
    return added, Matches.concat(late)


def first_kept_clusters(rep: np.ndarray, rep_jac: np.ndarray, matches: Matches, ids_of) -> dict:
    """The columns of clusters.parquet under the first-kept rule: every dropped document and every
    NEW document kept as someone's representative. ``cluster_id`` is the representative's index
    (-1 for a collection document), ``representative_id`` its id and ``in_collection`` whether
    it is the collection's. ``ids_of(indices)`` gives the ids of documents in verified pairs."""
    import pyarrow as pa

    n = rep.shape[0]
    idx = np.arange(n)
    dropped = rep != idx
    members = np.union1d(np.flatnonzero(dropped), rep[dropped & (rep >= 0)]).astype(np.int64)
    blocked = np.zeros(n, dtype=bool)
    blocked[matches.index] = True
    ids = np.empty(len(members), dtype=object)
    rep_ids = np.empty(len(members), dtype=object)
    in_pairs = ~blocked[members]
    ids[in_pairs] = ids_of(members[in_pairs])
    pos = np.searchsorted(matches.index, members[~in_pairs])
    ids[~in_pairs] = [matches.own_ids[i] for i in pos.tolist()]
    rep_ids[~in_pairs] = [matches.ids[i] for i in pos.tolist()]
    rep_ids[in_pairs] = ids_of(rep[members[in_pairs]])
    return {"id": pa.array(ids.tolist(), type=pa.string()), "index": pa.array(members, type=pa.int64()),
            "cluster_id": pa.array(rep[members], type=pa.int64()),
            "kept": pa.array(rep[members] == members, type=pa.bool_()),
            "jaccard": pa.array(rep_jac[members], type=pa.float64()),
            "representative_id": pa.array(rep_ids.tolist(), type=pa.string()),
            "in_collection": pa.array(rep[members] < 0, type=pa.bool_())}


def with_collection_pairs(table: dict, matches: Matches) -> dict:
    """pairs.parquet's columns plus one row per NEW document matched in the collection (``id_a``
    the collection's id, ``index_a`` -1, ``a_in_collection`` True)."""
    import pyarrow as pa

    m = len(matches.index)
    n = len(table["index_a"])
    return {
        "id_a": pa.concat_arrays([table["id_a"], pa.array(matches.ids, type=pa.string())]),
        "id_b": pa.concat_arrays([table["id_b"], pa.array(matches.own_ids, type=pa.string())]),
        "index_a": pa.concat_arrays([table["index_a"], pa.array(np.full(m, -1, np.int64), type=pa.int64())]),
        "index_b": pa.concat_arrays([table["index_b"], pa.array(matches.index, type=pa.int64())]),
        "jaccard": pa.concat_arrays([table["jaccard"], pa.array(matches.jaccard, type=pa.float64())]),
        "a_in_collection": pa.array(np.r_[np.zeros(n, bool), np.ones(m, bool)], type=pa.bool_()),
    }
