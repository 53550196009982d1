from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Matrix(_message.Message):
    __slots__ = ("rows", "dim", "data")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    rows: int
    dim: int
    data: bytes
    def __init__(self, rows: _Optional[int] = ..., dim: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class VectorList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, values: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "metadata_json", "vector", "vector_row", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    VECTOR_ROW_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata_json: str
    vector: Vector
    vector_row: int
    label: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata_json: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., vector_row: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class Weights(_message.Message):
    __slots__ = ("false_positive", "false_negative")
    FALSE_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    FALSE_NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    false_positive: float
    false_negative: float
    def __init__(self, false_positive: _Optional[float] = ..., false_negative: _Optional[float] = ...) -> None: ...

class CollectionConfig(_message.Message):
    __slots__ = ("shingle", "ngram", "num_perm", "seed", "threshold", "weights", "dim", "metric", "store_text", "store_shingles", "vector_index", "hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe", "indexed_fields")
    SHINGLE_FIELD_NUMBER: _ClassVar[int]
    NGRAM_FIELD_NUMBER: _ClassVar[int]
    NUM_PERM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    STORE_TEXT_FIELD_NUMBER: _ClassVar[int]
    STORE_SHINGLES_FIELD_NUMBER: _ClassVar[int]
    VECTOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    HNSW_M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    NLIST_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    shingle: str
    ngram: int
    num_perm: int
    seed: int
    threshold: float
    weights: Weights
    dim: int
    metric: str
    store_text: bool
    store_shingles: bool
    vector_index: str
    hnsw_m: int
    ef_construction: int
    ef_search: int
    nlist: int
    nprobe: int
    indexed_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shingle: _Optional[str] = ..., ngram: _Optional[int] = ..., num_perm: _Optional[int] = ..., seed: _Optional[int] = ..., threshold: _Optional[float] = ..., weights: _Optional[_Union[Weights, _Mapping]] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., store_text: _Optional[bool] = ..., store_shingles: _Optional[bool] = ..., vector_index: _Optional[str] = ..., hnsw_m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_search: _Optional[int] = ..., nlist: _Optional[int] = ..., nprobe: _Optional[int] = ..., indexed_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("path", "vector_index", "allowed", "metadata_scan")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VECTOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    METADATA_SCAN_FIELD_NUMBER: _ClassVar[int]
    path: str
    vector_index: str
    allowed: int
    metadata_scan: bool
    def __init__(self, path: _Optional[str] = ..., vector_index: _Optional[str] = ..., allowed: _Optional[int] = ..., metadata_scan: _Optional[bool] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "config", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: CollectionConfig
    count: int
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class NearDuplicate(_message.Message):
    __slots__ = ("id", "jaccard", "estimated_jaccard", "exact_jaccard")
    ID_FIELD_NUMBER: _ClassVar[int]
    JACCARD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_JACCARD_FIELD_NUMBER: _ClassVar[int]
    EXACT_JACCARD_FIELD_NUMBER: _ClassVar[int]
    id: str
    jaccard: float
    estimated_jaccard: float
    exact_jaccard: float
    def __init__(self, id: _Optional[str] = ..., jaccard: _Optional[float] = ..., estimated_jaccard: _Optional[float] = ..., exact_jaccard: _Optional[float] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("id", "distance")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    distance: float
    def __init__(self, id: _Optional[str] = ..., distance: _Optional[float] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("representative", "ids", "jaccard", "stats")
    REPRESENTATIVE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    JACCARD_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    representative: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    jaccard: _containers.RepeatedScalarFieldContainer[float]
    stats: QueryStats
    def __init__(self, representative: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., jaccard: _Optional[_Iterable[float]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "config", "exist_ok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: CollectionConfig
    exist_ok: bool
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., exist_ok: _Optional[bool] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "documents", "packed_vectors", "on_duplicate", "duplicate_threshold")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    PACKED_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ON_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    packed_vectors: Matrix
    on_duplicate: str
    duplicate_threshold: float
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., packed_vectors: _Optional[_Union[Matrix, _Mapping]] = ..., on_duplicate: _Optional[str] = ..., duplicate_threshold: _Optional[float] = ...) -> None: ...

class Duplicate(_message.Message):
    __slots__ = ("id", "duplicate_of", "jaccard")
    ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    JACCARD_FIELD_NUMBER: _ClassVar[int]
    id: str
    duplicate_of: str
    jaccard: float
    def __init__(self, id: _Optional[str] = ..., duplicate_of: _Optional[str] = ..., jaccard: _Optional[float] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "replaced", "skipped", "duplicates")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    replaced: int
    skipped: int
    duplicates: _containers.RepeatedCompositeFieldContainer[Duplicate]
    def __init__(self, upserted: _Optional[int] = ..., replaced: _Optional[int] = ..., skipped: _Optional[int] = ..., duplicates: _Optional[_Iterable[_Union[Duplicate, _Mapping]]] = ...) -> None: ...

class UpsertStreamResponse(_message.Message):
    __slots__ = ("batches", "upserted", "replaced", "skipped", "duplicates")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    batches: int
    upserted: int
    replaced: int
    skipped: int
    duplicates: _containers.RepeatedCompositeFieldContainer[Duplicate]
    def __init__(self, batches: _Optional[int] = ..., upserted: _Optional[int] = ..., replaced: _Optional[int] = ..., skipped: _Optional[int] = ..., duplicates: _Optional[_Iterable[_Union[Duplicate, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "missing_ok")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    MISSING_OK_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    missing_ok: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., missing_ok: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "filter_json", "batch_size", "with_text", "with_vector", "after")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WITH_TEXT_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTOR_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter_json: str
    batch_size: int
    with_text: bool
    with_vector: bool
    after: str
    def __init__(self, collection: _Optional[str] = ..., filter_json: _Optional[str] = ..., batch_size: _Optional[int] = ..., with_text: _Optional[bool] = ..., with_vector: _Optional[bool] = ..., after: _Optional[str] = ...) -> None: ...

class ScrollPage(_message.Message):
    __slots__ = ("documents", "cursor")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    cursor: str
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., cursor: _Optional[str] = ...) -> None: ...

class QueryNearDuplicatesRequest(_message.Message):
    __slots__ = ("collection", "texts", "ids", "threshold", "k", "exact", "filter_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    texts: StringList
    ids: StringList
    threshold: float
    k: int
    exact: bool
    filter_json: str
    def __init__(self, collection: _Optional[str] = ..., texts: _Optional[_Union[StringList, _Mapping]] = ..., ids: _Optional[_Union[StringList, _Mapping]] = ..., threshold: _Optional[float] = ..., k: _Optional[int] = ..., exact: _Optional[bool] = ..., filter_json: _Optional[str] = ...) -> None: ...

class NearDuplicateList(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[NearDuplicate]
    def __init__(self, hits: _Optional[_Iterable[_Union[NearDuplicate, _Mapping]]] = ...) -> None: ...

class QueryNearDuplicatesResponse(_message.Message):
    __slots__ = ("results", "stats")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[NearDuplicateList]
    stats: QueryStats
    def __init__(self, results: _Optional[_Iterable[_Union[NearDuplicateList, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class SearchVectorsRequest(_message.Message):
    __slots__ = ("collection", "vectors", "packed_vectors", "ids", "k", "metric", "filter_json", "exact")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    PACKED_VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: VectorList
    packed_vectors: Matrix
    ids: StringList
    k: int
    metric: str
    filter_json: str
    exact: bool
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Union[VectorList, _Mapping]] = ..., packed_vectors: _Optional[_Union[Matrix, _Mapping]] = ..., ids: _Optional[_Union[StringList, _Mapping]] = ..., k: _Optional[int] = ..., metric: _Optional[str] = ..., filter_json: _Optional[str] = ..., exact: _Optional[bool] = ...) -> None: ...

class NeighborList(_message.Message):
    __slots__ = ("neighbors",)
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class SearchVectorsResponse(_message.Message):
    __slots__ = ("results", "stats")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[NeighborList]
    stats: QueryStats
    def __init__(self, results: _Optional[_Iterable[_Union[NeighborList, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class FindDuplicatesRequest(_message.Message):
    __slots__ = ("collection", "threshold", "exact", "filter_json", "with_stats")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    WITH_STATS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    threshold: float
    exact: bool
    filter_json: str
    with_stats: bool
    def __init__(self, collection: _Optional[str] = ..., threshold: _Optional[float] = ..., exact: _Optional[bool] = ..., filter_json: _Optional[str] = ..., with_stats: _Optional[bool] = ...) -> None: ...

class ClassifierInfo(_message.Message):
    __slots__ = ("name", "kind", "version", "n_samples", "dim", "classes", "n_unlabelled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    N_UNLABELLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    version: int
    n_samples: int
    dim: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    n_unlabelled: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., version: _Optional[int] = ..., n_samples: _Optional[int] = ..., dim: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., n_unlabelled: _Optional[int] = ...) -> None: ...

class TrainClassifierRequest(_message.Message):
    __slots__ = ("collection", "name", "kind", "params_json", "filter_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    kind: str
    params_json: str
    filter_json: str
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., params_json: _Optional[str] = ..., filter_json: _Optional[str] = ...) -> None: ...

class ListClassifiersRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListClassifiersResponse(_message.Message):
    __slots__ = ("classifiers",)
    CLASSIFIERS_FIELD_NUMBER: _ClassVar[int]
    classifiers: _containers.RepeatedCompositeFieldContainer[ClassifierInfo]
    def __init__(self, classifiers: _Optional[_Iterable[_Union[ClassifierInfo, _Mapping]]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("collection", "model", "vectors", "packed_vectors", "ids", "k", "filter_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    PACKED_VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    model: str
    vectors: VectorList
    packed_vectors: Matrix
    ids: StringList
    k: int
    filter_json: str
    def __init__(self, collection: _Optional[str] = ..., model: _Optional[str] = ..., vectors: _Optional[_Union[VectorList, _Mapping]] = ..., packed_vectors: _Optional[_Union[Matrix, _Mapping]] = ..., ids: _Optional[_Union[StringList, _Mapping]] = ..., k: _Optional[int] = ..., filter_json: _Optional[str] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("label", "probability", "component", "log_likelihood", "outlier", "neighbors")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    component: int
    log_likelihood: float
    outlier: bool
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., component: _Optional[int] = ..., log_likelihood: _Optional[float] = ..., outlier: _Optional[bool] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("results", "stats")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    stats: QueryStats
    def __init__(self, results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class DeleteClassifierRequest(_message.Message):
    __slots__ = ("collection", "name")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteClassifierResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_batch", "max_k", "max_text_bytes")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_batch: int
    max_k: int
    max_text_bytes: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_k: _Optional[int] = ..., max_text_bytes: _Optional[int] = ...) -> None: ...

class TrainingLimits(_message.Message):
    __slots__ = ("max_training_jobs", "max_kernel_cache_bytes", "max_nystroem_components", "max_training_bytes")
    MAX_TRAINING_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_KERNEL_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_NYSTROEM_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRAINING_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_training_jobs: int
    max_kernel_cache_bytes: int
    max_nystroem_components: int
    max_training_bytes: int
    def __init__(self, max_training_jobs: _Optional[int] = ..., max_kernel_cache_bytes: _Optional[int] = ..., max_nystroem_components: _Optional[int] = ..., max_training_bytes: _Optional[int] = ...) -> None: ...

class RpcStats(_message.Message):
    __slots__ = ("method", "calls_by_code", "latency_seconds_sum", "latency_bucket_bounds", "latency_bucket_counts")
    class CallsByCodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CALLS_BY_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_SUM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUCKET_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    method: str
    calls_by_code: _containers.ScalarMap[str, int]
    latency_seconds_sum: float
    latency_bucket_bounds: _containers.RepeatedScalarFieldContainer[float]
    latency_bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, method: _Optional[str] = ..., calls_by_code: _Optional[_Mapping[str, int]] = ..., latency_seconds_sum: _Optional[float] = ..., latency_bucket_bounds: _Optional[_Iterable[float]] = ..., latency_bucket_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("name", "documents", "segments", "bytes_on_disk", "bytes_in_memory")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_MEMORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    documents: int
    segments: int
    bytes_on_disk: int
    bytes_in_memory: int
    def __init__(self, name: _Optional[str] = ..., documents: _Optional[int] = ..., segments: _Optional[int] = ..., bytes_on_disk: _Optional[int] = ..., bytes_in_memory: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "limits", "collections", "requests_in_flight", "auth_required", "tls", "warm", "rpcs", "collection_stats", "index_bytes_on_disk", "requests_queued", "ingested_documents", "ingest_documents_per_second", "training_jobs_running", "training_jobs_waiting", "training_limits")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    RPCS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_STATS_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    INGESTED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    INGEST_DOCUMENTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOBS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOBS_WAITING_FIELD_NUMBER: _ClassVar[int]
    TRAINING_LIMITS_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    limits: Limits
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    requests_in_flight: int
    auth_required: bool
    tls: bool
    warm: bool
    rpcs: _containers.RepeatedCompositeFieldContainer[RpcStats]
    collection_stats: _containers.RepeatedCompositeFieldContainer[CollectionStats]
    index_bytes_on_disk: int
    requests_queued: int
    ingested_documents: int
    ingest_documents_per_second: float
    training_jobs_running: int
    training_jobs_waiting: int
    training_limits: TrainingLimits
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ..., requests_in_flight: _Optional[int] = ..., auth_required: _Optional[bool] = ..., tls: _Optional[bool] = ..., warm: _Optional[bool] = ..., rpcs: _Optional[_Iterable[_Union[RpcStats, _Mapping]]] = ..., collection_stats: _Optional[_Iterable[_Union[CollectionStats, _Mapping]]] = ..., index_bytes_on_disk: _Optional[int] = ..., requests_queued: _Optional[int] = ..., ingested_documents: _Optional[int] = ..., ingest_documents_per_second: _Optional[float] = ..., training_jobs_running: _Optional[int] = ..., training_jobs_waiting: _Optional[int] = ..., training_limits: _Optional[_Union[TrainingLimits, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SnapshotInfo(_message.Message):
    __slots__ = ("name", "size_bytes", "created_unix_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    created_unix_seconds: float
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., created_unix_seconds: _Optional[float] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[SnapshotInfo]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[SnapshotInfo, _Mapping]]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
