"""Tests of bf16 on the CPU (visrec.core.train.cpu_bf16 and the loop's fallback to fp32).

The fallback is tested without the CPU's help: a model whose forward pass under bf16
autocast breaks the loss or only the gradients (as oneDNN's failing kernels do), from a
chosen call on, while its fp32 passes stay finite (or not, on request).
"""

from __future__ import annotations

import logging
import math
import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.core.conftest import colour_tensors
from visrec.core.augment import MixSpec
from visrec.core.data import make_loader
from visrec.core.train import (
    CheckpointStore,
    ClassificationTask,
    FitConfig,
    OptimizerSpec,
    ScheduleSpec,
    StepOptions,
    fit,
    train_one_epoch,
)
from visrec.core.train.cpu_bf16 import StepSnapshot, any_rank, lower_isas, onednn_cpu_isa

CPU = torch.device("cpu")
CLASSES = 3
BATCH = 8
TRAIN_ROWS = 24  # 3 updates per epoch
UPDATES = TRAIN_ROWS // BATCH
TIMING_COLUMNS = ["seconds", "images_per_s", "data_wait"]
REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BreaksInBf16(nn.Module):
    """Mean colour -> BatchNorm -> linear, which records the precision and the input of every
    forward pass. Under bf16 autocast, from its ``first``-th bf16 pass on, it breaks the loss
    (``broken="loss"``: NaN logits) or only the gradients (``"gradient"``: finite logits
    whose gradient is NaN); its fp32 passes break the same way when ``fp32_too``."""

    def __init__(self, first: int = 1, broken: str = "gradient", fp32_too: bool = False) -> None:
        super().__init__()
        self.first, self.broken, self.fp32_too = first, broken, fp32_too
        self.norm = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, CLASSES)
        self.passes: list[tuple[str, torch.Tensor]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        bf16 = (torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        self.passes.append(("bf16" if bf16 else "fp32", images.detach().clone()))
        logits = self.fc(self.norm(images.mean(dim=(2, 3))))
        bf16_passes = sum(precision == "bf16" for precision, _ in self.passes)
        if not ((bf16 and bf16_passes >= self.first) or (not bf16 and self.fp32_too)):
            return logits
        if self.broken == "loss":
            return logits * float("nan")
        logits.register_hook(lambda grad: grad * float("nan"))
        return logits

    def precisions(self) -> list[str]:
        return [precision for precision, _ in self.passes]


def _model(seed: int = 0, **changes) -> BreaksInBf16:
    torch.manual_seed(seed)
    return BreaksInBf16(**changes)


def _loader(seed: int = 0):
    return make_loader(colour_tensors(TRAIN_ROWS, seed), BATCH, CPU, seed=0, train=True,
                       num_workers=0)


def _config(epochs: int, precision: str = "bf16") -> FitConfig:
    return FitConfig(epochs=epochs, optimizer=OptimizerSpec(lr=0.05, weight_decay=1e-4),
                     schedule=ScheduleSpec("cosine", min_lr=5e-4), precision=precision)


def _task(**changes) -> ClassificationTask:
    return ClassificationTask(num_classes=CLASSES, **changes)


def _fallbacks(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if "bf16 autocast failed" in record.getMessage()]


# --- which instruction set oneDNN uses --------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    ({"amx_bf16", "amx_tile", "avx512_bf16", "avx512_f", "avx2"}, "AVX512_CORE_AMX"),
    ({"amx_bf16", "avx512_bf16", "avx512_f", "avx2"}, "AVX512_CORE_BF16"),  # no tiles
    ({"avx512_bf16", "avx512_f", "avx2"}, "AVX512_CORE_BF16"),
    ({"avx512_f", "avx2"}, "AVX512_CORE"),
    ({"avx2"}, "AVX2"),
    (set(), "DEFAULT"),
])
def test_onednn_cpu_isa_follows_the_cpu_capabilities(monkeypatch, flags, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.cpu, "get_capabilities",
                        lambda: {name: True for name in flags} | {"avx": True})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert onednn_cpu_isa() == expected


def test_onednn_cpu_isa_is_capped_by_the_environment(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    assert onednn_cpu_isa() == "AVX512_CORE_BF16"
    assert lower_isas("AVX512_CORE_BF16") == ["AVX512_CORE", "AVX2"]
    assert lower_isas("AVX512_CORE_AMX") == ["AVX512_CORE_BF16", "AVX512_CORE", "AVX2"]
    assert lower_isas("AVX2") == [] and lower_isas("SVE256") == []


# --- the fallback to fp32 ---------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["loss", "gradient"])
def test_a_failed_bf16_step_is_redone_in_fp32_and_the_run_goes_on_in_fp32(
        monkeypatch, caplog, broken):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # what the warning names
    model = _model(first=2, broken=broken)
    with caplog.at_level(logging.WARNING, logger="visrec.core.train.epoch"):
        history = fit(model, _loader(), None, _config(2), _task(), CPU).history
    (message,) = _fallbacks(caplog)
    assert "at epoch 1, step 2" in message
    assert ("loss is nan" if broken == "loss" else "gradient norm is nan") in message
    assert "oneDNN with AVX512_CORE_AMX" in message and "not the learning rate" in message
    assert "ONEDNN_MAX_CPU_ISA to a lower level (AVX512_CORE_BF16, AVX512_CORE, AVX2)" in message
    # Step 1 in bf16; step 2 in bf16, then again in fp32; every later step in fp32.
    assert model.precisions() == ["bf16", "bf16"] + ["fp32"] * (2 * UPDATES - 1)
    assert history["precision"].tolist() == ["fp32", "fp32"]
    assert history["train_loss"].map(math.isfinite).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("broken", ["loss", "gradient"])
def test_a_step_that_fails_in_fp32_too_raises_naming_both(broken):
    model = _model(first=1, broken=broken, fp32_too=True)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    with pytest.raises(FloatingPointError) as info:
        fit(model, _loader(), None, _config(2), _task(), CPU)
    found = "loss is nan" if broken == "loss" else "gradient norm is nan"
    assert str(info.value).startswith(
        f"{found} in fp32 as well as under bf16 autocast ({found}) at epoch 1, step 1; "
        "lower training.lr")
    assert model.precisions() == ["bf16", "fp32"]
    # Nothing was updated: the weights are the starting ones.
    assert all(torch.equal(p, start[name]) for name, p in model.named_parameters())


def test_the_redone_step_sees_the_same_mixup_draw_and_updates_batchnorm_once():
    """A run whose first bf16 step fails is, from then on, exactly the fp32 run: the redone
    step mixes the same images (the generators are restored) and BatchNorm's running
    statistics take the batch once (the buffers are restored)."""
    task = _task(mix=MixSpec(mixup_alpha=1.0, cutmix_alpha=1.0))
    fallen = _model(first=1)
    fallen_history = fit(fallen, _loader(), None, _config(2), task, CPU).history
    plain = _model(first=1)
    plain_history = fit(plain, _loader(), None, _config(2, precision="fp32"), task, CPU).history
    (attempt_kind, attempt), (redo_kind, redo) = fallen.passes[:2]
    assert (attempt_kind, redo_kind) == ("bf16", "fp32")
    assert torch.equal(attempt, redo)
    assert torch.equal(redo, plain.passes[0][1])
    assert int(fallen.norm.num_batches_tracked) == 2 * UPDATES
    for key, value in plain.state_dict().items():
        assert torch.equal(fallen.state_dict()[key], value), key
    pd.testing.assert_frame_equal(
        fallen_history.drop(columns=[*TIMING_COLUMNS, "precision"]),
        plain_history.drop(columns=TIMING_COLUMNS), check_exact=True)


def test_step_snapshot_restores_the_batch_generators_and_buffers():
    model = _model()
    images, targets = torch.randn(4, 3, 2, 2), torch.arange(4)
    snapshot = StepSnapshot.take(model, images, targets)
    kept = images.clone()
    images.mul_(0.5)  # as timm's MixUp mixes a batch: in place
    before = {k: v.clone() for k, v in model.state_dict().items()}
    draws = torch.rand(3), np.random.rand(3), random.random()
    model.train()(torch.randn(4, 3, 2, 2))  # moves the running statistics
    assert not torch.equal(model.norm.running_mean, before["norm.running_mean"])
    restored_images, restored_targets = snapshot.restore(model)
    assert torch.equal(restored_images, kept) and torch.equal(restored_targets, targets)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]


def test_a_resumed_run_stays_in_fp32_after_a_fallback(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    first = fit(_model(first=2), _loader(), None, _config(1), _task(), CPU,
                checkpoints=store, fingerprint="run").history
    assert first["precision"].tolist() == ["fp32"]
    resumed = _model(first=1)  # would fail at once in bf16
    history = fit(resumed, _loader(), None, _config(3), _task(), CPU, checkpoints=store,
                  fingerprint="run").history
    assert resumed.precisions() == ["fp32"] * (2 * UPDATES)
    assert history["precision"].tolist() == ["fp32"] * 3


def test_fp32_and_other_devices_take_no_snapshot(monkeypatch):
    taken: list[int] = []
    monkeypatch.setattr(StepSnapshot, "take",
                        classmethod(lambda cls, *args: taken.append(1)))
    model = _model()
    task = _task()
    task.setup(model, CPU, channels_last=False)
    task.start_epoch(0, CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, _loader(), task, optimizer, CPU, 0, options=StepOptions())
    assert taken == [] and model.precisions() == ["fp32"] * UPDATES


# --- several processes -------------------------------------------------------------------------


def _nan_loss_from_second_bf16_step(task: ClassificationTask) -> None:
    """Make ``task``'s loss NaN from its second step under autocast on, in a way that
    back-propagation does not see: the gradients stay finite, so only this process knows."""
    real_step, calls = task.step, []

    def step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor):
        result = real_step(model, images, targets)
        if torch.is_autocast_enabled("cpu"):
            calls.append(1)
            if len(calls) >= 2:
                result.loss = result.loss + float("nan")
        return result

    task.step = step


def _ddp_worker(rank: int, folder: str) -> None:
    """One of two gloo processes, which only differ in their batches and in that rank 1's
    loss turns NaN at its second bf16 step; each saves what it ran and its weights."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous",
                                         rank=rank, world_size=2,
                                         timeout=timedelta(seconds=60))  # no hang on a bug
    try:
        model = _model(first=10**6)  # never breaks by itself
        trained = nn.parallel.DistributedDataParallel(model)
        task = _task()
        if rank == 1:
            _nan_loss_from_second_bf16_step(task)
        task.setup(model, CPU, channels_last=False)
        task.start_epoch(0, CPU)
        options = StepOptions(autocast_dtype=torch.bfloat16)
        optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
        row = train_one_epoch(trained, _loader(seed=rank), task, optimizer, CPU, 0,
                              options=options)
        torch.save({"precisions": model.precisions(), "autocast": str(options.autocast_dtype),
                    "loss": row["train_loss"], "state": model.state_dict(),
                    "any": any_rank(rank == 1), "all_false": any_rank(False)},
                   f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_processes_fall_back_together(tmp_path):
    """Only rank 1's bf16 loss fails (its gradients, averaged with rank 0's, stay finite),
    yet both redo the step in fp32 and go on in fp32: their weights stay equal, and neither
    waits for the other in a collective. ``any_rank`` sees
    a flag that one process raises."""
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path),), nprocs=2)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    for result in results:
        assert result["precisions"] == ["bf16", "bf16", "fp32", "fp32"]
        assert result["autocast"] == "None"
        assert math.isfinite(result["loss"])
        assert result["any"] is True and result["all_false"] is False
    for key, value in results[0]["state"].items():  # BatchNorm's statistics are per process
        if "running" not in key and "batches" not in key:
            assert torch.equal(results[1]["state"][key], value), key


# --- every oneDNN instruction set ------------------------------------------------------------


def _onednn_isa_levels() -> list[str]:
    """The ONEDNN_MAX_CPU_ISA levels this CPU offers, from /proc/cpuinfo's flags."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                flags |= set(line.partition(":")[2].split())
    return [level for level, flag in (("AVX2", "avx2"), ("AVX512_CORE", "avx512f"),
                                      ("AVX512_CORE_BF16", "avx512_bf16"),
                                      ("AVX512_CORE_AMX", "amx_bf16")) if flag in flags]


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize("level", _onednn_isa_levels())
def test_bf16_training_passes_at_every_onednn_isa_level(level):
    """test_autocast_precision_on_cpu[bf16] in a new Python whose oneDNN is capped at
    ``level`` (oneDNN reads ONEDNN_MAX_CPU_ISA once, at its first use)."""
    node = "tests/core/train/test_training_tricks.py::test_autocast_precision_on_cpu[bf16]"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", node],
        cwd=REPO, env=os.environ | {"ONEDNN_MAX_CPU_ISA": level}, capture_output=True,
        text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
