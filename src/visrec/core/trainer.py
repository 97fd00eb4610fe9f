"""One training run as data (:class:`TrainingJob`), run in this process or in several.

The training node describes the run once; :func:`train` runs it here, or starts
``processes`` workers with the elastic launcher, each of which calls :func:`run_job`
with its rank. Workers get the job pickled (they are spawned), so it holds tables,
settings and folders, never open loaders or devices. Global rank 0 returns the weights
and the history; the others return None.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.cache import ImageCache
from visrec.core.checkpoint import CheckpointStore
from visrec.core.data import make_loader, manifest_dataset
from visrec.core.distributed import (
    DistContext,
    LaunchSpec,
    context_from_env,
    launch,
    process_group,
)
from visrec.core.engine import FitConfig, fit, seed_everything
from visrec.core.live import LiveLog
from visrec.core.models import create_classifier, load_teacher
from visrec.core.samplers import ShardedSampler, make_sampler
from visrec.core.transforms import (
    TrainTransform,
    build_eval_transform,
    build_train_transform,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """How to build the student (and the teacher) of a run."""

    architecture: str
    classes: tuple[str, ...]
    channels: int = 3
    pretrained_path: str | None = None
    zero_gamma: bool | None = True
    teacher_path: str | None = None
    teacher_architecture: str | None = None


@dataclass(frozen=True)
class DataSpec:
    """The images of a run and how they are read and augmented.

    Attributes:
        train: Manifest rows of the training split (path, class_index, cache_index).
        val: Manifest rows of the validation split (may be empty).
        cache: The packed image cache.
        root: Folder the manifest's paths are relative to.
        augmentation: The augmentation spec of the training transform.
        inputs: ``image_size``, ``mean``, ``std`` and ``interpolation`` of the model.
        sampler: The balance plan's sampler part, or None to shuffle.
        batch_size: Global images per update, split over the processes.
        num_workers: Loader processes per training process, or None for automatic.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    cache: ImageCache | None
    root: str
    augmentation: dict
    inputs: dict
    sampler: dict | None
    batch_size: int
    num_workers: int | None = None


@dataclass(frozen=True)
class TrainingJob:
    """Everything one training run needs; picklable.

    Attributes:
        model: The student and teacher.
        data: Images, transforms, sampler and batch size.
        config: The recipe (rates already scaled to the global batch).
        device: ``cpu`` or ``cuda`` (each worker takes ``cuda:<local rank>``).
        checkpoints: Where the epochs' checkpoints go, or None.
        fingerprint: Identifies settings, data and code in the checkpoint.
        live: Writes the per-epoch metrics (dvclive), or None.
        backend: Process-group backend of several processes.
        sync_bn: Synchronise BatchNorm statistics across processes (CUDA).
    """

    model: ModelSpec
    data: DataSpec
    config: FitConfig
    device: str = "cpu"
    checkpoints: CheckpointStore | None = None
    fingerprint: str = ""
    live: LiveLog | None = None
    backend: str = "gloo"
    sync_bn: bool = False
    launch: LaunchSpec | None = field(default=None)


def _device(job: TrainingJob, context: DistContext) -> torch.device:
    if job.device == "cuda":
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    if context.local_world_size > 1:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.local_world_size))
    return torch.device("cpu")


def train_transform(data: DataSpec) -> TrainTransform:
    """The training transform of ``data``: images brought to the packed cache's side."""
    inputs = data.inputs
    cached = data.cache is not None and data.cache.enabled
    return build_train_transform(data.augmentation, inputs["image_size"], inputs["mean"],
                                 inputs["std"], inputs["interpolation"],
                                 resolution=data.cache.settings.resolution if cached else None)


def make_val_loader(data: DataSpec, batch_size: int, device: torch.device,
               seed: int) -> DataLoader | None:
    """Validation batches of ``data`` with the evaluation transform, or None without val."""
    if data.val.empty:
        return None
    inputs = data.inputs
    val_set = manifest_dataset(data.val, data.cache, data.root, build_eval_transform(
        inputs["image_size"], inputs["mean"], inputs["std"], inputs["interpolation"]),
        int(inputs.get("in_chans", 3)))
    return make_loader(val_set, batch_size, device, seed, train=False,
                       num_workers=data.num_workers)


def _train_loader(data: DataSpec, transform: TrainTransform, context: DistContext,
                  device: torch.device, seed: int) -> DataLoader:
    train_set = manifest_dataset(data.train, data.cache, data.root, transform.sample,
                                 int(data.inputs.get("in_chans", 3)))
    sampler = make_sampler(data.sampler, data.train["class_index"].to_numpy(), seed)
    if context.distributed:
        sampler = ShardedSampler(sampler, len(train_set), context.rank, context.world_size,
                                 seed)
    return make_loader(train_set, data.batch_size // context.world_size, device, seed,
                       train=True, sampler=sampler, num_workers=data.num_workers)


def _student(spec: ModelSpec, context: DistContext, sync_bn: bool,
             device: torch.device) -> nn.Module:
    model = create_classifier(spec.architecture, len(spec.classes), spec.pretrained_path,
                              spec.channels, zero_gamma=spec.zero_gamma)
    if sync_bn and context.distributed:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif context.main:
            logger.warning("training.distributed.sync_bn needs CUDA; BatchNorm statistics "
                           "stay per process on the CPU")
    return model


def run_job(job: TrainingJob) -> dict[str, Any] | None:
    """Run ``job`` as the process the environment names (rank 0 alone when not launched).

    Returns:
        On global rank 0: ``{"weights": {name: state dict on the CPU}, "history":
        DataFrame}`` of the weight sets ``final`` (and ``swa``, ``ema``); else None.
    """
    context = context_from_env()
    device = _device(job, context)
    with process_group(context, job.backend):
        seed_everything(job.config.seed)
        model = _student(job.model, context, job.sync_bn, device)
        transform = train_transform(job.data)
        train_loader = _train_loader(job.data, transform, context, device, job.config.seed)
        val = None if not context.main else make_val_loader(
            job.data, job.data.batch_size // context.world_size, device, job.config.seed)
        teacher = None if job.model.teacher_path is None else load_teacher(
            job.model.teacher_path, job.model.teacher_architecture, len(job.model.classes),
            job.model.channels)
        result = fit(model, train_loader, val, job.config, device, teacher=teacher,
                     checkpoints=job.checkpoints if context.main else None,
                     fingerprint=job.fingerprint, distributed=context.distributed,
                     main=context.main, on_epoch=job.live,
                     batch_transform=transform.batch)
    if not context.main:
        return None
    weights = {name: {key: tensor.detach().cpu().clone()
                      for key, tensor in module.state_dict().items()}
               for name, module in result.weights.items()}
    return {"weights": weights, "history": result.history}


def _worker(job: TrainingJob) -> dict[str, Any] | None:
    """Entry point of a launched worker: log like the parent, then run the job."""
    logging.basicConfig(level=logging.INFO if context_from_env().main else logging.WARNING,
                        format="%(asctime)s [rank %(process)d] %(name)s: %(message)s")
    return run_job(job)


def train(job: TrainingJob) -> dict[str, Any] | None:
    """Run ``job`` in this process, or in ``job.launch.nproc_per_node`` launched workers.

    Returns:
        Rank 0's result (see :func:`run_job`); None on a machine without rank 0.
    """
    if job.launch is None or job.launch.nproc_per_node * job.launch.nnodes == 1:
        return run_job(job)
    return launch(job.launch, _worker, job)
