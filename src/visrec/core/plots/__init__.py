"""Figures as matplotlib ``Figure`` objects, for Kedro's matplotlib datasets to save."""

from visrec.core.plots.augmentation import augmentation_preview_figure
from visrec.core.plots.evaluation import (
    confused_pairs_figure,
    long_tail_figure,
    reliability_figure,
    sorted_confusion_figure,
)
from visrec.core.plots.figures import (
    class_distribution_figure,
    gallery_figure,
    image_grid_figure,
    image_tile,
    importance_figure,
    learning_curve_figure,
    tuning_history_figure,
)
from visrec.core.plots.retrieval import (
    embedding_map_figure,
    metric_learning_curve_figure,
    per_class_figure,
    project_2d,
    retrieval_gallery_figure,
)
from visrec.core.plots.style import GROUP_COLOURS, SPLIT_COLOURS

__all__ = [
    "GROUP_COLOURS", "SPLIT_COLOURS", "augmentation_preview_figure",
    "class_distribution_figure", "confused_pairs_figure",
    "embedding_map_figure", "gallery_figure", "image_grid_figure", "image_tile",
    "importance_figure", "learning_curve_figure", "long_tail_figure",
    "metric_learning_curve_figure", "per_class_figure", "project_2d", "reliability_figure",
    "retrieval_gallery_figure", "sorted_confusion_figure", "tuning_history_figure",
]
