"""Augmentation policies written as short strings, parsed and checked before any training.

A policy is one or more components joined by ``+``, each a name with optional keyword
arguments in call syntax::

    none
    flip_crop
    flip_crop(scale=(0.35, 1.0), hflip=false)
    randaugment(n=2, m=9)
    autoaugment(policy=cifar10) + erasing(p=0.25)
    trivialaugment + cutmix(alpha=1.0)
    augmix(severity=3, jsd=true)
    imgaug(light) + mixup(alpha=0.2)

The string is read with :mod:`ast` (nothing is evaluated): bare words are strings,
``true``/``false`` are booleans. Each component's arguments are checked by a pydantic
model, so a bad name or value fails at parameter validation with the parameter's path,
the bad value and what is accepted.

Components run in four stages, whatever order they are written in:

1. ``flip_crop``: random-resized crop and optional horizontal flip, on whole batches on
   the training device. Every policy but ``none`` has it; written without arguments (or
   left out) it takes ``augmentation.scale`` and ``augmentation.hflip``.
2. per image, in the DataLoader workers, in the written order: ``autoaugment``,
   ``randaugment``, ``trivialaugment``, ``augmix`` (torchvision) and ``imgaug(NAME)``
   (a pipeline of ``augmentation.imgaug.NAME``).
3. per batch after normalisation: ``erasing`` (random erasing, Zhong et al. 2020) and
   ``cutout`` (DeVries & Taylor 2017), timm's ``RandomErasing``.
4. per batch in the training step: ``mixup`` and ``cutmix`` (timm ``Mixup``).
"""

from __future__ import annotations

import ast
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from visrec.core.calls import (
    build_options,
    call_arguments,
    call_name,
    format_value,
    parse_expression,
)


class PolicyError(ValueError):
    """A policy string that cannot be parsed or whose arguments are out of range."""


class Component(BaseModel):
    """Arguments of one policy component; subclasses name it and give its stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    stage: ClassVar[str]
    positional: ClassVar[str | None] = None  # the argument a bare positional value sets

    def canonical(self) -> str:
        """The component with all its arguments, as a policy string would write it."""
        arguments = ", ".join(f"{key}={format_value(value)}" for key, value in self.model_dump(
            exclude={"name"}).items())
        return f"{self.name}({arguments})" if arguments else self.name

    def record(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name": ..., argument: value, ...}``."""
        return {"name": self.name, **self.model_dump(mode="json")}


def _area_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0.0 < low <= high <= 1.0:
        raise ValueError("need 0 < low <= high <= 1")
    return value


def _aspect_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0.0 < low <= high:
        raise ValueError("need 0 < low <= high")
    return value


AreaRange = Annotated[tuple[float, float], AfterValidator(_area_range)]
AspectRange = Annotated[tuple[float, float], AfterValidator(_aspect_range)]


class FlipCrop(Component):
    """Random-resized crop of ``scale`` of the area at an aspect in ``ratio``; flip."""

    name: ClassVar[str] = "flip_crop"
    stage: ClassVar[str] = "geometric"
    scale: AreaRange = Field((0.35, 1.0), description="crop's share of the area")
    ratio: AspectRange = Field((0.75, 4 / 3), description="crop's aspect range")
    hflip: bool = Field(True, description="mirror half of the images")


class AutoAugment(Component):
    """AutoAugment (Cubuk et al. 2019) with one of its learned policies (torchvision)."""

    name: ClassVar[str] = "autoaugment"
    stage: ClassVar[str] = "image"
    positional: ClassVar[str] = "policy"
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"


class RandAugment(Component):
    """RandAugment (Cubuk et al. 2020): ``n`` random operations at magnitude ``m`` of 30."""

    name: ClassVar[str] = "randaugment"
    stage: ClassVar[str] = "image"
    n: int = Field(2, ge=1, le=10, description="operations per image")
    m: int = Field(9, ge=0, le=30, description="magnitude, of torchvision's 31 bins")


class TrivialAugment(Component):
    """TrivialAugment Wide (Müller & Hutter 2021): one operation at a random magnitude."""

    name: ClassVar[str] = "trivialaugment"
    stage: ClassVar[str] = "image"


class AugMix(Component):
    """AugMix (Hendrycks et al. 2020); ``jsd`` adds its Jensen-Shannon consistency loss."""

    name: ClassVar[str] = "augmix"
    stage: ClassVar[str] = "image"
    severity: int = Field(3, ge=1, le=10, description="strength of each operation")
    width: int = Field(3, ge=1, le=10, description="augmentation chains mixed")
    depth: int = Field(-1, ge=-1, le=10, description="operations per chain; -1: 1 to 3")
    alpha: float = Field(1.0, gt=0.0, description="Dirichlet and Beta concentration")
    jsd: bool = Field(False, description="clean + 2 AugMix views, consistency loss")
    jsd_weight: float = Field(12.0, ge=0.0, description="weight of the consistency loss")

    @field_validator("depth")
    @classmethod
    def _depth(cls, value: int) -> int:
        if value == 0:
            raise ValueError("need -1 (random 1 to 3) or 1 to 10")
        return value


class Imgaug(Component):
    """An imgaug pipeline defined under ``augmentation.imgaug``, named here."""

    name: ClassVar[str] = "imgaug"
    stage: ClassVar[str] = "image"
    positional: ClassVar[str] = "pipeline"
    pipeline: str


class Erasing(Component):
    """Random erasing (Zhong et al. 2020): a box of ``scale`` of the area, probability ``p``."""

    name: ClassVar[str] = "erasing"
    stage: ClassVar[str] = "batch"
    p: float = Field(0.25, ge=0.0, le=1.0, description="probability per image")
    scale: AreaRange = Field((0.02, 1 / 3), description="box's share of the area")
    ratio: AspectRange = Field((0.3, 1 / 0.3), description="box's aspect range")
    mode: Literal["const", "rand", "pixel"] = Field(
        "pixel", description="fill: const (0, the mean), rand (per channel), pixel (noise)")


class Cutout(Component):
    """CutOut (DeVries & Taylor 2017): a square of ``size`` x the side set to 0 (the mean)."""

    name: ClassVar[str] = "cutout"
    stage: ClassVar[str] = "batch"
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability per image")
    # timm's RandomErasing places boxes strictly inside the image: at most 0.9 of the side.
    size: float = Field(0.5, gt=0.0, le=0.9, description="square's side / image side")


class MixUp(Component):
    """MixUp (Zhang et al. 2018) of whole batches: ``alpha`` of the Beta, probability."""

    name: ClassVar[str] = "mixup"
    stage: ClassVar[str] = "mix"
    alpha: float = Field(0.2, gt=0.0, description="Beta(alpha, alpha) mixing weights")
    prob: float = Field(1.0, gt=0.0, le=1.0, description="share of batches mixed")


class CutMix(Component):
    """CutMix (Yun et al. 2019) of whole batches: ``alpha`` of the Beta, probability."""

    name: ClassVar[str] = "cutmix"
    stage: ClassVar[str] = "mix"
    alpha: float = Field(1.0, gt=0.0, description="Beta(alpha, alpha) box areas")
    prob: float = Field(1.0, gt=0.0, le=1.0, description="share of batches mixed")


COMPONENTS: dict[str, type[Component]] = {component.name: component for component in (
    FlipCrop, AutoAugment, RandAugment, TrivialAugment, AugMix, Imgaug, Erasing, Cutout,
    MixUp, CutMix)}
NAMES = ("none", *COMPONENTS)
STAGES = ("geometric", "image", "batch", "mix")
def _terms(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _terms(node.left) + _terms(node.right)
    return [node]


def _component(node: ast.expr, text: str) -> Component | None:
    """One ``name`` or ``name(arguments)`` term; None for ``none``."""
    written, call = call_name(node)
    if written is None:
        raise PolicyError(f"{ast.get_source_segment(text, node)!r} is not a component: "
                          f"write name or name(key=value, ...); names: {list(NAMES)}")
    name = written.lower()
    if name == "none":
        if call is not None and (call.args or call.keywords):
            raise PolicyError("none takes no arguments")
        return None
    if name not in COMPONENTS:
        raise PolicyError(f"unknown component {written!r}; accepted: {list(NAMES)}")
    kind = COMPONENTS[name]
    arguments = {} if call is None else call_arguments(
        call, name, kind.model_fields, kind.positional, text, PolicyError)
    return build_options(kind, name, arguments, PolicyError)


def parse_policy(text: str, flip_crop: dict[str, Any] | None = None,
                 imgaug_pipelines: set[str] | None = None) -> list[Component]:
    """The components of a policy string, in stage order; ``[]`` for ``none``.

    Args:
        text: The policy, e.g. ``"randaugment(n=2, m=9) + mixup(alpha=0.2)"``.
        flip_crop: Defaults of ``flip_crop`` (``scale``, ``hflip``) for a policy that does
            not set them.
        imgaug_pipelines: Names of the defined imgaug pipelines; None skips the check.

    Raises:
        PolicyError: With what is wrong and what would be accepted.
    """
    tree = parse_expression(text, PolicyError, "a policy",
                            "write components joined by '+', each name or "
                            f"name(key=value, ...); names: {list(NAMES)}")
    parsed = [_component(term, text.strip()) for term in _terms(tree)]
    components = [component for component in parsed if component is not None]
    if len(parsed) > 1 and len(components) < len(parsed):
        raise PolicyError("none cannot be combined with other components")
    if not components:
        return []
    names = [component.name for component in components]
    repeated = sorted({name for name in names if names.count(name) > 1 and name != "imgaug"})
    if repeated:
        raise PolicyError(f"{repeated[0]} appears twice; each component at most once")
    if any(isinstance(c, AugMix) and c.jsd for c in components) and any(
            c.stage == "mix" for c in components):
        raise PolicyError("augmix(jsd=true) cannot be combined with mixup or cutmix: the "
                          "consistency loss needs each image's own label")
    for component in components:
        if (isinstance(component, Imgaug) and imgaug_pipelines is not None
                and component.pipeline not in imgaug_pipelines):
            raise PolicyError(f"imgaug({component.pipeline}): no pipeline of that name under "
                              f"augmentation.imgaug; defined: {sorted(imgaug_pipelines)}")
    if "flip_crop" not in names:
        components.insert(0, FlipCrop(**(flip_crop or {})))
    elif flip_crop:
        index = names.index("flip_crop")
        written = components[index].model_fields_set
        components[index] = FlipCrop(**(dict(flip_crop)
                                        | components[index].model_dump(include=written)))
    return sorted(components, key=lambda c: STAGES.index(c.stage))


def canonical(components: list[Component]) -> str:
    """The policy string of ``components`` with every argument written out."""
    return " + ".join(component.canonical() for component in components) or "none"
