"""timm models: creation, local pretrained weights, and weight artifacts (safetensors + JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class WeightsError(ValueError):
    """A weights file is missing or does not fit the architecture."""


def create_classifier(architecture: str, num_classes: int,
                      pretrained_path: str | None = None) -> nn.Module:
    """A timm model with a head of ``num_classes``, from scratch or from a local file.

    Args:
        architecture: timm model name, such as ``resnet50d``.
        num_classes: Outputs of the classifier head.
        pretrained_path: Local ``.safetensors`` or timm/PyTorch checkpoint; its classifier
            is replaced when the class count differs. Loaded with ``weights_only=True``.

    Raises:
        WeightsError: If the file is missing or its tensors do not fit the architecture.
    """
    import timm  # noqa: PLC0415 - `import timm` takes seconds; only load it when needed

    if pretrained_path is None:
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    path = Path(pretrained_path)
    if not path.is_file():
        raise WeightsError(f"training.pretrained_path = '{path}': no such file")
    try:
        # timm's own loader: reads safetensors or a weights-only torch checkpoint and
        # drops the classifier when `num_classes` differs from the file's.
        return timm.create_model(architecture, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay={"file": str(path.resolve())})
    except (RuntimeError, KeyError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:300]
        raise WeightsError(
            f"training.pretrained_path = '{path}': weights do not fit "
            f"training.model = '{architecture}' ({first_line})"
        ) from error


def resolve_input_config(model: nn.Module, image_size: int | None) -> dict[str, Any]:
    """Image size, interpolation and normalisation: the model's own unless ``image_size`` is set.

    Returns:
        ``{"image_size": int, "interpolation": str, "mean": [...], "std": [...]}``.
    """
    from timm.data import resolve_model_data_config  # noqa: PLC0415

    config = resolve_model_data_config(model)
    return {
        "image_size": int(image_size or config["input_size"][-1]),
        "interpolation": str(config.get("interpolation", "bicubic")),
        "mean": [float(m) for m in config["mean"]],
        "std": [float(s) for s in config["std"]],
    }


def weights_artifact(model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """A model's weights (contiguous CPU tensors) with the config needed to rebuild it."""
    state = {name: tensor.detach().to("cpu").contiguous().clone()
             for name, tensor in model.state_dict().items()}
    return {"weights": state, "config": dict(config)}


def model_from_artifact(artifact: dict[str, Any]) -> nn.Module:
    """Rebuild a model in eval mode from :func:`weights_artifact` output."""
    import timm  # noqa: PLC0415

    config = artifact["config"]
    model = timm.create_model(config["architecture"], pretrained=False,
                              num_classes=len(config["classes"]))
    model.load_state_dict(artifact["weights"])
    return model.eval()


def select_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when a GPU is visible, else the CPU.

    Raises:
        ValueError: If ``cuda`` is requested and no GPU is visible.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
