"""Near-duplicate detection over a corpus: :func:`find_duplicates` and its reusable stages.

The pipeline is five stages, each a plain function of arrays so that a chunked or distributed
runner (local streaming, Ray Data) calls exactly the same code:

1. :func:`compute_signatures`: texts (or shingle sets) -> uint32 MinHash signatures (and, for the
   documents that appear in some candidate pair only, :func:`simsearch.shingle_hashes`: the sorted
   shingle-hash sets that exact verification needs);
2. :func:`compute_band_keys`: signatures -> (n, b) uint64 band keys (and which rows are non-empty);
3. :func:`candidate_pairs_from_band_keys`: documents sharing a key in any band, as (i, j) pairs;
   bands are independent, so column subsets of the keys can run on different workers and their
   pairs be united with :func:`merge_pairs`;
4. :func:`verify_pairs`: keep the pairs whose exact (or estimated) Jaccard reaches the threshold;
5. :func:`connected_components`: the cluster of each document, labelled by its smallest index.

With ``verify="exact"`` only pairs whose true shingle Jaccard is >= threshold survive, so
precision is 1.0 by construction, and the banding is chosen for recall instead: by default the
(b, r) with P(candidate | s = threshold) >= 0.995 and the smallest false-positive area
(:func:`simsearch.lsh_params_for_recall`). A pair exactly at the threshold is missed with
probability <= 0.5%, and far less above it. (The floor the product asks for is 0.99; at 0.99
a corpus whose true pairs crowd just above the threshold lands near 99.0-99.5% recall, so a
small sample can dip below 99%, while 0.995 keeps a margin for ~5% more candidates.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._arrays import concat_csr, sorted_unique
from ..validation import check_array, check_int, check_param, check_texts
from ..backends import BackendLike, get_backend
from ..banding import DEFAULT_MIN_PROBABILITY, choose_params
from ..errors import InvalidArgumentError
from ..minhash import EMPTY_HASH, MAX_NUM_PERM, permutations
from ..shingling import ShingleSets, shingle_hashes

__all__ = [
    "DedupResult",
    "find_duplicates",
    "compute_signatures",
    "compute_band_keys",
    "candidate_pairs_from_band_keys",
    "merge_pairs",
    "verify_pairs",
    "connected_components",
]

_CHUNK = 1 << 16  # documents per kernel call in find_duplicates


@dataclass(frozen=True)
class DedupResult:
    """Verified near-duplicate pairs and the clusters they form.

    ``pairs`` (m, 2) int64 document indices with i < j, sorted; ``jaccard`` one value per pair
    (exact Jaccard for verify="exact", else the signature estimate); ``clusters`` the smallest
    document index of each document's connected component; ``keep`` True for each cluster's
    representative (that smallest index). ``stats`` holds the banding, candidate count and stage times.
    """

    pairs: np.ndarray
    jaccard: np.ndarray
    clusters: np.ndarray
    keep: np.ndarray
    threshold: float
    params: tuple[int, int]
    verify: str
    stats: dict = field(default_factory=dict)

    @property
    def num_duplicates(self) -> int:
        """Documents that are not their cluster's representative."""
        return int((~self.keep).sum())


def compute_signatures(docs, *, num_perm: int = 128, seed: int = 1, ngram: int = 5, shingle: str = "word",
                       backend: BackendLike = "auto") -> np.ndarray:
    """Stage 1b: uint32 (n, num_perm) signatures of texts or of a :class:`ShingleSets`."""
    a, b = permutations(num_perm, seed)
    be = get_backend(backend)
    if isinstance(docs, ShingleSets):
        return be.minhash_hashes(docs.offsets, docs.hashes, a, b)
    texts = check_texts(docs, func="compute_signatures")
    if not texts:
        return np.empty((0, num_perm), dtype=np.uint32)
    return be.minhash_texts(texts, ngram, shingle, a, b)


def compute_band_keys(signatures, b: int, r: int, *, backend: BackendLike = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: (n, b) uint64 band keys and a bool per row, False for empty documents."""
    sigs = check_array(signatures, "signatures", dtype=np.uint32, ndim=2, allowed_kinds="ui", func="compute_band_keys")
    b = check_int(b, "b", 1, MAX_NUM_PERM, func="compute_band_keys")
    r = check_int(r, "r", 1, MAX_NUM_PERM, func="compute_band_keys")
    if b * r > sigs.shape[1]:
        raise InvalidArgumentError(f"b*r must be <= num_perm; got b={b}, r={r} for signatures of {sigs.shape[1]} values.")
    keys = get_backend(backend).band_keys(sigs, b, r)
    return keys, ~(sigs == EMPTY_HASH).all(axis=1)


def candidate_pairs_from_band_keys(keys, valid=None, *, doc_ids=None, backend: BackendLike = "auto") -> np.ndarray:
    """Stage 3: int64 (m, 2) pairs i < j of documents sharing a key in some band, sorted, unique.

    Rows with ``valid`` False (empty documents) pair with nothing. ``doc_ids`` (int64, one per
    row) maps rows to global document ids, for chunks of a larger corpus.
    """
    keys = check_array(keys, "keys", dtype=np.uint64, ndim=2, allowed_kinds="u", func="candidate_pairs_from_band_keys")
    n = keys.shape[0]
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    be = get_backend(backend)
    skeys, srows, _, _ = be.bucket_sort(keys, valid)
    packed = be.self_join(skeys, srows, valid)
    pairs = np.empty((packed.shape[0], 2), dtype=np.int64)
    pairs[:, 0] = (packed >> np.uint64(32)).astype(np.int64)
    pairs[:, 1] = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    if doc_ids is not None:
        ids = check_array(doc_ids, "doc_ids", dtype=np.int64, shape=(n,), allowed_kinds="iu")
        return merge_pairs([ids[pairs]])
    return pairs


def merge_pairs(parts) -> np.ndarray:
    """Union of pair arrays: each row ordered i < j, rows sorted and unique, self-pairs dropped."""
    parts = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in parts]
    allp = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    allp = np.sort(allp, axis=1)
    allp = allp[allp[:, 0] != allp[:, 1]]
    if not allp.shape[0]:
        return np.empty((0, 2), dtype=np.int64)
    allp = allp[np.lexsort((allp[:, 1], allp[:, 0]))]
    keep = np.ones(allp.shape[0], dtype=bool)
    keep[1:] = (allp[1:] != allp[:-1]).any(axis=1)
    return np.ascontiguousarray(allp[keep])


def verify_pairs(pairs, *, threshold: float, verify: str = "exact", shingles: ShingleSets | None = None,
                 signatures=None, backend: BackendLike = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Stage 4: (kept pairs, their Jaccard). ``pairs`` index the rows of ``shingles``/``signatures``.

    "exact" keeps pairs whose shingle-set Jaccard >= threshold (needs ``shingles``), "estimate"
    those whose signature estimate does (needs ``signatures``), "none" keeps every pair and
    reports the estimate when signatures are given (else NaN).
    """
    f = "verify_pairs"
    check_param("verify", verify, func=f)
    threshold = check_param("threshold", threshold, func=f)
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    be = get_backend(backend)
    ia, ib = pairs[:, 0], pairs[:, 1]
    if verify == "exact":
        if shingles is None:
            raise InvalidArgumentError("verify_pairs(verify='exact') needs the shingle sets (shingles=).")
        jac = be.pair_jaccard_sets(shingles.offsets, shingles.hashes, shingles.offsets, shingles.hashes, ia, ib)
    elif signatures is not None:
        sigs = check_array(signatures, "signatures", dtype=np.uint32, ndim=2, allowed_kinds="ui", func=f)
        jac = be.pair_jaccard_sigs(sigs, sigs, ia, ib)
    elif verify == "estimate":
        raise InvalidArgumentError("verify_pairs(verify='estimate') needs the signatures (signatures=).")
    else:
        jac = np.full(pairs.shape[0], np.nan)
    if verify == "none":
        return pairs, jac
    keep = jac >= threshold
    return pairs[keep], jac[keep]


def connected_components(n: int, pairs, *, backend: BackendLike = "auto") -> np.ndarray:
    """Stage 5: for each of ``n`` documents, the smallest index in its connected component."""
    n = check_int(n, "n", 0, None, func="connected_components")
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise InvalidArgumentError(f"connected_components: pair indices must be in [0, {n}).")
    return get_backend(backend).connected_components(n, pairs)


def _concat_sets(parts: list[ShingleSets]) -> ShingleSets:
    if len(parts) == 1:
        return parts[0]
    return ShingleSets(*concat_csr([p.offsets for p in parts], [p.hashes for p in parts]))


def find_duplicates(
    texts,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: str = "word",
    verify: str = "exact",
    weights=None,
    backend: BackendLike = "auto",
    seed: int = 1,
    params: tuple[int, int] | None = None,
    min_probability: float = DEFAULT_MIN_PROBABILITY,
) -> DedupResult:
    """Near-duplicate pairs and clusters of ``texts`` (see the module docstring for the stages).

    ``params=(b, r)`` overrides the banding; ``weights`` picks it datasketch's way; otherwise it is
    recall-tuned so that P(candidate | s = threshold) >= ``min_probability``.
    """
    f = "find_duplicates"
    texts = check_texts(texts, func=f)
    threshold = check_param("threshold", threshold, func=f)
    num_perm = check_param("num_perm", num_perm, func=f)
    check_param("shingle", shingle, func=f)
    check_param("verify", verify, func=f)
    if params is None:
        b, r = choose_params(threshold, num_perm, verify, weights, min_probability)
    else:
        b, r = check_int(params[0], "params[0] (b)", 1, num_perm, func=f), check_int(params[1], "params[1] (r)", 1, num_perm, func=f)
    be = get_backend(backend)  # resolved once; every stage below gets the object
    stats: dict = {"docs": len(texts), "b": b, "r": r, "backend": be.name}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        stats[f"seconds_{name}"] = now - clock
        clock = now

    # Signatures straight from text (the fused kernel never materialises shingle sets); the
    # exact sets are built afterwards for the documents that are in some candidate pair only.
    sigs = np.empty((len(texts), num_perm), dtype=np.uint32)
    for start in range(0, len(texts), _CHUNK):  # bounded UTF-8 staging buffers, reused between chunks
        sigs[start : start + _CHUNK] = compute_signatures(
            texts[start : start + _CHUNK], num_perm=num_perm, seed=seed, ngram=ngram, shingle=shingle, backend=be)
    lap("signatures")
    keys, valid = compute_band_keys(sigs, b, r, backend=be)
    lap("band_keys")
    cand = candidate_pairs_from_band_keys(keys, valid, backend=be)
    del keys
    stats["candidates"] = int(cand.shape[0])
    lap("candidates")
    if verify == "exact":
        involved = sorted_unique(cand.ravel())
        stats["verified_docs"] = int(involved.shape[0])
        sub = [texts[i] for i in involved.tolist()]
        sets = _concat_sets([shingle_hashes(sub[k : k + _CHUNK], ngram=ngram, shingle=shingle, backend=be)
                             for k in range(0, len(sub), _CHUNK)])
        lap("shingles")
        local, jac = verify_pairs(np.searchsorted(involved, cand), threshold=threshold, shingles=sets, backend=be)
        pairs = involved[local]
    else:
        pairs, jac = verify_pairs(cand, threshold=threshold, verify=verify, signatures=sigs, backend=be)
    lap("verify")
    clusters = connected_components(len(texts), pairs, backend=be)
    lap("components")
    keep = clusters == np.arange(len(texts))
    stats["pairs"] = int(pairs.shape[0])
    return DedupResult(pairs, jac, clusters, keep, threshold, (b, r), verify, stats)
