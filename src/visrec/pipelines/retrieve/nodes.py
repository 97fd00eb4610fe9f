"""Nodes of the retrieve pipeline."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from visrec.core.augment import make_eval_transform
from visrec.core.models import (
    WeightSet,
    embedder_from_weight_set,
    select_device,
    weights_digest,
)
from visrec.core.retrieval import (
    LABEL_COLUMNS,
    EmbeddingIndex,
    IndexInfo,
    folder_labels,
    search,
    vote_labels,
)
from visrec.core.serve import list_inputs, outputs_of_files
from visrec.params import RetrieveParams

logger = logging.getLogger(__name__)


def _embed_files(served: WeightSet, spec: str | list[str] | None, key: str,
                 params: RetrieveParams) -> tuple[list[str], np.ndarray, pd.DataFrame, str]:
    """The readable files ``spec`` names, their embeddings and the failures."""
    root, paths, unlisted = list_inputs(spec, Path.cwd(), key=key)
    device = select_device(params.device, key="retrieve.device")
    inputs = served.config.inputs
    transform = make_eval_transform(inputs.image_size, inputs.mean, inputs.std,
                                    inputs.interpolation)
    model = embedder_from_weight_set(served).to(device)
    vectors, kept, failures = outputs_of_files(
        model, transform, root, paths, inputs.in_chans, params.batch_size, device,
        params.num_workers, params.max_pixels, params.max_bytes, "retrieve")
    vectors = vectors.reshape(len(kept), model.output_size)  # N x D, none readable too
    failures = pd.concat([unlisted, failures], ignore_index=True)
    if len(failures):
        logger.warning("retrieve: %d files of %s could not be read and are listed in "
                       "retrieval_failures:\n%s", len(failures), key,
                       "\n".join(f"  {p}: {r} ({d})" for p, r, d in
                                 failures.head(10).itertuples(index=False)))
    return [paths[i] for i in kept], vectors, failures, str(root)


def index_references(served_embedder: WeightSet, saved: EmbeddingIndex | None,
                     params: RetrieveParams) -> tuple[EmbeddingIndex, pd.DataFrame]:
    """The index to search: ``retrieve.reference`` embedded anew, or the saved index.

    Raises:
        ValueError: If there is no reference folder and no saved index, or the saved index
            was made by another embedder than the served one.
    """
    digest = weights_digest(served_embedder.weights)
    config = served_embedder.config
    if params.reference is None:
        if saved is None:
            raise ValueError("retrieve.reference is not set and there is no saved index: "
                             "give --params \"retrieve.reference=FOLDER\" (a folder of "
                             "reference images; class folders label them)")
        if saved.info.digest != digest:
            raise ValueError("the saved index was made by another embedder than the served "
                             "one: give --params \"retrieve.reference=FOLDER\" to index anew")
        return saved, pd.DataFrame(columns=["path", "reason", "detail"])
    paths, vectors, failures, root = _embed_files(served_embedder, params.reference,
                                                  "retrieve.reference", params)
    labels = folder_labels(paths)
    labelled = bool(paths) and all(labels)
    info = IndexInfo(root=root, images=len(paths), labelled=labelled,
                     embedder=config.served_from or "final", architecture=config.architecture,
                     embedding_size=vectors.shape[1], digest=digest)
    logger.info("retrieve: indexed %d reference images of %s (%s)", len(paths), root,
                "labelled by their folders" if labelled else "unlabelled")
    items = pd.DataFrame({"path": paths, "label": labels if labelled else [""] * len(paths)})
    return EmbeddingIndex(torch.from_numpy(vectors), items, info), failures


def search_references(served_embedder: WeightSet, index: EmbeddingIndex,
                      reference_failures: pd.DataFrame, params: RetrieveParams
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The top-k references of each query image, and its k-NN label when the references
    are labelled.

    Returns:
        ``(neighbours, labels, failures)``: one row per query and rank (reference path,
        label, similarity, cosine distance); one row per query with the label most
        neighbours carry and their share (empty without labels); the unreadable files of
        both folders, with ``role`` query or reference.
    """
    if index.info.digest != weights_digest(served_embedder.weights):
        raise ValueError("the index was made by another embedder than the served one: "
                         "give --params \"retrieve.reference=FOLDER\" to index anew")
    if len(index.embeddings) == 0:
        raise ValueError(f"the index of {index.info.root} holds no readable image")
    paths, vectors, failures, _ = _embed_files(served_embedder, params.query,
                                               "retrieve.query", params)
    neighbours = search(index, torch.from_numpy(vectors), paths, params.top_k,
                        backend=params.knn, batch_size=params.batch_size)
    labels = (vote_labels(neighbours) if index.info.labelled
              else pd.DataFrame(columns=LABEL_COLUMNS))
    logger.info("retrieve: %d queries against %d references of %s, top %d", len(paths),
                len(index.embeddings), index.info.root, min(params.top_k,
                                                           len(index.embeddings)))
    every = pd.concat([failures.assign(role="query"),
                       reference_failures.assign(role="reference")], ignore_index=True)
    return neighbours, labels, every[["role", "path", "reason", "detail"]]
