"""Several training processes: torch's elastic launcher (torchrun semantics) and DDP setup.

:func:`launch` starts ``nproc`` worker processes on this machine with
``torch.distributed.launcher.api.elastic_launch``; several machines join one run
through the rendezvous endpoint. Each worker reads its rank from the environment the
launcher sets (:func:`context_from_env`) and joins the process group
(:func:`process_group`): NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a run (1 process when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self) -> bool:
        """The process that evaluates and writes (global rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1


@dataclass(frozen=True)
class LaunchSpec:
    """How :func:`launch` starts workers (torchrun's options).

    Attributes:
        nproc_per_node: Worker processes on this machine.
        nnodes: Machines taking part.
        rdzv_endpoint: ``host:port`` of the rendezvous (port 0: a free port, one machine).
        rdzv_backend: ``c10d`` or ``static``.
        run_id: Shared by the machines of one run.
        max_restarts: Relaunches of the workers after a failure.
    """

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str = "127.0.0.1:0"
    rdzv_backend: str = "c10d"
    run_id: str = "visrec"
    max_restarts: int = 0


def context_from_env() -> DistContext:
    """Rank and world size from the variables the elastic launcher sets."""
    env = os.environ
    return DistContext(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                       local_rank=int(env.get("LOCAL_RANK", 0)),
                       local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)))


def resolve_devices(requested: int | str, device: torch.device) -> int:
    """Worker processes for ``training.devices``: ``auto`` is one per visible GPU, else 1.

    Raises:
        ValueError: If more processes than GPUs are asked for on CUDA.
    """
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if requested == "auto":
        return max(gpus, 1)
    count = int(requested)
    if device.type == "cuda" and count > gpus:
        raise ValueError(f"training.devices = {count} but {gpus} CUDA devices are visible; "
                         f"give at most {gpus}, or auto")
    return count


def backend_for(device: torch.device, requested: str = "auto") -> str:
    """The process-group backend: NCCL for CUDA, gloo for the CPU, unless chosen."""
    if requested != "auto":
        return requested
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(context: DistContext, backend: str) -> Iterator[None]:
    """Join the launcher's process group for the duration of the block (no-op alone)."""
    if not context.distributed:
        yield
        return
    torch.distributed.init_process_group(backend=backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def broadcast_from_main(value: T) -> T:
    """Global rank 0's ``value`` in every process of the process group.

    ``value`` is pickled by ``torch.distributed.broadcast_object_list`` (through the
    current CUDA device with NCCL); every process must call this at the same point.
    """
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def launch(spec: LaunchSpec, entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Run ``entrypoint(*args)`` in ``spec.nproc_per_node`` processes; return rank 0's result.

    Args:
        spec: Processes and rendezvous.
        entrypoint: A module-level function (workers import it: they are spawned).
        args: Its arguments, pickled to the workers.

    Returns:
        What global rank 0 returned, or None on a machine without rank 0.

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: If a worker fails
            (its error is in the message).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # noqa: PLC0415

    config = LaunchConfig(
        min_nodes=spec.nnodes, max_nodes=spec.nnodes, nproc_per_node=spec.nproc_per_node,
        run_id=spec.run_id, rdzv_backend=spec.rdzv_backend, rdzv_endpoint=spec.rdzv_endpoint,
        max_restarts=spec.max_restarts, start_method="spawn", monitor_interval=0.5)
    logger.info("launching %d training processes x %d node(s), rendezvous %s",
                spec.nproc_per_node, spec.nnodes, spec.rdzv_endpoint)
    results = elastic_launch(config, entrypoint)(*args)
    return results.get(0)
