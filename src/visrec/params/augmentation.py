"""Parameters of the ``augmentation`` stage: the policy and the imgaug pipelines."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from visrec.core.augment import AugmentationSpec, make_imgaug_pipeline, make_spec
from visrec.params.base import Params

OLD_SEARCH = ("augmentation.search was replaced by the tuning block "
              "(conf/base/parameters_tuning.yml, docs/tuning.md): its candidates are "
              "tuning.space.policies, and tuning.budget sizes the search in trainings; "
              "remove augmentation.search from your parameters")


class AugmentationParams(Params):
    """Training-time augmentation (``augmentation``): a policy string and its parts.

    ``policy`` is parsed by :mod:`visrec.core.augment.policies`; ``imgaug`` holds named
    imgaug pipelines (:mod:`visrec.core.augment.imgaug_pipelines`) that a policy uses as
    ``imgaug(NAME)``. Both are built here, so a bad name, argument or augmenter fails
    before any node runs, with the parameter's path.
    """

    key: ClassVar[str] = "augmentation"
    policy: str = Field(description="policy string, e.g. 'randaugment(n=2, m=9) + "
                                    "mixup(alpha=0.2)' (docs/augmentation.md)")
    hflip: bool = Field(description="flip_crop's default: mirror images; off for digits, "
                                    "text, ...")
    scale: tuple[float, float] = Field(description="flip_crop's default random-resized-crop "
                                                   "area range")
    imgaug: dict[str, Any] = Field(description="named imgaug pipelines, used as "
                                               "imgaug(NAME): lists of augmenters")
    preview_images: int = Field(ge=1, le=64, description="images in the preview grid")
    preview_repeats: int = Field(ge=1, le=16, description="augmented copies per image")

    @model_validator(mode="before")
    @classmethod
    def _no_search(cls, data: Any) -> Any:
        if isinstance(data, dict) and "search" in data:
            raise ValueError(OLD_SEARCH)
        return data

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high <= 1.0:
            raise ValueError("need 0 < low <= high <= 1, for example [0.35, 1.0]")
        return value

    @model_validator(mode="after")
    def _policies_build(self) -> AugmentationParams:
        for name, entries in self.imgaug.items():
            make_imgaug_pipeline(entries, f"augmentation.imgaug.{name}")
        make_spec(self.policy, self.imgaug, scale=self.scale, hflip=self.hflip)
        return self

    def spec(self, policy: str | None = None,
             path: str = "augmentation.policy") -> AugmentationSpec:
        """The augmentation spec of ``policy`` (default: ``augmentation.policy``)."""
        return make_spec(self.policy if policy is None else policy, self.imgaug,
                         scale=self.scale, hflip=self.hflip, path=path)
