"""Tests of the training loop (visrec.core.train.fit) on a classification task.

A tiny timm model (``test_resnet``) learns three solid-colour classes from real PNG
files, so a full ``fit`` takes well under a second on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tests.core.conftest import (
    COLOUR_CLASSES,
    COLOUR_SIZE,
    COLOUR_TRAIN,
    COLOUR_VAL,
    write_colour_folder,
)
from visrec.core.augment import make_eval_transform, make_spec, make_train_transform
from visrec.core.data import ManifestImageDataset, make_loader
from visrec.core.evaluate import predict_logits, validation_metrics
from visrec.core.models import make_classifier
from visrec.core.seeding import seed_everything
from visrec.core.train import (
    ClassificationTask,
    FitConfig,
    LossSpec,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
    fit,
    retrain_classifier,
    swa_start_epoch,
)
from visrec.core.train.losses import make_criterion

CPU = torch.device("cpu")
ARCH = "test_resnet"
CLASSES = COLOUR_CLASSES
IMAGE_SIZE = COLOUR_SIZE
BATCH = 8
TRAIN_PER_CLASS, VAL_PER_CLASS = COLOUR_TRAIN, COLOUR_VAL
TIMING_COLUMNS = ["seconds", "images_per_s", "data_wait"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class ImageData:
    """Relative paths and labels of the generated images, by split, under ``root``."""

    root: Path
    train: pd.DataFrame
    val: pd.DataFrame


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> ImageData:
    """Solid-colour 32x32 PNGs (random brightness and noise): red, green and blue classes."""
    root = tmp_path_factory.mktemp("colours")
    table = write_colour_folder(root)
    return ImageData(root, table[table["split"] == "train"].reset_index(drop=True),
                     table[table["split"] == "val"].reset_index(drop=True))


def _transforms():
    # test_resnet normalises with mean = std = 0.5 (its timm data config).
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    spec = make_spec("flip_crop", hflip=True, scale=(0.5, 1.0))
    return (make_train_transform(spec, IMAGE_SIZE, mean, std, "bilinear"),
            make_eval_transform(IMAGE_SIZE, mean, std, "bilinear"))


def _loaders(data: ImageData, seed: int, train_transform=None, with_val: bool = True):
    train_tf, eval_tf = _transforms()
    train_set = ManifestImageDataset(data.root, data.train["path"], data.train["class_index"],
                                     train_transform or train_tf)
    train = make_loader(train_set, BATCH, CPU, seed, train=True, num_workers=0)
    if not with_val:
        return train, None
    val_set = ManifestImageDataset(data.root, data.val["path"], data.val["class_index"], eval_tf)
    return train, make_loader(val_set, 64, CPU, seed, train=False, num_workers=0)


def _evaluate(model: nn.Module, loader) -> dict[str, float]:
    return validation_metrics(*predict_logits(model, loader, CPU))


def _config(epochs: int, lr: float, warmup_epochs: int = 0, swa_start: int | None = None,
            swa_lr: float = 0.0, swa_anneal_epochs: int = 1, seed: int = 0,
            **changes) -> FitConfig:
    """SGD with warmup and cosine decay (to lr / 1000, or into SWA at ``swa_lr``)."""
    return FitConfig(
        epochs=epochs, optimizer=OptimizerSpec(lr=lr),
        schedule=ScheduleSpec(warmup_epochs=warmup_epochs, min_lr=lr / 1000), seed=seed,
        swa=None if swa_start is None else SwaSpec(start=swa_start, lr=swa_lr,
                                                   anneal_epochs=swa_anneal_epochs),
        **changes)


def _task(loss: LossSpec | None = None) -> ClassificationTask:
    return ClassificationTask(num_classes=len(CLASSES), loss=loss or LossSpec())


def _run(data: ImageData, config: FitConfig, seed: int = 0, loss: LossSpec | None = None,
         **loader_kwargs):
    """Seed, build a fresh model and loaders, and fit: ``(final, swa or None, history)``."""
    seed_everything(seed)
    model = make_classifier(ARCH, len(CLASSES))
    train, val = _loaders(data, seed, **loader_kwargs)
    result = fit(model, train, val, replace(config, seed=seed), _task(loss), CPU)
    return result.weights["final"], result.weights.get("swa"), result.history


SWA_CONFIG = _config(epochs=5, lr=0.02, warmup_epochs=2, swa_start=swa_start_epoch(5, 0.6),
                     swa_lr=0.01, swa_anneal_epochs=1)
SWA_LOSS = LossSpec(label_smoothing=0.1)


@pytest.fixture(scope="module")
def swa_runs(images):
    """Two runs with seed 0, one with seed 1, and seed 0 stopped after 4 epochs."""
    return {"first": _run(images, SWA_CONFIG, seed=0, loss=SWA_LOSS),
            "second": _run(images, SWA_CONFIG, seed=0, loss=SWA_LOSS),
            "other_seed": _run(images, SWA_CONFIG, seed=1, loss=SWA_LOSS),
            "four_epochs": _run(images, replace(SWA_CONFIG, epochs=4), seed=0,
                                loss=SWA_LOSS)}


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


# --- fit -------------------------------------------------------------------------------


def test_fit_history_has_one_row_per_epoch(swa_runs):
    _, _, history = swa_runs["first"]
    assert SWA_CONFIG.swa.start == 3
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history["phase"].tolist() == ["train", "train", "train", "swa", "swa"]
    for column in ("train_loss", "train_top1", "lr", "val_loss", "val_top1",
                   "val_balanced_accuracy", *TIMING_COLUMNS):
        assert column in history.columns, column
        assert history[column].map(math.isfinite).all(), column
    assert history["train_top1"].between(0, 1).all()
    assert (history["images_per_s"] > 0).all()


def test_fit_learns_separable_colours(swa_runs, images):
    model, swa_model, history = swa_runs["first"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_top1"].iloc[-1] >= 0.9
    _, val = _loaders(images, seed=0)
    assert _evaluate(swa_model, val)["top1"] >= 0.9
    assert _evaluate(model, val)["top1"] == pytest.approx(history["val_top1"].iloc[-1])


def test_fit_returns_a_separate_swa_model(swa_runs):
    model, swa_model, _ = swa_runs["first"]
    assert swa_model is not None
    assert swa_model is not model
    assert not isinstance(swa_model, torch.optim.swa_utils.AveragedModel)  # the inner module
    assert type(swa_model) is type(model)
    final, averaged = _params(model), _params(swa_model)
    assert set(final) == set(averaged)
    assert any(not torch.equal(final[n], averaged[n]) for n in final)


def test_swa_model_averages_the_swa_epochs(swa_runs):
    # The same seed stopped after 4 epochs gives the weights after epoch 4 of the 5-epoch
    # run, so the SWA weights are the mean of the weights after epochs 4 and 5.
    model_5, swa_5, _ = swa_runs["first"]
    model_4, swa_4, history_4 = swa_runs["four_epochs"]
    pd.testing.assert_frame_equal(
        history_4.drop(columns=TIMING_COLUMNS),
        swa_runs["first"][2].drop(columns=TIMING_COLUMNS).iloc[:4])
    after_4, after_5, averaged = _params(model_4), _params(model_5), _params(swa_5)
    for name in averaged:
        torch.testing.assert_close(averaged[name], (after_4[name] + after_5[name]) / 2,
                                   rtol=1e-5, atol=1e-6, msg=name)
    # One SWA epoch: the average is that epoch's weights.
    for name, tensor in _params(swa_4).items():
        torch.testing.assert_close(tensor, after_4[name], rtol=0, atol=0, msg=name)


def test_swa_model_batchnorm_statistics_are_recomputed(swa_runs):
    model, swa_model, _ = swa_runs["first"]
    final = dict(model.named_buffers())
    swa = dict(swa_model.named_buffers())
    means = [n for n in final if n.endswith("running_mean")]
    assert means
    assert all(not torch.equal(final[n], swa[n]) for n in means)


def test_same_seed_same_run(swa_runs):
    model_a, swa_a, history_a = swa_runs["first"]
    model_b, swa_b, history_b = swa_runs["second"]
    pd.testing.assert_frame_equal(history_a.drop(columns=TIMING_COLUMNS),
                                  history_b.drop(columns=TIMING_COLUMNS), check_exact=True)
    _assert_same_state(model_a, model_b)
    _assert_same_state(swa_a, swa_b)


def test_other_seed_other_run(swa_runs):
    history_a = swa_runs["first"][2]
    history_c = swa_runs["other_seed"][2]
    assert not np.array_equal(history_a["train_loss"], history_c["train_loss"])
    # The schedule does not depend on the seed.
    np.testing.assert_array_equal(history_a["lr"], history_c["lr"])


def _warmup_cosine(step: int, lr: float, warmup_steps: int, total_steps: int,
                   min_lr: float) -> float:
    """timm's cosine schedule (per update) after a linear warmup from lr / 100 to lr.

    As in timm with ``warmup_prefix=True``: the cosine starts when the warmup ends and
    decays over the remaining ``total_steps - warmup_steps`` updates.
    """
    if step < warmup_steps:
        warmup_lr = lr / 100
        return warmup_lr + step * (lr - warmup_lr) / warmup_steps
    t, span = step - warmup_steps, total_steps - warmup_steps
    if t >= span:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / span))


def test_learning_rate_warms_up_then_follows_a_cosine(images):
    config = _config(epochs=6, lr=0.04, warmup_epochs=2)
    used: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: used.append(optimizer.param_groups[0]["lr"]))
    try:
        _, swa_model, history = _run(images, config, with_val=False)
    finally:
        handle.remove()
    assert swa_model is None
    assert set(history["phase"]) == {"train"}
    steps_per_epoch = (len(images.train)) // BATCH  # the last, incomplete batch is dropped
    assert len(used) == config.epochs * steps_per_epoch
    expected = [_warmup_cosine(step, 0.04, 2 * steps_per_epoch, 6 * steps_per_epoch,
                               0.04 / 1000) for step in range(len(used))]
    np.testing.assert_allclose(used, expected, rtol=1e-9)
    warmup = used[:2 * steps_per_epoch]
    assert warmup == sorted(warmup)  # rises through the warmup ...
    assert warmup[0] == pytest.approx(0.04 / 100)
    decay = used[2 * steps_per_epoch:]
    assert decay == sorted(decay, reverse=True)  # ... then only falls
    assert max(used) == pytest.approx(0.04)  # the peak rate is reached after the warmup
    # The history's lr (after each epoch's last update) rises, then falls.
    lrs = history["lr"].tolist()
    assert lrs[0] < lrs[1]
    assert lrs[1:] == sorted(lrs[1:], reverse=True)
    assert lrs[-1] == pytest.approx(0.04 / 1000)


def test_swa_epochs_end_at_the_swa_rate(swa_runs):
    history = swa_runs["first"][2]
    assert history.loc[history["phase"] == "swa", "lr"].tolist() == pytest.approx([0.01, 0.01])
    # Cosine decay over the 3 pre-SWA epochs reaches the SWA rate at the end of epoch 3.
    assert history["lr"].iloc[2] == pytest.approx(0.01)
    assert history["lr"].iloc[1] == pytest.approx(0.01 + 0.5 * 0.04 * (1 + math.cos(
        math.pi * 2 / 3)))


def test_swa_from_the_first_epoch_anneals_to_the_swa_rate(images):
    # swa_start 0 (a 1-epoch run, or a small start_fraction): no cosine phase at all; the
    # first epoch runs at lr, SWALR then anneals to swa_lr over one epoch.
    config = _config(epochs=2, lr=0.02, warmup_epochs=1, swa_start=0, swa_lr=0.005)
    model, swa_model, history = _run(images, config, with_val=False)
    assert history["phase"].tolist() == ["swa", "swa"]
    assert history["lr"].tolist() == pytest.approx([0.02, 0.005])
    assert swa_model is not None and swa_model is not model


class _NanAfter:
    """A transform that returns NaN images from its ``n + 1``-th call on."""

    def __init__(self, transform, n: int) -> None:
        self.transform, self.n, self.calls = transform, n, 0

    def __call__(self, image):
        self.calls += 1
        out = self.transform(image)
        return out if self.calls <= self.n else torch.full_like(out, float("nan"))


def test_nan_loss_names_the_epoch_and_training_lr(images):
    train_tf, _ = _transforms()
    images_per_epoch = (len(images.train) // BATCH) * BATCH
    poisoned = _NanAfter(train_tf, n=images_per_epoch)  # epoch 1 is clean, epoch 2 is not
    with pytest.raises(FloatingPointError, match=r"at epoch 2, step 1") as info:
        _run(images, _config(epochs=3, lr=0.01), train_transform=poisoned, with_val=False)
    assert "training.lr" in str(info.value)
    assert "nan" in str(info.value)


def test_diverging_learning_rate_raises(images):
    with pytest.raises(FloatingPointError, match=r"at epoch \d+, step \d+") as info:
        _run(images, _config(epochs=3, lr=1e30), with_val=False)
    assert "training.lr" in str(info.value)


@pytest.mark.parametrize(("epochs", "fraction", "expected"), [
    (20, 0.75, 15),
    (3, 0.5, 2),   # the test configuration
    (10, 0.42, 4),
    (4, 0.99, 3),  # at least one SWA epoch
    (1, 0.75, 0),
    (10, 0.01, 0),
])
def test_swa_start_epoch(epochs, fraction, expected):
    start = swa_start_epoch(epochs, fraction)
    assert start == expected
    assert 0 <= start <= epochs - 1


def test_warmup_longer_than_the_schedule_is_shortened(images, caplog):
    """3 epochs, SWA from epoch 2: 5 warmup epochs become 1, and the log says so."""
    config = _config(epochs=3, lr=0.02, warmup_epochs=5, swa_start=2, swa_lr=0.01)
    used: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: used.append(optimizer.param_groups[0]["lr"]))
    try:
        with caplog.at_level("WARNING", logger="visrec.core.train.recipe"):
            _, swa_model, history = _run(images, config, with_val=False)
    finally:
        handle.remove()
    assert "training.schedule.warmup_epochs = 5 shortened to 1" in caplog.text
    steps = len(used) // 3
    assert used[0] == pytest.approx(0.02 / 100)  # warmup over the first epoch ...
    assert used[steps] == pytest.approx(0.02)  # ... reaches the peak at the second
    assert swa_model is not None
    assert history["phase"].tolist() == ["train", "train", "swa"]


def test_fit_switches_class_weights_on_at_the_deferred_epoch(images, monkeypatch):
    built: list[tuple[int, list[float] | None]] = []

    def recording(spec, epoch):
        criterion = make_criterion(spec, epoch)
        weight = criterion.weight
        built.append((epoch, None if weight is None else weight.tolist()))
        return criterion

    monkeypatch.setattr("visrec.core.train.tasks.classification.make_criterion", recording)
    loss = LossSpec(class_weights=(1.0, 2.0, 3.0), weights_from_epoch=2)
    _run(images, _config(epochs=3, lr=0.01), loss=loss, with_val=False)
    assert built == [(0, None), (1, None), (2, [1.0, 2.0, 3.0])]


def test_classifier_retraining_changes_only_the_head(images):
    model, _, _ = _run(images, _config(epochs=2, lr=0.02), with_val=False)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    old_head = model.get_classifier()
    train, val = _loaders(images, seed=0)
    history = retrain_classifier(model, train, val, _config(epochs=2, lr=0.05), _task(),
                                 CPU)
    assert model.get_classifier() is not old_head  # re-initialised, as in Kang et al. 2020
    head = {name for name, p in model.named_parameters()
            if any(p is q for q in model.get_classifier().parameters())}
    assert head == {"fc.weight", "fc.bias"}
    after = model.state_dict()
    for name, value in before.items():
        if name in head:
            assert not torch.equal(value, after[name]), name
        else:  # backbone weights and BatchNorm running statistics stay as they were
            assert torch.equal(value, after[name]), name
    assert all(p.requires_grad for p in model.parameters())
    assert history["phase"].tolist() == ["crt", "crt"]
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_balanced_accuracy"].between(0, 1).all()
