"""A Hugging Face hub cache on disk, as timm's first download leaves it, for the tests of
``pretrained: true`` (they never reach the network: ``HF_HUB_OFFLINE=1``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# timm's test model and the hub repository of its default pretrained weights.
ARCHITECTURE = "test_resnet"
REPO_ID = "timm/test_resnet.r160_in1k"
REVISION = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the hub's


def write_hub_cache(cache: Path, seed: int = 0) -> Path:
    """Cache ``REPO_ID``'s ``model.safetensors`` under ``cache`` (the hub cache layout:
    ``models--<org>--<name>/refs/main`` names the snapshot holding the file), with the
    weights of a ``test_resnet`` of 1000 classes initialised from ``seed``; returns the
    weights file."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=1000)
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    weights = snapshot / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return weights


def offline_env(cache: Path) -> dict[str, str]:
    """The environment of a process that may use only ``cache``: no hub, no network."""
    return os.environ | {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                         "HF_HOME": str(cache.parent / "hf_home")}
