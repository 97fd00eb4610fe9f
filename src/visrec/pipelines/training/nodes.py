"""Nodes of the training pipeline."""

import logging
from dataclasses import replace

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.cache import ImageCache
from visrec.core.checkpoint import CheckpointStore, fingerprint, source_digest
from visrec.core.data import make_loader, manifest_dataset
from visrec.core.distributed import LaunchSpec, backend_for, resolve_devices
from visrec.core.engine import (
    DistillSpec,
    EmaSpec,
    FitConfig,
    MixSpec,
    SwaSpec,
    evaluate,
    retrain_classifier,
    swa_start_epoch,
)
from visrec.core.live import LiveLog
from visrec.core.losses import LossSpec, loss_spec
from visrec.core.models import (
    create_classifier,
    resolve_input_config,
    select_device,
    weights_artifact,
)
from visrec.core.plots import learning_curve_figure
from visrec.core.provenance import git_commit
from visrec.core.recipe import OptimizerSpec, ScheduleSpec
from visrec.core.samplers import make_sampler
from visrec.core.trainer import (
    DataSpec,
    ModelSpec,
    TrainingJob,
    make_val_loader,
    train,
    train_transform,
)
from visrec.core.transforms import mix_settings, single_view, spec_component
from visrec.params import TrainingParams

logger = logging.getLogger(__name__)

LR_REFERENCE_BATCH = 256  # `training.lr` is the rate for 256 images (Goyal et al. 2017)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that have it, else fp16, on CUDA; fp32 on the CPU."""
    if device.type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    if requested == "fp16":
        logger.warning("training.precision = 'fp16' needs CUDA (its gradient scaler); "
                       "training on the CPU in fp32 (bf16 is the CPU's mixed precision)")
    return "fp32" if requested in ("auto", "fp16") else requested


def resolve_channels_last(requested: str | bool) -> bool:
    """``auto``: NHWC on every device: cuDNN's and oneDNN's convolutions are faster with it
    (timm resnet10t on a 2-core CPU: 865 -> 1,021 training images/s)."""
    return True if requested == "auto" else bool(requested)


def _mix(params: TrainingParams, augmentation_spec: dict | None) -> MixSpec | None:
    """Batch mixing: the augmentation policy's mixup/cutmix, else ``training.mixup``."""
    policy_mix = None if augmentation_spec is None else mix_settings(augmentation_spec)
    if policy_mix is not None:
        if params.mixup.enabled:
            logger.warning("augmentation policy %r mixes batches: training.mixup is ignored",
                           augmentation_spec["policy"])
        return MixSpec(**policy_mix)
    mix = params.mixup
    return MixSpec(mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha, prob=mix.prob,
                   switch_prob=mix.switch_prob) if mix.enabled else None


def fit_config(params: TrainingParams, balance_plan: dict, seed: int = 0,
               device: torch.device | None = None,
               augmentation_spec: dict | None = None) -> FitConfig:
    """The recipe, with learning rates scaled linearly from 256 images to the global batch.

    The augmentation policy adds batch mixing (mixup, cutmix) and AugMix's consistency
    loss when it has them.
    """
    device = device or torch.device("cpu")
    scale = params.batch_size / LR_REFERENCE_BATCH
    swa = params.swa
    augmix = None if augmentation_spec is None else spec_component(augmentation_spec, "augmix")
    return FitConfig(
        epochs=params.epochs,
        optimizer=OptimizerSpec(name=params.optimizer, lr=params.lr * scale,
                                momentum=params.momentum, weight_decay=params.weight_decay,
                                no_bias_decay=params.no_bias_decay),
        schedule=ScheduleSpec(name=params.schedule.name,
                              warmup_epochs=params.schedule.warmup_epochs,
                              min_lr=params.schedule.min_lr * scale,
                              step_epochs=params.schedule.step_epochs,
                              step_rate=params.schedule.step_rate,
                              cycle_epochs=params.schedule.cycle_epochs),
        loss=loss_spec(balance_plan["loss"], balance_plan["class_weights"],
                       params.label_smoothing, params.epochs),
        swa=SwaSpec(start=swa.start_epoch - 1 if swa.start_epoch is not None
                    else swa_start_epoch(params.epochs, swa.start_fraction),
                    lr=swa.lr * scale, schedule=swa.schedule, anneal_epochs=swa.anneal_epochs,
                    cycle_epochs=swa.cycle_epochs, min_lr=swa.min_lr * scale)
        if swa.enabled else None,
        ema=EmaSpec(decay=params.ema.decay, warmup=params.ema.warmup)
        if params.ema.enabled else None,
        mix=_mix(params, augmentation_spec),
        jsd_weight=augmix.jsd_weight if augmix is not None and augmix.jsd else None,
        distill=DistillSpec(temperature=params.distillation.temperature,
                            weight=params.distillation.weight),
        precision=resolve_precision(params.precision, device),
        channels_last=resolve_channels_last(params.channels_last),
        compile=params.compile, grad_clip=params.grad_clip,
        freeze_epochs=params.freeze_backbone_epochs, seed=seed)


def crt_config(params: TrainingParams, balance_plan: dict, seed: int = 0) -> FitConfig | None:
    """The classifier re-training recipe of the plan, or None: SGD with a cosine decay and
    plain cross-entropy, since the class-balanced batches already balance the classes."""
    crt = balance_plan.get("crt")
    if crt is None:
        return None
    lr = crt["lr"] * params.batch_size / LR_REFERENCE_BATCH
    return FitConfig(epochs=crt["epochs"],
                     optimizer=OptimizerSpec(lr=lr, momentum=params.momentum,
                                             weight_decay=params.weight_decay),
                     schedule=ScheduleSpec(name="cosine", min_lr=lr / 1000),
                     loss=LossSpec(label_smoothing=params.label_smoothing), seed=seed)


def _last_val_metrics(history: pd.DataFrame, prefix: str = "val_") -> dict[str, float] | None:
    """Validation metrics of the last epoch: ``fit`` evaluated them after it."""
    if f"{prefix}loss" not in history:
        return None
    last = history.iloc[-1]
    return {key: float(last[f"{prefix}{key}"]) for key in ("loss", "top1", "balanced_accuracy")}


def _retrain_classifiers(weight_sets: dict[str, nn.Module], data: DataSpec,
                         val_loader: DataLoader | None, balance_plan: dict,
                         params: TrainingParams, device: torch.device,
                         seed: int) -> dict[str, pd.DataFrame]:
    """Classifier re-training of every weight set when the plan asks for it (cRT).

    Returns:
        The re-training history of each weight set; empty without cRT.
    """
    crt = crt_config(params, balance_plan, seed)
    if crt is None:
        return {}
    transform = train_transform(replace(data, augmentation=single_view(data.augmentation)))
    train_set = manifest_dataset(data.train, data.cache, data.root, transform.sample,
                                 data.inputs["in_chans"])
    loader = make_loader(train_set, params.batch_size, device, seed, train=True,
                         num_workers=params.num_workers,
                         sampler=make_sampler(balance_plan["crt"]["sampler"],
                                              data.train["class_index"].to_numpy(), seed))
    return {name: retrain_classifier(weights, loader, val_loader, crt, device,
                                     phase=f"crt_{name}", batch_transform=transform.batch)
            for name, weights in weight_sets.items()}


def model_inputs(model: str, image_size: int | None, ingestion_report: dict) -> dict:
    """Input size, normalisation and interpolation of ``model`` for the ingested images."""
    channels = ingestion_report["channels"]
    probe = create_classifier(model, len(ingestion_report["classes"]), None, channels)
    return resolve_input_config(probe, image_size, channels)


def training_job(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: dict,
                 balance_plan: dict, augmentation_spec: dict, params: TrainingParams,
                 seed: int, device: torch.device, inputs: dict) -> TrainingJob:
    """The run as data: model, images, recipe, and how many processes."""
    columns = ["path", "class_index", "cache_index"]
    train_rows = manifest.loc[manifest["split"] == "train", columns].reset_index(drop=True)
    data = DataSpec(train=train_rows,
                    val=manifest.loc[manifest["split"] == "val", columns].reset_index(drop=True),
                    cache=cache, root=ingestion_report["root"], augmentation=augmentation_spec,
                    inputs=inputs, sampler=balance_plan["sampler"],
                    batch_size=params.batch_size, num_workers=params.num_workers)
    model = ModelSpec(architecture=params.model, classes=tuple(ingestion_report["classes"]),
                      channels=ingestion_report["channels"],
                      pretrained_path=params.pretrained_path, zero_gamma=params.zero_gamma,
                      teacher_path=params.distillation.teacher_path,
                      teacher_architecture=params.distillation.teacher_model)
    config = fit_config(params, balance_plan, seed, device, augmentation_spec)
    processes = resolve_devices(params.devices, device)
    dist = params.distributed
    launch = LaunchSpec(nproc_per_node=processes, nnodes=dist.nnodes,
                        rdzv_endpoint=dist.rdzv_endpoint, rdzv_backend=dist.rdzv_backend,
                        run_id=dist.run_id, max_restarts=dist.max_restarts)
    # The checkpoint belongs to these settings, images and code; anything else starts afresh.
    key = fingerprint(params.model_dump(exclude={"resume", "num_workers", "device"}),
                      balance_plan, augmentation_spec, seed, inputs, processes,
                      train_rows.to_numpy().tolist(), source_digest(), torch.__version__)
    return TrainingJob(model=model, data=data, config=config, device=device.type,
                       fingerprint=key, backend=backend_for(device, dist.backend),
                       sync_bn=dist.sync_bn, launch=launch)


def train_model(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: dict,
                balance_plan: dict, augmentation_spec: dict, params: TrainingParams,
                seed: int, checkpoints: CheckpointStore,
                live: LiveLog) -> tuple[dict[str, dict], pd.DataFrame, Figure]:
    """Train ``training.model`` on the train split, validating on val each epoch.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root, the classes and the channels.
        balance_plan: The sampler, loss, class weights and classifier re-training to apply.
        augmentation_spec: The training transform to rebuild.
        params: The ``training`` block.
        seed: Seeds initialisation, sampling and augmentation.
        checkpoints: Where each epoch's checkpoint goes; ``resume: auto`` continues from it.
        live: Logs each epoch's metrics with dvclive.

    Returns:
        ``(trained_models, history, learning_curve)``: weight sets ``final`` and, when on,
        ``swa`` and ``ema``, each with its config; one history row per epoch; the curve.
    """
    device = select_device(params.device)
    classes, channels = ingestion_report["classes"], ingestion_report["channels"]
    inputs = model_inputs(params.model, params.image_size, ingestion_report)
    if cache.enabled and cache.settings.resolution < inputs["image_size"]:
        logger.warning("packed cache holds %dpx images, below the training size %dpx: "
                       "images are upsampled; raise ingestion.cache.resolution",
                       cache.settings.resolution, inputs["image_size"])
    if params.resume == "never":
        checkpoints.clear()
    job = training_job(manifest, cache, ingestion_report, balance_plan, augmentation_spec, params,
               seed, device, inputs)
    recorded = {"model": params.model, "epochs": params.epochs,
                "batch_size": params.batch_size, "lr": params.lr, "seed": seed,
                "augmentation": augmentation_spec["policy"],
                "class_balance": balance_plan["strategy"]}
    job = replace(job, checkpoints=checkpoints, live=live.with_params(recorded))
    logger.info("training %s on %s x %d: %d train / %d val images, %d classes, %dpx, from %s; "
                "augmentation %s", params.model, device, job.launch.nproc_per_node,
                len(job.data.train), len(job.data.val), len(classes), inputs["image_size"],
                "the packed cache" if cache.enabled else "the image files",
                augmentation_spec["policy"])
    result = train(job)
    if result is None:
        raise RuntimeError("training ran on other machines' processes only: run the "
                           "training pipeline on the machine of rank 0 for the artifacts")
    weight_sets = {}
    for name, state in result["weights"].items():
        weight_sets[name] = create_classifier(params.model, len(classes), None, channels)
        weight_sets[name].load_state_dict(state)
    history = result["history"]
    return _finish(weight_sets, history, job, balance_plan, augmentation_spec, params, seed,
                   device)


def _finish(weight_sets: dict[str, nn.Module], history: pd.DataFrame, job: TrainingJob,
            balance_plan: dict, augmentation_spec: dict, params: TrainingParams, seed: int,
            device: torch.device) -> tuple[dict[str, dict], pd.DataFrame, Figure]:
    """Classifier re-training, final validation metrics and the weight artifacts."""
    val_loader = make_val_loader(job.data, params.batch_size, device, seed)
    crt_histories = _retrain_classifiers(weight_sets, job.data, val_loader, balance_plan,
                                         params, device, seed)
    val_metrics = {}
    for name, weights in weight_sets.items():
        if name in crt_histories:
            val_metrics[name] = _last_val_metrics(crt_histories[name])
        elif name == "final" or (name == "ema" and val_loader is not None):
            val_metrics[name] = _last_val_metrics(history, "val_" if name == "final"
                                                  else "val_ema_")
        else:  # SWA: its BatchNorm statistics were just recomputed; evaluate anew
            val_metrics[name] = None if val_loader is None else evaluate(
                weights.to(device), val_loader, device)
    if "final" in crt_histories:  # one epoch axis: the final weights' re-training follows
        history = pd.concat([history, crt_histories["final"].assign(
            epoch=crt_histories["final"]["epoch"] + params.epochs)], ignore_index=True)
    base_config = {"architecture": params.model, "classes": list(job.model.classes),
                   **job.data.inputs, "seed": seed, "git_commit": git_commit(),
                   "training": params.model_dump(), "augmentation": augmentation_spec,
                   "class_balance": {key: balance_plan[key]
                                     for key in ("strategy", "components", "reason")}}
    models = {name: weights_artifact(weights, base_config | {
        "weights": name, "val_metrics": val_metrics[name]})
        for name, weights in weight_sets.items()}
    return models, history, learning_curve_figure(history)
