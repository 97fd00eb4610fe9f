"""Figures of evaluation: the sorted confusion matrix, confused pairs, the long tail, the
reliability diagram."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from visrec.core.plots.style import GROUP_COLOURS, MAX_INCHES

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
