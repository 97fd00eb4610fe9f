"""The preview of an augmentation policy: training images, each beside augmented copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.augment import AugmentationSpec, make_eval_transform, make_train_transform
from visrec.core.data import ImageCache, IngestionReport, manifest_dataset
from visrec.core.plots.figures import image_grid_figure


def augmentation_preview_figure(manifest: pd.DataFrame, cache: ImageCache | None,
                                report: IngestionReport, spec: AugmentationSpec,
                                image_size: int | None, images: int, copies: int,
                                seed: int) -> Figure:
    """A grid: each row one training image, then ``copies`` augmented copies of it.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into, or None.
        report: Gives the image root and channels.
        spec: The augmentation spec.
        image_size: The training size; None previews at the images' median side.
        images: Rows of the grid (training images drawn at random).
        copies: Augmented copies per image.
        seed: Seeds which images are shown and how they are augmented.
    """
    train = manifest[manifest["split"] == "train"]
    if image_size is None:
        image_size = int(np.median(np.minimum(train["width"], train["height"])))
    rng = np.random.default_rng(seed)
    chosen = train.iloc[rng.choice(len(train), size=min(images, len(train)), replace=False)]
    augment = make_train_transform(spec, image_size)
    original = make_eval_transform(image_size)
    torch.manual_seed(seed)
    rows, titles = [], []
    dataset = manifest_dataset(chosen, cache, report.root, None, report.channels)
    for index, label in enumerate(chosen["label"]):
        image, _ = dataset[index]
        rows.append([original(image)] + [augment(image) for _ in range(copies)])
        titles.append(f"{label}: original, then {spec.policy}")
    return image_grid_figure(rows, titles, f"augmentation policy '{spec.policy}'")
