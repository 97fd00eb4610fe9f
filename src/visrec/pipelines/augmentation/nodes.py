"""Nodes of the augmentation pipeline: the configured policy as a spec, and its preview.

Choosing among policies by evidence is the tuning pipeline's work
(:mod:`visrec.pipelines.tuning`); training applies its choice.
"""

import pandas as pd
from matplotlib.figure import Figure

from visrec.core.augment import AugmentationSpec
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.plots import augmentation_preview_figure
from visrec.params import AugmentationParams


def make_policy_spec(params: AugmentationParams) -> AugmentationSpec:
    """``augmentation.policy`` as the spec training rebuilds (every argument written out)."""
    return params.spec()


def preview_augmentation(manifest: pd.DataFrame, cache: ImageCache,
                         ingestion_report: IngestionReport, spec: AugmentationSpec,
                         params: AugmentationParams, image_size: int | None,
                         seed: int) -> Figure:
    """A grid: each row one training image, then augmented copies of it.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root.
        spec: The augmentation spec.
        params: Number of images and copies.
        image_size: ``training.image_size``; None previews at the images' median side.
        seed: Seeds which images are shown and how they are augmented.
    """
    return augmentation_preview_figure(manifest, cache, ingestion_report, spec, image_size,
                                       params.preview_images, params.preview_repeats, seed)
