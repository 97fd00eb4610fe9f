"""Figures of the data and of training: the class distribution, image grids, the learning
curve, the augmentation leaderboard. Each is a matplotlib ``Figure`` (no pyplot state;
Kedro's dataset saves it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from visrec.core.plots.style import (
    GROUP_COLOURS,
    MAX_INCHES,
    MAX_LABELLED_CLASSES,
    SPLIT_COLOURS,
    note_figure,
)


def class_distribution_figure(counts: pd.DataFrame, report: dict) -> Figure:
    """Training images per class on a log scale, classes sorted, bars coloured by shot group.

    Val and test images are drawn as markers over each bar; dashed lines mark the group
    thresholds.

    Args:
        counts: Columns ``label``, ``train``, ``val``, ``test``, ``group`` (see
            ``balance.analyse_classes``).
        report: The class-balance report (imbalance ratio, entropy, thresholds).
    """
    ordered = counts.sort_values("train", ascending=False, kind="stable")
    positions = np.arange(len(ordered))
    fig = Figure(figsize=(min(MAX_INCHES, max(7.5, 0.3 * len(ordered) + 3.5)), 4.5),
                 layout="constrained")
    ax = fig.add_subplot()
    for group, colour in GROUP_COLOURS.items():
        chosen = (ordered["group"] == group).to_numpy()
        ax.bar(positions[chosen], ordered["train"].to_numpy()[chosen], 0.8, color=colour,
               label=f"{group}-shot ({chosen.sum()})")
    for split, marker in (("val", "_"), ("test", "x")):
        if ordered[split].sum() > 0:
            shown = ordered[split].to_numpy() > 0  # a log axis cannot show 0
            ax.scatter(positions[shown], ordered[split].to_numpy()[shown], marker=marker,
                       color=SPLIT_COLOURS[split], zorder=3, label=split)
    thresholds = report["thresholds"]
    for value, text in ((thresholds["many"] + 0.5, f"many-shot: > {thresholds['many']}"),
                        (thresholds["few"] - 0.5, f"few-shot: < {thresholds['few']}")):
        ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(text, (0.995, value), xycoords=("axes fraction", "data"), fontsize=7,
                    ha="right", va="bottom", color="dimgrey")
    ax.set_yscale("log")
    if len(ordered) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(positions, ordered["label"], rotation=90 if len(ordered) > 20 else 0)
    ax.set_xlabel("class (sorted by training images)")
    ax.set_ylabel("images (log scale)")
    ax.set_title(f"Training images per class\nimbalance ratio {report['imbalance_ratio']:.1f}, "
                 f"normalised entropy {report['normalised_entropy']:.3f}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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


def gallery_figure(images: list[torch.Tensor], captions: list[str], title: str,
                   columns: int = 6) -> Figure:
    """Images with a caption each, in rows of ``columns``.

    Args:
        images: CxHxW float tensors in [0, 1].
        captions: A short caption under each image (a few lines).
        title: Title of the figure.
        columns: Images per row.
    """
    if not images:
        fig = Figure(figsize=(6.0, 1.2), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: no images", ha="center", va="center")
        return fig
    n_rows = -(-len(images) // columns)
    n_cols = min(columns, len(images))
    fig = Figure(figsize=(2.0 * n_cols + 0.4, 2.5 * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, caption in zip(axes, images, captions, strict=False):
        pixels = image.clamp(0, 1).permute(1, 2, 0).numpy()
        if pixels.shape[-1] == 1:
            ax.imshow(pixels[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(pixels)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
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


def tuning_history_figure(table: pd.DataFrame, title: str) -> Figure:
    """The search's history: each trial's validation score against its number, with two
    standard errors (finished trials filled, cut ones hollow at their last score), the
    best finished score so far, and the chosen trial ringed.

    Args:
        table: The tuning leaderboard (:func:`visrec.core.tune.leaderboard`).
        title: Title of the figure.
    """
    if table.empty:
        return note_figure(f"no search: {title}")
    table = table.sort_values("trial")
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for state, colour, face in (("complete", "#2171b5", "#2171b5"),
                                ("pruned", "#6baed6", "white")):
        rows = table[(table["state"] == state) & table["value"].notna()]
        ax.errorbar(rows["trial"], rows["value"], yerr=2 * rows["standard_error"], fmt="o",
                    capsize=2, color=colour, markerfacecolor=face,
                    label="finished" if state == "complete" else "cut")
    finished = table[table["state"] == "complete"]
    ax.step(finished["trial"], finished["value"].cummax(), where="post", color="black",
            linewidth=1, label="best so far")
    chosen = table[table["selected"]]
    ax.scatter(chosen["trial"], chosen["value"], s=180, facecolors="none",
               edgecolors="#d94801", linewidths=2, label="chosen", zorder=3)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation score (+- 2 standard errors)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def importance_figure(table: pd.DataFrame) -> Figure:
    """The searched parameters' importances (Optuna's fANOVA), one bar each."""
    if table.empty:
        return note_figure("no parameter importances: fewer than five finished trials, "
                            "or nothing varied")
    table = table.sort_values("importance")
    fig = Figure(figsize=(7.0, 0.4 * len(table) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(table["parameter"], table["importance"], color="#6baed6")
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("share of the score's variance (fANOVA)")
    ax.set_title("parameter importances", fontsize=10)
    return fig


TILE_SIDE = 256  # pixels: a gallery tile never needs more (a 12 MP photo would be GBs)


def image_tile(image: Image.Image | torch.Tensor) -> torch.Tensor:
    """A CxHxW float image in [0, 1], at most 256 pixels a side, from a PIL image (the
    file-reading dataset gives PIL images)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"gallery tiles come from image files, got {type(image).__name__}")
    image = image.copy()
    image.thumbnail((TILE_SIDE, TILE_SIDE))
    pixels = np.asarray(image)
    return torch.tensor(pixels.reshape(*pixels.shape[:2], -1)).permute(2, 0, 1) / 255.0
