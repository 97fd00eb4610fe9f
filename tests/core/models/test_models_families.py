"""Tests of the model families visrec supports (visrec.core.models) and of distillation
teachers loaded from weight files or weight-set folders.

Each family is built from scratch (no download) and run on two small images; the
ResNet-like ones must have residual blocks for ``training.zero_gamma`` to act on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from visrec.core.augment import make_spec
from visrec.core.models import (
    WEIGHTS_FILE,
    BalanceSummary,
    WeightsError,
    WeightSetConfig,
    load_teacher,
    make_classifier,
    make_weight_set,
    residual_blocks,
    set_zero_gamma,
    write_weight_set,
)

CLASSES = 5

FAMILIES = {  # architecture: (input side in pixels, has residual blocks with a last norm)
    "resnet50c": (64, True),
    "resnet50d": (64, True),
    "resnext50_32x4d": (64, True),
    "seresnext50_32x4d": (64, True),
    "densenet121": (64, False),
    "efficientnet_b0": (64, False),
    "inception_v3": (96, False),  # needs at least 75x75
    "mobilenetv2_100": (64, False),
    "mobilenetv3_large_100": (64, False),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def zero_gamma_models() -> dict[str, nn.Module]:
    """Each family built once with ``zero_gamma=True`` after ``torch.manual_seed(0)``."""
    built: dict[str, nn.Module] = {}
    for architecture in FAMILIES:
        torch.manual_seed(0)
        built[architecture] = make_classifier(architecture, CLASSES, zero_gamma=True)
    return built


@pytest.mark.parametrize("architecture", list(FAMILIES))
def test_family_creates_with_its_head_and_runs(zero_gamma_models, architecture):
    side, _ = FAMILIES[architecture]
    model = zero_gamma_models[architecture]
    assert model.num_classes == CLASSES
    head = model.get_classifier()
    assert isinstance(head, nn.Linear)
    assert head.out_features == CLASSES
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, side, side))
    assert logits.shape == (2, CLASSES)
    assert torch.isfinite(logits).all()


def _last_norm(block: nn.Module) -> nn.Module:
    """The norm layer that ends a residual branch: bn3 of a Bottleneck, bn2 of a BasicBlock."""
    return block.bn3 if type(block).__name__ == "Bottleneck" else block.bn2


@pytest.mark.parametrize("architecture", list(FAMILIES))
def test_zero_gamma_acts_on_resnet_families_only(zero_gamma_models, architecture):
    _, residual = FAMILIES[architecture]
    zeroed = zero_gamma_models[architecture]
    blocks = residual_blocks(zeroed)
    if not residual:
        assert blocks == []
        torch.manual_seed(0)
        plain = make_classifier(architecture, CLASSES).state_dict()  # timm's initialisation
        assert all(torch.equal(v, plain[k]) for k, v in zeroed.state_dict().items())
        return
    assert len(blocks) == 16  # 3 + 4 + 6 + 3 bottlenecks
    norms = {id(_last_norm(block)) for block in blocks}
    for module in zeroed.modules():
        if isinstance(module, nn.BatchNorm2d):
            expected = 0.0 if id(module) in norms else 1.0
            assert torch.equal(module.weight, torch.full_like(module.weight, expected))
    ones = copy.deepcopy(zeroed)
    assert set_zero_gamma(ones, False) == 16
    for block in residual_blocks(ones):
        assert torch.equal(_last_norm(block).weight, torch.ones_like(_last_norm(block).weight))


# --- distillation teachers ---------------------------------------------------------------------


def _teacher_folder(folder: Path, classes: int = 3, with_config: bool = True) -> nn.Module:
    """A weight-set folder as training writes it: model.safetensors + config.json."""
    torch.manual_seed(11)
    model = make_classifier("test_resnet", classes).eval()
    config = WeightSetConfig(
        architecture="test_resnet", classes=tuple(f"c{i}" for i in range(classes)),
        image_size=32, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        in_chans=3, seed=0, git_commit=None, training={}, augmentation=make_spec("flip_crop"),
        class_balance=BalanceSummary(strategy="none", components=(), reason="test"),
        weights="final", val_metrics=None)
    weight_set = make_weight_set(model, config)
    folder.mkdir(parents=True)
    if with_config:
        write_weight_set(folder, weight_set)
    else:
        save_file(weight_set.weights, folder / WEIGHTS_FILE)
    return model


def _assert_same_model(teacher: nn.Module, model: nn.Module) -> None:
    assert not teacher.training
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in teacher.state_dict().items())
    batch = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(batch), model.eval()(batch), rtol=0, atol=0)


def test_teacher_from_a_weight_set_folder(tmp_path):
    model = _teacher_folder(tmp_path / "teacher")
    teacher = load_teacher(str(tmp_path / "teacher"), None, 3)
    assert teacher.num_classes == 3
    _assert_same_model(teacher, model)


def test_teacher_from_a_file_with_its_architecture(tmp_path):
    torch.manual_seed(12)
    model = make_classifier("test_resnet", 3).eval()
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    _assert_same_model(load_teacher(str(path), "test_resnet", 3), model)


def test_teacher_folder_without_config(tmp_path):
    _teacher_folder(tmp_path / "teacher", with_config=False)
    with pytest.raises(WeightsError, match=r"training\.distillation\.teacher_path = '.*teacher'"
                                           r".*model\.safetensors and config\.json"):
        load_teacher(str(tmp_path / "teacher"), None, 3)


def test_teacher_file_without_architecture(tmp_path):
    path = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=r"training\.distillation\.teacher_path = .*"
                                           r"training\.distillation\.teacher_model"):
        load_teacher(str(path), None, 3)


def test_teacher_folder_with_other_classes(tmp_path):
    _teacher_folder(tmp_path / "teacher", classes=4)
    with pytest.raises(WeightsError, match=r"training\.distillation\.teacher_path = .*"
                                           r"predicts 4 classes, the student 3"):
        load_teacher(str(tmp_path / "teacher"), None, 3)


def test_teacher_file_with_other_classes(tmp_path):
    torch.manual_seed(13)
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in make_classifier("test_resnet", 4).state_dict()
               .items()}, path)
    with pytest.raises(WeightsError, match=r"training\.distillation\.teacher_path = .*"
                                           r"predicts 4 classes, the student 3"):
        load_teacher(str(path), "test_resnet", 3)


def test_missing_teacher_file_names_the_teacher_key(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=r"training\.distillation\.teacher_path = "):
        load_teacher(str(missing), "test_resnet", 3)
