"""Scoring embedders the honest way: every model (weight sets and baselines) embeds the
same validation and test images, and each split's images query each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from visrec.core.data import ImageCache
from visrec.core.evaluate import eval_loader_of, predict_logits
from visrec.core.models import ModelInputs
from visrec.core.retrieval.metrics import retrieval_metrics

SPLITS = ("val", "test")


def embed_rows(model: nn.Module, rows: pd.DataFrame, cache: ImageCache | None, root: str,
               inputs: ModelInputs, batch_size: int, device: torch.device) -> np.ndarray:
    """Embeddings (float32, one row per manifest row, in order) through the evaluation
    transform, from the packed cache when it holds the images."""
    loader = eval_loader_of(inputs, rows, root, batch_size, device, cache)
    return predict_logits(model.to(device), loader, device)[0]


def embed_splits(models: dict[str, nn.Module], manifest: pd.DataFrame,
                 cache: ImageCache | None, root: str, inputs: ModelInputs, batch_size: int,
                 device: torch.device) -> dict[str, dict[str, np.ndarray]]:
    """Each model's embeddings of the val and test rows (a split without rows is left out).

    Returns:
        ``{model name: {split: N x D array}}``.
    """
    rows = {split: manifest[manifest["split"] == split] for split in SPLITS}
    return {name: {split: embed_rows(model, part, cache, root, inputs, batch_size, device)
                   for split, part in rows.items() if len(part)}
            for name, model in models.items()}


def score_embeddings(embeddings: dict[str, dict[str, np.ndarray]], manifest: pd.DataFrame,
                     backend: str = "torch") -> dict[str, dict[str, float]]:
    """Test figures of each model (``precision_at_1``, ``r_precision``,
    ``mean_average_precision_at_r``, ``num_query_images``, ``num_classes``) with its
    validation figures as ``val_<name>``."""
    labels = {split: manifest.loc[manifest["split"] == split, "label"].to_numpy()
              for split in SPLITS}
    scores: dict[str, dict[str, float]] = {}
    for name, by_split in embeddings.items():
        figures: dict[str, float] = {}
        for split, vectors in by_split.items():
            found = retrieval_metrics(torch.from_numpy(vectors), labels[split], backend=backend)
            prefix = "" if split == "test" else f"{split}_"
            figures |= {f"{prefix}{key}": value for key, value in found.items()}
        scores[name] = figures
    return scores


def choose_embedder(scores: dict[str, dict[str, float]], candidates: Sequence[str],
                    requested: str) -> str:
    """The embedder to serve: ``requested``, or (``auto``) the candidate with the best
    validation MAP@R, ``final`` on ties and without validation classes.

    Raises:
        ValueError: If ``requested`` is not among the candidates.
    """
    if requested != "auto":
        if requested not in candidates:
            raise ValueError(f"metric_learning.serve = {requested!r}: this run has "
                             f"{list(candidates)} (swa and ema need their switches on)")
        return requested
    key = "val_mean_average_precision_at_r"
    scored = [name for name in candidates if key in scores.get(name, {})]
    if not scored:
        return "final"
    return max(scored, key=lambda name: (scores[name][key], name == "final"))

