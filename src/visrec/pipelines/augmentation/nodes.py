"""Nodes of the augmentation pipeline."""

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.cache import ImageCache
from visrec.core.data import manifest_dataset
from visrec.core.plots import image_grid_figure
from visrec.core.transforms import build_eval_transform, build_train_transform, make_spec
from visrec.params import AugmentationParams


def select_policy(params: AugmentationParams) -> dict:
    """The augmentation spec of ``augmentation.policy``: what training will rebuild."""
    return make_spec(params.policy, hflip=params.hflip, scale=params.scale,
                     randaugment_ops=params.randaugment_ops,
                     randaugment_magnitude=params.randaugment_magnitude)


def preview_augmentation(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: dict,
                         spec: dict, params: AugmentationParams, image_size: int | None,
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
    train = manifest[manifest["split"] == "train"]
    if image_size is None:
        image_size = int(np.median(np.minimum(train["width"], train["height"])))
    rng = np.random.default_rng(seed)
    chosen = train.iloc[rng.choice(len(train), size=min(params.preview_images, len(train)),
                                   replace=False)]
    augment = build_train_transform(spec, image_size)
    original = build_eval_transform(image_size)
    torch.manual_seed(seed)
    rows, titles = [], []
    images = manifest_dataset(chosen, cache, ingestion_report["root"], None,
                              ingestion_report["channels"])
    for index, label in enumerate(chosen["label"]):
        image, _ = images[index]
        rows.append([original(image)] + [augment(image) for _ in range(params.preview_repeats)])
        titles.append(f"{label}: original, then {spec['policy']}")
    return image_grid_figure(rows, titles, f"augmentation policy '{spec['policy']}'")
