"""Tests of visrec.core.models' weights: backbones loaded from local files (safetensors or
weights-only torch checkpoints, never unpickled beyond tensors) and weight sets (a model's
tensors with the config that rebuilds it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from visrec.core.augment import make_spec
from visrec.core.models import (
    BalanceSummary,
    WeightsError,
    WeightSetConfig,
    make_classifier,
    make_weight_set,
    model_from_weight_set,
    read_weight_set,
    write_weight_set,
)

ARCH = "test_resnet"
CLASSES = ["red", "green", "blue"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config() -> WeightSetConfig:
    return WeightSetConfig(
        architecture=ARCH, classes=tuple(CLASSES), image_size=32, interpolation="bilinear",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), in_chans=3, seed=0, git_commit=None,
        training={"epochs": 2}, augmentation=make_spec("flip_crop"),
        class_balance=BalanceSummary(strategy="none", components=(), reason="test"),
        weights="final", val_metrics=None)


def test_weight_set_round_trip(tmp_path):
    torch.manual_seed(0)
    model = make_classifier(ARCH, 3).eval()
    config = _config()
    weight_set = make_weight_set(model, config)
    assert weight_set.config == config
    with pytest.raises(ValidationError):  # a frozen record: nobody changes it afterwards
        weight_set.config.image_size = 64  # type: ignore[misc]
    assert set(weight_set.weights) == set(model.state_dict())
    for name, tensor in weight_set.weights.items():
        assert tensor.device.type == "cpu" and tensor.is_contiguous(), name
    rebuilt = model_from_weight_set(weight_set)
    assert not rebuilt.training
    batch = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(batch)
        torch.testing.assert_close(rebuilt(batch), expected, rtol=0, atol=0)
        # The weight set holds copies: changing the model later does not change it.
        model.fc.weight.add_(1.0)
    assert not torch.equal(weight_set.weights["fc.weight"], model.fc.weight)
    # Through a folder (model.safetensors + config.json) and back: the same weight set.
    write_weight_set(tmp_path, weight_set)
    read = read_weight_set(tmp_path)
    assert read.config == config
    assert set(read.weights) == set(weight_set.weights)
    assert all(torch.equal(read.weights[k], v) for k, v in weight_set.weights.items())


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A safetensors file of a (randomly initialised) 3-class test_resnet."""
    torch.manual_seed(123)
    state = {k: v.contiguous() for k, v in make_classifier(ARCH, 3).state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    save_file(state, path)
    return path, state


def test_pretrained_path_loads_the_backbone(weights_file):
    path, state = weights_file
    torch.manual_seed(0)
    model = make_classifier(ARCH, 5, pretrained_path=str(path))
    loaded = model.state_dict()
    for name in ("conv1.0.weight", "layer4.0.conv2.weight", "bn1.running_var"):
        assert torch.equal(loaded[name], state[name]), name
    # A different class count: a new, randomly initialised classifier.
    assert loaded["fc.weight"].shape == (5, state["fc.weight"].shape[1])
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_pretrained_path_keeps_the_classifier_when_classes_match(weights_file):
    path, state = weights_file
    model = make_classifier(ARCH, 3, pretrained_path=str(path))
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])
    assert torch.equal(model.state_dict()["fc.bias"], state["fc.bias"])


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*nope\.safetensors.*"
                                           r"no such file"):
        make_classifier(ARCH, 3, pretrained_path=str(missing))


@pytest.mark.parametrize("architecture", [
    "resnet18",  # same tensor names, other shapes
    "test_efficientnet",
    "test_vit",  # no tensor name in common
])
def test_weights_of_another_architecture(weights_file, architecture):
    path, _ = weights_file
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = ") as info:
        make_classifier(architecture, 3, pretrained_path=str(path))
    assert f"training.model = '{architecture}'" in str(info.value)


def test_weights_error_says_what_does_not_fit(weights_file):
    path, _ = weights_file
    with pytest.raises(WeightsError) as info:
        make_classifier("resnet18", 3, pretrained_path=str(path))
    assert "wrong shape ['" in str(info.value)  # names the tensors that do not fit


def test_weights_file_with_unrelated_tensors(tmp_path):
    path = tmp_path / "unrelated.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*unexpected "
                                           r"\['encoder\.weight'\]"):
        make_classifier(ARCH, 3, pretrained_path=str(path))


def test_corrupt_safetensors_file(tmp_path, weights_file):
    path, _ = weights_file
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = "):
        make_classifier(ARCH, 3, pretrained_path=str(broken))


@pytest.mark.parametrize("wrapped", [False, True])
def test_pytorch_checkpoint_loads_weights_only(tmp_path, weights_file, wrapped):
    """A torch checkpoint (plain state dict, or timm's {"state_dict": ...}) loads too."""
    _, state = weights_file
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3} if wrapped else state, path)
    model = make_classifier(ARCH, 3, pretrained_path=str(path))
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


class _NotWeights:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path, weights_file):
    _, state = weights_file
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "extra": _NotWeights()}, path)
    with pytest.raises(WeightsError, match=r"training\.pretrained_path = .*not a readable"):
        make_classifier(ARCH, 3, pretrained_path=str(path))
