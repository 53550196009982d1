"""Helpers of the collection's query paths that do not hold state.

(The in-memory ``DocTable`` that used to live here kept a second copy of every signature and
vector; the engine's segments, :mod:`simsearch.index._engine`, are now their only home.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._arrays import offsets_from_sizes
from ._types import Cluster


def exact_jaccard(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Exact Jaccard of two sorted unique hash sets; empty sets are similar to nothing."""
    if a is None or b is None or not len(a) or not len(b):
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


def clusters_from_pairs(engine, pairs: np.ndarray, threshold: float,
                        fetch: Callable[[list[int]], dict] | None, backend) -> list[Cluster]:
    """Verify candidate rowid pairs (one pair-Jaccard kernel call), join them into components,
    report each with its representative (the earliest rowid)."""
    nodes, inv = np.unique(pairs.ravel(), return_inverse=True)
    edges = inv.reshape(-1, 2).astype(np.int64)
    k = backend.host
    if fetch is not None:
        found = fetch([int(r) for r in nodes])
        sets = [found[int(r)] for r in nodes]
        off = offsets_from_sizes([len(s) for s in sets])
        hashes = np.concatenate(sets) if sets else np.empty(0, np.uint64)

        def sims(ia, ib):
            return k.pair_jaccard_sets(off, hashes, off, hashes, ia, ib)
    else:
        src, row = engine.locate_rowids(nodes)
        sigs = engine.gather(src, row, "sigs")

        def sims(ia, ib):
            return k.pair_jaccard_sigs(sigs, sigs, ia, ib)

    edges = edges[sims(edges[:, 0], edges[:, 1]) >= threshold]
    if not len(edges):
        return []
    roots = k.connected_components(len(nodes), edges)  # smallest node index = earliest rowid
    members: dict[int, list[int]] = {}
    for i in np.unique(edges.ravel()).tolist():
        members.setdefault(int(roots[i]), []).append(int(i))
    src, row = engine.locate_rowids(nodes)
    ext_all = engine.gather(src, row, "ext")
    clusters = []
    for root, group in members.items():
        group.sort()
        g = np.array(group, np.int64)
        vals = sims(np.full(len(g), root, np.int64), g)
        sim = tuple(1.0 if x == root else float(v) for x, v in zip(group, vals))
        clusters.append(Cluster(representative=ext_all[group[0]], ids=tuple(ext_all[x] for x in group), jaccard=sim))
    clusters.sort(key=lambda c: (-len(c.ids), c.representative))
    return clusters
