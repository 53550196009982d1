"""``simsearch.dedup.run``: options, the engine, and the atomic outputs in OUTDIR."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from .._arrays import offsets_from_sizes
from ..banding import choose_params
from ..errors import AlreadyExistsError, InvalidArgumentError, InvalidTypeError
from ..validation import check_int, check_option, check_param
from ._common import EngineResult, Progress, StageClock, needs_ids
from ._incremental import (
    RULES,
    AddFields,
    Matches,
    add_kept,
    check_against,
    check_compatible,
    first_kept,
    first_kept_clusters,
    query_units,
    resolve_settings,
    with_collection_pairs,
)
from ._io import FORMATS, ReadConfig, Unit, plan_units, write_unit
from ._stages import Params, representative_jaccard

__all__ = ["run", "DedupSummary", "ENGINES", "RULES"]

ENGINES = ("local", "ray")
_BACKENDS = ("auto", "numpy", "numba", "cupy")


@dataclass(frozen=True)
class DedupSummary:
    """What a dedup run did; also written to OUTDIR/summary.json.

    ``clusters`` counts clusters of two or more documents; ``docs_out`` is every cluster, singletons
    included. ``seconds`` is wall time per stage. ``peak_rss_bytes`` is this process's peak resident
    memory (with the Ray engine only the driver's: ``peak_rss_scope``).
    """

    output: str
    format: str
    engine: str
    backend: str
    device: str
    docs_in: int
    docs_out: int
    duplicates: int
    clusters: int
    candidates: int
    pairs: int
    threshold: float
    num_perm: int
    bands: int
    rows_per_band: int
    ngram: int
    shingle: str
    verify: str
    seed: int
    seconds: dict
    peak_rss_bytes: int
    peak_rss_scope: str
    inputs: list
    files: dict
    rule: str = "components"
    against: str | None = None
    against_matches: int = 0
    added: int = 0
    add_skipped: int = 0  # kept documents --add's check found stored meanwhile (in against_matches)

    def as_dict(self) -> dict:
        return asdict(self)


def run(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - mirrors --format
    text_field: str = "text",
    id_field: str | None = None,
    threshold: float | None = None,
    ngram: int | None = None,
    shingle: str | None = None,
    num_perm: int | None = None,
    verify: str = "exact",
    engine: str = "local",
    ray_address: str | None = None,
    batch_size: int = 10_000,
    backend: str = "auto",
    seed: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    rule: str | None = None,
    against=None,
    add: bool = False,
    label_field: str | None = None,
    vector_field: str | None = None,
) -> DedupSummary:
    """Deduplicate ``inputs`` (JSONL[.gz] / Parquet files, or directories) into the directory ``output``.

    Streams the input in batches of ``batch_size`` documents (see the module docstrings of the
    engines for what stays in memory), keeps the smallest-index document of every cluster of
    near-duplicates (Jaccard >= ``threshold``), and writes OUTDIR/data/ (the kept records, in
    the input's format and file layout), OUTDIR/clusters.parquet (every document of a cluster of
    two or more: id, index, cluster_id = the representative's index, kept, Jaccard to the
    representative), OUTDIR/pairs.parquet (the verified pairs the clusters are made of) and
    OUTDIR/summary.json. The
    outputs appear all at once: they are written to a hidden temporary directory beside OUTDIR
    and renamed into place, and removed on any error. An existing non-empty OUTDIR is refused
    unless ``overwrite``. Without ``id_field``, a document's id is its 0-based position in the
    input (files in order); documents of a text directory are identified by their path.

    ``rule``: ``"components"`` (the default without ``against``) keeps the smallest index of each
    connected component; ``"first-kept"`` drops a document iff it near-duplicates an earlier kept
    one (see :mod:`simsearch.dedup._incremental`). ``against`` (a Collection or a RemoteCollection) also drops NEW documents that near-duplicate one of the collection's,
    under the first-kept rule; clusters.parquet and pairs.parquet then name the collection's ids
    (``representative_id``, ``in_collection``; ``id_a``/``a_in_collection``). ``threshold``,
    ``num_perm``, ``ngram``, ``shingle`` and ``seed`` default to 0.8, 128, 5, "word" and 1, or
    with ``against`` to the collection's; a value that differs from the collection's is a
    FailedPreconditionError naming it (the run and the collection must find the same pairs).

    ``add`` then upserts the kept documents into the collection, before the outputs are written:
    id, text, every other field of the record as metadata, and the fields ``label_field`` /
    ``vector_field`` as the label / vector (text files: id and text only). It needs ids
    (``id_field``, or text files). Each batch is upserted with ``on_duplicate="skip"`` at the run's
    threshold, so a document that near-duplicates one another writer stored since the run's query
    is not stored; the outputs count it as matched in the collection (``add_skipped`` in the
    summary) and documents dropped for it stay dropped, so data/ holds exactly what was added.
    """
    started = time.perf_counter()
    f = "dedup.run"
    inputs = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    output = os.path.abspath(os.fspath(output))
    if format is not None:
        check_option(format, "format", FORMATS, func=f)
    if against is not None:
        check_against(against, engine)
    given = dict(threshold=threshold, num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed)
    given = {k: (v if v is None else check_param(k, v, func=f)) for k, v in given.items()}
    settings = resolve_settings(against, given)
    threshold, num_perm, ngram, shingle, seed = (settings[k] for k in ("threshold", "num_perm", "ngram", "shingle",
                                                                        "seed"))
    check_param("shingle", shingle, func=f)
    check_param("verify", verify, func=f)
    check_option(engine, "engine", ENGINES, func=f)
    check_option(backend, "backend", _BACKENDS, func=f)
    for name, val in (("text_field", text_field), ("id_field", id_field), ("label_field", label_field),
                      ("vector_field", vector_field)):
        if val is not None and (not isinstance(val, str) or not val):
            raise InvalidTypeError(f"The '{name}' parameter of {f} must be a non-empty str. Got {val!r} instead.")
    threshold = check_param("threshold", threshold, func=f)
    num_perm = check_param("num_perm", num_perm, func=f)
    ngram = check_param("ngram", ngram, func=f)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 24, func=f)
    seed = check_param("seed", seed, func=f)
    rule = ("first-kept" if against is not None else "components") if rule is None else rule
    check_option(rule, "rule", RULES, func=f)
    if against is not None and rule != "first-kept":
        raise InvalidArgumentError("dedup --against keeps the first-kept rule (the one that a split run keeps "
                                   "alike); pass rule='first-kept' (--rule first-kept) or leave it unset.")
    if add and against is None:
        raise InvalidArgumentError("dedup --add needs --against (the collection to add the kept documents to).")
    if not add and (label_field is not None or vector_field is not None):
        raise InvalidArgumentError("dedup --label-field / --vector-field go with --add (they map input fields to "
                                   "the collection's documents).")
    b, r = choose_params(threshold, num_perm, verify)
    if against is not None:
        check_compatible(against, threshold=threshold, num_perm=num_perm, verify=verify, bands=(b, r))
    _check_output(output, inputs, overwrite)
    fmt, units = plan_units(inputs, format, batch_size)
    if add and not needs_ids(fmt, ReadConfig(text_field, id_field, batch_size)):
        raise InvalidArgumentError("dedup --add needs document ids in the collection; pass --id-field (id_field=) "
                                   "naming a unique id field of the input.")

    cfg = ReadConfig(text_field, id_field, batch_size)
    ui = Progress(quiet)
    clock = StageClock()
    if engine == "ray":
        from ._ray import run_ray

        p_args = dict(threshold=threshold, num_perm=num_perm, ngram=ngram, shingle=shingle, verify=verify, seed=seed,
                      b=b, r=r)
        res, p = run_ray(units, cfg, p_args, backend, ray_address, ui, clock)
    else:
        from ..backends import resolve_backend_name
        from ._local import run_local

        p = Params(threshold, num_perm, ngram, shingle, verify, seed, b, r, resolve_backend_name(backend))
        ui.log(f"simsearch dedup: {len(units)} {fmt} unit(s), engine local, backend {p.backend} "
               f"on {_device(p.backend)}")
        res = run_local(units, cfg, p, ui, clock, _total_hint(units))
        res.device = _device(p.backend)
    coll, described = against, (None if against is None else against.name)
    fk = None
    if rule == "first-kept":
        fk = _first_kept(units, cfg, p, res, coll, engine, ray_address, ui, clock)
    added = 0
    if add:
        added, late = add_kept(coll, units, cfg, res.counts, fk.keep, p.threshold, AddFields(label_field, vector_field),
                               ui)
        fk = fk.with_late(late)
        clock.lap("add")
    tmp = _make_tmp(output)
    try:
        files = _write_outputs(tmp, units, cfg, p, res, ui, clock, fk)
        summary = _summary(output, fmt, engine, p, res, clock, started, inputs, files, fk, rule, described)
        summary = replace(summary, added=added)
        with open(os.path.join(tmp, "summary.json"), "w", encoding="utf-8") as fh:
            json.dump(summary.as_dict(), fh, indent=2)
            fh.write("\n")
        _commit(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        print(format_summary(summary), file=sys.stderr, flush=True)
    return summary


@dataclass
class _FirstKept:
    """The first-kept rule's outcome: per document its representative (-1: a collection document)."""

    rep: np.ndarray
    rep_jaccard: np.ndarray
    matches: Matches
    late: int = 0  # of the matches, those --add's own check found

    @property
    def keep(self) -> np.ndarray:
        return self.rep == np.arange(self.rep.shape[0])

    def with_late(self, late: Matches) -> _FirstKept:
        """The outcome after ``--add``'s check skipped the kept documents ``late``: they count as
        matched in the collection (their dependents keep them as representative)."""
        if not len(late.index):
            return self
        rep, rep_jac = self.rep.copy(), self.rep_jaccard.copy()
        rep[late.index], rep_jac[late.index] = -1, late.jaccard
        return _FirstKept(rep, rep_jac, Matches.concat([self.matches, late]), len(late.index))


def _first_kept(units, cfg, p, res, coll, engine, ray_address, ui, clock) -> _FirstKept:
    n = int(res.clusters.shape[0])
    matches = Matches.empty()
    if coll is not None:
        exact = p.verify == "exact"
        with_ids = bool(units) and needs_ids(units[0].format, cfg)
        if engine == "ray":
            from ._ray import ray_matches

            matches = ray_matches(units, cfg, p, res.counts, exact, with_ids, coll, ray_address)
        else:
            matches = query_units(coll, units, cfg, p, res.counts, exact, with_ids, ui)
        clock.lap("against")
    blocked = np.zeros(n, dtype=bool)
    blocked[matches.index] = True
    rep, rep_jac = first_kept(n, res.pairs, res.jaccard, blocked)
    rep_jac[matches.index] = matches.jaccard
    clock.lap("components")
    return _FirstKept(rep, rep_jac, matches)


def _check_output(output: str, inputs: list[str], overwrite: bool) -> None:
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise AlreadyExistsError(f"The output {output} exists and is not a directory.")
        if os.listdir(output) and not overwrite:
            raise AlreadyExistsError(f"The output directory {output} is not empty; pass --overwrite (overwrite=True) "
                                     "to replace it.")
    for inp in inputs:
        root = os.path.abspath(inp)
        if os.path.isdir(root) and (output == root or output.startswith(root.rstrip(os.sep) + os.sep)):
            raise InvalidArgumentError(f"The output directory {output} is inside the input directory {inp}; "
                                       "put it elsewhere.")


def _make_tmp(output: str) -> str:
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the output should not be
    return tmp


def _commit(tmp: str, output: str) -> None:
    """Move the finished ``tmp`` to ``output``; a replaced old output is deleted only afterwards."""
    old = None
    if os.path.isdir(output):
        if os.listdir(output):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.old-", dir=os.path.dirname(output))
            os.replace(output, old)
        else:
            os.rmdir(output)
    os.replace(tmp, output)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _total_hint(units: list[Unit]) -> int | None:
    """Documents in the input when known without reading it (Parquet metadata, text files)."""
    if not units or units[0].format == "jsonl":
        return None
    if units[0].format == "text":
        return sum(len(u.paths) for u in units)
    from ._io import _parquet_file

    return sum(_parquet_file(u.paths[0]).metadata.num_rows for u in units)


def _device(backend: str) -> str:
    from ..backends import get_backend

    return get_backend(backend).device


def _write_outputs(tmp: str, units: list[Unit], cfg: ReadConfig, p: Params, res: EngineResult, ui: Progress,
                   clock: StageClock, fk: _FirstKept | None = None) -> dict:
    """data/ (kept records per unit), clusters.parquet and pairs.parquet, inside ``tmp``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    clusters = res.clusters
    n = clusters.shape[0]
    keep = clusters == np.arange(n) if fk is None else fk.keep
    off = offsets_from_sizes(res.counts)
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    with ui.bar("write", n) as bar:
        for k, unit in enumerate(units):
            rows = np.flatnonzero(keep[off[k] : off[k + 1]]).astype(np.int64)
            write_unit(unit, cfg, rows, data)
            bar.update(int(res.counts[k]))
    if fk is None:
        members, jac = representative_jaccard(clusters, res.needed, res.material, p)
        table = {"id": _ids_of(members, res), "index": pa.array(members, type=pa.int64()),
                 "cluster_id": pa.array(clusters[members], type=pa.int64()),
                 "kept": pa.array(keep[members], type=pa.bool_()), "jaccard": pa.array(jac, type=pa.float64())}
    else:
        table = first_kept_clusters(fk.rep, fk.rep_jaccard, fk.matches, lambda d: _ids_of(d, res).to_pylist())
    pq.write_table(pa.table(table), os.path.join(tmp, "clusters.parquet"))
    a, b = res.pairs[:, 0], res.pairs[:, 1]
    table = {"id_a": _ids_of(a, res), "id_b": _ids_of(b, res), "index_a": pa.array(a, type=pa.int64()),
             "index_b": pa.array(b, type=pa.int64()), "jaccard": pa.array(res.jaccard, type=pa.float64())}
    if fk is not None:
        table = with_collection_pairs(table, fk.matches)
    pq.write_table(pa.table(table), os.path.join(tmp, "pairs.parquet"))
    clock.lap("write")
    return {"data": "data", "clusters": "clusters.parquet", "pairs": "pairs.parquet", "summary": "summary.json"}


def _ids_of(docs: np.ndarray, res: EngineResult):
    """Ids of documents that appear in candidate pairs (from pass 2), or their positions."""
    import pyarrow as pa

    if res.needed_ids is None:
        return pa.array([str(i) for i in docs.tolist()], type=pa.string())
    pos = np.searchsorted(res.needed, docs)
    return pa.array([res.needed_ids[i] for i in pos.tolist()], type=pa.string())


def _summary(output, fmt, engine, p: Params, res: EngineResult, clock, started, inputs, files,
             fk: _FirstKept | None = None, rule: str = "components", against: str | None = None) -> DedupSummary:
    clusters = res.clusters
    n = int(clusters.shape[0])
    if fk is None:
        docs_out = int((clusters == np.arange(n)).sum())
        sizes = np.bincount(clusters, minlength=n) if n else np.zeros(0, np.int64)
        n_clusters = int((sizes > 1).sum())
    else:
        docs_out = int(fk.keep.sum())
        dropped = ~fk.keep
        reps = np.unique(fk.rep[dropped & (fk.rep >= 0)])
        # a representative that --add's check skipped joins the cluster of the document it matched
        n_clusters = int(fk.keep[reps].sum()) + len(set(fk.matches.ids))
    seconds = {k: round(v, 4) for k, v in clock.seconds.items()}
    seconds["total"] = round(time.perf_counter() - started, 4)
    return DedupSummary(
        output=output, format=fmt, engine=engine, backend=res.backend or p.backend, device=res.device, docs_in=n,
        docs_out=docs_out, duplicates=n - docs_out, clusters=n_clusters, candidates=res.candidates,
        pairs=int(res.pairs.shape[0]) + (0 if fk is None else len(fk.matches.index)), threshold=p.threshold, num_perm=p.num_perm, bands=p.b, rows_per_band=p.r,
        ngram=p.ngram, shingle=p.shingle, verify=p.verify, seed=p.seed, seconds=seconds,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        peak_rss_scope=res.peak_rss_scope, inputs=inputs, files=files, rule=rule, against=against,
        against_matches=0 if fk is None else len(fk.matches.index), add_skipped=0 if fk is None else fk.late,
    )


def format_summary(s: DedupSummary) -> str:
    """The human table printed at the end of a run."""
    rows = [("documents in", f"{s.docs_in:,}"), ("documents out", f"{s.docs_out:,}"),
            ("duplicates removed", f"{s.duplicates:,}"), ("clusters (2+ docs)", f"{s.clusters:,}"),
            ("candidate pairs", f"{s.candidates:,}"), ("verified pairs", f"{s.pairs:,}"),
            ("engine / backend", f"{s.engine} / {s.backend} on {s.device}"),
            ("banding (b x r)", f"{s.bands} x {s.rows_per_band}, threshold {s.threshold}, verify {s.verify}"),
            ("rule", s.rule)]
    if s.against is not None:
        rows += [("against", s.against), ("matched in collection", f"{s.against_matches:,}"),
                 ("added to collection", f"{s.added:,}"), ("skipped by the add's check", f"{s.add_skipped:,}")]
    rows += [(f"time: {k}", f"{v:.2f} s") for k, v in s.seconds.items()]
    rows.append(("peak RSS", f"{s.peak_rss_bytes / 2**20:,.0f} MiB ({s.peak_rss_scope})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"simsearch dedup -> {s.output}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows])
