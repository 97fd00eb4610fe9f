"""Tests of the metric-learning figures of visrec.core.plots: retrieval galleries, embedding
maps, the 2-D projection, per-class R-Precision and the learning curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from visrec.core.plots import (
    embedding_map_figure,
    metric_learning_curve_figure,
    per_class_figure,
    project_2d,
    retrieval_gallery_figure,
)
from visrec.core.plots.retrieval import RIGHT_COLOUR, WRONG_COLOUR
from visrec.core.plots.style import MAX_INCHES
from visrec.core.retrieval.metrics import per_class_table, per_query_figures

PNG_DPI = 40


def _rendered(fig: Figure, path: Path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=PNG_DPI)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _frame(ax) -> tuple[float, ...] | None:
    """The colour of the axes' frame when all four spines share it and show, else None."""
    spines = list(ax.spines.values())
    colours = {tuple(spine.get_edgecolor()) for spine in spines}
    if not ax.axison or len(colours) != 1 or not all(s.get_visible() for s in spines):
        return None
    return colours.pop()


def _gallery_case(k: int = 4, seed: int = 0) -> dict:
    """Three queries (one grayscale row) with ``k`` neighbours; the last row has k - 1."""
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "owl"]
    channels = [3, 1, 3]
    sizes = [k, k, k - 1]
    return {
        "queries": [torch.rand(c, 8, 8) for c in channels],
        "neighbours": [[torch.rand(c, 8, 8) for _ in range(n)]
                       for c, n in zip(channels, sizes, strict=True)],
        "query_labels": labels,
        "neighbour_labels": [[str(rng.choice(labels)) for _ in range(n)] for n in sizes],
        "similarities": [sorted(rng.uniform(0, 1, n).tolist(), reverse=True) for n in sizes],
        "title": "nearest neighbours",
    }


def test_retrieval_gallery_frames_wrong_neighbours_red(tmp_path):
    case = _gallery_case()
    fig = retrieval_gallery_figure(**case)
    wrong = sum(found != query for query, row in zip(case["query_labels"],
                                                     case["neighbour_labels"], strict=True)
                for found in row)
    right = sum(len(row) for row in case["neighbour_labels"]) - wrong
    assert 0 < wrong < wrong + right  # the seed gives both kinds
    frames = [_frame(ax) for ax in fig.axes]
    assert frames.count(to_rgba(WRONG_COLOUR)) == wrong
    assert frames.count(to_rgba(RIGHT_COLOUR)) == right
    assert frames.count(to_rgba("black")) == 3  # the queries
    assert frames.count(None) == 1  # the unused cell of the short last row
    for ax in fig.axes:
        if _frame(ax) == to_rgba(WRONG_COLOUR):
            assert all(s.get_linewidth() >= 3 for s in ax.spines.values())
    # Row-major grid of 3 x 5: captions carry the label and the similarity, 2 decimals.
    first_row = [ax.get_title() for ax in fig.axes[:5]]
    assert first_row[0] == "query\ncat"
    assert first_row[1:] == [f"{label}\n{s:.2f}" for label, s in zip(
        case["neighbour_labels"][0], case["similarities"][0], strict=True)]
    gray = fig.axes[5].get_images()[0]
    assert gray.get_array().ndim == 2 and gray.get_cmap().name == "gray"
    assert fig.axes[6].get_images()[0].get_array().ndim == 2
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)
    _rendered(fig, tmp_path / "gallery.png")


def test_retrieval_gallery_grows_but_is_capped():
    small = retrieval_gallery_figure(**_gallery_case(k=2))
    rows = 12
    big = retrieval_gallery_figure(
        [torch.rand(3, 4, 4)] * rows, [[torch.rand(3, 4, 4)] * 10] * rows, ["a"] * rows,
        [["a"] * 10] * rows, [[0.5] * 10] * rows, "big")
    width, height = big.get_size_inches()
    assert width > small.get_size_inches()[0] and height > small.get_size_inches()[1]
    assert max(width, height) <= MAX_INCHES
    assert len(big.axes) == rows * 11


def test_retrieval_gallery_checks_lengths_and_empty():
    case = _gallery_case()
    case["similarities"][1] = case["similarities"][1][:-1]
    with pytest.raises(ValueError, match="row 1"):
        retrieval_gallery_figure(**case)
    fig = retrieval_gallery_figure([], [], [], [], [], "empty")
    assert "no queries" in fig.axes[0].texts[0].get_text()


@pytest.mark.parametrize("k", [3, 25])
def test_embedding_map_one_scatter_per_class(tmp_path, k):
    rng = np.random.default_rng(k)
    classes = [f"class_{i}" for i in range(k)]
    labels = np.repeat(np.arange(k), 4)
    points = rng.normal(size=(len(labels), 2))
    fig = embedding_map_figure(points, labels, classes, "map")
    ax = fig.axes[0]
    assert len(ax.collections) == k
    for code, collection in enumerate(ax.collections):
        np.testing.assert_allclose(collection.get_offsets(), points[labels == code])
    if k <= 10:  # distinct colours from tab10
        assert len({tuple(c.get_facecolor()[0]) for c in ax.collections}) == k
    legend = ax.get_legend()
    if k <= 20:
        assert [t.get_text() for t in legend.get_texts()] == classes
    else:
        assert legend is None
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    assert ax.get_aspect() == "auto"
    _rendered(fig, tmp_path / "map.png")


def test_embedding_map_takes_class_names_and_skips_absent_classes():
    labels = np.array(["owl", "cat", "owl"])
    fig = embedding_map_figure(np.zeros((3, 2)), labels, ["cat", "dog", "owl"], "map")
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.collections] == ["cat", "owl"]
    with pytest.raises(ValueError, match="N x 2"):
        embedding_map_figure(np.zeros((3, 3)), labels, ["cat", "dog", "owl"], "map")


def _blobs(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(0, 1, (n, 16)), rng.normal(20, 1, (n, 16))])
    return points, np.repeat([0, 1], n)


def _neighbour_purity(points: np.ndarray, labels: np.ndarray) -> float:
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(axis=1)] == labels))


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_project_2d_is_deterministic_and_separates_blobs(method):
    embeddings, labels = _blobs()
    first = project_2d(embeddings, seed=3, method=method)
    assert first.shape == (len(embeddings), 2)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, project_2d(embeddings, seed=3, method=method))
    assert _neighbour_purity(first, labels) >= 0.95
    # The two blobs' centres are further apart than either blob is wide.
    centres = [first[labels == c].mean(axis=0) for c in (0, 1)]
    spread = max(first[labels == c].std(axis=0).max() for c in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread


@pytest.mark.parametrize("method", ["tsne", "pca"])
@pytest.mark.parametrize(("n", "d"), [(0, 4), (1, 4), (2, 4), (3, 4), (5, 1)])
def test_project_2d_small_inputs(method, n, d):
    embeddings = np.random.default_rng(0).normal(size=(n, d))
    projected = project_2d(embeddings, seed=0, method=method)
    assert projected.shape == (n, 2)
    assert np.isfinite(projected).all()
    if n == 1:
        np.testing.assert_array_equal(projected, np.zeros((1, 2)))
    if n == 2:  # PCA fallback: one component, the other padded with 0
        assert projected[0, 0] != projected[1, 0]
        np.testing.assert_array_equal(projected[:, 1], [0.0, 0.0])


def test_project_2d_rejects_unknown_method():
    with pytest.raises(ValueError, match=r"tsne.*pca"):
        project_2d(np.zeros((5, 3)), seed=0, method="umap")


def test_per_class_figure_from_real_table(tmp_path):
    labels = np.repeat(np.arange(3), [4, 4, 1])  # class 2 alone: no R-Precision
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), 8,
                                                           generator=torch.Generator().manual_seed(0)))
    table = per_class_table(per_query_figures(embeddings, labels), classes=["a", "b", "c"])
    fig = per_class_figure(table, "per class")
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    positions = list(ax.get_yticks())
    top_first = [ticks[positions.index(p)] for p in sorted(positions, reverse=True)]
    assert top_first == [f"{label} ({images})" for label, images in
                         zip(table["label"], table["images"], strict=True)]
    bar_texts = [t.get_text() for t in ax.texts]
    expected = ["n/a" if np.isnan(v) else f"{v:.3f}" for v in table["r_precision"]]
    assert bar_texts == expected and "n/a" in bar_texts
    assert "worst" not in ax.get_title()
    _rendered(fig, tmp_path / "per_class.png")


def test_per_class_figure_cuts_at_40():
    values = np.linspace(0, 1, 50)
    table = pd.DataFrame({"label": [f"c{i:02d}" for i in range(50)], "images": 5,
                          "r_precision": values, "precision_at_1": values,
                          "mean_average_precision_at_r": values})
    fig = per_class_figure(table, "per class")
    ax = fig.axes[0]
    assert len(ax.patches) == 40
    np.testing.assert_allclose(sorted(p.get_width() for p in ax.patches), values[:40])
    assert "40 of 50" in ax.get_title()
    assert "c49 (5)" not in [t.get_text() for t in ax.get_yticklabels()]
    assert per_class_figure(table.head(0), "none").axes[0].texts


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_metric_learning_curve_full_history(tmp_path):
    epochs = np.arange(1, 7)
    every_other = np.where(epochs % 2 == 0, 0.5, np.nan)  # validation every second epoch
    history = pd.DataFrame({
        "epoch": epochs, "train_loss": 1 / epochs, "train_active": np.linspace(0.9, 0.3, 6),
        "val_mean_average_precision_at_r": every_other, "val_r_precision": every_other,
        "val_precision_at_1": every_other, "val_ema_mean_average_precision_at_r": every_other})
    fig = metric_learning_curve_figure(history)
    loss_ax, retrieval_ax = fig.axes
    assert _labels(loss_ax) == ["train"]
    assert len(_labels(retrieval_ax)) == 5
    assert "train: miner's active share" in _labels(retrieval_ax)
    map_line = retrieval_ax.get_lines()[0]
    np.testing.assert_array_equal(map_line.get_xdata(), [2, 4, 6])
    _rendered(fig, tmp_path / "curve.png")


def test_metric_learning_curve_missing_columns():
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0],
                            "val_r_precision": [np.nan] * 3})
    fig = metric_learning_curve_figure(history)
    loss_ax, retrieval_ax = fig.axes
    assert _labels(loss_ax) == ["train"]
    assert retrieval_ax.get_lines() == []
    assert "no retrieval figures" in retrieval_ax.texts[0].get_text()
    only_active = metric_learning_curve_figure(history.assign(train_active=[0.5, 0.4, 0.2]))
    assert _labels(only_active.axes[1]) == ["train: miner's active share"]
