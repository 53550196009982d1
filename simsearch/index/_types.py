"""Value types of the durable index: documents, collection configs and query results.

These dataclasses are what both the embedded :class:`~simsearch.Index` and the remote
``simsearch.Client`` return, so results compare equal across the two.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..validation import check_float, check_option, check_param
from ..errors import InvalidArgumentError, InvalidTypeError
from ._ann import check_ann_params
from ._filter import parse
from ..lsh import NearDuplicate  # noqa: F401  (one type for LSHIndex and collection hits; re-exported)

__all__ = [
    "Document",
    "CollectionConfig",
    "CollectionInfo",
    "NearDuplicate",
    "Neighbor",
    "Cluster",
    "UpsertResult",
    "Duplicate",
    "ScrollPage",
    "QueryStats",
    "SearchResult",
    "METRICS",
    "MAX_ID_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_LABEL_BYTES",
]

METRICS = ("cosine", "euclidean", "sqeuclidean", "manhattan")
MAX_ID_BYTES = 256
MAX_METADATA_BYTES = 64 * 1024
MAX_LABEL_BYTES = 256
MAX_NAME_BYTES = 128


@dataclass(frozen=True)
class CollectionConfig:
    """Immutable settings of a collection, stored with it."""

    shingle: str = "word"
    ngram: int = 5
    num_perm: int = 128
    seed: int = 1
    threshold: float = 0.8
    weights: tuple[float, float] | None = None
    dim: int | None = None
    metric: str = "cosine"
    store_text: bool = True
    store_shingles: bool = True
    vector_index: str = "auto"  # "auto" | "flat" | "hnsw" | "ivf" (simsearch.index._ann)
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int | None = None
    indexed_fields: tuple[str, ...] = ()  # metadata fields (filter syntax) kept as typed columns

    def validated(self) -> "CollectionConfig":
        check_param("shingle", self.shingle, func="create_collection")
        check_param("ngram", self.ngram, func="create_collection")
        check_param("num_perm", self.num_perm, func="create_collection")
        check_param("seed", self.seed, func="create_collection")
        check_param("threshold", self.threshold, func="create_collection", rule="collection_threshold")
        weights = self.weights
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or len(weights) != 2:
                raise InvalidArgumentError(
                    f"The 'weights' parameter of create_collection must be a pair (fp, fn). Got {weights!r} instead."
                )
            weights = tuple(check_float(w, "weights", 0.0, 1.0, func="create_collection") for w in weights)
            if not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
                raise InvalidArgumentError(f"The 'weights' of create_collection must sum to 1. Got {weights!r}.")
        if self.dim is not None:
            check_param("dim", self.dim, func="create_collection")
        check_option(self.metric, "metric", METRICS, func="create_collection")
        for name in ("store_text", "store_shingles"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidTypeError(f"The '{name}' parameter of create_collection must be a bool.")
        check_ann_params(vector_index=self.vector_index, hnsw_m=self.hnsw_m, ef_construction=self.ef_construction,
                         ef_search=self.ef_search, nlist=self.nlist, nprobe=self.nprobe)
        return CollectionConfig(**{**asdict(self), "weights": weights,
                                   "indexed_fields": check_indexed_fields(self.indexed_fields)})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CollectionConfig":
        data = json.loads(text)
        if data.get("weights") is not None:
            data["weights"] = tuple(data["weights"])
        data["indexed_fields"] = tuple(data.get("indexed_fields", ()))
        return cls(**data)


def check_indexed_fields(value) -> tuple[str, ...]:
    """The canonical names (as in Filter.fields) of a collection's indexed metadata fields, in the
    order given, without repeats."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidTypeError(
            f"The 'indexed_fields' parameter of create_collection must be a list of field names. Got {value!r} instead."
        )
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise InvalidTypeError(f"indexed_fields[{i}] must be a str (a filter field name). Got {name!r}.")
        try:
            (canon,) = parse({name: {"exists": True}}).fields
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"indexed_fields[{i}]: {exc}") from None
        if canon not in out:
            out.append(canon)
    return tuple(out)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    config: CollectionConfig
    count: int


@dataclass(eq=False)
class Document:
    """A stored document. ``vector`` is float32 of the collection's ``dim`` or None."""

    id: str
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    label: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        same_vec = (self.vector is None and other.vector is None) or (
            self.vector is not None and other.vector is not None and np.array_equal(self.vector, other.vector)
        )
        return (
            self.id == other.id
            and self.text == other.text
            and self.metadata == other.metadata
            and self.label == other.label
            and same_vec
        )

    __hash__ = None


@dataclass(frozen=True)
class Neighbor:
    id: str
    distance: float


@dataclass(frozen=True)
class Cluster:
    """A set of near-duplicate documents; ``representative`` is the one a dedup keeps."""

    representative: str
    ids: tuple[str, ...]
    jaccard: tuple[float, ...]  # each member's Jaccard to the representative (1.0 for itself)


@dataclass(frozen=True)
class ScrollPage:
    """One page of ``Collection.scroll``: documents in id order, and the cursor to pass as
    ``after=`` to continue after them (the last document's id)."""

    documents: tuple[Document, ...]
    cursor: str | None


@dataclass(frozen=True)
class Duplicate:
    """A document of an upsert batch that near-duplicates ``duplicate_of`` (a stored document, or
    an earlier one of the batch) with Jaccard ``jaccard``; see ``Collection.upsert(on_duplicate=)``."""

    id: str
    duplicate_of: str
    jaccard: float


@dataclass(frozen=True)
class UpsertResult:
    """``upserted``: documents stored; ``replaced``: of those, ids that existed before;
    ``skipped``: near-duplicates not stored (on_duplicate="skip"); ``duplicates``: every skipped or
    tagged document, in batch order."""

    upserted: int
    replaced: int
    skipped: int = 0
    duplicates: tuple[Duplicate, ...] = ()


@dataclass(frozen=True)
class QueryStats:
    """How a query was answered (the same over gRPC). ``path``: "exact" (a brute-force scan of
    the allowed vectors), "ann" (the approximate index), "ann_filtered" (the approximate index
    with the filter as a faiss ID selector) or "lsh" (near-duplicates: LSH candidates, filtered).
    ``vector_index``: "flat", "hnsw" or "ivf" ("" for near-duplicates). ``allowed``: documents
    the filter kept (None without a filter). ``metadata_scan``: the filter read a field outside
    ``indexed_fields``, so the stored metadata was scanned."""

    path: str
    vector_index: str = ""
    allowed: int | None = None
    metadata_scan: bool = False


@dataclass(frozen=True)
class SearchResult:
    """Results of a batch query asked ``with_stats=True``: ``results`` (one list per query, as
    without stats) and the :class:`QueryStats` of the call."""

    results: list
    stats: QueryStats
