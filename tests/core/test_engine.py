"""Tests of the training engine (visrec.core.engine) with its data and model helpers.

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
from PIL import Image
from safetensors.torch import save_file
from sklearn.metrics import balanced_accuracy_score
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset, WeightedRandomSampler

from visrec.core.data import ManifestImageDataset, auto_num_workers, make_loader
from visrec.core.engine import (
    FitConfig,
    SwaSpec,
    evaluate,
    fit,
    predict,
    retrain_classifier,
    seed_everything,
    swa_start_epoch,
)
from visrec.core.images import load_image
from visrec.core.losses import LossSpec, make_criterion
from visrec.core.models import (
    WeightsError,
    create_classifier,
    model_from_artifact,
    resolve_input_config,
    select_device,
    weights_artifact,
)
from visrec.core.recipe import OptimizerSpec, ScheduleSpec
from visrec.core.samplers import ResamplingSampler
from visrec.core.transforms import build_eval_transform, build_train_transform, make_spec

CPU = torch.device("cpu")
ARCH = "test_resnet"
CLASSES = ["red", "green", "blue"]
IMAGE_SIZE = 32
BATCH = 8
TRAIN_PER_CLASS, VAL_PER_CLASS = 12, 4
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
    rng = np.random.default_rng(0)
    rows = []
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for class_index, label in enumerate(CLASSES):
            for i in range(per_class):
                pixels = rng.integers(0, 40, (IMAGE_SIZE, IMAGE_SIZE, 3))
                pixels[..., class_index] += rng.integers(150, 215)
                path = f"{split}/{label}/{i:02d}.png"
                (root / split / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(root / path)
                rows.append((path, class_index, split))
    table = pd.DataFrame(rows, columns=["path", "class_index", "split"])
    return ImageData(root, table[table["split"] == "train"].reset_index(drop=True),
                     table[table["split"] == "val"].reset_index(drop=True))


def _transforms():
    # test_resnet normalises with mean = std = 0.5 (its timm data config).
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    spec = make_spec("flip_crop", hflip=True, scale=(0.5, 1.0))
    return (build_train_transform(spec, IMAGE_SIZE, mean, std, "bilinear"),
            build_eval_transform(IMAGE_SIZE, mean, std, "bilinear"))


def _loaders(data: ImageData, seed: int, train_transform=None, with_val: bool = True):
    train_tf, eval_tf = _transforms()
    train_set = ManifestImageDataset(data.root, data.train["path"], data.train["class_index"],
                                     train_transform or train_tf)
    train = make_loader(train_set, BATCH, CPU, seed, train=True, num_workers=0)
    if not with_val:
        return train, None
    val_set = ManifestImageDataset(data.root, data.val["path"], data.val["class_index"], eval_tf)
    return train, make_loader(val_set, 64, CPU, seed, train=False, num_workers=0)


def _config(epochs: int, lr: float, warmup_epochs: int = 0, loss: LossSpec | None = None,
            swa_start: int | None = None, swa_lr: float = 0.0, swa_anneal_epochs: int = 1,
            seed: int = 0, **changes) -> FitConfig:
    """SGD with warmup and cosine decay (to lr / 1000, or into SWA at ``swa_lr``)."""
    return FitConfig(
        epochs=epochs, optimizer=OptimizerSpec(lr=lr),
        schedule=ScheduleSpec(warmup_epochs=warmup_epochs, min_lr=lr / 1000),
        loss=loss or LossSpec(), seed=seed,
        swa=None if swa_start is None else SwaSpec(start=swa_start, lr=swa_lr,
                                                   anneal_epochs=swa_anneal_epochs),
        **changes)


def _run(data: ImageData, config: FitConfig, seed: int = 0, **loader_kwargs):
    """Seed, build a fresh model and loaders, and fit: ``(final, swa or None, history)``."""
    seed_everything(seed)
    model = create_classifier(ARCH, len(CLASSES))
    train, val = _loaders(data, seed, **loader_kwargs)
    result = fit(model, train, val, replace(config, seed=seed), CPU)
    return result.weights["final"], result.weights.get("swa"), result.history


SWA_CONFIG = _config(epochs=5, lr=0.02, warmup_epochs=2, loss=LossSpec(label_smoothing=0.1),
                       swa_start=swa_start_epoch(5, 0.6), swa_lr=0.01, swa_anneal_epochs=1)


@pytest.fixture(scope="module")
def swa_runs(images):
    """Two runs with seed 0, one with seed 1, and seed 0 stopped after 4 epochs."""
    return {"first": _run(images, SWA_CONFIG, seed=0),
            "second": _run(images, SWA_CONFIG, seed=0),
            "other_seed": _run(images, SWA_CONFIG, seed=1),
            "four_epochs": _run(images, replace(SWA_CONFIG, epochs=4),
                                seed=0)}


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
    assert evaluate(swa_model, val, CPU)["top1"] >= 0.9
    assert evaluate(model, val, CPU)["top1"] == pytest.approx(history["val_top1"].iloc[-1])


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


# --- evaluate / predict ------------------------------------------------------------------


def test_evaluate_numbers():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1, 0, 1, 1])
    loader = torch.utils.data.DataLoader(TensorDataset(logits, labels), batch_size=2)
    got_logits, got_labels = predict(nn.Identity(), loader, CPU)
    assert got_logits.dtype == np.float32
    np.testing.assert_array_equal(got_logits, logits.numpy())
    np.testing.assert_array_equal(got_labels, labels.numpy())
    metrics = evaluate(nn.Identity(), loader, CPU)
    assert metrics["top1"] == pytest.approx(3 / 5)
    # Class 0: 2/2 right, class 1: 1/3 right.
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, logits.argmax(1)))
    expected_loss = float(nn.functional.cross_entropy(logits, labels))
    assert metrics["loss"] == pytest.approx(expected_loss)


# --- data --------------------------------------------------------------------------------


def test_manifest_dataset_reads_files(images):
    _, eval_tf = _transforms()
    dataset = ManifestImageDataset(images.root, images.val["path"], images.val["class_index"],
                                   eval_tf)
    assert len(dataset) == 3 * VAL_PER_CLASS
    tensor, label = dataset[VAL_PER_CLASS]  # first green image
    assert label == 1
    assert isinstance(label, int)
    assert tuple(tensor.shape) == (3, IMAGE_SIZE, IMAGE_SIZE)
    # Normalised to [-1, 1]; green is the brightest channel.
    assert tensor.mean(dim=(1, 2)).argmax().item() == 1
    assert -1.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_load_image_converts_to_rgb(tmp_path, mode):
    path = tmp_path / "image.png"
    Image.new("RGB", (5, 4), (10, 200, 30)).convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (5, 4)


def _index_dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n))


def _order(loader) -> list[int]:
    return [int(i) for (batch,) in loader for i in batch]


def test_train_loader_is_seeded_and_drops_the_last_batch():
    dataset = _index_dataset(20)
    first = make_loader(dataset, 8, CPU, seed=3, train=True, num_workers=0)
    assert len(first) == 2  # 20 // 8, the incomplete batch dropped
    order = _order(first)
    assert len(order) == 16
    assert len(set(order)) == 16  # without replacement
    assert order == _order(make_loader(dataset, 8, CPU, seed=3, train=True, num_workers=0))
    assert order != _order(make_loader(dataset, 8, CPU, seed=4, train=True, num_workers=0))
    assert _order(first) != order  # a new shuffle each epoch


def test_small_train_set_keeps_its_only_batch():
    loader = make_loader(_index_dataset(5), 8, CPU, seed=0, train=True, num_workers=0)
    assert sorted(_order(loader)) == [0, 1, 2, 3, 4]


def test_eval_loader_keeps_order_and_every_row():
    loader = make_loader(_index_dataset(20), 8, CPU, seed=0, train=False, num_workers=0)
    assert _order(loader) == list(range(20))


def test_weighted_loader_samples_with_replacement():
    weights = np.array([1.0] * 10 + [0.0] * 10)  # rows 10..19 are never drawn

    def sampler():
        return WeightedRandomSampler(torch.as_tensor(weights), num_samples=20, replacement=True,
                                     generator=torch.Generator().manual_seed(0))

    loader = make_loader(_index_dataset(20), 5, CPU, seed=0, train=True, sampler=sampler(),
                         num_workers=0)
    assert isinstance(loader.sampler, WeightedRandomSampler)
    order = _order(loader)
    assert len(order) == 20
    assert max(order) < 10
    assert len(set(order)) < len(order)  # with replacement: 20 draws of 10 rows repeat
    assert order == _order(make_loader(_index_dataset(20), 5, CPU, seed=0, train=True,
                                       sampler=sampler(), num_workers=0))
    # Evaluation ignores the sampler.
    assert _order(make_loader(_index_dataset(20), 5, CPU, seed=0, train=False,
                              sampler=sampler(), num_workers=0)) == list(range(20))


def test_loader_epoch_length_follows_the_sampler():
    """An undersampled epoch of 6 rows drops no batch of 8; an oversampled one of 40 does."""
    small = ResamplingSampler(np.array([0] * 12 + [1] * 3), np.array([3, 3]), "undersample", 0)
    loader = make_loader(_index_dataset(15), 8, CPU, seed=0, train=True, sampler=small,
                         num_workers=0)
    assert len(_order(loader)) == 6
    large = ResamplingSampler(np.array([0] * 12 + [1] * 3), np.array([20, 20]), "oversample", 0)
    loader = make_loader(_index_dataset(15), 8, CPU, seed=0, train=True, sampler=large,
                         num_workers=0)
    assert len(_order(loader)) == 40


@pytest.mark.parametrize(("cores", "device", "expected"), [
    (2, "cpu", 0), (1, "cpu", 0), (8, "cpu", 4), (16, "cpu", 4), (3, "cpu", 1),
    (16, "cuda", 8), (4, "cuda", 4),
])
def test_auto_num_workers(monkeypatch, cores, device, expected):
    monkeypatch.setattr("visrec.core.data.os.cpu_count", lambda: cores)
    assert auto_num_workers(torch.device(device)) == expected


# --- models ------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without GPU")
def test_select_device_cuda_without_gpu():
    with pytest.raises(ValueError, match=r"device = 'cuda'.*'auto' or 'cpu'"):
        select_device("cuda")


def test_select_device_cpu_and_auto():
    assert select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device().type == expected


def test_resolve_input_config():
    model = create_classifier(ARCH, 3)
    assert resolve_input_config(model, 32) == {"image_size": 32, "interpolation": "bilinear",
                                               "mean": [0.5, 0.5, 0.5],
                                               "std": [0.5, 0.5, 0.5], "in_chans": 3}
    gray = resolve_input_config(model, 32, in_chans=1)  # one channel: the RGB values averaged
    assert (gray["mean"], gray["std"], gray["in_chans"]) == ([0.5], [0.5], 1)
    assert resolve_input_config(model, None)["image_size"] == 160  # test_resnet's own


def test_create_classifier_head_size():
    model = create_classifier(ARCH, 7)
    assert model.num_classes == 7
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_weights_artifact_round_trip():
    torch.manual_seed(0)
    model = create_classifier(ARCH, 3).eval()
    config = {"architecture": ARCH, "classes": CLASSES, "image_size": 32}
    artifact = weights_artifact(model, config)
    assert artifact["config"] == config
    assert artifact["config"] is not config
    assert set(artifact["weights"]) == set(model.state_dict())
    for name, tensor in artifact["weights"].items():
        assert tensor.device.type == "cpu" and tensor.is_contiguous(), name
    rebuilt = model_from_artifact(artifact)
    assert not rebuilt.training
    batch = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(batch)
        torch.testing.assert_close(rebuilt(batch), expected, rtol=0, atol=0)
        # The artifact holds copies: changing the model later does not change it.
        model.fc.weight.add_(1.0)
    assert not torch.equal(artifact["weights"]["fc.weight"], model.fc.weight)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A safetensors file of a (randomly initialised) 3-class test_resnet."""
    torch.manual_seed(123)
    state = {k: v.contiguous() for k, v in create_classifier(ARCH, 3).state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    save_file(state, path)
    return path, state


def test_pretrained_path_loads_the_backbone(weights_file):
    path, state = weights_file
    torch.manual_seed(0)
    model = create_classifier(ARCH, 5, pretrained_path=str(path))
    loaded = model.state_dict()
    for name in ("conv1.0.weight", "layer4.0.conv2.weight", "bn1.running_var"):
        assert torch.equal(loaded[name], state[name]), name
    # A different class count: a new, randomly initialised classifier.
    assert loaded["fc.weight"].shape == (5, state["fc.weight"].shape[1])
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_pretrained_path_keeps_the_classifier_when_classes_match(weights_file):
    path, state = weights_file
    model = create_classifier(ARCH, 3, pretrained_path=str(path))
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])
    assert torch.equal(model.state_dict()["fc.bias"], state["fc.bias"])


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*nope\.safetensors.*"
                                           r"no such file"):
        create_classifier(ARCH, 3, pretrained_path=str(missing))


@pytest.mark.parametrize("architecture", [
    "resnet18",  # same tensor names, other shapes
    "test_efficientnet",
    "test_vit",  # no tensor name in common
])
def test_weights_of_another_architecture(weights_file, architecture):
    path, _ = weights_file
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = ") as info:
        create_classifier(architecture, 3, pretrained_path=str(path))
    assert f"training.model = '{architecture}'" in str(info.value)


def test_weights_error_says_what_does_not_fit(weights_file):
    path, _ = weights_file
    with pytest.raises(WeightsError) as info:
        create_classifier("resnet18", 3, pretrained_path=str(path))
    assert "wrong shape ['" in str(info.value)  # names the tensors that do not fit


def test_weights_file_with_unrelated_tensors(tmp_path):
    path = tmp_path / "unrelated.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*unexpected "
                                           r"\['encoder\.weight'\]"):
        create_classifier(ARCH, 3, pretrained_path=str(path))


def test_corrupt_safetensors_file(tmp_path, weights_file):
    path, _ = weights_file
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = "):
        create_classifier(ARCH, 3, pretrained_path=str(broken))


@pytest.mark.parametrize("wrapped", [False, True])
def test_pytorch_checkpoint_loads_weights_only(tmp_path, weights_file, wrapped):
    """A torch checkpoint (plain state dict, or timm's {"state_dict": ...}) loads too."""
    _, state = weights_file
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3} if wrapped else state, path)
    model = create_classifier(ARCH, 3, pretrained_path=str(path))
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


class _NotWeights:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path, weights_file):
    _, state = weights_file
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "extra": _NotWeights()}, path)
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*not a readable"):
        create_classifier(ARCH, 3, pretrained_path=str(path))


def test_warmup_longer_than_the_schedule_is_shortened(images, caplog):
    """3 epochs, SWA from epoch 2: 5 warmup epochs become 1, and the log says so."""
    config = _config(epochs=3, lr=0.02, warmup_epochs=5, swa_start=2, swa_lr=0.01)
    used: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: used.append(optimizer.param_groups[0]["lr"]))
    try:
        with caplog.at_level("WARNING", logger="visrec.core.engine"):
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

    monkeypatch.setattr("visrec.core.engine.make_criterion", recording)
    config = _config(epochs=3, lr=0.01, loss=LossSpec(class_weights=(1.0, 2.0, 3.0),
                                                         weights_from_epoch=2))
    _run(images, config, with_val=False)
    assert built == [(0, None), (1, None), (2, [1.0, 2.0, 3.0])]


def test_classifier_retraining_changes_only_the_head(images):
    model, _, _ = _run(images, _config(epochs=2, lr=0.02), with_val=False)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    old_head = model.get_classifier()
    train, val = _loaders(images, seed=0)
    history = retrain_classifier(model, train, val, _config(epochs=2, lr=0.05), CPU)
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
