"""One training run as data (:class:`TrainingJob`), run in this process or in several.

A node describes the run once (:func:`make_training_job`); :func:`train` runs it here,
or starts ``processes`` workers with the elastic launcher, each of which calls
:func:`run_job` with its rank. Workers get the job pickled (they are spawned), so it
holds tables, settings, the task and folders, never open loaders or devices. Global rank
0 returns the weights and the history; the others return None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from visrec.core.augment import AugmentationSpec, TrainTransform, make_eval_transform
from visrec.core.augment import make_train_transform as make_augmentation
from visrec.core.balance import BalancePlan
from visrec.core.data import (
    ImageCache,
    IngestionReport,
    MPerClassBatches,
    SamplerPlan,
    ShardedSampler,
    make_loader,
    make_sampler,
    manifest_dataset,
)
from visrec.core.models import ModelInputs
from visrec.core.seeding import seed_everything
from visrec.core.train.checkpoint import CheckpointStore, fingerprint, source_digest
from visrec.core.train.config import FitConfig
from visrec.core.train.distributed import (
    DistContext,
    LaunchSpec,
    context_from_env,
    launch,
    process_group,
)
from visrec.core.train.loop import fit
from visrec.core.train.model_spec import ModelSpec, make_model, state_on_cpu
from visrec.core.train.tasks import Task

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = ["path", "class_index", "cache_index"]  # what a run reads of the manifest


@dataclass(frozen=True)
class DataSpec:
    """The images of a run and how they are read and augmented.

    Attributes:
        train: Manifest rows of the training split (path, class_index, cache_index).
        val: Manifest rows of the validation split (may be empty).
        cache: The packed image cache.
        root: Folder the manifest's paths are relative to.
        augmentation: The augmentation spec of the training transform.
        inputs: The model's input config.
        sampler: The balance plan's sampler part, or None to shuffle.
        batch_size: Global images per update, split over the processes.
        num_workers: Loader processes per training process, or None for automatic.
        m_per_class: Draw P x K batches of this many images per class (metric learning)
            instead of ``sampler``, or None.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    cache: ImageCache | None
    root: str
    augmentation: AugmentationSpec
    inputs: ModelInputs
    sampler: SamplerPlan | None
    batch_size: int
    num_workers: int | None = None
    m_per_class: int | None = None


@dataclass(frozen=True)
class TrainingJob:
    """Everything one training run needs; picklable.

    Attributes:
        model: The model to build.
        data: Images, transforms, sampler and batch size.
        config: The recipe (rates already scaled to the global batch).
        task: The loss and the validation (classification, ...).
        device: ``cpu`` or ``cuda`` (each worker takes ``cuda:<local rank>``).
        checkpoints: Where the epochs' checkpoints go, or None.
        fingerprint: Identifies settings, data and code in the checkpoint.
        live: Called with the history after each epoch by the main process (dvclive's
            :class:`LiveLog`, the tuning's reporter), or None.
        backend: Process-group backend of several processes.
        sync_bn: Synchronise BatchNorm statistics across processes (CUDA).
        launch: How many processes on how many machines, or None for this process.
    """

    model: ModelSpec
    data: DataSpec
    config: FitConfig
    task: Task
    device: str = "cpu"
    checkpoints: CheckpointStore | None = None
    fingerprint: str = ""
    live: Callable[[list[dict[str, Any]]], None] | None = None
    backend: str = "gloo"
    sync_bn: bool = False
    launch: LaunchSpec | None = None


@dataclass(frozen=True)
class TrainedWeights:
    """What a run produced, as data another step can continue from.

    Attributes:
        weights: State dicts on the CPU by weight set (``final``, ``swa``, ``ema``).
        history: One row per epoch.
        random_state: The generators' state where the run ended
            (:func:`visrec.core.train.checkpoint.rng_state`): a step that continues the
            run starts from it, as if it ran in the same process.
        retraining: Histories of classifier re-training, by weight set.
    """

    weights: dict[str, dict[str, torch.Tensor]]
    history: pd.DataFrame
    random_state: dict[str, Any]
    retraining: dict[str, pd.DataFrame] = field(default_factory=dict)


def make_data_spec(manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
                   plan: BalancePlan | None, spec: AugmentationSpec, inputs: ModelInputs,
                   batch_size: int, num_workers: int | None,
                   m_per_class: int | None = None) -> DataSpec:
    """The images of a run: the manifest's train and val rows, read and augmented.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        report: Gives the image root.
        plan: Gives the sampler (None: shuffle, or P x K batches).
        spec: The augmentation of the training transform.
        inputs: The model's input config.
        batch_size: Global images per update.
        num_workers: Loader processes per training process, or None.
        m_per_class: Draw P x K batches of this many images per class, or None.
    """
    def rows(split: str) -> pd.DataFrame:
        return manifest.loc[manifest["split"] == split, MANIFEST_FIELDS].reset_index(drop=True)

    return DataSpec(train=rows("train"), val=rows("val"), cache=cache, root=report.root,
                    augmentation=spec, inputs=inputs,
                    sampler=None if plan is None else plan.sampler, batch_size=batch_size,
                    num_workers=num_workers, m_per_class=m_per_class)


def make_training_job(manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
                      plan: BalancePlan | None, spec: AugmentationSpec, inputs: ModelInputs, *,
                      model: ModelSpec, config: FitConfig, task: Task, batch_size: int,
                      num_workers: int | None, device: torch.device, launch: LaunchSpec,
                      backend: str, sync_bn: bool, settings: dict[str, Any],
                      m_per_class: int | None = None) -> TrainingJob:
    """The run as data: model, images, recipe, task, and how many processes.

    Args:
        manifest: The ingestion manifest (its train and val rows are used).
        cache: The packed images the manifest's ``cache_index`` points into.
        report: Gives the image root.
        plan: Gives the sampler (None: shuffle, or P x K batches).
        spec: The augmentation of the training transform.
        inputs: The model's input config.
        model: The model to build.
        config: The recipe.
        task: The loss and the validation.
        batch_size: Global images per update.
        num_workers: Loader processes per training process, or None.
        device: Where to train.
        launch: Processes and rendezvous.
        backend: Process-group backend.
        sync_bn: Synchronise BatchNorm statistics across processes.
        settings: The run's parameters, for the checkpoint's fingerprint.
        m_per_class: Draw P x K batches of this many images per class, or None.
    """
    data = make_data_spec(manifest, cache, report, plan, spec, inputs, batch_size,
                          num_workers, m_per_class)
    # The checkpoint belongs to these settings, images and code; anything else starts afresh.
    key = fingerprint(settings, None if plan is None else plan.to_json(), spec.to_json(),
                      config.seed, inputs.to_json(),
                      launch.nproc_per_node, data.train.to_numpy().tolist(), source_digest(),
                      torch.__version__)
    return TrainingJob(model=model, data=data, config=config, task=task, device=device.type,
                       fingerprint=key, backend=backend, sync_bn=sync_bn, launch=launch)


def _device(job: TrainingJob, context: DistContext) -> torch.device:
    if job.device == "cuda":
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    if context.local_world_size > 1:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.local_world_size))
    return torch.device("cpu")


def make_job_transform(data: DataSpec) -> TrainTransform:
    """The training transform of ``data``: images brought to the packed cache's side."""
    inputs = data.inputs
    cached = data.cache is not None and data.cache.enabled
    resolution = data.cache.settings.resolution if cached and data.cache is not None else None
    return make_augmentation(data.augmentation, inputs.image_size, inputs.mean, inputs.std,
                             inputs.interpolation, resolution=resolution)


def make_val_loader(data: DataSpec, batch_size: int, device: torch.device,
                    seed: int) -> DataLoader | None:
    """Validation batches of ``data`` with the evaluation transform, or None without val."""
    if data.val.empty:
        return None
    inputs = data.inputs
    val_set = manifest_dataset(data.val, data.cache, data.root, make_eval_transform(
        inputs.image_size, inputs.mean, inputs.std, inputs.interpolation), inputs.in_chans)
    return make_loader(val_set, batch_size, device, seed, train=False,
                       num_workers=data.num_workers)


def make_train_loader(data: DataSpec, transform: TrainTransform, device: torch.device,
                      seed: int, sampler: SamplerPlan | None = None,
                      context: DistContext | None = None) -> DataLoader:
    """Training batches of ``data`` (this process's share of them when distributed).

    Args:
        data: The images.
        transform: The training transform; its per-image half runs in the loader.
        device: Where batches go.
        seed: Seeds sampling and augmentation.
        sampler: The sampler plan (default: the data's).
        context: This process's place in a distributed run, or None.
    """
    context = context or DistContext()
    train_set = manifest_dataset(data.train, data.cache, data.root, transform.sample,
                                 data.inputs.in_chans)
    class_index = data.train["class_index"].to_numpy()
    drawn: Sampler[int] | None
    if data.m_per_class is not None and sampler is None:
        drawn = MPerClassBatches(class_index, data.m_per_class, data.batch_size, seed,
                                 context.rank, context.world_size)
    else:
        drawn = make_sampler(sampler or data.sampler, class_index, seed)
        if context.distributed:
            drawn = ShardedSampler(drawn, len(train_set), context.rank, context.world_size,
                                   seed)
    return make_loader(train_set, data.batch_size // context.world_size, device, seed,
                       train=True, sampler=drawn, num_workers=data.num_workers)


def _model(spec: ModelSpec, task: Task, context: DistContext, sync_bn: bool,
           device: torch.device) -> nn.Module:
    model = task.prepare_model(make_model(spec))
    if sync_bn and context.distributed:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif context.main:
            logger.warning("training.distributed.sync_bn needs CUDA; BatchNorm statistics "
                           "stay per process on the CPU")
    return model


def run_job(job: TrainingJob) -> TrainedWeights | None:
    """Run ``job`` as the process the environment names (rank 0 alone when not launched).

    Returns:
        On global rank 0, the weight sets ``final`` (and ``swa``, ``ema``) as CPU state
        dicts with the history; else None.
    """
    context = context_from_env()
    device = _device(job, context)
    with process_group(context, job.backend):
        seed_everything(job.config.seed)
        model = _model(job.model, job.task, context, job.sync_bn, device)
        transform = make_job_transform(job.data)
        train_loader = make_train_loader(job.data, transform, device, job.config.seed,
                                         context=context)
        val = None if not context.main else make_val_loader(
            job.data, job.data.batch_size // context.world_size, device, job.config.seed)
        result = fit(model, train_loader, val, job.config, job.task, device,
                     checkpoints=job.checkpoints if context.main else None,
                     fingerprint=job.fingerprint, distributed=context.distributed,
                     main=context.main, on_epoch=job.live, batch_transform=transform.batch)
    if not context.main:
        return None
    weights = {name: state_on_cpu(job.task.product(module))
               for name, module in result.weights.items()}
    return TrainedWeights(weights, result.history, result.random_state)


def _worker(job: TrainingJob) -> TrainedWeights | None:
    """Entry point of a launched worker: log like the parent, then run the job.

    Rank 0 logs visrec's progress (epochs, resuming), the others only warnings. A worker
    spawned from ``kedro run`` already has Kedro's handlers (Kedro configures logging
    when imported) but not its level for the project's package, so that level is set here.
    """
    logging.basicConfig(format="%(asctime)s [pid %(process)d] %(name)s: %(message)s")
    logging.getLogger(__name__.partition(".")[0]).setLevel(
        logging.INFO if context_from_env().main else logging.WARNING)
    return run_job(job)


def train(job: TrainingJob) -> TrainedWeights | None:
    """Run ``job`` in this process, or in ``job.launch.nproc_per_node`` launched workers.

    Returns:
        Rank 0's result (see :func:`run_job`); None on a machine without rank 0.
    """
    if job.launch is None or job.launch.nproc_per_node * job.launch.nnodes == 1:
        return run_job(job)
    return launch(job.launch, _worker, job)
