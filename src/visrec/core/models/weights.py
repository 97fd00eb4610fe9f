"""Local weights files: a backbone's pretrained weights, and a distillation teacher.

Every file is read with ``weights_only=True`` (safetensors, or a timm/PyTorch checkpoint
of tensors), never unpickled beyond that.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from torch import nn

from visrec.core.models.artifact import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    model_from_weight_set,
    read_weight_set,
)

logger = logging.getLogger(__name__)


def timm_api(model: nn.Module) -> Any:
    """``model`` as timm's API sees it: ``pretrained_cfg``, ``num_classes``,
    ``get_classifier()`` and ``reset_classifier()`` are timm's, not in ``nn.Module``'s type."""
    return model


class WeightsError(ValueError):
    """A weights file is missing or does not fit the architecture."""


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head, named by timm's ``pretrained_cfg``."""
    heads = timm_api(model).pretrained_cfg.get("classifier") or ()
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
    first = f"{timm_api(model).pretrained_cfg.get('first_conv', '')}.weight"
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
    key = f"training.distillation.teacher_path = '{path}'"
    folder = Path(path)
    if folder.is_dir():
        if not ((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()):
            raise WeightsError(f"{key}: a teacher folder needs {WEIGHTS_FILE} and "
                               f"{CONFIG_FILE}, as in data/06_models/classifier/<weights>")
        try:
            weight_set = read_weight_set(folder)
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            raise WeightsError(f"{key}: not a weight set visrec wrote "
                               f"({type(error).__name__}: {str(error)[:300]})") from error
        teacher = model_from_weight_set(weight_set)
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
