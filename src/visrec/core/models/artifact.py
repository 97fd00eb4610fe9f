"""Weight sets: a model's tensors with the config that rebuilds and describes it.

On disk a weight set is a folder::

    model.safetensors   tensors only, never pickle
    config.json         architecture, classes, input config, how it was trained, scores
    README.md           the model card (the served classifier)

A classifier's folder is also a timm / Hugging Face hub model folder: ``config.json``
holds timm's keys (``architecture``, ``num_classes``, ``label_names``, ``pretrained_cfg``
with the input size, interpolation, mean, std and crop) beside visrec's own, written by
timm's ``save_for_hf``, so ``timm.create_model("local-dir:<folder>", pretrained=True)``
rebuilds it and ``timm.models.push_to_hf_hub`` conventions hold.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from visrec.core.augment import AugmentationSpec
from visrec.core.models.inputs import ModelInputs
from visrec.core.records import Record

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
# The keys timm's hub config adds to a classifier's config.json; visrec's record has its own.
TIMM_KEYS = frozenset({"num_classes", "num_features", "global_pool", "label_names",
                       "label_descriptions", "model_args", "pretrained_cfg"})
# What timm's default pretrained_cfg says of its own ImageNet weights (their tag, licence,
# paper): not true of weights trained here, so left out of ours.
FOREIGN_SOURCE_KEYS = ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes",
                       "hf_hub_id", "hf_hub_filename", "url", "file", "source")


class BalanceSummary(Record):
    """The class-balance remedy a weight set was trained with."""

    strategy: str
    components: tuple[str, ...]
    reason: str


class InputFields(Record):
    """The input config written out at the top level of a weight set's ``config.json``
    (``image_size``, ``mean``, ...), as servers read it."""

    image_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int

    @property
    def inputs(self) -> ModelInputs:
        """The input config."""
        return ModelInputs(image_size=self.image_size, interpolation=self.interpolation,
                           mean=self.mean, std=self.std, in_chans=self.in_chans)


class RunFields(InputFields):
    """What every weight set's config says of the run that made it (a classifier's and an
    embedder's): the input config and the fields below.

    Attributes:
        architecture: The timm architecture.
        seed: The training seed.
        git_commit: The code's commit (``-dirty`` with local changes), or None.
        augmentation: The augmentation spec it was trained with.
        weights: ``final``, ``swa`` or ``ema``.
        val_metrics: Its validation figures, or None without validation.
        served_from: The weight set the served one is (the served weight set), or None.
        scores: Its validation and test figures (the served weight set), or None.
    """

    architecture: str
    seed: int
    git_commit: str | None
    augmentation: AugmentationSpec
    weights: str
    val_metrics: dict[str, float] | None
    served_from: str | None = None
    scores: dict[str, float | None] | None = None


class WeightSetConfig(RunFields):
    """What rebuilds a classifier's weight set and what it is: ``config.json`` beside its
    tensors.

    Attributes:
        architecture: The timm architecture.
        classes: Class names in output order.
        image_size: Input side, pixels.
        interpolation: Resampling filter of resizes.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        in_chans: Input channels.
        seed: The training seed.
        git_commit: The code's commit (``-dirty`` with local changes), or None.
        training: The ``training`` parameters of the run.
        augmentation: The augmentation spec it was trained with.
        class_balance: The remedy for imbalance it was trained with.
        weights: ``final``, ``swa`` or ``ema``.
        val_metrics: Validation loss, top-1 and balanced accuracy, or None without a
            validation split.
        temperature: The calibration temperature (the served weight set), or None.
        served_from: The weight set the served one is (the served weight set), or None.
        scores: Its validation and test figures (the served weight set), or None.
    """

    classes: tuple[str, ...]
    training: dict[str, Any]
    class_balance: BalanceSummary
    temperature: float | None = None


ConfigT = TypeVar("ConfigT", bound=Record)


@dataclass(frozen=True)
class WeightSet(Generic[ConfigT]):
    """A model's weights (contiguous CPU tensors by state-dict key) and its config (a
    classifier's :class:`WeightSetConfig`, an embedder's ``EmbedderConfig``)."""

    weights: dict[str, torch.Tensor]
    config: ConfigT
    card: str | None = None  # the model card (Markdown), written as README.md


def make_weight_set(model: nn.Module, config: ConfigT) -> WeightSet[ConfigT]:
    """A weight set of ``model``'s current weights, copied to the CPU."""
    state = {name: tensor.detach().to("cpu").contiguous().clone()
             for name, tensor in model.state_dict().items()}
    return WeightSet(state, config)


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and bytes: which weights made an index or a
    prediction."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_from_weight_set(weight_set: WeightSet) -> nn.Module:
    """Rebuild the model of a weight set, in eval mode."""
    import timm  # noqa: PLC0415 - `import timm` takes seconds

    config = weight_set.config
    model = timm.create_model(config.architecture, pretrained=False,
                              num_classes=len(config.classes), in_chans=config.in_chans)
    model.load_state_dict(weight_set.weights)
    return model.eval()


def read_weight_set(folder: Path, config_type: type[Record] = WeightSetConfig) -> WeightSet:
    """The weight set of a folder (``model.safetensors``, ``config.json`` and the model
    card when there is one), its config read as ``config_type``."""
    from safetensors.torch import load_file  # noqa: PLC0415

    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    own = {key: value for key, value in config.items() if key not in TIMM_KEYS}
    card = folder / CARD_FILE
    return WeightSet(load_file(folder / WEIGHTS_FILE), config_type.from_json(own),
                     card.read_text(encoding="utf-8") if card.is_file() else None)


def write_weight_set(folder: Path, weight_set: WeightSet) -> None:
    """Write a weight set's safetensors file, config and model card into ``folder``; a
    classifier's through timm's ``save_for_hf`` (see the module's docstring)."""
    from safetensors.torch import save_file  # noqa: PLC0415

    own = weight_set.config.to_json()
    if isinstance(weight_set.config, WeightSetConfig):
        _save_for_timm(folder, weight_set, own)
    else:
        save_file(weight_set.weights, folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(own, indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")
    if weight_set.card is not None:
        (folder / CARD_FILE).write_text(weight_set.card, encoding="utf-8")


def _save_for_timm(folder: Path, weight_set: WeightSet, own: dict[str, Any]) -> None:
    """timm's hub folder of a classifier: its weights, and a config with timm's keys
    (from the rebuilt model) and visrec's (``own``)."""
    from timm.models import save_for_hf  # noqa: PLC0415

    config = weight_set.config
    model = model_from_weight_set(weight_set)
    # timm names the architecture itself (without a pretrained tag) and sets num_classes.
    visrec_fields = {key: value for key, value in sorted(own.items())
                     if key != "architecture"}
    save_for_hf(model, str(folder), safe_serialization=True,
                model_config={**visrec_fields, "label_names": list(config.classes)},
                data_config={"input_size": (config.in_chans, config.image_size,
                                            config.image_size),
                             "interpolation": config.interpolation,
                             "mean": tuple(config.mean), "std": tuple(config.std),
                             # evaluation resizes the shorter side to the input size
                             "crop_pct": 1.0, "crop_mode": "center"})
    written = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    for key in FOREIGN_SOURCE_KEYS:
        written["pretrained_cfg"].pop(key, None)
    (folder / CONFIG_FILE).write_text(json.dumps(written, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
