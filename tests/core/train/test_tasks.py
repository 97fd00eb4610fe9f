"""Tests of tasks (visrec.core.train.tasks): what a run learns, apart from the loop.

Two claims of the task-based loop are checked end to end:

* a new classification loss is one class and one ``register_loss`` call: the parameters
  accept it by name (and check its options), and ``fit`` trains with it;
* ``fit`` knows no task: a regression task defined here trains through the same loop,
  with SWA, EMA, checkpoints and an exact resume.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import visrec.core.train
from tests.core.conftest import colour_tensors
from tests.params import base_params
from visrec.core.augment import make_spec
from visrec.core.balance import make_balance_plan
from visrec.core.data import make_loader
from visrec.core.evaluate import predict_logits, validation_metrics
from visrec.core.models import make_classifier
from visrec.core.train import (
    LOSSES,
    CheckpointStore,
    ClassificationTask,
    EmaSpec,
    FitConfig,
    LossSpec,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
    Task,
    TaskStep,
    fit,
    register_loss,
    train_one_epoch,
)
from visrec.core.train import epoch as epoch_module
from visrec.core.train import loop as loop_module
from visrec.params import ClassBalanceParams, ParameterError, TrainingParams

CPU = torch.device("cpu")
CLASSES = 3
BATCH = 8
TRAIN_ROWS = 24  # 3 updates per epoch
TIMING_COLUMNS = ["seconds", "images_per_s", "data_wait"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the classification task's validation ---------------------------------------------------


def test_classification_validation_numbers():
    """Validation of logits that the model passes through: loss, top-1, balanced accuracy."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1, 0, 1, 1])
    loader = torch.utils.data.DataLoader(TensorDataset(logits, labels), batch_size=2)
    got_logits, got_labels = predict_logits(nn.Identity(), loader, CPU)
    assert got_logits.dtype == np.float32
    np.testing.assert_array_equal(got_logits, logits.numpy())
    np.testing.assert_array_equal(got_labels, labels.numpy())
    metrics = validation_metrics(got_logits, got_labels)
    assert metrics["top1"] == pytest.approx(3 / 5)
    # Class 0: 2/2 right, class 1: 1/3 right.
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, logits.argmax(1)))
    expected_loss = float(nn.functional.cross_entropy(logits, labels))
    assert metrics["loss"] == pytest.approx(expected_loss)
    # The task validates exactly so, and compares weights by balanced accuracy.
    task = ClassificationTask(num_classes=2)
    assert task.validate(nn.Identity(), loader, CPU) == metrics
    assert task.score == "balanced_accuracy" and task.better(0.6, 0.5)


# --- a new loss: PolyLoss-1 -----------------------------------------------------------------


class Poly1Loss(nn.Module):
    """Poly-1 loss (Leng et al. 2022): ``CE + epsilon * (1 - p_t)``.

    ``p_t`` is the probability of the target (with label smoothing or soft targets: the
    targets' mixture of the probabilities, ``sum_k q_k p_k``). Rows are weighted as
    ``nn.CrossEntropyLoss`` weighs them: class-index targets by ``weight[y]``, normalised
    by the total weight; soft targets by ``q @ weight``, averaged over the rows.

    Args:
        weight: Loss weight per class, or None.
        label_smoothing: Share of the target spread evenly over the classes.
        epsilon: Weight of the first polynomial term (the paper's range: >= -1).
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 epsilon: float = 1.0) -> None:
        super().__init__()
        if epsilon < -1:
            raise ValueError(f"epsilon = {epsilon}: Poly-1 needs epsilon >= -1")
        self.epsilon = float(epsilon)
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        cross_entropy = F.cross_entropy(logits, target, weight=self.weight,
                                        label_smoothing=self.label_smoothing)
        classes = logits.shape[1]
        if target.ndim == 2:
            soft = target.float()
        else:
            soft = (F.one_hot(target, classes).float() * (1 - self.label_smoothing)
                    + self.label_smoothing / classes)
        p_t = (soft * logits.softmax(dim=1)).sum(dim=1)
        if self.weight is None:
            poly = (1 - p_t).mean()
        elif target.ndim == 2:
            poly = ((soft @ self.weight) * (1 - p_t)).mean()
        else:
            row_weight = self.weight[target]
            poly = (row_weight * (1 - p_t)).sum() / row_weight.sum()
        return cross_entropy + self.epsilon * poly


@pytest.fixture
def poly1():
    """``poly1`` in the loss registry for one test, through the public ``register_loss``."""
    assert "poly1" not in LOSSES
    register_loss("poly1", Poly1Loss)
    yield
    del visrec.core.train.losses.LOSSES["poly1"]


def _p_t(row: list[float], target: list[float]) -> float:
    exps = [math.exp(v) for v in row]
    return sum(q * e / sum(exps) for q, e in zip(target, exps, strict=True))


def _poly1_row(row: list[float], target: list[float], epsilon: float) -> float:
    """``-sum_k q_k log p_k + epsilon * (1 - sum_k q_k p_k)`` in plain Python."""
    exps = [math.exp(v) for v in row]
    p = [e / sum(exps) for e in exps]
    return (-sum(q * math.log(pk) for q, pk in zip(target, p, strict=True))
            + epsilon * (1 - _p_t(row, target)))


LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, -2.0, 2.5]]
TARGET = [0, 2, 1, 2]
WEIGHTS = (1.0, 3.0, 0.5)


@pytest.mark.parametrize("epsilon", [0.0, 1.0, 2.5])
def test_poly1_loss_matches_the_formula(epsilon):
    logits, target = torch.tensor(LOGITS), torch.tensor(TARGET)
    one_hot = [[float(k == y) for k in range(3)] for y in TARGET]
    rows = [_poly1_row(r, q, epsilon) for r, q in zip(LOGITS, one_hot, strict=True)]
    got = Poly1Loss(epsilon=epsilon)(logits, target).item()
    assert got == pytest.approx(sum(rows) / 4, rel=1e-6)
    # Class weights: the weighted mean of the rows.
    w_y = [WEIGHTS[y] for y in TARGET]
    weighted = Poly1Loss(torch.tensor(WEIGHTS), epsilon=epsilon)(logits, target).item()
    assert weighted == pytest.approx(
        sum(w * r for w, r in zip(w_y, rows, strict=True)) / sum(w_y), rel=1e-6)
    # Label smoothing: smoothed targets in both terms.
    smooth = [[0.7 * q + 0.1 for q in row] for row in one_hot]
    smoothed = Poly1Loss(label_smoothing=0.3, epsilon=epsilon)(logits, target).item()
    assert smoothed == pytest.approx(sum(_poly1_row(r, q, epsilon) for r, q in zip(
        LOGITS, smooth, strict=True)) / 4, rel=1e-6)
    # Soft targets (MixUp): the same formula, and one-hot rows equal class indices.
    soft = [[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.2, 0.2, 0.6]]
    got_soft = Poly1Loss(epsilon=epsilon)(logits, torch.tensor(soft)).item()
    assert got_soft == pytest.approx(sum(_poly1_row(r, q, epsilon) for r, q in zip(
        LOGITS, soft, strict=True)) / 4, rel=1e-6)
    assert Poly1Loss(epsilon=epsilon)(logits, torch.tensor(one_hot)).item() == pytest.approx(
        got, rel=1e-6)
    # epsilon = 0 is cross-entropy.
    if epsilon == 0:
        assert got == F.cross_entropy(logits, target).item()


def test_registered_loss_is_a_parameter_choice(poly1):
    params = base_params(TrainingParams, loss={"name": "poly1", "options": {"epsilon": 1.0}},
                         label_smoothing=0.0)
    assert (params.loss.name, params.loss.options) == ("poly1", {"epsilon": 1.0})
    # The run's task gets it: the balance plan asks for no loss of its own.
    counts = pd.DataFrame({"label": ["red", "green", "blue"], "train": [8, 8, 8],
                           "val": [3, 3, 3], "test": [0, 0, 0]})
    plan = make_balance_plan(counts, base_params(ClassBalanceParams,
                                                 strategy="none").settings())
    task = params.classification_task(plan, make_spec("flip_crop"), CLASSES, 3)
    assert task.loss == LossSpec(name="poly1", options={"epsilon": 1.0})
    # A misspelt option fails at validation, naming the key and what the loss accepts.
    with pytest.raises(ParameterError, match=r"training\.loss\.options") as info:
        base_params(TrainingParams, loss={"name": "poly1", "options": {"epsilnon": 1}})
    assert "epsilnon" in str(info.value) and "'epsilon'" in str(info.value)
    with pytest.raises(ParameterError, match=r"training\.loss\.options .*epsilon = -2"):
        base_params(TrainingParams, loss={"name": "poly1", "options": {"epsilon": -2}})
    # The name is taken now; another loss cannot replace it by accident.
    with pytest.raises(ValueError, match=r"loss name 'poly1' is taken"):
        register_loss("poly1", nn.CrossEntropyLoss)


def test_unregistered_loss_is_refused():
    with pytest.raises(ParameterError, match=r"training\.loss\.name = 'poly1'"):
        base_params(TrainingParams, loss={"name": "poly1", "options": {"epsilon": 1.0}})


def _loader(rows: int = TRAIN_ROWS, seed: int = 0, train: bool = True) -> DataLoader:
    return make_loader(colour_tensors(rows, seed), BATCH, CPU, seed=0, train=train,
                       num_workers=0)


def _config(epochs: int, **changes) -> FitConfig:
    return FitConfig(epochs=epochs, optimizer=OptimizerSpec(lr=0.05, weight_decay=1e-4),
                     schedule=ScheduleSpec("cosine", min_lr=0.05 / 100), **changes)


def _fit_classifier(loss: LossSpec, epochs: int = 4) -> pd.DataFrame:
    torch.manual_seed(0)
    model = make_classifier("test_resnet", CLASSES)
    task = ClassificationTask(num_classes=CLASSES, loss=loss)
    result = fit(model, _loader(), _loader(9, seed=1, train=False), _config(epochs), task, CPU)
    return result.history.drop(columns=TIMING_COLUMNS)


def test_fit_trains_with_a_registered_loss(poly1):
    cross_entropy = _fit_classifier(LossSpec())
    poly = _fit_classifier(LossSpec(name="poly1", options={"epsilon": 1.0}))
    assert poly["train_loss"].map(math.isfinite).all()
    assert poly["train_loss"].iloc[-1] < poly["train_loss"].iloc[0]  # it learns
    assert poly["val_loss"].iloc[-1] < poly["val_loss"].iloc[0]
    # From the same start, the extra term epsilon * (1 - p_t) > 0 makes the first epoch's
    # loss larger; the runs then part ways.
    assert poly["train_loss"].iloc[0] > cross_entropy["train_loss"].iloc[0] + 0.1
    assert not poly["val_loss"].equals(cross_entropy["val_loss"])
    # epsilon = 0 is cross-entropy, bit for bit: the same run.
    zero = _fit_classifier(LossSpec(name="poly1", options={"epsilon": 0.0}))
    pd.testing.assert_frame_equal(zero, cross_entropy, check_exact=True)


class Tiny(nn.Module):
    """Mean colour -> linear classifier: no BatchNorm or dropout, so train == eval."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(images.mean(dim=(2, 3)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_registered_loss_of_one_batch_is_the_formula(poly1, smoothing):
    """One batch: the epoch's loss is Poly-1 of the starting weights, by hand."""
    torch.manual_seed(0)
    model = Tiny()
    images, labels = colour_tensors(BATCH, seed=0).tensors
    with torch.no_grad():
        logits = model(images).tolist()
    targets = [[(1 - smoothing) * (k == y) + smoothing / CLASSES for k in range(CLASSES)]
               for y in labels.tolist()]
    expected = sum(_poly1_row(r, q, 2.0) for r, q in zip(logits, targets, strict=True)) / BATCH
    task = ClassificationTask(num_classes=CLASSES, loss=LossSpec(
        name="poly1", options={"epsilon": 2.0}, label_smoothing=smoothing))
    task.setup(model, CPU, channels_last=False)
    task.start_epoch(0, CPU)
    row = train_one_epoch(model, _loader(BATCH), task, torch.optim.SGD(model.parameters(),
                                                                       lr=0.1), CPU, 0)
    assert row["train_loss"] == pytest.approx(expected, rel=1e-5)


# --- a task the loop was not written for: regression ----------------------------------------


@dataclass
class MeanBrightness(Task):
    """Regress each image's mean pixel value (a one-output head) with the squared error."""

    score: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    def step(self, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor) -> TaskStep:
        predicted = model(images).float().squeeze(1)
        return TaskStep(F.mse_loss(predicted, targets), images.shape[0],
                        {"abs_error": (predicted - targets).abs().sum().detach()})

    def validate(self, model: nn.Module, loader: DataLoader,
                 device: torch.device) -> dict[str, float]:
        squared = _squared_errors(model, loader, device)
        return {"loss": float(squared.mean()), "mse": float(squared.mean()),
                "rmse": float(squared.mean().sqrt())}


def _squared_errors(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    errors = []
    with torch.no_grad():
        for images, targets in loader:
            predicted = model(images.to(device)).float().squeeze(1)
            errors.append((predicted - targets.to(device)) ** 2)
    return torch.cat(errors)


def _brightness(rows: int, seed: int) -> TensorDataset:
    images = colour_tensors(rows, seed).tensors[0]
    return TensorDataset(images, images.mean(dim=(1, 2, 3)))


REGRESSION = FitConfig(epochs=3, optimizer=OptimizerSpec(lr=0.02, weight_decay=1e-4),
                       schedule=ScheduleSpec("cosine", min_lr=0.0002),
                       swa=SwaSpec(start=1, lr=0.01), ema=EmaSpec(decay=0.9), seed=5)


class _Stop(Exception):
    """Raised from on_epoch to break a run after its checkpoint is written."""


def _regress(store: CheckpointStore | None, init: int = 0, on_epoch=None):
    torch.manual_seed(init)
    model = make_classifier("test_resnet", 1)  # a one-output head: the regression
    train = make_loader(_brightness(TRAIN_ROWS, 0), BATCH, CPU, seed=0, train=True,
                        num_workers=0)
    val = make_loader(_brightness(9, 1), BATCH, CPU, seed=0, train=False, num_workers=0)
    return fit(model, train, val, REGRESSION, MeanBrightness(), CPU, checkpoints=store,
               fingerprint="regression", on_epoch=on_epoch), val


def test_fit_trains_a_task_it_does_not_know(tmp_path):
    # The loop imports nothing of classification: no loss, no classification task, no
    # classification metrics.
    for name, value in [*vars(loop_module).items(), *vars(epoch_module).items()]:
        module = getattr(value, "__module__", "") or ""
        assert not module.startswith(("visrec.core.train.losses", "visrec.core.evaluate",
                                      "visrec.core.train.tasks.classification")), name

    whole, val = _regress(CheckpointStore(tmp_path / "whole"))
    history = whole.history
    assert history["phase"].tolist() == ["train", "swa", "swa"]
    for column in ("train_loss", "train_abs_error", "val_loss", "val_mse", "val_rmse",
                   "val_ema_loss", "val_ema_mse", "val_ema_rmse"):
        assert history[column].map(math.isfinite).all(), column
    assert "train_top1" not in history.columns and "val_top1" not in history.columns
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it learns
    # The history's validation is the task's, of the final weights and of the EMA weights.
    assert set(whole.weights) == {"final", "swa", "ema"}
    assert history["val_mse"].iloc[-1] == pytest.approx(
        float(_squared_errors(whole.weights["final"], val, CPU).mean()), rel=1e-6)
    assert history["val_ema_mse"].iloc[-1] == pytest.approx(
        float(_squared_errors(whole.weights["ema"], val, CPU).mean()), rel=1e-6)
    assert history["val_rmse"].iloc[-1] == pytest.approx(math.sqrt(history["val_mse"].iloc[-1]),
                                                         rel=1e-6)

    # Broken after 2 epochs, continued from the checkpoint by a new, differently
    # initialised model: exactly the unbroken run.
    store = CheckpointStore(tmp_path / "broken")

    def stop_after_two(rows: list[dict]) -> None:
        if len(rows) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        _regress(store, on_epoch=stop_after_two)
    state = store.load("regression")
    assert (state["epoch"], state["global_step"]) == (2, 2 * TRAIN_ROWS // BATCH)
    assert int(state["swa_model"]["n_averaged"]) == 1  # epoch 2 was averaged
    continued: list[int] = []
    resumed, _ = _regress(store, init=99, on_epoch=lambda rows: continued.append(len(rows)))
    assert continued == [3]
    pd.testing.assert_frame_equal(resumed.history.drop(columns=TIMING_COLUMNS),
                                  history.drop(columns=TIMING_COLUMNS), check_exact=True)
    for name, model in whole.weights.items():
        expected, got = model.state_dict(), resumed.weights[name].state_dict()
        assert list(got) == list(expected)
        for key in expected:
            assert torch.equal(got[key], expected[key]), (name, key)
    assert store.load("regression")["epoch"] == 3


def test_contributing_shows_this_loss_as_its_example():
    """CONTRIBUTING.md's recipe for a new loss shows exactly the class these tests register."""
    from tests.conftest import PROJECT_ROOT

    guide = (PROJECT_ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    source = inspect.getsource(Poly1Loss)
    indented = "".join("   " + line if line.strip() else line
                       for line in source.splitlines(keepends=True))
    assert indented in guide, "CONTRIBUTING.md's Poly1Loss differs from this module's"
    assert '"poly1": Poly1Loss,' in guide  # the one registry line
