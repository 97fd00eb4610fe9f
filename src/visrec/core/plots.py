"""Figures as matplotlib ``Figure`` objects (no pyplot state; Kedro's dataset saves them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

MAX_INCHES = 30.0  # figures grow with the class count up to this side
MAX_LABELLED_CLASSES = 60  # beyond this, tick labels would overlap into a black band
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def class_distribution_figure(counts: pd.DataFrame, imbalance_ratio: float) -> Figure:
    """Grouped bars of images per class and split, classes sorted by training count.

    Args:
        counts: Columns ``label``, ``train``, ``val``, ``test`` (see ``balance.class_counts``).
        imbalance_ratio: Shown in the title.
    """
    ordered = counts.sort_values("train", ascending=False)
    splits = [s for s in SPLIT_COLOURS if s in ordered and ordered[s].sum() > 0]
    positions = np.arange(len(ordered))
    width = 0.8 / len(splits)
    fig = Figure(figsize=(min(MAX_INCHES, max(6.0, 0.35 * len(ordered) + 2)), 4),
                 layout="constrained")
    ax = fig.add_subplot()
    for i, split in enumerate(splits):
        ax.bar(positions + i * width, ordered[split], width, label=split,
               color=SPLIT_COLOURS[split])
    if len(ordered) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(positions + width * (len(splits) - 1) / 2, ordered["label"],
                      rotation=90 if len(ordered) > 20 else 0)
    ax.set_ylabel("images")
    ax.set_title(f"Images per class (train imbalance ratio {imbalance_ratio:.1f})")
    ax.legend()
    return fig


def image_grid_figure(rows: list[list[torch.Tensor]], row_titles: list[str],
                      title: str) -> Figure:
    """A grid of images: one row per source image, CxHxW float tensors in [0, 1].

    Args:
        rows: Images of each row.
        row_titles: Title over each row's first image.
        title: Title of the figure.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(1.4 * n_cols + 0.6, 1.4 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, images in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c < len(images):
                pixels = images[c].clamp(0, 1).permute(1, 2, 0).numpy()
                if pixels.shape[-1] == 1:  # grayscale (ingestion.channels: 1)
                    ax.imshow(pixels[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
                else:
                    ax.imshow(pixels)
        axes[r][0].set_title(row_titles[r], fontsize=8, loc="left")
    fig.suptitle(title)
    return fig


def confusion_figure(matrices: dict[str, np.ndarray], classes: list[str]) -> Figure:
    """Row-normalised confusion matrices side by side, one per weight set.

    Args:
        matrices: Confusion counts (true x predicted) by weight-set name.
        classes: Class names in class-index order (tick labels up to 60 classes).
    """
    size = min(MAX_INCHES / len(matrices), max(4.0, 0.3 * len(classes) + 2))
    fig = Figure(figsize=(size * len(matrices), size + 0.6), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    annotate = len(classes) <= 20
    for ax, (name, counts) in zip(axes, matrices.items(), strict=True):
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        if len(classes) <= MAX_LABELLED_CLASSES:
            ticks = np.arange(len(classes))
            ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
            ax.set_yticks(ticks, classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name} weights (row-normalised)")
        if annotate:
            for (i, j), n in np.ndenumerate(counts):
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    return fig


def learning_curve_figure(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, train and validation.

    Args:
        history: The training history (``epoch``, ``train_loss``, ``train_top1``, ``val_*``).
    """
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(history["epoch"], history["train_loss"], label="train")
    acc_ax.plot(history["epoch"], history["train_top1"], label="train top-1")
    if "val_loss" in history:
        loss_ax.plot(history["epoch"], history["val_loss"], label="val")
        acc_ax.plot(history["epoch"], history["val_top1"], label="val top-1")
        acc_ax.plot(history["epoch"], history["val_balanced_accuracy"], label="val balanced")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
    return fig
