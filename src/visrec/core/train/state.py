"""The state of a run of the training loop, and its round trip through a checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from visrec.core.train.averaging import make_ema, make_swa_schedule
from visrec.core.train.checkpoint import (
    CheckpointStore,
    rng_state,
    set_rng_state,
    state_from_bytes,
    state_to_bytes,
)
from visrec.core.train.config import FitConfig
from visrec.core.train.distributed import broadcast_from_main
from visrec.core.train.recipe import LrSchedule, make_optimizer, make_schedule


@dataclass
class RunState:
    """The mutable state of a run of the loop: what a checkpoint saves."""

    model: nn.Module
    trained: nn.Module  # what the loop calls: the model, wrapped by DDP and/or compiled
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule | None
    scaler: torch.amp.GradScaler | None
    swa_model: AveragedModel | None
    ema: Any
    swa_schedule: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    global_step: int = 0


def prepare_run(model: nn.Module, config: FitConfig, device: torch.device,
                updates_per_epoch: int, main: bool) -> RunState:
    """Model on the device, optimizer, schedule, scaler, SWA and EMA holders.

    The model is not wrapped yet (:func:`make_trained`): a checkpoint is restored into it
    first. Every process keeps the SWA average (its weights are the same everywhere under
    DDP), so that all of them can re-estimate its BatchNorm statistics together; the EMA
    is the main process's alone.
    """
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optimizer)
    schedule_spec = config.schedule
    if config.swa is not None and config.swa.schedule == "constant":
        schedule_spec = replace(schedule_spec, min_lr=config.swa.lr)  # decay into the SWA rate
    schedule = make_schedule(optimizer, schedule_spec, config.optimizer.lr,
                             config.decay_epochs, updates_per_epoch)
    scaler = (torch.amp.GradScaler(device.type) if config.precision == "fp16" else None)
    swa_model = AveragedModel(model) if config.swa is not None else None
    ema = make_ema(model, config.ema) if config.ema is not None and main else None
    return RunState(model, model, optimizer, schedule, scaler, swa_model, ema)


def make_trained(model: nn.Module, config: FitConfig, device: torch.device,
                 distributed: bool) -> nn.Module:
    """What the loop calls: ``model`` wrapped by DDP (which starts every process from rank
    0's weights) and/or compiled. Made after a checkpoint is restored into ``model``."""
    trained = model
    if distributed:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.freeze_epochs > 0)
    if config.compile:
        trained = torch.compile(trained)  # type: ignore[assignment]
    return trained


def load_run_state(checkpoints: CheckpointStore | None, fingerprint: str, main: bool,
                   distributed: bool) -> dict[str, Any] | None:
    """The checkpoint every process continues from, or None to start afresh.

    Rank 0 alone reads (and writes) the checkpoint folder and sends what it read to the
    others, so that every process restores the same epoch, also on machines that cannot
    see rank 0's folder, and all agree whether anything is left to train.

    Args:
        checkpoints: The checkpoint folder (read by the main process), or None.
        fingerprint: The settings' fingerprint; a checkpoint of others is ignored.
        main: This process is global rank 0.
        distributed: Other processes take part (a process group is initialised).
    """
    state = checkpoints.load(fingerprint) if main and checkpoints is not None else None
    if not distributed:
        return state
    payload = broadcast_from_main(None if state is None else state_to_bytes(state))
    return None if payload is None else state_from_bytes(payload)


def checkpoint_state(run: RunState, fingerprint: str) -> dict[str, Any]:
    def plain(state: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in state.items() if not callable(value)}

    return {
        "fingerprint": fingerprint, "epoch": run.epoch, "global_step": run.global_step,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "schedule": None if run.schedule is None else plain(run.schedule.state_dict()),
        "swa_schedule": None if run.swa_schedule is None
        else plain(run.swa_schedule.state_dict()),
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
        "swa_model": None if run.swa_model is None else run.swa_model.state_dict(),
        "ema": None if run.ema is None else run.ema.module.state_dict(),
        "rng": rng_state(), "history": json.dumps(run.history),
    }


def restore_run(run: RunState, state: dict[str, Any], config: FitConfig,
             updates_per_epoch: int) -> None:
    """Continue ``run`` from a checkpoint made by :func:`checkpoint_state`."""
    run.model.load_state_dict(state["model"])
    if state["swa_schedule"] is not None and config.swa is not None:
        # Made before the optimizer's rates are restored: SWALR sets them when made.
        run.swa_schedule = make_swa_schedule(run.optimizer, config.swa, updates_per_epoch)
        run.swa_schedule.load_state_dict(state["swa_schedule"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.schedule is not None and state["schedule"] is not None:
        run.schedule.load_state_dict(state["schedule"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    if run.swa_model is not None and state["swa_model"] is not None:
        run.swa_model.load_state_dict(state["swa_model"])
    if run.ema is not None and state["ema"] is not None:
        run.ema.module.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    run.history = json.loads(state["history"])
    run.epoch, run.global_step = int(state["epoch"]), int(state["global_step"])
