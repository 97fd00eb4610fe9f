"""What every figure shares: sizes, colours, and the figure that says there is nothing to
draw."""

from matplotlib.figure import Figure

MAX_INCHES = 30.0  # figures grow with the class count up to this side
MAX_LABELLED_CLASSES = 60  # beyond this, tick labels would overlap into a black band
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
GROUP_COLOURS = {"many": "#1f77b4", "medium": "#9467bd", "few": "#d62728"}


def note_figure(text: str) -> Figure:
    """A small figure that only says ``text`` (nothing to draw)."""
    fig = Figure(figsize=(6.0, 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    return fig
