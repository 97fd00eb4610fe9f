"""Nodes of the embedding pipeline that report and export: the per-class table, the
retrieval gallery, the 2-D map, the learning curve, and the ONNX embedder."""

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.data import IngestionReport, manifest_dataset
from visrec.core.evaluate import eval_loader_of
from visrec.core.models import WeightSet, embedder_from_weight_set
from visrec.core.plots import (
    embedding_map_figure,
    image_tile,
    metric_learning_curve_figure,
    per_class_figure,
    project_2d,
    retrieval_gallery_figure,
)
from visrec.core.retrieval import knn, per_class_table, per_query_figures
from visrec.core.serve import export_onnx, onnx_outputs, parity
from visrec.params import MetricLearningParams

logger = logging.getLogger(__name__)

PARITY_IMAGES, PARITY_BATCH = 64, 24  # two batch sizes: the dynamic batch axis is exercised


def _served_test(embeddings: dict[str, dict[str, np.ndarray]], metrics: dict[str, Any],
                 manifest: pd.DataFrame) -> tuple[str, torch.Tensor, pd.DataFrame]:
    name = metrics["served"]
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    return name, torch.from_numpy(embeddings[name]["test"]), test


def per_class_retrieval(embeddings: dict[str, dict[str, np.ndarray]], metrics: dict[str, Any],
                        manifest: pd.DataFrame, params: MetricLearningParams
                        ) -> tuple[pd.DataFrame, Figure]:
    """Per test class, the served embedder's R-Precision, P@1 and MAP@R, worst first."""
    name, vectors, test = _served_test(embeddings, metrics, manifest)
    table = per_class_table(per_query_figures(vectors, test["label"].to_numpy(),
                                              backend=params.knn))
    return table, per_class_figure(table, f"R-Precision per test class, {name} embedder")


def retrieval_gallery(embeddings: dict[str, dict[str, np.ndarray]], metrics: dict[str, Any],
                      manifest: pd.DataFrame, ingestion_report: IngestionReport,
                      params: MetricLearningParams, seed: int) -> Figure:
    """Test queries (drawn at random, one class after another) with their nearest test
    images under the served embedder; wrong neighbours are framed red."""
    name, vectors, test = _served_test(embeddings, metrics, manifest)
    order = np.random.default_rng(seed).permutation(len(test))
    labels = test["label"].to_numpy()
    queries = _interleave(labels[order], order)[:params.gallery_queries]
    k = min(params.gallery_k, len(test) - 1)
    similarities, found = knn(vectors[queries], vectors, k + 1, backend=params.knn)
    dataset = manifest_dataset(test, None, ingestion_report.root, image_tile,
                               ingestion_report.channels)
    rows = [[int(j) for j in row if j != q][:k] for q, row in zip(queries, found.numpy(),
                                                                   strict=True)]
    scores = [[float(s) for j, s in zip(row, sims, strict=True) if j != q][:k]
              for q, row, sims in zip(queries, found.numpy(), similarities.numpy(), strict=True)]
    return retrieval_gallery_figure(
        [dataset[int(q)][0] for q in queries], [[dataset[j][0] for j in row] for row in rows],
        [str(labels[q]) for q in queries], [[str(labels[j]) for j in row] for row in rows],
        scores, f"Nearest test images under the {name} embedder (red: another class)")


def _interleave(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` reordered one class after another (the first of each class, then the
    second, ...), so that a short gallery shows many classes."""
    rank = pd.Series(labels).groupby(labels).cumcount().to_numpy()
    return rows[np.lexsort((labels, rank))]


def embedding_map(embeddings: dict[str, dict[str, np.ndarray]], metrics: dict[str, Any],
                  manifest: pd.DataFrame, params: MetricLearningParams, seed: int) -> Figure:
    """The served embedder's test embeddings in 2-D (t-SNE or PCA), coloured by class."""
    name, vectors, test = _served_test(embeddings, metrics, manifest)
    shown = np.sort(np.random.default_rng(seed).permutation(len(test))[:params.map_max_points])
    points = project_2d(vectors.numpy()[shown], seed, params.map_method)
    classes = sorted(test["label"].unique())
    return embedding_map_figure(points, test["label"].to_numpy()[shown], classes,
                                f"Test embeddings of the {name} embedder "
                                f"({params.map_method})")


def plot_metric_learning_curve(history: pd.DataFrame) -> Figure:
    """Training loss, the miner's active share and validation retrieval per epoch."""
    return metric_learning_curve_figure(history)


def export_embedder(served: WeightSet, manifest: pd.DataFrame,
                    ingestion_report: IngestionReport, params: MetricLearningParams
                    ) -> tuple[bytes, dict[str, Any]]:
    """The served embedder as ONNX (input ``images``, output ``embeddings``), checked against
    PyTorch on test images in two batch sizes.

    Raises:
        ValueError: If ONNX's embeddings differ from PyTorch's by
            ``metric_learning.parity_tolerance`` or more.
    """
    model = embedder_from_weight_set(served)
    rows = manifest[manifest["split"] == "test"].head(PARITY_IMAGES)
    loader = eval_loader_of(served.config.inputs, rows, ingestion_report.root, PARITY_BATCH,
                            torch.device("cpu"))
    batches = [images for images, _ in loader]
    metadata = {key: str(value) for key, value in served.config.to_json().items()
                if key in ("architecture", "embedding_size", "output", "image_size", "mean",
                           "std", "interpolation", "in_chans", "served_from", "loss")}
    onnx = export_onnx(model, torch.cat(batches)[:2], params.onnx_opset, metadata,
                       output_names=("embeddings",))
    worst = parity(model, batches, lambda b: onnx_outputs(onnx, b.numpy()),
                   output_names=("embeddings",))
    report = {"weights": served.config.served_from, "images": len(rows),
              "batch_sizes": sorted({len(b) for b in batches}), "opset": params.onnx_opset,
              "tolerance": params.parity_tolerance, "bytes": len(onnx), **worst,
              "passed": worst["max_abs_diff_embeddings"] < params.parity_tolerance}
    logger.info("export embedder: %d bytes of ONNX; largest |difference| from PyTorch on %d "
                "images: %.3g", len(onnx), len(rows), worst["max_abs_diff_embeddings"])
    if not report["passed"]:
        raise ValueError(f"export: the ONNX embeddings differ from PyTorch's by "
                         f"{worst['max_abs_diff_embeddings']:.3g}, not below "
                         f"metric_learning.parity_tolerance = {params.parity_tolerance}")
    return onnx, report
