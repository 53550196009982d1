"""The durable index: collections on embedded SQLite (WAL) with LSH and vector search in memory."""

from ._collection import Collection
from ._index import Index
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
]
