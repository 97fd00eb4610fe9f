"""A training process of the multi-process ``fit`` tests: importable by the workers that
torch's elastic launcher spawns, unlike a function defined inside a test.

The model's BatchNorm stands in for ``SyncBatchNorm`` (which refuses CPU tensors): in
training mode it takes part in a collective, so a process that runs a forward pass
alone (SWA's ``update_bn`` on rank 0 only, an epoch the others skip) waits for partners
that never come, and the process group's short timeout turns that into an error.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tests.core.conftest import colour_tensors
from visrec.core.data import ShardedSampler, make_loader
from visrec.core.train import CheckpointStore, ClassificationTask, FitConfig, fit
from visrec.core.train.distributed import context_from_env
from visrec.core.train.model_spec import state_on_cpu

CPU = torch.device("cpu")
CLASSES = 3
BATCH = 8  # global images per update
TIMEOUT = timedelta(seconds=60)  # a collective nobody answers fails the test in a minute


class Stop(Exception):
    """Ends rank 0 after the checkpoint of a chosen epoch, as a crash would."""


class CollectiveBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training forward all-reduces the batch mean, as SyncBatchNorm does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and dist.is_initialized():
            dist.all_reduce(x.detach().mean(dim=(0, 2, 3)))
        return super().forward(x)


def make_model() -> nn.Module:
    """A small convolutional classifier of 16x16 colour images with one BatchNorm."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), CollectiveBatchNorm(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES))


def fit_in_process(config: FitConfig, folder: str, stop_after: int | None = None
                   ) -> dict[str, Any] | None:
    """Fit :func:`make_model` on 24 colour images as the process the launcher made.

    Args:
        config: The recipe.
        folder: The checkpoint folder (rank 0 reads and writes it).
        stop_after: Raise :class:`Stop` on rank 0 after this epoch's checkpoint, or None.

    Returns:
        On rank 0: the history, the weight sets as CPU state dicts, and the epochs this
        process trained (1-based); elsewhere None.
    """
    context = context_from_env()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        torch.manual_seed(context.rank)  # other weights per rank: the run must align them
        model = make_model()
        images = colour_tensors(24, 0)
        sampler = ShardedSampler(None, len(images), context.rank, context.world_size, seed=0)
        train = make_loader(images, BATCH // context.world_size, CPU, seed=0, train=True,
                            sampler=sampler, num_workers=0)
        val = make_loader(colour_tensors(9, 1), BATCH, CPU, seed=0, train=False,
                          num_workers=0)
        trained: list[int] = []

        def on_epoch(history: list[dict[str, Any]]) -> None:
            trained.append(len(history))
            if len(history) == stop_after:
                raise Stop

        result = fit(model, train, val if context.main else None, config,
                     ClassificationTask(num_classes=CLASSES), CPU,
                     checkpoints=CheckpointStore(Path(folder)) if context.main else None,
                     fingerprint="run", on_epoch=on_epoch, distributed=True,
                     main=context.main)
    finally:
        dist.destroy_process_group()
    if not context.main:
        return None
    return {"history": result.history, "trained": trained,
            "weights": {name: state_on_cpu(module) for name, module in result.weights.items()}}
