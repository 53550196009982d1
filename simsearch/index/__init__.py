"""The durable index: collections on embedded SQLite (WAL) with LSH and vector search in memory."""

from ..validation import MAX_K
from ._classify import Classification, ClassifierInfo, check_filter, check_kind, check_model_name, check_params
from ._collection import Collection
from ._filter import Column, Filter, build_columns, parse as parse_filter
from ._document import MetadataJSON, check_document, check_documents, check_id, check_ids, check_vector
from ._index import Index, check_collection_name
from ._types import (
    METRICS,
    Cluster,
    CollectionConfig,
    CollectionInfo,
    Document,
    NearDuplicate,
    Neighbor,
    QueryStats,
    SearchResult,
    UpsertResult,
    Duplicate,
    ScrollPage,
)
from ._ingest import DUPLICATE_JACCARD_FIELD, DUPLICATE_OF_FIELD, ON_DUPLICATE, check_on_duplicate

__all__ = [
    "Index",
    "Collection",
    "Cluster",
    "CollectionConfig",
    "CollectionInfo",
    "Document",
    "NearDuplicate",
    "Neighbor",
    "QueryStats",
    "SearchResult",
    "UpsertResult",
    "Duplicate",
    "ScrollPage",
    "ON_DUPLICATE",
    "DUPLICATE_OF_FIELD",
    "DUPLICATE_JACCARD_FIELD",
    "Classification",
    "ClassifierInfo",
    "MAX_K",
    "check_collection_name",
    "MetadataJSON",
    "check_document",
    "check_documents",
    "check_id",
    "check_ids",
    "check_vector",
    "check_model_name",
    "check_kind",
    "check_params",
    "check_filter",
    "check_on_duplicate",
    "METRICS",
    "Filter",
    "Column",
    "parse_filter",
    "build_columns",
]
