"""Benchmark: training images/s of visrec's loop against timm's loader and the compute ceiling.

One PNG folder (10,000 images, 32x32, 10 classes) is ingested by the real `ingestion`
pipeline (a Kedro session in a throwaway project) into the packed cache. Then the same
model and optimizer train for the same epochs, fed three ways:

  (a) visrec: the manifest over the packed cache, the flip_crop training transform, the
      loader that `training` builds (`make_loader`, automatic workers), `engine.fit`;
  (b) timm: `timm.data.create_dataset` over the PNG folder and `timm.data.create_loader`
      with its default training transforms, the same `fit`;
  (c) the same `fit` on random tensors already in memory: the compute ceiling.

    .venv/bin/python benchmarks/train_throughput.py [--images 10000] [--epochs 2]
        [--model resnet10t] [--batch 128] [--size 32] [--timm-workers N]
        [--device cpu|cuda] [--precision fp32|bf16|fp16] [--channels-last auto|true|false]
        [--repeats 3] [--out F.json]

Prints the median images/s of each over `--repeats` interleaved rounds and the ratios
a/c (goal >= 0.90) and a/b (goal >= 1.5).
All three use the same recipe (SGD, cosine, `channels_last` as training's default). On
a GPU: `--device cuda --model resnet50 --size 224 --side 256 --precision bf16`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from common import machine, make_project, run_session
from PIL import Image

logger = logging.getLogger("benchmarks.train_throughput")
CLASSES = 10


def _write_images(task: tuple[str, int, int, int]) -> None:
    folder, start, stop, side = task
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        label = i % CLASSES
        # A class colour under noise: decodable, compressible like a photo, not constant.
        pixels = rng.integers(0, 96, (side, side, 3))
        pixels[..., label % 3] += 40 + 15 * label
        path = Path(folder) / f"class_{label:02d}" / f"{i:06d}.png"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)


def generate(folder: Path, n: int, side: int) -> None:
    """Write ``n`` PNGs of ``side`` pixels into 10 class folders, in parallel."""
    for label in range(CLASSES):
        (folder / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    tasks = [(str(folder), start, min(start + 2000, n), side) for start in range(0, n, 2000)]
    with get_context("fork").Pool() as pool:
        pool.map(_write_images, tasks)


def ingest(project: Path, folder: Path, size: int) -> None:
    """The real ingestion pipeline: manifest and packed cache, every image in train."""
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project)
    run_session(project, ["ingestion"], {
        "ingestion": {"root": str(folder), "val_fraction": 0.0, "test_fraction": 0.0},
        "training": {"image_size": size}})


def _config(args: argparse.Namespace):
    from visrec.core.train import (  # noqa: PLC0415
        FitConfig,
        OptimizerSpec,
        ScheduleSpec,
        resolve_channels_last,
    )

    layout = {"true": True, "false": False}.get(args.channels_last, "auto")
    return FitConfig(epochs=args.epochs, optimizer=OptimizerSpec(lr=0.1 * args.batch / 256),
                     schedule=ScheduleSpec(name="cosine", warmup_epochs=0),
                     precision=args.precision, channels_last=resolve_channels_last(layout),
                     seed=0)


def timed_fit(feed: tuple, args: argparse.Namespace) -> dict[str, float]:
    """A fresh model trained on ``feed`` (a loader and the per-batch transform on the device,
    or None); images/s over all epochs, and the share of time spent waiting for data."""
    import torch  # noqa: PLC0415

    from visrec.core.models import make_classifier  # noqa: PLC0415
    from visrec.core.seeding import seed_everything  # noqa: PLC0415
    from visrec.core.train import ClassificationTask, fit  # noqa: PLC0415

    seed_everything(0)
    model = make_classifier(args.model, CLASSES)
    loader, batch_transform = feed
    # Plain cross-entropy, no label smoothing: the same loss for the three feeds.
    history = fit(model, loader, None, _config(args), ClassificationTask(num_classes=CLASSES),
                  torch.device(args.device), batch_transform=batch_transform).history
    images = float((history["images_per_s"] * history["seconds"]).sum())
    return {"images_per_s": images / float(history["seconds"].sum()),
            "data_wait": float((history["data_wait"] * history["seconds"]).sum()
                               / history["seconds"].sum()),
            "epoch_images_per_s": [round(v, 1) for v in history["images_per_s"]]}


def visrec_loader(project: Path, folder: Path, args: argparse.Namespace):
    """(a) What `training` builds: packed cache, flip_crop in two halves (per image in the
    loader, per batch on the device), automatic workers."""
    import pandas as pd  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from visrec.core.augment import make_spec, make_train_transform  # noqa: PLC0415
    from visrec.core.data import make_loader, manifest_dataset, read_cache  # noqa: PLC0415
    from visrec.core.models import make_classifier, resolve_input_config  # noqa: PLC0415

    rows = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    cache = read_cache(project / "data/04_feature/image_cache")
    inputs = resolve_input_config(make_classifier(args.model, CLASSES), args.size)
    transform = make_train_transform(make_spec("flip_crop", scale=(0.35, 1.0), hflip=True),
                                     args.size, inputs.mean, inputs.std,
                                     inputs.interpolation, cache.settings.resolution)
    dataset = manifest_dataset(rows[rows["split"] == "train"], cache, folder, transform.sample)
    return (make_loader(dataset, args.batch, torch.device(args.device), seed=0, train=True),
            transform.batch)


def timm_loader(folder: Path, args: argparse.Namespace):
    """(b) timm's own dataset and loader with its default training transforms."""
    from timm.data import create_dataset, create_loader, resolve_data_config  # noqa: PLC0415

    from visrec.core.models import make_classifier  # noqa: PLC0415

    config = resolve_data_config({}, model=make_classifier(args.model, CLASSES))
    dataset = create_dataset("", root=str(folder), is_training=True)
    return create_loader(dataset, input_size=(3, args.size, args.size), batch_size=args.batch,
                         is_training=True, use_prefetcher=False,
                         num_workers=args.timm_workers, mean=config["mean"],
                         std=config["std"], interpolation=config["interpolation"],
                         pin_memory=args.device == "cuda", persistent_workers=False), None


def tensor_loader(args: argparse.Namespace):
    """(c) Random tensors already in memory."""
    import torch  # noqa: PLC0415
    from torch.utils.data import DataLoader, TensorDataset  # noqa: PLC0415

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, args.size, args.size, generator=generator)
    labels = torch.randint(0, CLASSES, (args.images,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=args.batch, shuffle=True,
                      drop_last=True, generator=generator,
                      pin_memory=args.device == "cuda"), None


def main() -> None:
    """Parse arguments, ingest, time the three feeds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=32, help="PNG side, pixels")
    parser.add_argument("--size", type=int, default=32, help="training input side, pixels")
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timm-workers", type=int, default=os.cpu_count() or 1,
                        help="timm loader processes (default: one per core)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"],
                        help="NHWC layout for all three feeds (auto: training's default)")
    parser.add_argument("--order", default="cab", help="order of the feeds, e.g. abc")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the three feeds; medians are reported (noisy machine)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        start = time.perf_counter()
        generate(folder, args.images, args.side)
        (Path(tmp) / "project").mkdir()
        project = make_project(Path(tmp) / "project")
        ingest(project, folder, args.size)
        logging.basicConfig(level=logging.WARNING, format="%(message)s", force=True)
        logger.info("%d PNGs written and ingested in %.0f s", args.images,
                    time.perf_counter() - start)
        feeds = {"a": lambda: visrec_loader(project, folder, args),
                 "b": lambda: timm_loader(folder, args), "c": lambda: tensor_loader(args)}
        rounds: dict[str, list[dict]] = {key: [] for key in "abc"}
        for _ in range(args.repeats):  # interleaved, so that a slow spell hits every feed
            for key in args.order:
                rounds[key].append(timed_fit(feeds[key](), args))
                logger.info("(%s) %s", key, rounds[key][-1])
    results = {key: {"images_per_s": float(np.median([r["images_per_s"] for r in runs])),
                     "data_wait": float(np.median([r["data_wait"] for r in runs])),
                     "rounds": runs} for key, runs in rounds.items()}
    a, b, c = (results[k]["images_per_s"] for k in "abc")
    figures = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
               **{k: results[k] for k in "abc"}, "a_over_c": a / c, "a_over_b": a / b}
    logger.info("\n%s, %s %dpx, batch %d, %d epochs, %s on %s, median of %d rounds\n",
                machine(), args.model, args.size, args.batch, args.epochs, args.precision,
                args.device, args.repeats)
    logger.info("| feed | images/s | data wait |\n| --- | --- | --- |")
    names = {"a": "(a) visrec: packed cache, flip_crop", "b": "(b) timm create_loader, PNG "
             f"files, {args.timm_workers} workers", "c": "(c) tensors in memory"}
    for key in "abc":
        logger.info("| %s | %.0f | %.0f%% |", names[key], results[key]["images_per_s"],
                    100 * results[key]["data_wait"])
    logger.info("\na/c = %.2f (goal >= 0.90), a/b = %.2f (goal >= 1.5)", a / c, a / b)
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
