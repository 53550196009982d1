"""The durable index: collections on embedded SQLite (WAL) with LSH and vector search in memory."""

from .._validation import MAX_K
from ._classify import Classification, ClassifierInfo
from ._collection import Collection
from ._document import MetadataJSON, check_document, check_documents, check_id, check_ids, check_vector
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
    "MetadataJSON",
    "check_document",
    "check_documents",
    "check_id",
    "check_ids",
    "check_vector",
]
