"""timm's pretrained weights from the Hugging Face hub, through the hub's own cache.

``training.pretrained: true`` builds the model with ``timm.create_model(...,
pretrained=True)``: timm downloads the architecture's default weights (or those of its
tag, ``resnet50.a1_in1k``) into the Hugging Face cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) once, and reads them from there afterwards. With
``HF_HUB_OFFLINE=1`` nothing is downloaded: the weights must be cached already, which
:func:`check_hub_weights` verifies before any node runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from visrec.core.models.weights import WeightsError

# The files timm looks for in a hub repository, in its order of preference.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class HubWeights:
    """Where an architecture's pretrained weights live on the hub, and in the cache.

    Attributes:
        architecture: The timm architecture (with its tag, if any).
        repo_id: The hub repository (``timm/resnet18.a1_in1k``).
        cached: The cached weights file, or None when not cached.
    """

    architecture: str
    repo_id: str
    cached: str | None


def hub_weights(architecture: str, parameter: str = "training.pretrained") -> HubWeights:
    """The hub repository of ``architecture``'s pretrained weights and their cached file.

    Raises:
        WeightsError: If timm knows no hub weights for the architecture.
    """
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    config = get_pretrained_cfg(architecture)
    repo_id = getattr(config, "hf_hub_id", None) if config is not None else None
    if not repo_id:
        raise WeightsError(f"{parameter} = true: timm has no pretrained weights of "
                           f"'{architecture}' on the Hugging Face hub; choose an "
                           "architecture with hub weights (timm.list_models(pretrained=True)) "
                           "or give a local file as pretrained_path")
    repo_id = repo_id.split("@", 1)[0]
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return HubWeights(architecture, repo_id, found)
    return HubWeights(architecture, repo_id, None)


def check_hub_weights(architecture: str, parameter: str = "training.pretrained") -> None:
    """Fail unless the pretrained weights of ``architecture`` can be had: cached, or the
    hub may be reached (``HF_HUB_OFFLINE`` unset).

    Raises:
        WeightsError: Naming the model, the repository, the cache and what to do.
    """
    from huggingface_hub import constants  # noqa: PLC0415

    weights = hub_weights(architecture, parameter)
    if weights.cached is None and constants.HF_HUB_OFFLINE:
        raise WeightsError(
            f"{parameter} = true: the pretrained weights of '{architecture}' (hub "
            f"repository {weights.repo_id}) are not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1 forbids downloading them. "
            "Download them once where the hub is reachable (python -c \"import timm; "
            f"timm.create_model('{architecture}', pretrained=True)\"), point HF_HUB_CACHE "
            "at a cache that holds them, or give a local weights file as pretrained_path "
            "instead")


def create_pretrained(architecture: str, num_classes: int, in_chans: int,
                      parameter: str = "training.pretrained") -> nn.Module:
    """``timm.create_model(..., pretrained=True)``: the hub weights, the classifier
    replaced when ``num_classes`` differs, the first convolution adapted to ``in_chans``.

    Raises:
        WeightsError: If the weights cannot be downloaded or read.
    """
    import timm  # noqa: PLC0415

    check_hub_weights(architecture, parameter)
    try:
        return timm.create_model(architecture, pretrained=True, num_classes=num_classes,
                                 in_chans=in_chans)
    except (OSError, RuntimeError, ValueError) as error:  # hub errors are OSErrors
        weights = hub_weights(architecture, parameter)
        raise WeightsError(f"{parameter} = true: could not get the pretrained weights of "
                           f"'{architecture}' from {weights.repo_id} "
                           f"({type(error).__name__}: {str(error)[:300]}); set "
                           "HF_HUB_OFFLINE=1 with a cache that holds them, or give a local "
                           "weights file as pretrained_path") from error
