"""The Ray Data engine: the same per-chunk steps as the local engine, spread over a Ray cluster.

1. signatures: ``map_batches`` over the input units; each worker reads its unit in batches and
   runs :func:`._stages.signature_chunk` (numba, one thread per CPU worker; CuPy on GPU workers
   when the cluster has GPUs). Each output row is one batch, its arrays packed as bytes;
2. candidates: the band keys are cut into (band, key mod P) buckets and shuffled with
   ``groupby("bucket").map_groups``; each group joins its keys with :func:`._stages.band_pairs`;
3. verification: workers re-read only the documents in candidate pairs (:func:`._stages.verify_material`),
   then ``map_batches`` over chunks of pairs runs :func:`._stages.verify_chunk` against the shared
   material in the object store;
4. connected components, the representatives and the outputs: on the driver, as locally.

Input errors raised in workers come back as data (a pickled exception per batch), so the driver
raises the same :class:`~simsearch.errors.InputDataError` as the local engine. The inputs must be
readable at the same paths on every node (a shared filesystem); outputs are written by the driver.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from dataclasses import replace

import numpy as np

from ..backends import resolve_backend_name
from ..errors import BackendUnavailableError, SimsearchError
from .._arrays import offsets_from_sizes
from ._common import EngineResult, Progress, StageClock, check_unique_ids, needs_ids
from ._io import ReadConfig, Unit, hash_ids, read_unit
from ._core import connected_components, merge_pairs
from ._stages import Params, band_pairs, concat_material, signature_chunk, verify_chunk, \
    verify_material

__all__ = ["run_ray", "import_ray", "ray_matches"]

_ROWS_PER_BUCKET = 2_000_000  # keys per (band, partition) group, which one worker joins
_PAIRS_PER_TASK = 1_000_000


def import_ray():
    """``ray`` and ``ray.data``, or BackendUnavailableError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"--engine ray needs Ray Data ({exc}); install the extra: pip install 'simsearch[ray]'.") from exc
    return ray


def run_ray(units: list[Unit], cfg: ReadConfig, p_args: dict, backend: str, address: str | None, ui: Progress,
            clock: StageClock) -> tuple[EngineResult, Params]:
    """Run the stages on Ray; returns the result and the Params the driver uses to finish."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=not ui.quiet,
                 logging_level=logging.ERROR if ui.quiet else logging.INFO)
    elif address:
        ui.log(f"simsearch dedup: Ray is already initialised here; using it, not {address}")
    with warnings.catch_warnings():  # Ray 2.60's get_current() warns about one of its own defaults
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, logging.getLogger("ray.data").level)
    ctx.enable_progress_bars = not ui.quiet
    if ui.quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        return _run(ray, units, cfg, p_args, backend, ui, clock)
    finally:
        ctx.enable_progress_bars = saved[0]
        logging.getLogger("ray.data").setLevel(saved[1])
        if started_here:
            ray.shutdown()


def _resources(ray, backend: str) -> tuple[str, bool, str]:
    """(worker backend, use GPUs, device description) from the cluster's resources."""
    res = ray.cluster_resources()
    cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
    if backend == "cupy" and gpus == 0:
        raise BackendUnavailableError("--backend cupy with --engine ray needs GPUs in the Ray cluster; it has none. "
                                      "Use --backend auto or numba.")
    # "auto" uses the cluster's GPUs when this driver's "auto" is the GPU backend too; a CPU-only
    # driver of a GPU cluster asks for them with --backend cupy.
    use_gpu = gpus > 0 and (backend == "cupy" or (backend == "auto" and resolve_backend_name("auto") == "cupy"))
    worker = "cupy" if use_gpu else ("numba" if backend == "auto" else backend)
    device = f"GPU (Ray: {gpus} GPUs, {cpus} CPUs)" if use_gpu else f"CPU (Ray: {cpus} CPUs)"
    return worker, use_gpu, device


def _run(ray, units, cfg, p_args, backend, ui, clock):
    worker_backend, use_gpu, device = _resources(ray, backend)
    p = Params(backend=worker_backend, **p_args)
    driver = replace(p, backend=resolve_backend_name(backend if backend in ("numpy", "numba") else "auto"))
    cpu_p = replace(p, backend="numpy" if backend == "numpy" else "numba")  # joins and verification run on CPUs
    ui.log(f"simsearch dedup: {len(units)} {units[0].format if units else ''} unit(s), engine ray, "
           f"workers on {device} with {worker_backend}")
    with_ids = bool(units) and needs_ids(units[0].format, cfg)
    if not units:
        empty = np.empty((0, 2), dtype=np.int64)
        return EngineResult(np.zeros(0, np.int64), 0, empty, np.empty(0), np.empty(0, np.int64),
                            np.empty(0, np.int64), concat_material([], p), [] if with_ids else None,
                            device=device, peak_rss_scope="driver", backend=worker_backend), driver
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    units_ds = ray.data.from_items([{"unit": k} for k in range(len(units))], override_num_blocks=max(1, len(units)))
    kw = dict(units=units, cfg=cfg, p=p, with_ids=with_ids)
    sig_ds = _map_units(ray, units_ds, _pass1, kw, use_gpu).materialize()
    counts, valid, hashes = _pass1_meta(sig_ds, len(units), with_ids)
    n = int(counts.sum())
    check_unique_ids(hashes, units, counts, cfg)
    clock.lap("signatures")

    cand = _candidates(ray, sig_ds, counts, valid, cpu_p, cpus, ui)
    del sig_ds
    clock.lap("candidates")

    needed = np.unique(cand)
    material, needed_ids = _read_needed(ray, units_ds, units, cfg, p, counts, needed, with_ids, use_gpu)
    pairs, jac = _verify(ray, cand, needed, material, cpu_p, cpus)
    clock.lap("verify")

    clusters = connected_components(n, pairs, backend=driver.backend)
    clock.lap("components")
    res = EngineResult(counts, int(cand.shape[0]), pairs, jac, clusters, needed, material, needed_ids,
                       device=device, peak_rss_scope="driver", backend=worker_backend)
    return res, driver


# ---------------------------------------------------------------------------------------------
# Worker side: each function handles one batch of unit numbers and yields one row per document batch.


def _obj(*values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _set_threads() -> None:
    """One numba thread per CPU Ray gave this worker (Ray does not cap numba's pool)."""
    try:
        import numba
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, int(cpus))))
    except Exception:  # noqa: BLE001 - outside a Ray worker, or numba absent: leave the defaults
        pass


def _error_row(k: int, exc: SimsearchError, **empty) -> dict:
    return {"unit": np.array([k]), "start": np.array([-1]), "count": np.array([0]), "error": _obj(pickle.dumps(exc)),
            **{c: _obj(b"") for c in empty}}


def _pass1(batch, units, cfg, p, with_ids):
    _set_threads()
    for k in batch["unit"].tolist():
        try:
            for b in read_unit(units[k], cfg, want_ids=with_ids):
                keys, valid = signature_chunk(b.texts, p)
                ids = hash_ids(b.ids).tobytes() if with_ids else b""
                yield {"unit": np.array([k]), "start": np.array([int(b.rows[0])]), "count": np.array([len(b.rows)]),
                       "error": _obj(b""), "keys": _obj(keys.tobytes()), "valid": _obj(valid.tobytes()),
                       "ids": _obj(ids)}
        except SimsearchError as exc:
            yield _error_row(k, exc, keys=1, valid=1, ids=1)


def _pass2(batch, units, cfg, p, with_ids, needed_ref, offsets):
    import ray

    _set_threads()
    needed = ray.get(needed_ref)
    for k in batch["unit"].tolist():
        lo, hi = np.searchsorted(needed, [offsets[k], offsets[k + 1]])
        if hi == lo:
            continue
        first = int(lo)
        try:
            for b in read_unit(units[k], cfg, select=needed[lo:hi] - offsets[k], want_ids=with_ids):
                m = verify_material(b.texts, p)
                packed = (m.sizes().tobytes(), m.hashes.tobytes()) if p.verify == "exact" else (b"", m.tobytes())
                yield {"unit": np.array([k]), "start": np.array([first]), "count": np.array([len(b.rows)]),
                       "error": _obj(b""), "sizes": _obj(packed[0]), "values": _obj(packed[1]),
                       "ids": _obj(pickle.dumps(b.ids))}
                first += len(b.rows)
        except SimsearchError as exc:
            yield _error_row(k, exc, sizes=1, values=1, ids=1)


class _GpuWorker:
    """Actor wrapper so CuPy initialises once per GPU worker."""

    def __init__(self, fn, kwargs):
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, batch):
        yield from self.fn(batch, **self.kwargs)


def _map_units(ray, ds, fn, kwargs, use_gpu):
    if use_gpu:
        gpus = int(ray.cluster_resources().get("GPU", 1))
        return ds.map_batches(_GpuWorker, batch_size=1, batch_format="numpy", fn_constructor_args=(fn, kwargs),
                              compute=ray.data.ActorPoolStrategy(size=gpus), num_gpus=1)
    return ds.map_batches(fn, batch_size=1, batch_format="numpy", fn_kwargs=kwargs, num_cpus=1)


def _explode(batch, offsets, b, parts):
    """Pass-1 rows -> one row per (band, key mod parts) bucket holding those keys and their documents."""
    buckets, keys_out, docs_out = [], [], []
    for unit, start, count, kb, vb in zip(batch["unit"], batch["start"], batch["count"], batch["keys"],
                                          batch["valid"]):
        if count == 0:
            continue
        keys = np.frombuffer(kb, dtype=np.uint64).reshape(int(count), b)
        valid = np.frombuffer(vb, dtype=np.bool_)
        docs = offsets[int(unit)] + int(start) + np.arange(int(count), dtype=np.int64)
        keys, docs = keys[valid], docs[valid]
        part = (keys % np.uint64(parts)).astype(np.int64)
        for j in range(b):
            for q in range(parts):
                sel = part[:, j] == q
                if sel.any():
                    buckets.append(j * parts + q)
                    keys_out.append(np.ascontiguousarray(keys[sel, j]).tobytes())
                    docs_out.append(docs[sel].tobytes())
    return {"bucket": np.asarray(buckets, dtype=np.int64), "keys": _obj(*keys_out), "docs": _obj(*docs_out)}


def _join_bucket(group, backend):
    """All keys of one (band, partition) bucket -> candidate pairs in global document ids."""
    _set_threads()
    keys = np.concatenate([np.frombuffer(k, dtype=np.uint64) for k in group["keys"]])
    docs = np.concatenate([np.frombuffer(d, dtype=np.int64) for d in group["docs"]])
    pairs = band_pairs(keys.reshape(-1, 1), None, docs, backend)
    return {"pairs": _obj(pairs.tobytes())}


def _verify_rows(batch, rows_ref, material_ref, p):
    import ray

    _set_threads()
    rows, material = ray.get(rows_ref), ray.get(material_ref)
    lo, hi = int(batch["lo"][0]), int(batch["hi"][0])
    kept, jac = verify_chunk(rows[lo:hi], material, p)
    return {"lo": np.array([lo]), "kept": _obj(kept.tobytes()), "jac": _obj(jac.tobytes())}


# ---------------------------------------------------------------------------------------------
# Driver side.


def _raise_first_error(errors: list[tuple[int, int, bytes]]) -> None:
    if errors:
        raise pickle.loads(min(errors)[2])


def _pass1_meta(sig_ds, nunits: int, with_ids: bool):
    """Per-unit counts, the global non-empty flags and id hashes (only these columns reach the driver)."""
    rows, errors = [], []
    for batch in sig_ds.select_columns(["unit", "start", "count", "valid", "ids", "error"]).iter_batches(
            batch_format="numpy", batch_size=None):
        for u, s, c, v, i, e in zip(batch["unit"], batch["start"], batch["count"], batch["valid"], batch["ids"],
                                    batch["error"]):
            if e:
                errors.append((int(u), int(s), e))
            else:
                rows.append((int(u), int(s), int(c), v, i))
    _raise_first_error(errors)
    counts = np.zeros(nunits, dtype=np.int64)
    for u, _, c, _, _ in rows:
        counts[u] += c
    off = offsets_from_sizes(counts)
    n = int(off[-1])
    valid = np.zeros(n, dtype=bool)
    hashes = np.zeros(n, dtype=np.uint64) if with_ids else None
    for u, s, c, v, i in rows:
        g = off[u] + s
        valid[g : g + c] = np.frombuffer(v, dtype=np.bool_)
        if with_ids:
            hashes[g : g + c] = np.frombuffer(i, dtype=np.uint64)
    return counts, valid, hashes


def _candidates(ray, sig_ds, counts, valid, p: Params, cpus: int, ui: Progress) -> np.ndarray:
    if int(valid.sum()) < 2:
        return np.empty((0, 2), dtype=np.int64)
    parts = max(1, math.ceil(int(valid.sum()) / _ROWS_PER_BUCKET))
    nbuckets = p.b * parts
    buckets = sig_ds.map_batches(_explode, batch_format="numpy", num_cpus=1,
                                 fn_kwargs=dict(offsets=offsets_from_sizes(counts), b=p.b, parts=parts))
    grouped = buckets.groupby("bucket", num_partitions=max(1, min(nbuckets, 2 * cpus)))
    joined = grouped.map_groups(_join_bucket, batch_format="numpy", fn_kwargs=dict(backend=p.backend), num_cpus=1)
    out = []
    with ui.bar("candidates", nbuckets, unit="bucket") as bar:
        for batch in joined.iter_batches(batch_format="numpy", batch_size=None):
            for pb in batch["pairs"]:
                out.append(np.frombuffer(pb, dtype=np.int64).reshape(-1, 2))
                bar.update(1)
    return merge_pairs(out)


def _read_needed(ray, units_ds, units, cfg, p, counts, needed, with_ids, use_gpu):
    """Pass 2 on the workers: the material and ids of the documents in candidate pairs, in ``needed`` order."""
    if not needed.shape[0]:
        return concat_material([], p), ([] if with_ids else None)
    kw = dict(units=units, cfg=cfg, p=p, with_ids=with_ids, needed_ref=ray.put(needed), offsets=offsets_from_sizes(counts))
    rows, errors = [], []
    for batch in _map_units(ray, units_ds, _pass2, kw, use_gpu).iter_batches(batch_format="numpy", batch_size=None):
        for u, s, c, e, sz, vals, ids in zip(batch["unit"], batch["start"], batch["count"], batch["error"],
                                             batch["sizes"], batch["values"], batch["ids"]):
            if e:
                errors.append((int(u), int(s), e))
            else:
                rows.append((int(s), int(c), sz, vals, ids))
    _raise_first_error(errors)
    rows.sort(key=lambda r: r[0], reverse=True)
    parts, all_ids = [], []
    while rows:  # popped, so that each batch's bytes are freed once concat_material has copied them
        _, c, sz, vals, ids = rows.pop()
        if p.verify == "exact":
            from ..shingling import ShingleSets

            off = offsets_from_sizes(np.frombuffer(sz, dtype=np.int64))
            parts.append(ShingleSets(off, np.frombuffer(vals, dtype=np.uint64)))
        else:
            parts.append(np.frombuffer(vals, dtype=np.uint32).reshape(c, p.num_perm))
        if with_ids:
            all_ids.extend(pickle.loads(ids))
    return concat_material(parts, p), (all_ids if with_ids else None)


def _verify(ray, cand, needed, material, p: Params, cpus: int):
    """Verified pairs (global ids) and their Jaccard, in candidate order, computed by Ray tasks."""
    rows = np.searchsorted(needed, cand)
    m = rows.shape[0]
    if not m:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float64)
    ntasks = max(1, min(4 * cpus, math.ceil(m / _PAIRS_PER_TASK)))
    bounds = np.linspace(0, m, ntasks + 1).astype(np.int64)
    chunks = [{"lo": int(a), "hi": int(b)} for a, b in zip(bounds[:-1], bounds[1:])]
    ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
    ds = ds.map_batches(_verify_rows, batch_size=1, batch_format="numpy", num_cpus=1,
                        fn_kwargs=dict(rows_ref=ray.put(rows), material_ref=ray.put(material), p=p))
    out = sorted(((int(lo), k, j) for batch in ds.iter_batches(batch_format="numpy", batch_size=None)
                  for lo, k, j in zip(batch["lo"], batch["kept"], batch["jac"])), key=lambda t: t[0])
    kept = np.concatenate([np.frombuffer(k, dtype=np.int64).reshape(-1, 2) for _, k, _ in out])
    jac = np.concatenate([np.frombuffer(j, dtype=np.float64) for _, _, j in out])
    return (needed[kept] if kept.size else np.empty((0, 2), dtype=np.int64)), jac


def _against_unit(unit, cfg, p, exact, offset, with_ids, coll):
    """One unit's matches in the collection, queried from this worker (``coll`` is a
    RemoteCollection, which reconnected to its server when it was unpickled here)."""
    from ._incremental import _unit_matches

    try:
        return _unit_matches(coll, unit, cfg, p, exact, offset, with_ids), None
    except SimsearchError as exc:
        return None, pickle.dumps(exc)


def ray_matches(units, cfg, p: Params, counts, exact: bool, with_ids: bool, coll, address: str | None):
    """``dedup --against`` on Ray: one task per unit; each worker reads its unit in batches and
    queries the server of the RemoteCollection ``coll`` (the workers never open an index directory)."""
    from ._incremental import Matches

    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
    try:
        task = ray.remote(_against_unit)
        off = offsets_from_sizes(counts)
        refs = [task.remote(u, cfg, p, exact, int(off[k]), with_ids, coll) for k, u in enumerate(units)]
        parts = []
        for m, err in ray.get(refs):
            if err is not None:
                raise pickle.loads(err)
            parts.append(m)
        return Matches.concat(parts)
    finally:
        if started_here:
            ray.shutdown()
