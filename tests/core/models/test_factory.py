"""Tests of visrec.core.models' model factory: devices, the input config, the classifier
head, the Bag of Tricks' zero-gamma initialisation and the head-only (frozen) switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visrec.core.models import (
    ModelInputs,
    make_classifier,
    model_inputs,
    residual_blocks,
    resolve_input_config,
    select_device,
    set_backbone_frozen,
    set_zero_gamma,
)

CPU = torch.device("cpu")
ARCH = "test_resnet"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- devices -------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without GPU")
def test_select_device_cuda_without_gpu():
    with pytest.raises(ValueError, match=r"device = 'cuda'.*'auto' or 'cpu'"):
        select_device("cuda")


def test_select_device_cpu_and_auto():
    assert select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device().type == expected


# --- input config and head ------------------------------------------------------------------


def test_resolve_input_config():
    model = make_classifier(ARCH, 3)
    assert resolve_input_config(model, 32) == ModelInputs(
        image_size=32, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        in_chans=3)
    gray = resolve_input_config(model, 32, in_chans=1)  # one channel: the RGB values averaged
    assert (gray.mean, gray.std, gray.in_chans) == ((0.5,), (0.5,), 1)
    assert resolve_input_config(model, None).image_size == 160  # test_resnet's own
    # model_inputs builds the probe model itself: the same config.
    assert model_inputs(ARCH, 32, 3, 1) == gray
    assert model_inputs(ARCH, None, 5, 3) == resolve_input_config(model, None)


def test_create_classifier_head_size():
    model = make_classifier(ARCH, 7)
    assert model.num_classes == 7
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


# --- zero-gamma ---------------------------------------------------------------------------


def _last_norm(block: nn.Module) -> nn.BatchNorm2d:
    """The BatchNorm that ends a residual branch: bn3 of a Bottleneck, bn2 of a BasicBlock."""
    kind = type(block).__name__
    assert kind in ("Bottleneck", "BasicBlock"), kind
    return block.bn3 if kind == "Bottleneck" else block.bn2


@pytest.mark.parametrize(("architecture", "blocks"), [("test_resnet", 4), ("resnet18", 8)])
@pytest.mark.parametrize("zero_gamma", [True, False])
def test_zero_gamma_zeros_the_last_norm_of_each_block(architecture, blocks, zero_gamma):
    model = make_classifier(architecture, 3, zero_gamma=zero_gamma)
    found = residual_blocks(model)
    assert len(found) == blocks
    last = {id(_last_norm(block)) for block in found}
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) > len(last)
    for module in norms:
        if zero_gamma and id(module) in last:
            assert torch.equal(module.weight, torch.zeros_like(module.weight))
        else:
            assert torch.equal(module.weight, torch.ones_like(module.weight))


@pytest.mark.parametrize("architecture", ["test_resnet", "resnet18"])
def test_set_zero_gamma_switches_both_ways(architecture):
    """timm already zeros the last norms; set_zero_gamma must zero them from any start."""
    model = make_classifier(architecture, 3, zero_gamma=False)
    last = [_last_norm(block) for block in residual_blocks(model)]
    with torch.no_grad():
        for norm in last:
            norm.weight.uniform_(0.5, 2.0)
    assert set_zero_gamma(model, True) == len(last)
    assert all(torch.equal(n.weight, torch.zeros_like(n.weight)) for n in last)
    assert set_zero_gamma(model, False) == len(last)
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in last)


@pytest.mark.parametrize("architecture", ["test_efficientnet", "mobilenetv3_small_050"])
@pytest.mark.parametrize("enabled", [True, False])
def test_zero_gamma_leaves_models_without_residual_blocks_alone(architecture, enabled):
    model = make_classifier(architecture, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert set_zero_gamma(model, enabled) == 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --- frozen backbone -----------------------------------------------------------------------


def test_set_backbone_frozen_trains_only_the_classifier():
    model = make_classifier("test_resnet", 3)
    set_backbone_frozen(model, True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    set_backbone_frozen(model, False)
    assert all(p.requires_grad for p in model.parameters())


