"""Retrieval: nearest neighbours of embeddings (torch, or faiss), the honest figures of
metric learning (Precision@1, R-Precision, MAP@R), class-disjoint splits, and the index
of a reference folder that the retrieve pipeline searches."""

from visrec.core.retrieval.evaluation import (
    choose_embedder,
    embed_rows,
    embed_splits,
    score_embeddings,
)
from visrec.core.retrieval.index import (
    LABEL_COLUMNS,
    NEIGHBOUR_COLUMNS,
    EmbeddingIndex,
    IndexInfo,
    folder_labels,
    search,
    vote_labels,
)
from visrec.core.retrieval.knn import KNN_BACKENDS, KnnSearch, knn
from visrec.core.retrieval.metrics import (
    RETRIEVAL_METRICS,
    per_class_table,
    per_query_figures,
    retrieval_metrics,
)
from visrec.core.retrieval.split import (
    ClassSplit,
    ClassSplitError,
    apply_split,
    pooled_rows,
    split_classes,
)

__all__ = [
    "KNN_BACKENDS",
    "LABEL_COLUMNS",
    "NEIGHBOUR_COLUMNS",
    "RETRIEVAL_METRICS",
    "ClassSplit",
    "ClassSplitError",
    "EmbeddingIndex",
    "IndexInfo",
    "KnnSearch",
    "apply_split",
    "choose_embedder",
    "embed_rows",
    "embed_splits",
    "folder_labels",
    "knn",
    "per_class_table",
    "per_query_figures",
    "pooled_rows",
    "retrieval_metrics",
    "score_embeddings",
    "search",
    "split_classes",
    "vote_labels",
]
