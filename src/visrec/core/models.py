"""timm models: creation, local pretrained weights, and weight artifacts (safetensors + JSON)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visrec.core.transforms import CROP_FRACTION

logger = logging.getLogger(__name__)


class WeightsError(ValueError):
    """A weights file is missing or does not fit the architecture."""




def default_input_size(architecture: str) -> int:
    """The side, in pixels, that ``architecture``'s default pretrained weights expect."""
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    config = get_pretrained_cfg(architecture)
    return int(config.input_size[-1]) if config is not None else 224


def cache_resolution(image_size: int | None, architecture: str) -> int:
    """A side a little above the training size, so random crops have room (256 for 224)."""
    size = image_size or default_input_size(architecture)
    return int(np.ceil(size / CROP_FRACTION))


def create_classifier(architecture: str, num_classes: int,
                      pretrained_path: str | None = None, in_chans: int = 3,
                      zero_gamma: bool | None = None) -> nn.Module:
    """A timm model with a head of ``num_classes``, from scratch or from a local file.

    Args:
        architecture: timm model name, such as ``resnet50d``.
        num_classes: Outputs of the classifier head.
        pretrained_path: Local ``.safetensors`` or timm/PyTorch checkpoint, read with
            ``weights_only=True``. Every backbone tensor must fit; the file's classifier is
            kept when its shape fits ``num_classes`` and freshly initialised otherwise.
        in_chans: Input channels: 3 for RGB, 1 for grayscale (an RGB file's first
            convolution is summed over its colour channels, as timm does).
        zero_gamma: Start residual blocks as the identity (True) or not (False), before any
            weights are loaded; None keeps timm's initialisation.

    Raises:
        WeightsError: If the file is missing, unreadable, or does not fit the architecture.
    """
    import timm  # noqa: PLC0415 - `import timm` takes seconds; only load it when needed

    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                              in_chans=in_chans)
    if zero_gamma is not None:
        from visrec.core.recipe import set_zero_gamma  # noqa: PLC0415

        if set_zero_gamma(model, zero_gamma) == 0 and zero_gamma:
            logger.info("training.zero_gamma: %s has no residual blocks with a last norm "
                        "layer to zero; its initialisation is unchanged", architecture)
    if pretrained_path is not None:
        load_backbone_weights(model, architecture, Path(pretrained_path))
    return model


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head, named by timm's ``pretrained_cfg``."""
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return {key for key in model.state_dict() if key.rsplit(".", 1)[0] in heads}


def load_backbone_weights(model: nn.Module, architecture: str, path: Path,
                          parameter: str = "training.pretrained_path",
                          keep_head: bool = False) -> None:
    """Load ``path`` into ``model`` strictly, except for a classifier of another shape.

    Args:
        model: The timm model to fill.
        architecture: Its name, for messages.
        path: The weights file.
        parameter: The parameter that named the file, for messages.
        keep_head: The file's classifier must fit too (a distillation teacher).

    Raises:
        WeightsError: If the file is missing, unreadable, or its tensors do not fit.
    """
    from safetensors import SafetensorError  # noqa: PLC0415
    from timm.models import adapt_input_conv, load_state_dict  # noqa: PLC0415

    key = f"{parameter} = '{path}'"
    if not path.is_file():
        raise WeightsError(f"{key}: no such file")
    try:
        state = load_state_dict(str(path), weights_only=True)
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError,
            pickle.UnpicklingError) as error:
        raise WeightsError(f"{key}: not a readable safetensors or PyTorch weights file "
                           f"({type(error).__name__}: {str(error)[:200]})") from error
    own = model.state_dict()
    first = f"{model.pretrained_cfg.get('first_conv', '')}.weight"
    if first in state and first in own and state[first].shape[1] != own[first].shape[1]:
        state[first] = adapt_input_conv(own[first].shape[1], state[first])
    head = _classifier_keys(model)
    dropped = sorted(k for k in head if k in state and state[k].shape != own[k].shape)
    if dropped and keep_head:
        classes = int(state[dropped[0]].shape[0])
        raise WeightsError(f"{key}: the file's classifier predicts {classes} classes, the "
                           f"student {model.num_classes}; use a teacher trained on the same "
                           "classes")
    for name in dropped:
        del state[name]
    missing = sorted(set(own) - set(state) - set(dropped))
    unexpected = sorted(set(state) - set(own))
    misfit = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or misfit:
        problems = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                    for label, names in (("missing", missing), ("unexpected", unexpected),
                                         ("wrong shape", misfit)) if names]
        raise WeightsError(f"{key}: weights do not fit training.model = '{architecture}': "
                           + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    if dropped:
        logger.info("pretrained classifier %s replaced: the file has another class count",
                    dropped)


def resolve_input_config(model: nn.Module, image_size: int | None,
                         in_chans: int = 3) -> dict[str, Any]:
    """Image size, interpolation and normalisation: the model's own unless ``image_size`` is set.

    Args:
        model: A timm model.
        image_size: Side in pixels, or None for the model's default.
        in_chans: 1 averages the RGB mean and std into one grey channel's.

    Returns:
        ``{"image_size": int, "interpolation": str, "mean": [...], "std": [...],
        "in_chans": int}``.
    """
    from timm.data import resolve_model_data_config  # noqa: PLC0415

    config = resolve_model_data_config(model)
    mean, std = [float(m) for m in config["mean"]], [float(s) for s in config["std"]]
    if in_chans == 1 and len(mean) != 1:
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    return {
        "image_size": int(image_size or config["input_size"][-1]),
        "interpolation": str(config.get("interpolation", "bicubic")),
        "mean": mean,
        "std": std,
        "in_chans": in_chans,
    }


def weights_artifact(model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """A model's weights (contiguous CPU tensors) with the config needed to rebuild it."""
    state = {name: tensor.detach().to("cpu").contiguous().clone()
             for name, tensor in model.state_dict().items()}
    return {"weights": state, "config": dict(config)}


def load_teacher(path: str, architecture: str | None, num_classes: int,
                 in_chans: int = 3) -> nn.Module:
    """A distillation teacher in eval mode: a visrec weight-set folder or a weights file.

    Args:
        path: A folder with ``model.safetensors`` and ``config.json`` (as training writes
            them), or a safetensors/timm checkpoint file.
        architecture: The file's timm architecture (the folder's config names its own).
        num_classes: Classes of the student; the teacher must predict the same ones.
        in_chans: Input channels of the student.

    Raises:
        WeightsError: If the teacher is missing, unreadable or has other classes.
    """
    import json  # noqa: PLC0415

    from safetensors.torch import load_file  # noqa: PLC0415

    key = f"training.distillation.teacher_path = '{path}'"
    folder = Path(path)
    if folder.is_dir():
        config_file, weights_file = folder / "config.json", folder / "model.safetensors"
        if not (config_file.is_file() and weights_file.is_file()):
            raise WeightsError(f"{key}: a teacher folder needs model.safetensors and "
                               "config.json, as in data/06_models/classifier/<weights>")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        teacher = model_from_artifact({"weights": load_file(weights_file), "config": config})
    elif architecture is None:
        raise WeightsError(f"{key}: set training.distillation.teacher_model to the "
                           "architecture of the file")
    else:
        import timm  # noqa: PLC0415

        teacher = timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                                    in_chans=in_chans)
        load_backbone_weights(teacher, architecture, folder,
                              parameter="training.distillation.teacher_path", keep_head=True)
    if teacher.num_classes != num_classes:
        raise WeightsError(f"{key}: the teacher predicts {teacher.num_classes} classes, the "
                           f"student {num_classes}; train the teacher on the same classes")
    return teacher.eval()


def model_from_artifact(artifact: dict[str, Any]) -> nn.Module:
    """Rebuild a model in eval mode from :func:`weights_artifact` output."""
    import timm  # noqa: PLC0415

    config = artifact["config"]
    model = timm.create_model(config["architecture"], pretrained=False,
                              num_classes=len(config["classes"]),
                              in_chans=int(config.get("in_chans", 3)))
    model.load_state_dict(artifact["weights"])
    return model.eval()


def select_device(requested: str = "auto", key: str = "training.device") -> torch.device:
    """``auto``: CUDA when a GPU is visible, else the CPU.

    Args:
        requested: ``auto``, ``cpu`` or ``cuda``.
        key: The parameter that asked, named in the error.

    Raises:
        ValueError: If ``cuda`` is requested and no GPU is visible.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key} = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
