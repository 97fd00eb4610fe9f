"""Figures of metric learning: retrieval galleries, embedding maps, per-class R-Precision and
the learning curve; plus :func:`project_2d`, which maps embeddings to 2-D for the map. Each
figure is a matplotlib ``Figure`` (no pyplot state; Kedro's dataset saves it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from visrec.core.plots.style import MAX_INCHES, note_figure

RIGHT_COLOUR = "#2ca02c"  # frame of a neighbour of the query's class
WRONG_COLOUR = "#d62728"  # frame of a neighbour of another class
MAX_BAR_CLASSES = 40  # per_class_figure shows at most this many (the worst) classes
MAX_LEGEND_CLASSES = 20  # the embedding map names classes up to this count
PROJECTIONS = ("tsne", "pca")
RETRIEVAL_CURVES = {
    "val_mean_average_precision_at_r": "val MAP@R",
    "val_r_precision": "val R-Precision",
    "val_precision_at_1": "val Precision@1",
    "val_ema_mean_average_precision_at_r": "val MAP@R (EMA weights)",
}


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _framed_image(ax: Any, image: torch.Tensor, caption: str, colour: str,
                  width: float) -> None:
    """Draw a CxHxW image in [0, 1] without ticks, framed by the axes spines in ``colour``."""
    pixels = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    if pixels.shape[-1] == 1:  # grayscale (ingestion.channels: 1)
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(pixels)
    ax.set_axis_on()  # the grid's cells start off; the frame needs the axis drawn
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)
    ax.set_title(caption, fontsize=7)


def retrieval_gallery_figure(queries: list[torch.Tensor], neighbours: list[list[torch.Tensor]],
                             query_labels: list[str], neighbour_labels: list[list[str]],
                             similarities: list[list[float]], title: str) -> Figure:
    """One row per query: the query (black frame), then its nearest neighbours, nearest first.

    Each neighbour is captioned with its label and cosine similarity and framed green when
    its label is the query's, red (thicker) when it is not. The figure grows with the rows
    and columns up to ``style.MAX_INCHES`` a side.

    Args:
        queries: CxHxW float tensors in [0, 1] (C is 1 or 3).
        neighbours: The top-k neighbour images of each query (k may differ between rows).
        query_labels: Label of each query.
        neighbour_labels: Label of each neighbour, as ``neighbours``.
        similarities: Similarity of each neighbour to its query, as ``neighbours``.
        title: Title of the figure.

    Raises:
        ValueError: When the lists do not line up.
    """
    if not (len(queries) == len(neighbours) == len(query_labels) == len(neighbour_labels)
            == len(similarities)):
        raise ValueError("queries, neighbours, query_labels, neighbour_labels and "
                         "similarities need one entry per query")
    for row, images in enumerate(neighbours):
        if not len(images) == len(neighbour_labels[row]) == len(similarities[row]):
            raise ValueError(f"row {row}: {len(images)} neighbours, "
                             f"{len(neighbour_labels[row])} labels, "
                             f"{len(similarities[row])} similarities")
    if not queries:
        return note_figure(f"{title}: no queries")
    n_rows, n_cols = len(queries), 1 + max(len(images) for images in neighbours)
    fig = Figure(figsize=(min(MAX_INCHES, 1.5 * n_cols + 0.4),
                          min(MAX_INCHES, 1.8 * n_rows + 0.6)), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for row, query in enumerate(queries):
        for ax in axes[row]:
            ax.set_axis_off()
        label = query_labels[row]
        _framed_image(axes[row][0], query, f"query\n{_short(label)}", "black", 1.5)
        for col, (image, found, similarity) in enumerate(zip(
                neighbours[row], neighbour_labels[row], similarities[row], strict=True), 1):
            right = found == label
            _framed_image(axes[row][col], image, f"{_short(found)}\n{similarity:.2f}",
                          RIGHT_COLOUR if right else WRONG_COLOUR, 2.0 if right else 3.0)
    fig.suptitle(f"{title}\n(green: same class as the query, red: another class)", fontsize=10)
    return fig


def _class_codes(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class indices of ``labels``: given as indices into ``classes``, or as class names."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(int)
    place = {name: i for i, name in enumerate(classes)}
    return np.array([place[str(label)] for label in labels], dtype=int)


def embedding_map_figure(points: np.ndarray, labels: np.ndarray, classes: list[str],
                         title: str) -> Figure:
    """A 2-D map of embeddings (from :func:`project_2d`), one scatter per class present.

    Colours come from tab10 (up to 10 classes) or tab20 (more, repeating beyond 20); the
    legend names the classes up to 20 classes. Axis ticks are hidden: the map's
    coordinates mean nothing, only the neighbourhoods do.

    Args:
        points: N x 2 coordinates.
        labels: Class of each point: an index into ``classes`` or a class name.
        classes: Class names.
        title: Title of the figure.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be N x 2 with one label each, got {points.shape} "
                         f"and {len(labels)} labels")
    codes = _class_codes(labels, classes)
    colours = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    present = np.unique(codes)
    fig = Figure(figsize=(9.0 if len(present) <= MAX_LEGEND_CLASSES else 7.5, 7.0),
                 layout="constrained")
    ax = fig.add_subplot()
    for code in present:
        chosen = codes == code
        ax.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.8, linewidths=0,
                   color=colours(int(code) % colours.N), label=classes[int(code)])
    ax.set_aspect("auto")
    ax.set_xticks([])
    ax.set_yticks([])
    if 0 < len(present) <= MAX_LEGEND_CLASSES:
        ax.legend(fontsize=7, markerscale=2.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)
    ax.set_title(f"{title}\n{len(points)} images, {len(present)} classes", fontsize=10)
    return fig


def _pca_2d(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """PCA to at most 2 components; missing ones (N < 3 rows or D < 2 columns) are 0."""
    from sklearn.decomposition import PCA  # noqa: PLC0415

    n, d = embeddings.shape
    out = np.zeros((n, 2))
    components = min(2, n - 1, d)  # centred, n rows span at most n - 1 dimensions
    if components > 0:  # a single row has no spread: it stays at the origin
        out[:, :components] = PCA(n_components=components,
                                  random_state=seed).fit_transform(embeddings)
    return out


def project_2d(embeddings: np.ndarray, seed: int, method: str = "tsne") -> np.ndarray:
    """Map N x D embeddings to N x 2 for :func:`embedding_map_figure`, deterministically.

    ``tsne`` is scikit-learn's ``TSNE(n_components=2, init="pca", random_state=seed)`` with
    perplexity ``min(30, (N - 1) / 3)`` clamped to [1, N); ``pca`` keeps the first two
    principal components. Fallbacks: with fewer than 3 rows t-SNE is meaningless, so PCA is
    used; where PCA has fewer than two components (N < 2 rows or D < 2 columns) the missing
    ones are 0 (one row maps to the origin, two rows to a line).

    Args:
        embeddings: N x D array.
        seed: Random state of the projection.
        method: ``tsne`` or ``pca``.

    Raises:
        ValueError: For another method, or when ``embeddings`` is not 2-D.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; accepted: {', '.join(PROJECTIONS)}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {embeddings.shape}")
    n = len(embeddings)
    if method == "pca" or n < 3:
        return _pca_2d(embeddings, seed)
    from sklearn.manifold import TSNE  # noqa: PLC0415

    if embeddings.shape[1] < 2:  # init="pca" needs two columns; a zero one changes nothing
        embeddings = np.pad(embeddings, ((0, 0), (0, 2 - embeddings.shape[1])))
    perplexity = float(np.clip(min(30.0, (n - 1) / 3), 1.0, n - 1))
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity)
    return np.asarray(tsne.fit_transform(embeddings), dtype=np.float64)


def per_class_figure(table: pd.DataFrame, title: str) -> Figure:
    """Per-class R-Precision as horizontal bars, worst on top, each labelled with its value.

    At most 40 classes are shown, the first (worst) ones of ``table``; the title then says
    how many of how many. Classes without a figure (no other image of the class) show
    ``n/a``. A dashed line marks the mean over all classes.

    Args:
        table: :func:`visrec.core.retrieval.per_class_table` output (``label``, ``images``,
            ``r_precision``, ...), worst R-Precision first.
        title: Title of the figure.
    """
    if table.empty:
        return note_figure(f"{title}: no classes")
    shown = table.head(MAX_BAR_CLASSES)
    if len(table) > len(shown):
        title = f"{title}\n(the worst {len(shown)} of {len(table)} classes)"
    values = shown["r_precision"].to_numpy(dtype=float)
    positions = np.arange(len(shown))[::-1]  # worst on top
    fig = Figure(figsize=(7.5, min(MAX_INCHES, 0.28 * len(shown) + 1.6)), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(positions, np.nan_to_num(values), color="#1f77b4")
    ax.bar_label(bars, ["n/a" if np.isnan(v) else f"{v:.3f}" for v in values], fontsize=7,
                 padding=2)
    ax.set_yticks(positions, [f"{_short(str(label), 30)} ({int(images)})" for label, images
                              in zip(shown["label"], shown["images"], strict=True)], fontsize=7)
    mean = float(np.nanmean(table["r_precision"].to_numpy(dtype=float))) \
        if table["r_precision"].notna().any() else float("nan")
    if not np.isnan(mean):
        ax.axvline(mean, color="grey", linestyle="--", linewidth=0.8,
                   label=f"mean over {len(table)} classes: {mean:.3f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("R-Precision of the class (mean over its images as queries)")
    ax.set_ylabel("class (images)")
    ax.set_title(title, fontsize=10)
    return fig


def _curve(ax: Any, epochs: np.ndarray, history: pd.DataFrame, column: str,
           label: str, **style: Any) -> bool:
    """Plot ``column`` against ``epochs`` where it is finite; False when there is nothing."""
    if column not in history:
        return False
    values = pd.to_numeric(history[column], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return False
    ax.plot(epochs[finite], values[finite], marker="o", markersize=3, label=label, **style)
    return True


def metric_learning_curve_figure(history: pd.DataFrame) -> Figure:
    """Training loss per epoch, and beside it the validation retrieval figures and the
    miner's active share (the share of tuples the miner kept) per epoch.

    Columns may be missing or NaN (validation every few epochs, no miner): only what exists
    is drawn, missing epochs skipped.

    Args:
        history: The training history: ``epoch``, ``train_loss``, optionally ``val_loss``,
            ``val_mean_average_precision_at_r``, ``val_r_precision``, ``val_precision_at_1``,
            ``val_ema_mean_average_precision_at_r`` and ``train_active``.
    """
    epochs = history["epoch"].to_numpy(dtype=float) if "epoch" in history \
        else np.arange(1, len(history) + 1, dtype=float)
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    loss_ax, retrieval_ax = fig.subplots(1, 2)
    drawn = [_curve(loss_ax, epochs, history, "train_loss", "train"),
             _curve(loss_ax, epochs, history, "val_loss", "val")]
    loss_ax.set_ylabel("loss")
    retrieval = [_curve(retrieval_ax, epochs, history, column, label)
                 for column, label in RETRIEVAL_CURVES.items()]
    retrieval.append(_curve(retrieval_ax, epochs, history, "train_active",
                            "train: miner's active share", color="grey", linestyle="--"))
    retrieval_ax.set_ylabel("retrieval figure / share")
    retrieval_ax.set_ylim(-0.02, 1.02)
    for ax, lines, missing in ((loss_ax, drawn, "no loss recorded"),
                               (retrieval_ax, retrieval, "no retrieval figures recorded")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if any(lines):
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, missing, ha="center", va="center", transform=ax.transAxes)
    return fig
