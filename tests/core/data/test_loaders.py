"""Tests of the manifest dataset and the training and evaluation loaders
(visrec.core.data.datasets), moved from the training engine's tests.

The images are real PNG files: three solid-colour classes with noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset, WeightedRandomSampler

from tests.core.conftest import (
    COLOUR_CLASSES,
    COLOUR_SIZE,
    COLOUR_TRAIN,
    COLOUR_VAL,
    write_colour_folder,
)
from visrec.core.augment import make_eval_transform
from visrec.core.data import ManifestImageDataset, auto_num_workers, make_loader
from visrec.core.data.samplers import ResamplingSampler
from visrec.core.images import load_image

CPU = torch.device("cpu")
CLASSES = COLOUR_CLASSES
IMAGE_SIZE = COLOUR_SIZE
TRAIN_PER_CLASS, VAL_PER_CLASS = COLOUR_TRAIN, COLOUR_VAL


@pytest.fixture(scope="module")
def val_images(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Solid-colour 32x32 PNGs (random brightness and noise) of red, green and blue: the
    validation split of the training loop's tests, drawn after its training split."""
    root = tmp_path_factory.mktemp("colours")
    table = write_colour_folder(root)
    return root, table[table["split"] == "val"].reset_index(drop=True)


def test_manifest_dataset_reads_files(val_images):
    root, val = val_images
    # test_resnet normalises with mean = std = 0.5 (its timm data config).
    eval_tf = make_eval_transform(IMAGE_SIZE, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    dataset = ManifestImageDataset(root, val["path"], val["class_index"], eval_tf)
    assert len(dataset) == 3 * VAL_PER_CLASS
    tensor, label = dataset[VAL_PER_CLASS]  # first green image
    assert label == 1
    assert isinstance(label, int)
    assert tuple(tensor.shape) == (3, IMAGE_SIZE, IMAGE_SIZE)
    # Normalised to [-1, 1]; green is the brightest channel.
    assert tensor.mean(dim=(1, 2)).argmax().item() == 1
    assert -1.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_load_image_converts_to_rgb(tmp_path, mode):
    path = tmp_path / "image.png"
    Image.new("RGB", (5, 4), (10, 200, 30)).convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (5, 4)


def _index_dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n))


def _order(loader) -> list[int]:
    return [int(i) for (batch,) in loader for i in batch]


def test_train_loader_is_seeded_and_drops_the_last_batch():
    dataset = _index_dataset(20)
    first = make_loader(dataset, 8, CPU, seed=3, train=True, num_workers=0)
    assert len(first) == 2  # 20 // 8, the incomplete batch dropped
    order = _order(first)
    assert len(order) == 16
    assert len(set(order)) == 16  # without replacement
    assert order == _order(make_loader(dataset, 8, CPU, seed=3, train=True, num_workers=0))
    assert order != _order(make_loader(dataset, 8, CPU, seed=4, train=True, num_workers=0))
    assert _order(first) != order  # a new shuffle each epoch


def test_small_train_set_keeps_its_only_batch():
    loader = make_loader(_index_dataset(5), 8, CPU, seed=0, train=True, num_workers=0)
    assert sorted(_order(loader)) == [0, 1, 2, 3, 4]


def test_eval_loader_keeps_order_and_every_row():
    loader = make_loader(_index_dataset(20), 8, CPU, seed=0, train=False, num_workers=0)
    assert _order(loader) == list(range(20))


def test_weighted_loader_samples_with_replacement():
    weights = np.array([1.0] * 10 + [0.0] * 10)  # rows 10..19 are never drawn

    def sampler():
        return WeightedRandomSampler(torch.as_tensor(weights), num_samples=20, replacement=True,
                                     generator=torch.Generator().manual_seed(0))

    loader = make_loader(_index_dataset(20), 5, CPU, seed=0, train=True, sampler=sampler(),
                         num_workers=0)
    assert isinstance(loader.sampler, WeightedRandomSampler)
    order = _order(loader)
    assert len(order) == 20
    assert max(order) < 10
    assert len(set(order)) < len(order)  # with replacement: 20 draws of 10 rows repeat
    assert order == _order(make_loader(_index_dataset(20), 5, CPU, seed=0, train=True,
                                       sampler=sampler(), num_workers=0))
    # Evaluation ignores the sampler.
    assert _order(make_loader(_index_dataset(20), 5, CPU, seed=0, train=False,
                              sampler=sampler(), num_workers=0)) == list(range(20))


def test_loader_epoch_length_follows_the_sampler():
    """An undersampled epoch of 6 rows drops no batch of 8; an oversampled one of 40 does."""
    small = ResamplingSampler(np.array([0] * 12 + [1] * 3), np.array([3, 3]), "undersample", 0)
    loader = make_loader(_index_dataset(15), 8, CPU, seed=0, train=True, sampler=small,
                         num_workers=0)
    assert len(_order(loader)) == 6
    large = ResamplingSampler(np.array([0] * 12 + [1] * 3), np.array([20, 20]), "oversample", 0)
    loader = make_loader(_index_dataset(15), 8, CPU, seed=0, train=True, sampler=large,
                         num_workers=0)
    assert len(_order(loader)) == 40


@pytest.mark.parametrize(("cores", "device", "expected"), [
    (2, "cpu", 0), (1, "cpu", 0), (8, "cpu", 4), (16, "cpu", 4), (3, "cpu", 1),
    (16, "cuda", 8), (4, "cuda", 4),
])
def test_auto_num_workers(monkeypatch, cores, device, expected):
    monkeypatch.setattr("visrec.core.data.datasets.os.cpu_count", lambda: cores)
    assert auto_num_workers(torch.device(device)) == expected

