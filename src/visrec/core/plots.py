"""Figures as matplotlib ``Figure`` objects (no pyplot state; Kedro's dataset saves them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

MAX_INCHES = 30.0  # figures grow with the class count up to this side
MAX_LABELLED_CLASSES = 60  # beyond this, tick labels would overlap into a black band
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
GROUP_COLOURS = {"many": "#1f77b4", "medium": "#9467bd", "few": "#d62728"}


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


def leaderboard_figure(table: pd.DataFrame | None, title: str) -> Figure:
    """The augmentation search's leaderboard: one bar per candidate and rung it reached.

    Candidates are in the search's order (the selected one on top, its bars outlined),
    named as written in the parameters when the table has a ``written`` column; each bar
    is the validation balanced accuracy after that rung's epochs.

    Args:
        table: The leaderboard (:func:`visrec.core.search.leaderboard`), or None when no
            search ran: the figure then only carries ``title``.
        title: Title of the figure.
    """
    if table is None or table.empty:
        fig = Figure(figsize=(6.0, 1.2), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, title, ha="center", va="center", fontsize=9, wrap=True)
        return fig
    rungs = sorted(int(column.split("_")[1]) for column in table
                   if column.startswith("rung_") and column.endswith("_balanced_accuracy"))
    fig = Figure(figsize=(9.0, 0.55 * len(table) * max(1, len(rungs)) / 2 + 1.6),
                 layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(rungs)
    colours = ["#c6dbef", "#6baed6", "#2171b5", "#08306b", "#041836", "#000000"]
    positions = np.arange(len(table))[::-1]  # first place on top
    for offset, rung in enumerate(rungs):
        values = table[f"rung_{rung}_balanced_accuracy"].to_numpy(dtype=float)
        epochs = table[f"rung_{rung}_epochs"].dropna()
        label = f"rung {rung} ({int(epochs.iloc[0])} epochs)" if len(epochs) else f"rung {rung}"
        shown = ~np.isnan(values)
        bars = ax.barh(positions[shown] + (len(rungs) / 2 - offset - 0.5) * height,
                       values[shown], height, color=colours[offset % len(colours)],
                       label=label, edgecolor=["black" if s else "none" for s in
                                               table["selected"].to_numpy()[shown]])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    shown_names = table["written"] if "written" in table else table["policy"]
    names = [f"{place}. {name if len(name) <= 60 else name[:57] + '...'}"
             for place, name in zip(table["place"], shown_names, strict=True)]
    ax.set_yticks(positions, names, fontsize=7)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("validation balanced accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


MAX_TICKED_CLASSES = 150  # the sorted confusion matrix names every class up to this count


def _class_ticks(ax: Any, labels: list[str], inches: float) -> None:
    """Name every class on both axes, the font shrunk to fit ``inches`` of axis."""
    ticks = np.arange(len(labels))
    size = float(np.clip(72 * inches / max(len(labels), 1) * 0.8, 3.5, 8))  # points
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)


def sorted_confusion_figure(counts: np.ndarray, classes: list[str], order: np.ndarray,
                            groups: list[str], pairs: pd.DataFrame, title: str) -> Figure:
    """The row-normalised confusion matrix, classes sorted, the top confusions numbered.

    Readable with 100 classes: classes follow ``order`` (visrec sorts by training images,
    head to tail) with lines between the shot groups; a square-root colour scale keeps
    small confusion rates visible; every class is named up to 150 classes; the most
    frequent mistakes are numbered in their cells and listed beside the matrix.

    Args:
        counts: Confusion counts (true x predicted) in class-index order.
        classes: Class names in class-index order.
        order: Class indices in display order.
        groups: Shot group of each class, in class-index order.
        pairs: The confusions to number (:func:`visrec.core.metrics.confused_pairs`).
        title: Title of the figure.
    """
    from matplotlib.colors import PowerNorm  # noqa: PLC0415

    k = len(classes)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shown = rates[np.ix_(order, order)]
    side = min(MAX_INCHES, max(5.0, 0.17 * k + 2.5))
    fig = Figure(figsize=(side + 3.5, side + 0.8), layout="constrained")
    ax, legend_ax = fig.subplots(1, 2, width_ratios=[side, 3.0])
    image = ax.imshow(shown, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=1),
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the true class (sqrt scale)")
    names = [classes[i] for i in order]
    if k <= MAX_TICKED_CLASSES:
        _class_ticks(ax, names, side - 1.5)
    ordered_groups = [groups[i] for i in order]
    for position in range(1, k):
        if ordered_groups[position] != ordered_groups[position - 1]:
            for line in (ax.axhline, ax.axvline):
                line(position - 0.5, color="grey", linewidth=0.8, linestyle="--")
    place = {name: i for i, name in enumerate(names)}
    lines = []
    for number, row in enumerate(pairs.itertuples(index=False), start=1):
        y, x = place[row.true], place[row.predicted]
        ax.add_patch(_cell_outline(x, y))
        ax.annotate(str(number), (x, y), ha="center", va="center", color="#d62728",
                    fontsize=7 if k <= 40 else 5, fontweight="bold")
        lines.append(f"{number}. {row.true} → {row.predicted}: {row.images} "
                     f"({row.rate:.0%})")
    legend_ax.axis("off")
    legend_ax.text(0.0, 1.0, "Most confused (true → predicted:\nimages, share of true class)\n\n"
                   + ("\n".join(lines) or "no mistakes"), va="top", fontsize=8,
                   transform=legend_ax.transAxes)
    ax.set_xlabel("predicted (sorted by training images)")
    ax.set_ylabel("true (sorted by training images)")
    ax.set_title(title, fontsize=10)
    return fig


def _cell_outline(x: float, y: float) -> Any:
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=1)


def confused_pairs_figure(pairs: pd.DataFrame, title: str) -> Figure:
    """The most confused (true, predicted) pairs as horizontal bars of image counts.

    Args:
        pairs: Columns ``true``, ``predicted``, ``images``, ``rate``, most frequent first.
        title: Title of the figure.
    """
    fig = Figure(figsize=(7.5, 0.32 * max(len(pairs), 3) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    if pairs.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes on the test split", ha="center", va="center")
        return fig
    positions = np.arange(len(pairs))[::-1]
    bars = ax.barh(positions, pairs["images"], color="#d62728")
    ax.bar_label(bars, [f"{n} ({r:.0%})" for n, r in zip(pairs["images"], pairs["rate"],
                                                         strict=True)], fontsize=7, padding=2)
    ax.set_yticks(positions, [f"{t} → {p}" for t, p in zip(pairs["true"], pairs["predicted"],
                                                           strict=True)], fontsize=8)
    ax.set_xlabel("test images (share of the true class)")
    ax.set_xlim(0, pairs["images"].max() * 1.25)
    ax.set_title(title, fontsize=10)
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


def long_tail_figure(report: pd.DataFrame, title: str) -> Figure:
    """Per-class test accuracy (recall) against training images: the long-tail picture.

    Args:
        report: One row per class with ``label``, ``train_images``, ``recall``, ``support``
            and ``group``; classes without test images are left out.
        title: Title of the figure.
    """
    rows = report[report["support"] > 0]
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for group, colour in GROUP_COLOURS.items():
        chosen = rows[rows["group"] == group]
        if chosen.empty:
            continue
        ax.scatter(chosen["train_images"], chosen["recall"], color=colour, s=18, alpha=0.8,
                   label=f"{group}-shot: mean {chosen['recall'].mean():.3f} "
                         f"({len(chosen)} classes)")
        ax.axhline(chosen["recall"].mean(), color=colour, linewidth=0.8, linestyle="--")
    worst = rows[rows["recall"] < 1].nsmallest(min(5, len(rows)), "recall")
    for row in worst.itertuples(index=False):
        ax.annotate(str(row.label), (row.train_images, row.recall), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    # Ticks at 1, 2 and 5 per decade: class counts often span less than one decade, where
    # powers of ten alone would label one tick or none.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test accuracy of the class (recall)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def reliability_figure(tables: dict[str, pd.DataFrame], eces: dict[str, float],
                       title: str) -> Figure:
    """Reliability diagrams side by side: accuracy against confidence per bin.

    Bars are the accuracy of each confidence bin; the diagonal is perfect calibration;
    hatched red boxes show the gap between each bin's accuracy and its mean confidence.
    Under each diagram, the share of images per bin.

    Args:
        tables: :func:`visrec.core.calibration.reliability_table` output by panel name
            (for example ``before`` and ``after temperature scaling``).
        eces: Expected calibration error of each panel.
        title: Title of the figure.
    """
    fig = Figure(figsize=(4.2 * len(tables), 5.2), layout="constrained")
    axes = fig.subplots(2, len(tables), squeeze=False, height_ratios=[3, 1])
    for column, (name, table) in enumerate(tables.items()):
        ax, hist_ax = axes[0][column], axes[1][column]
        width = float(table["upper"].iloc[0] - table["lower"].iloc[0])
        centres = (table["lower"] + table["upper"]).to_numpy() / 2
        filled = table["images"].to_numpy() > 0
        accuracy = np.where(filled, table["accuracy"].to_numpy(), 0.0)
        confidence = np.where(filled, table["confidence"].to_numpy(), 0.0)
        ax.bar(centres, accuracy, width, color="#1f77b4", edgecolor="black", linewidth=0.4,
               label="accuracy")
        # The gap runs from the accuracy to the bin's mean confidence, up (overconfident)
        # or down into the bar (underconfident): hatched and unfilled, so both read.
        ax.bar(centres[filled], (confidence - accuracy)[filled], width,
               bottom=accuracy[filled], fill=False, hatch="///", edgecolor="#d62728",
               linewidth=0.6, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}\nECE {eces[name]:.4f}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        share = table["images"].to_numpy() / max(int(table["images"].sum()), 1)
        hist_ax.bar(centres, share, width, color="grey")
        hist_ax.set_xlim(0, 1)
        hist_ax.set_xlabel("confidence (top-1 probability)")
        hist_ax.set_ylabel("images")
    fig.suptitle(title, fontsize=10)
    return fig
