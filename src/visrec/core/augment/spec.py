"""The augmentation spec: a policy string parsed and checked, recorded as data.

The augmentation stage saves it; training rebuilds the same transform from it, and the
weight sets carry it in their config (whether they were trained with mirror images, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visrec.core.augment.policies import (
    COMPONENTS,
    AugMix,
    Component,
    CutMix,
    FlipCrop,
    Imgaug,
    MixUp,
    PolicyError,
    canonical,
    parse_policy,
)
from visrec.core.records import Record

JSD_VIEWS = 3  # AugMix's consistency loss: the clean image and two AugMix views


@dataclass(frozen=True)
class MixSpec:
    """Batch MixUp / CutMix (timm ``Mixup``); label smoothing comes from the loss.

    Attributes:
        mixup_alpha: Beta(alpha, alpha) mixing weights; 0: off.
        cutmix_alpha: Beta(alpha, alpha) box areas; 0: off.
        prob: Share of batches mixed.
        switch_prob: With both on, share of mixed batches cut rather than blended.
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5


class SearchChoice(Record):
    """Which trial of the tuning study chose the policy."""

    candidate: int  # the trial's number in its study
    written: str  # the policy as the parameters write it


class AugmentationSpec(Record):
    """A checked policy, as training rebuilds it.

    Attributes:
        policy: The canonical policy string, every argument written out.
        components: Each component's arguments, ``{"name": ..., argument: value}``, in
            stage order.
        imgaug: The ``augmentation.imgaug`` pipelines the policy uses, by name.
        search: The tuning trial that chose it, or None when ``augmentation.policy`` was
            used.
    """

    policy: str
    components: tuple[dict[str, Any], ...]
    imgaug: dict[str, list[Any]]
    search: SearchChoice | None = None

    def parts(self) -> list[Component]:
        """The components, as :func:`visrec.core.augment.parse_policy` made them."""
        return _components(self.components)

    def component(self, name: str) -> Any:
        """The component ``name``, or None."""
        return next((c for c in self.parts() if c.name == name), None)

    @property
    def views(self) -> int:
        """Views of each image in a batch: 3 with AugMix's consistency loss, else 1."""
        augmix = self.component("augmix")
        return JSD_VIEWS if isinstance(augmix, AugMix) and augmix.jsd else 1

    @property
    def jsd_weight(self) -> float | None:
        """The weight of AugMix's consistency loss, or None without it."""
        augmix = self.component("augmix")
        return augmix.jsd_weight if isinstance(augmix, AugMix) and augmix.jsd else None

    @property
    def hflip(self) -> bool:
        """Whether training mirrors images (test-time flips are then fair)."""
        geometric = self.component("flip_crop")
        return isinstance(geometric, FlipCrop) and geometric.hflip

    def single_view(self) -> AugmentationSpec:
        """The spec without AugMix's consistency views: one augmented image per image."""
        records = tuple(record | {"jsd": False} if record["name"] == "augmix" else record
                        for record in self.components)
        return self.model_copy(update={"policy": canonical(_components(records)),
                                       "components": records})

    def mix(self) -> MixSpec | None:
        """The batch MixUp / CutMix of the policy as timm ``Mixup`` settings, or None.

        With both, a batch is mixed with the larger of their probabilities and takes one
        of the two at random (``switch_prob`` 0.5).
        """
        mixup, cutmix = self.component("mixup"), self.component("cutmix")
        if not isinstance(mixup, MixUp) and not isinstance(cutmix, CutMix):
            return None
        return MixSpec(mixup_alpha=mixup.alpha if mixup else 0.0,
                       cutmix_alpha=cutmix.alpha if cutmix else 0.0,
                       prob=max(c.prob for c in (mixup, cutmix) if c is not None),
                       switch_prob=0.5 if mixup and cutmix else 0.0)


def make_spec(policy: str, imgaug: dict[str, list] | None = None, *,
              scale: tuple[float, float] = (0.35, 1.0), hflip: bool = True,
              path: str = "augmentation.policy") -> AugmentationSpec:
    """The augmentation spec of a policy string: what training rebuilds the transform from.

    Args:
        policy: The policy string.
        imgaug: The defined imgaug pipelines (``augmentation.imgaug``).
        scale: ``flip_crop``'s area range where the policy does not set it.
        hflip: ``flip_crop``'s flip where the policy does not set it.
        path: The parameter the policy comes from, for errors.

    Raises:
        PolicyError: Naming ``path``, the policy and what is accepted.
    """
    pipelines = imgaug or {}
    try:
        components = parse_policy(policy, {"scale": tuple(scale), "hflip": bool(hflip)},
                                  set(pipelines))
    except PolicyError as error:
        raise PolicyError(f"{path} = {policy!r}: {error}") from None
    used = {c.pipeline for c in components if isinstance(c, Imgaug)}
    return AugmentationSpec(policy=canonical(components),
                            components=tuple(component.record() for component in components),
                            imgaug={name: pipelines[name] for name in sorted(used)})


def _components(records: tuple[dict[str, Any], ...]) -> list[Component]:
    return [COMPONENTS[record["name"]](**{k: v for k, v in record.items() if k != "name"})
            for record in records]
