"""What every figure shares: sizes and colours."""

MAX_INCHES = 30.0  # figures grow with the class count up to this side
MAX_LABELLED_CLASSES = 60  # beyond this, tick labels would overlap into a black band
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
GROUP_COLOURS = {"many": "#1f77b4", "medium": "#9467bd", "few": "#d62728"}
