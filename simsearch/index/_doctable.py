"""A collection's in-memory document table and the search structures built over it on open.

:class:`DocTable` holds, per live document in rowid order, its external id, label, signature and
vector in growable numpy arrays (rowids only grow, so appends keep the order and lookups are a
``searchsorted``). The LSH index (:class:`simsearch.LSHIndex`) and the vector index
(:class:`simsearch.VectorIndex`) refer to documents by rowid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..banding import choose_params
from ..distance import knn
from ..lsh import LSHIndex
from ..minhash import EMPTY_HASH
from ..vector_index import VectorIndex
from ._types import Cluster, CollectionConfig


class DocTable:
    def __init__(self, num_perm: int, dim: int | None) -> None:
        self.num_perm = num_perm
        self.dim = dim
        self.empty_sig = np.full(num_perm, EMPTY_HASH, dtype=np.uint32)
        self.nan_vec = np.full(dim, np.nan, dtype=np.float32) if dim else None
        self._n = 0  # used slots (live + dead)
        self._rowids = np.empty(0, dtype=np.int64)
        self._alive = np.empty(0, dtype=bool)
        self._sigs = np.empty((0, num_perm), dtype=np.uint32)
        self._vecs = np.empty((0, dim), dtype=np.float32) if dim else None
        self._ext: list[str | None] = []
        self._labels: list[str | None] = []
        self._by_ext: dict[str, int] = {}

    @property
    def size(self) -> int:
        return len(self._by_ext)

    def grow(self, need: int) -> None:
        """Room for ``need`` rows in all (amortised doubling), so that loading a collection allocates once."""
        cap = len(self._rowids)
        if need <= cap:
            return
        new = max(need, 2 * cap, 1024)

        def grown(a, fill):
            out = np.full((new,) + a.shape[1:], fill, dtype=a.dtype)
            out[: self._n] = a[: self._n]
            return out

        self._rowids = grown(self._rowids, np.iinfo(np.int64).max)
        self._alive = grown(self._alive, False)
        self._sigs = grown(self._sigs, EMPTY_HASH)
        if self._vecs is not None:
            self._vecs = grown(self._vecs, np.nan)

    def append(self, rowids, ext_ids, labels, sigs, vecs) -> None:
        m = len(rowids)
        if not m:
            return
        if self._n and rowids[0] <= self._rowids[self._n - 1]:
            raise AssertionError("rowids must grow")  # storage guarantees AUTOINCREMENT order
        self.grow(self._n + m)
        s = slice(self._n, self._n + m)
        self._rowids[s] = rowids
        self._alive[s] = True
        self._sigs[s] = sigs
        if self._vecs is not None:
            self._vecs[s] = vecs
        self._ext.extend(ext_ids)
        self._labels.extend(labels)
        self._by_ext.update(zip(ext_ids, np.asarray(rowids).tolist()))
        self._n += m

    def _pos(self, rowids) -> np.ndarray:
        rowids = np.asarray(rowids, dtype=np.int64)
        pos = np.searchsorted(self._rowids[: self._n], rowids)
        return pos

    def remove(self, rowids) -> None:
        pos = self._pos(rowids)
        for p in pos:
            self._alive[p] = False
            ext = self._ext[p]
            if ext is not None and self._by_ext.get(ext) == int(self._rowids[p]):
                del self._by_ext[ext]
            self._ext[p] = None
        if self._n > 4096 and self.size < self._n // 2:
            self._compact()

    def _compact(self) -> None:
        keep = np.nonzero(self._alive[: self._n])[0]
        m = len(keep)
        self._rowids[:m] = self._rowids[keep]
        self._rowids[m : self._n] = np.iinfo(np.int64).max
        self._sigs[:m] = self._sigs[keep]
        if self._vecs is not None:
            self._vecs[:m] = self._vecs[keep]
        self._alive[:m] = True
        self._alive[m : self._n] = False
        self._ext = [self._ext[p] for p in keep]
        self._labels = [self._labels[p] for p in keep]
        self._n = m

    def rowids_of(self, ext_ids) -> np.ndarray:
        return np.fromiter((self._by_ext.get(e, -1) for e in ext_ids), dtype=np.int64, count=len(ext_ids))

    def ext_ids_of(self, rowids) -> list[str]:
        return [self._ext[p] for p in self._pos(rowids)]

    def signatures_and_vectors(self, rowids):
        pos = self._pos(rowids)
        vecs = self._vecs[pos] if self._vecs is not None else None
        return self._sigs[pos], vecs

    def loaded(self):
        """(rowids, signatures, vectors) of every row, as views: right after a load, all are live."""
        n = self._n
        return self._rowids[:n], self._sigs[:n], None if self._vecs is None else self._vecs[:n]

    def live_rows(self):
        """(rowids, ext_ids, labels, signatures, vectors) of the live rows, in rowid order."""
        rowids, pos = self.live()
        plist = pos.tolist()
        return (rowids, [self._ext[p] for p in plist], [self._labels[p] for p in plist], self._sigs[pos],
                None if self._vecs is None else self._vecs[pos])

    def live(self):
        """(rowids, positions) of live documents."""
        pos = np.nonzero(self._alive[: self._n])[0]
        return self._rowids[pos], pos

    def live_vectors(self):
        rowids, pos = self.live()
        vecs = self._vecs[pos]
        has = ~np.isnan(vecs[:, 0])
        return rowids[has], vecs[has]

    def labelled_vectors(self, require_labels: bool):
        rowids, pos = self.live()
        ids, vecs, labels = [], [], []
        for p in pos:
            v = self._vecs[p]
            if np.isnan(v[0]) or (require_labels and self._labels[p] is None):
                continue
            ids.append(self._ext[p])
            vecs.append(v)
            labels.append(self._labels[p])
        mat = np.stack(vecs) if vecs else np.empty((0, self.dim), np.float32)
        return ids, mat, labels


def make_lsh(cfg: CollectionConfig, backend):
    """The collection's LSH index. Without explicit ``weights`` the banding is tuned for recall
    (P(candidate) >= 0.995 at the threshold), since every candidate is scored afterwards."""
    params = choose_params(cfg.threshold, cfg.num_perm, "exact", cfg.weights)
    return LSHIndex(num_perm=cfg.num_perm, params=params, seed=cfg.seed, backend=backend)


def make_vector_index(cfg: CollectionConfig, backend):
    return VectorIndex(dim=cfg.dim, metric=cfg.metric, kind="flat", backend=backend)


def exact_jaccard(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Exact Jaccard of two sorted unique hash sets; empty sets are similar to nothing."""
    if a is None or b is None or not len(a) or not len(b):
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


def vector_search(vindex, docs: DocTable, queries: np.ndarray, k: int, metric: str, index_metric: str, backend):
    """(distances, rowids) of the k nearest, -1 padded. Another metric than the index's is exact."""
    if metric == index_metric and vindex is not None:
        res = vindex.search(queries, k)
        return res.distances, res.keys
    rowids, base = docs.live_vectors()
    if not len(rowids):
        n = len(queries)
        return np.full((n, 0), np.inf), np.full((n, 0), -1, dtype=np.int64)
    kk = min(k, len(rowids))
    dists, pos = knn(base, queries, kk, metric, backend=backend)
    return dists, rowids[pos]


def clusters_from_pairs(docs: DocTable, pairs: np.ndarray, threshold: float,
                        fetch: Callable[[list[int]], dict] | None, backend) -> list[Cluster]:
    """Verify candidate rowid pairs, join them into components, report each with its representative."""
    nodes, inv = np.unique(pairs.ravel(), return_inverse=True)
    edges = inv.reshape(-1, 2)
    if fetch is not None:
        found = fetch([int(r) for r in nodes])
        sets = [found[int(r)] for r in nodes]

        def sim(i, j):
            return exact_jaccard(sets[i], sets[j])
    else:
        sigs, _ = docs.signatures_and_vectors(nodes)

        def sim(i, j):
            return float((sigs[i] == sigs[j]).mean())

    keep = np.array([sim(i, j) >= threshold for i, j in edges], dtype=bool)
    edges = edges[keep]
    if not len(edges):
        return []
    roots = backend.host.connected_components(len(nodes), edges)  # smallest node index = earliest rowid
    members: dict[int, list[int]] = {}
    for i in np.unique(edges.ravel()):
        members.setdefault(int(roots[i]), []).append(int(i))
    clusters = []
    for root, group in members.items():
        group.sort()
        ext = docs.ext_ids_of(nodes[group])
        sims = tuple(1.0 if g == root else sim(root, g) for g in group)
        clusters.append(Cluster(representative=ext[0], ids=tuple(ext), jaccard=sims))
    clusters.sort(key=lambda c: (-len(c.ids), c.representative))
    return clusters
