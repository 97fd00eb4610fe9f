"""A served model made by hand (random test_resnet weights), for the predict and export tests."""

from __future__ import annotations

import timm
import torch

from visrec.core.augment import make_spec
from visrec.core.models import BalanceSummary, WeightSet, WeightSetConfig, make_weight_set

CLASSES = ["cat", "dog", "01"]


def served_artifact(temperature: float = 2.0, seed: int = 0) -> WeightSet:
    """A ``data/06_models/served``-like weight set: test_resnet over 3 classes at 32 px."""
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=len(CLASSES)).eval()
    # Random BatchNorm statistics: eval-mode outputs then differ between images.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    config = WeightSetConfig(
        architecture="test_resnet", classes=tuple(CLASSES), image_size=32,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bicubic",
        in_chans=3, seed=seed, git_commit=None, training={}, augmentation=make_spec("none"),
        class_balance=BalanceSummary(strategy="none", components=(), reason="by hand"),
        weights="swa", val_metrics=None, temperature=temperature, served_from="swa")
    return make_weight_set(model, config)
