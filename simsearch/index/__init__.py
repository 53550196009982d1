"""The durable index: collections on embedded SQLite (WAL) with LSH and vector search in memory."""

from .._validation import MAX_K
from ._classify import Classification, ClassifierInfo
from ._collection import Collection
from ._index import Index, check_collection_name
from ._types import Cluster, CollectionConfig, CollectionInfo, Document, NearDuplicate, Neighbor, UpsertResult

__all__ = [
    "Index",
    "Collection",
    "Cluster",
    "CollectionConfig",
    "CollectionInfo",
    "Document",
    "NearDuplicate",
    "Neighbor",
    "UpsertResult",
    "Classification",
    "ClassifierInfo",
    "MAX_K",
    "check_collection_name",
]
