"""Tests of the evaluation figures of visrec.core.plots: 3 and 100 classes, rendered to PNG."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from visrec.core.evaluate import confused_pairs, reliability_table, softmax
from visrec.core.plots import (
    confused_pairs_figure,
    gallery_figure,
    long_tail_figure,
    reliability_figure,
    sorted_confusion_figure,
)

PNG_DPI = 40  # enough to render every artist; keeps the 100-class figures fast


def _rendered(fig: Figure, path: Path) -> Path:
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=PNG_DPI)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _case(k: int, seed: int = 0) -> dict:
    """Confusion counts, names, training images and shot groups of ``k`` long-tailed classes."""
    rng = np.random.default_rng(seed)
    train_images = np.round(500 * 0.97 ** np.arange(k)).astype(int)[rng.permutation(k)]
    groups = ["many" if n > 100 else "few" if n < 20 else "medium" for n in train_images]
    counts = rng.integers(0, 3, (k, k)) * (rng.random((k, k)) < 0.1)
    counts[np.arange(k), np.arange(k)] = rng.integers(5, 20, k)
    return {"counts": counts, "classes": [f"class_{i:03d}" for i in range(k)],
            "train_images": train_images, "groups": groups,
            "order": np.argsort(-train_images, kind="stable")}


THREE = {"counts": np.array([[5, 2, 0], [1, 3, 0], [0, 1, 2]]), "classes": ["cat", "dog", "owl"],
         "train_images": np.array([200, 50, 5]), "groups": ["many", "medium", "few"],
         "order": np.array([0, 1, 2])}


@pytest.mark.parametrize("k", [3, 100])
def test_sorted_confusion_figure_names_every_class(tmp_path, k):
    case = THREE if k == 3 else _case(k)
    pairs = confused_pairs(case["counts"], case["classes"], top=10)
    fig = sorted_confusion_figure(case["counts"], case["classes"], case["order"],
                                  case["groups"], pairs, "test confusion")
    matrix_ax = fig.axes[0]
    labels = [t.get_text() for t in matrix_ax.get_xticklabels()]
    assert len(labels) == k
    assert labels == [case["classes"][i] for i in case["order"]]  # display order
    assert [t.get_text() for t in matrix_ax.get_yticklabels()] == labels
    # The shown rates are the row-normalised counts, rows and columns in display order.
    rates = case["counts"] / case["counts"].sum(axis=1, keepdims=True)
    shown = matrix_ax.get_images()[0].get_array()
    np.testing.assert_allclose(shown, rates[np.ix_(case["order"], case["order"])])
    # One number per listed confusion, in the cells; a dashed line pair per group change.
    numbers = [t.get_text() for t in matrix_ax.texts]
    assert numbers == [str(i) for i in range(1, len(pairs) + 1)]
    ordered_groups = [case["groups"][i] for i in case["order"]]
    changes = sum(a != b for a, b in itertools.pairwise(ordered_groups))
    assert len(matrix_ax.lines) == 2 * changes
    _rendered(fig, tmp_path / "confusion.png")


def test_sorted_confusion_figure_lists_the_top_confusions():
    pairs = confused_pairs(THREE["counts"], THREE["classes"], top=10)
    fig = sorted_confusion_figure(THREE["counts"], THREE["classes"], THREE["order"],
                                  THREE["groups"], pairs, "t")
    legend = fig.axes[1].texts[0].get_text()
    # cat -> dog 2 of 7; dog -> cat 1 of 4; owl -> dog 1 of 3 (count, then rate).
    assert "1. cat → dog: 2 (29%)" in legend
    assert "2. owl → dog: 1 (33%)" in legend
    assert "3. dog → cat: 1 (25%)" in legend


def test_sorted_confusion_figure_without_mistakes(tmp_path):
    counts = np.diag([3, 4, 5])
    pairs = confused_pairs(counts, THREE["classes"], top=10)
    fig = sorted_confusion_figure(counts, THREE["classes"], THREE["order"], THREE["groups"],
                                  pairs, "t")
    assert "no mistakes" in fig.axes[1].texts[0].get_text()
    _rendered(fig, tmp_path / "perfect.png")


@pytest.mark.parametrize("k", [3, 100])
def test_confused_pairs_figure(tmp_path, k):
    case = THREE if k == 3 else _case(k, seed=1)
    pairs = confused_pairs(case["counts"], case["classes"], top=20)
    fig = confused_pairs_figure(pairs, "most confused")
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == pairs["images"].tolist()
    ticks = {y: t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels(),
                                             strict=True)}
    assert len(ticks) == len(pairs)
    # The most frequent pair on top, the least at the bottom.
    assert ticks[max(ticks)] == f"{pairs['true'].iloc[0]} → {pairs['predicted'].iloc[0]}"
    assert ticks[min(ticks)] == f"{pairs['true'].iloc[-1]} → {pairs['predicted'].iloc[-1]}"
    tops = {p.get_y() + p.get_height() / 2: p.get_width() for p in ax.patches}
    assert tops[max(tops)] == pairs["images"].max()
    _rendered(fig, tmp_path / "pairs.png")


def test_confused_pairs_figure_without_mistakes(tmp_path):
    fig = confused_pairs_figure(confused_pairs(np.eye(3, dtype=int), ["a", "b", "c"], 5), "t")
    assert "no mistakes" in fig.axes[0].texts[0].get_text()
    _rendered(fig, tmp_path / "none.png")


@pytest.mark.parametrize(("count", "channels"), [(3, 3), (7, 3), (13, 1)])
def test_gallery_figure(tmp_path, count, channels):
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(channels, 8, 8, generator=generator) * 1.4 - 0.2  # clamped to [0, 1]
              for _ in range(count)]
    captions = [f"true a\npredicted b {i}" for i in range(count)]
    fig = gallery_figure(images, captions, "mistakes", columns=6)
    columns = min(6, count)
    assert len(fig.axes) == -(-count // 6) * columns
    drawn = [ax for ax in fig.axes if ax.get_images()]
    assert len(drawn) == count
    assert drawn[-1].get_title() == captions[-1]
    _rendered(fig, tmp_path / "gallery.png")


def test_gallery_figure_without_images(tmp_path):
    fig = gallery_figure([], [], "mistakes")
    assert "no images" in fig.axes[0].texts[0].get_text()
    _rendered(fig, tmp_path / "empty.png")


@pytest.mark.parametrize("k", [3, 100])
def test_long_tail_figure(tmp_path, k):
    case = THREE if k == 3 else _case(k, seed=2)
    counts = case["counts"]
    support = counts.sum(axis=1)
    support[-1] = 0  # a class without test images is left out
    report = pd.DataFrame({"label": case["classes"], "train_images": case["train_images"],
                           "recall": np.diag(counts) / np.maximum(support, 1),
                           "support": support, "group": case["groups"]})
    fig = long_tail_figure(report, "per-class accuracy")
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == k - 1
    assert ax.get_xscale() == "log"
    assert len(ax.get_legend().get_texts()) == len(set(report["group"][support > 0]))
    _rendered(fig, tmp_path / "long_tail.png")
    low, high = ax.get_xlim()
    labelled = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert len(labelled) >= 2 and all(labelled), labelled  # read off, not guessed


@pytest.mark.parametrize("k", [3, 100])
def test_reliability_figure(tmp_path, k):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(500, k)) * 4
    labels = rng.integers(0, k, 500)
    tables = {"before": reliability_table(softmax(logits), labels),
              "after temperature scaling": reliability_table(softmax(logits, 3.0), labels)}
    fig = reliability_figure(tables, {"before": 0.3, "after temperature scaling": 0.05}, "t")
    assert len(fig.axes) == 4  # a diagram and a histogram per panel
    before = fig.axes[0]
    assert "ECE 0.3000" in before.get_title()
    heights = [p.get_height() for p in before.patches[:15]]  # the accuracy bars
    np.testing.assert_allclose(heights, tables["before"]["accuracy"].fillna(0.0))
    _rendered(fig, tmp_path / "reliability.png")


def test_reliability_figure_with_empty_bins(tmp_path):
    # Two images: 13 of the 15 bins are empty (NaN means); no images at all: all empty.
    two = reliability_table(np.array([[0.9, 0.1], [0.55, 0.45]]), np.array([0, 1]))
    none = reliability_table(np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    assert (two["images"] == 0).sum() == 13 and (none["images"] == 0).all()
    fig = reliability_figure({"two": two, "none": none}, {"two": 0.5, "none": 0.0}, "t")
    heights = [p.get_height() for p in fig.axes[0].patches[:15]]
    assert not np.isnan(heights).any()
    assert sorted(heights)[-2:] == [0.0, 1.0]
    _rendered(fig, tmp_path / "empty_bins.png")
