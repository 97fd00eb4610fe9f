"""The index a retrieval searches: reference images' embeddings, their paths and labels,
and which embedder made them (an index is only searched with the same embedder)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import torch

from visrec.core.records import Record
from visrec.core.retrieval.knn import knn

ITEM_COLUMNS = ["path", "label"]
NEIGHBOUR_COLUMNS = ["query", "rank", "reference", "reference_label", "similarity",
                     "distance"]
LABEL_COLUMNS = ["query", "label", "vote_share", "neighbours"]


class IndexInfo(Record):
    """What an index holds and which embedder made it.

    Attributes:
        root: The reference folder the item paths are relative to.
        images: Reference images in the index.
        labelled: Every reference has a label (its class folder).
        embedder: The weight set that made the embeddings (``final``, ``swa``, ``ema``).
        architecture: The embedder's trunk.
        embedding_size: Dimensions of the vectors (the embedder's, or its trunk's features
            with ``output: trunk``).
        digest: SHA-256 of the embedder's tensors.
    """

    root: str
    images: int
    labelled: bool
    embedder: str
    architecture: str
    embedding_size: int
    digest: str


@dataclass(frozen=True)
class EmbeddingIndex:
    """Reference embeddings (``N x D`` unit-length float32), one item row each
    (``path``, ``label``; label empty when unknown), and what made them."""

    embeddings: torch.Tensor
    items: pd.DataFrame
    info: IndexInfo


def folder_labels(paths: Sequence[str]) -> list[str]:
    """The class of each path: the folder holding the file (empty for a file at the top)."""
    return [PurePosixPath(path).parent.name for path in paths]


def search(index: EmbeddingIndex, queries: torch.Tensor, query_paths: Sequence[str], k: int,
           *, backend: str = "torch", batch_size: int = 1024) -> pd.DataFrame:
    """The ``k`` nearest references of each query (fewer when the index is smaller).

    Returns:
        One row per query and rank: :data:`NEIGHBOUR_COLUMNS`; ``distance`` is the cosine
        distance ``1 - similarity``.
    """
    if len(queries) == 0:
        return pd.DataFrame(columns=NEIGHBOUR_COLUMNS)
    depth = min(k, len(index.embeddings))
    similarities, indices = knn(queries, index.embeddings, depth, backend=backend,
                                batch_size=batch_size)
    found = indices.numpy().reshape(-1)
    scores = similarities.numpy().reshape(-1).astype(np.float64)
    return pd.DataFrame({
        "query": np.repeat(np.asarray(query_paths, dtype=object), depth),
        "rank": np.tile(np.arange(1, depth + 1), len(queries)),
        "reference": index.items["path"].to_numpy()[found],
        "reference_label": index.items["label"].to_numpy()[found],
        "similarity": scores.round(6), "distance": (1.0 - scores).round(6),
    }, columns=NEIGHBOUR_COLUMNS)


def vote_labels(neighbours: pd.DataFrame) -> pd.DataFrame:
    """The k-NN label of each query: the label most of its neighbours carry (ties go to the
    label with the larger summed similarity), with the share of neighbours that voted it.

    Returns:
        One row per query: :data:`LABEL_COLUMNS`.
    """
    if neighbours.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    votes = neighbours.groupby(["query", "reference_label"], sort=False).agg(
        votes=("rank", "size"), weight=("similarity", "sum")).reset_index()
    votes = votes.sort_values(["query", "votes", "weight"], ascending=[True, False, False],
                              kind="stable")
    best = votes.drop_duplicates("query")
    totals = neighbours.groupby("query", sort=False)["rank"].size()
    order = neighbours["query"].drop_duplicates()
    best = best.set_index("query").loc[order]
    return pd.DataFrame({"query": order.to_numpy(), "label": best["reference_label"].to_numpy(),
                         "vote_share": (best["votes"] / totals.loc[order]).round(4).to_numpy(),
                         "neighbours": totals.loc[order].to_numpy()}, columns=LABEL_COLUMNS)
