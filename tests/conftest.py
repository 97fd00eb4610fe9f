"""Shared fixtures: real image folders on disk and typed parameters for tiny runs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium_binary
from visrec.core.data import make_demo_digits, read_cache
from visrec.core.train import CheckpointStore, LiveLog
from visrec.params import (
    AugmentationParams,
    ClassBalanceParams,
    EvaluationParams,
    IngestionParams,
    TrainingParams,
)

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_images(images: dict, root: Path) -> Path:
    """Save ``{"split/label/name": PIL image}`` as PNG files under ``root``."""
    for key, image in images.items():
        path = root / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return root


def write_png(path: Path, size: tuple[int, int] = (16, 12),
              colour: tuple[int, int, int] | None = None, seed: int | None = None) -> Path:
    """Write an RGB PNG of ``size`` (width, height), making parent folders.

    Without ``colour`` the pixels are noise seeded by ``seed`` (default: the path), so
    that two files never hash alike: ingestion would treat them as duplicates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour is not None:
        Image.new("RGB", size, colour).save(path)
        return path
    if seed is None:
        seed = int.from_bytes(hashlib.blake2b(str(path).encode(), digest_size=4).digest(), "big")
    noise = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path


@pytest.fixture
def png() -> Callable[..., Path]:
    """The :func:`write_png` helper, as a fixture."""
    return write_png


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small long-tailed digits folder in the train/test layout (10 classes, 200 images)."""
    images = make_demo_digits(test_per_class=6, largest_class=24, imbalance_ratio=4,
                              image_size=32, seed=0)
    return write_images(images, tmp_path_factory.mktemp("digits"))


@pytest.fixture
def tiny_params(digits_folder: Path, tmp_path: Path) -> dict:
    """Typed parameter blocks for a seconds-long run with timm's `test_resnet`, and the
    (empty) packed cache that ingestion starts from."""
    from tests.params import base_params  # tests.params imports this module: import late

    return {
        "params:seed": 7,
        "params:ingestion": base_params(IngestionParams, root=str(digits_folder),
                                        val_fraction=0.15, num_workers=1),
        "image_cache_state": read_cache(tmp_path / "image_cache"),
        "params:training.model": "test_resnet",
        "params:class_balance": base_params(ClassBalanceParams,
                                            strategy="class_balanced_sampler"),
        "params:augmentation": base_params(AugmentationParams, policy="flip_crop",
                                           hflip=False, preview_images=2, preview_repeats=2),
        "params:training": base_params(TrainingParams, model="test_resnet", epochs=2,
                                       batch_size=16, image_size=32,
                                       schedule={"warmup_epochs": 1}, num_workers=0,
                                       ema={"enabled": False}),
        "tuned_parameters": {"search": {"enabled": False}},  # tuning off: nothing changes
        "params:tuning.enabled": False,
        "training_checkpoints": CheckpointStore(tmp_path / "checkpoints"),
        "training_live": LiveLog(tmp_path / "dvclive"),
        "params:training.image_size": 32,
        "params:evaluation": base_params(EvaluationParams, batch_size=64, tta="none"),
    }


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway project after `kedro run --pipelines=demo_data` and the default pipeline
    in the test env (minutes): trained, evaluated and exported. Tests must not change it."""
    from tests.cli import copy_project, kedro  # tests.cli imports this module: import late

    project = copy_project(tmp_path_factory.mktemp("trained"))
    kedro(project, "run", "--env", "test", "--pipelines=demo_data")
    kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The Chromium binary of the browser tests (CI installs it; skipped when missing here)."""
    return chromium_binary()
