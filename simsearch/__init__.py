"""simsearch: exact shingling, MinHash/LSH near-duplicate search and vector kNN."""

from __future__ import annotations

from . import errors
from ._version import __version__
from .backends import Backend, available_backends, get_backend
from .errors import SimsearchError
from . import dedup  # simsearch.dedup.run: the batch pipeline
from .dedup import DedupResult, DedupSummary, find_duplicates
from .index import (
    Classification,
    ClassifierInfo,
    Cluster,
    Collection,
    CollectionConfig,
    CollectionInfo,
    Document,
    Index,
    NearDuplicate,
    Neighbor,
    QueryStats,
    SearchResult,
    UpsertResult,
    Duplicate,
    ScrollPage,
)
from .banding import lsh_error_areas, lsh_params, lsh_params_for_recall, lsh_probability
from .lsh import BatchNearDuplicates, Candidates, LSHIndex, NearDuplicates
from .minhash import MinHash, jaccard, minhash, permutations
from .shingling import ShingleSets, shingle_hash, shingle_hashes, shingles, tokenize
from . import distance
from . import models
from .models import SVC, GaussianMixture
from .vector_index import BatchMatches, Matches, VectorIndex


# The gRPC clients import grpc, so they load on first use (simsearch.Client, ...).
_REMOTE = {
    "Client": "client",
    "RemoteCollection": "client",
    "RemoteError": "client",
    "SnapshotInfo": "client",
    "AsyncClient": "aio_client",
    "AsyncRemoteCollection": "aio_client",
}


def __getattr__(name: str):
    if name in _REMOTE:
        import importlib

        return getattr(importlib.import_module(f".{_REMOTE[name]}", __name__), name)
    raise AttributeError(f"module 'simsearch' has no attribute {name!r}")

__all__ = [
    "__version__",
    "errors",
    "SimsearchError",
    "Backend",
    "available_backends",
    "get_backend",
    "Index",
    "Collection",
    "CollectionConfig",
    "CollectionInfo",
    "Document",
    "NearDuplicate",
    "Neighbor",
    "QueryStats",
    "SearchResult",
    "Cluster",
    "UpsertResult",
    "Duplicate",
    "ScrollPage",
    "Classification",
    "ClassifierInfo",
    "MinHash",
    "jaccard",
    "minhash",
    "permutations",
    "ShingleSets",
    "shingle_hash",
    "shingle_hashes",
    "shingles",
    "tokenize",
    "distance",
    "models",
    "SVC",
    "GaussianMixture",
    "VectorIndex",
    "Matches",
    "BatchMatches",
    "lsh_params",
    "lsh_params_for_recall",
    "lsh_probability",
    "lsh_error_areas",
    "LSHIndex",
    "Candidates",
    "NearDuplicates",
    "BatchNearDuplicates",
    "find_duplicates",
    "DedupResult",
    "DedupSummary",
    "dedup",
    "Client",
    "AsyncClient",
    "RemoteCollection",
    "RemoteError",
    "SnapshotInfo",
    "AsyncRemoteCollection",
]
