"""bf16 autocast on the CPU: which instruction set oneDNN runs it with, and what the loop
needs to redo a step in fp32 when those kernels fail.

torch 2.14's oneDNN computes the bf16 weight gradient of a 3x3, stride-2, padding-1
convolution on a 1x1 feature map from memory it never wrote: the taps that only see
padding get values up to ~1e37, sometimes NaN (measured on an Intel Xeon with AMX at
every AVX-512 level oneDNN offers there: AVX512_CORE, AVX512_CORE_BF16 and
AVX512_CORE_AMX; AVX2 computes it right). The loop (:func:`visrec.core.train.fit`)
therefore checks the loss and the gradients of every bf16 step on the CPU, and on a
failure redoes the step in fp32 (:class:`StepSnapshot`) and trains on in fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visrec.core.train.checkpoint import rng_state, set_rng_state

# oneDNN's x86 instruction-set levels that run bf16, best first (ONEDNN_MAX_CPU_ISA values),
# with the CPU capability (torch.cpu.get_capabilities) each one needs.
ONEDNN_BF16_ISAS = (("AVX512_CORE_AMX", "amx_bf16"), ("AVX512_CORE_BF16", "avx512_bf16"),
                    ("AVX512_CORE", "avx512_f"), ("AVX2", "avx2"))


def onednn_cpu_isa() -> str:
    """The instruction set oneDNN's CPU kernels use: ``ONEDNN_MAX_CPU_ISA`` when set (it
    caps oneDNN's choice; oneDNN reads it once, when torch first calls it), else the best
    level of :data:`ONEDNN_BF16_ISAS` this CPU offers, else torch's own name for the CPU
    (``torch.backends.cpu.get_cpu_capability()``, e.g. ``DEFAULT``)."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()
    if capped:
        return capped.upper()
    capabilities: Any = getattr(torch.cpu, "get_capabilities", dict)()  # newer torch
    for isa, flag in ONEDNN_BF16_ISAS:
        if capabilities.get(flag) and (flag != "amx_bf16" or capabilities.get("amx_tile")):
            return isa
    capability = torch.backends.cpu.get_cpu_capability()
    return {"AVX512": "AVX512_CORE"}.get(capability, capability)


def lower_isas(isa: str) -> list[str]:
    """The bf16 levels of :data:`ONEDNN_BF16_ISAS` below ``isa`` (none when it is not one)."""
    names = [name for name, _ in ONEDNN_BF16_ISAS]
    return names[names.index(isa) + 1:] if isa in names else []


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any process of the default process group (one
    ``all_reduce`` of a single number, so every process must call this at the same point);
    ``flag`` itself in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1):
        return flag
    value = torch.tensor([float(flag)])
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


@dataclass
class StepSnapshot:
    """What a training step changes before its update, saved so that the step can be redone
    exactly: the batch (timm's MixUp and CutMix mix it in place), the global generators
    (MixUp, CutMix and dropout draw from them) and the model's buffers (BatchNorm's running
    statistics and batch count).

    Attributes:
        images: A copy of the batch's images.
        targets: A copy of the batch's targets.
        random_state: The generators' state (:func:`visrec.core.train.rng_state`).
        buffers: A copy of every buffer of the model, by name.
    """

    images: torch.Tensor
    targets: torch.Tensor
    random_state: dict[str, Any]
    buffers: dict[str, torch.Tensor]

    @classmethod
    def take(cls, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor) -> StepSnapshot:
        """Save the batch, the generators and ``model``'s buffers."""
        return cls(images.clone(), targets.clone(), rng_state(),
                   {name: buffer.detach().clone() for name, buffer in model.named_buffers()})

    def restore(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Put the generators and ``model``'s buffers back as they were when taken; the
        batch as it was (images, targets)."""
        set_rng_state(self.random_state)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(self.buffers[name])
        return self.images, self.targets


def grad_norm(model: nn.Module) -> torch.Tensor:
    """The 2-norm of all of ``model``'s gradients together (0 when there are none), as
    ``clip_grad_norm_`` computes it; not finite when any gradient is not, or overflows."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in model.parameters()
             if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
