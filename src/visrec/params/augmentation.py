"""Parameters of the ``augmentation`` stage: the policy, the imgaug pipelines, the search."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from visrec.core.augment import AugmentationSpec, make_imgaug_pipeline, make_spec
from visrec.params.base import Params, check_architecture

SEARCH_SLOTS = 8  # candidate sub-pipelines of the augmentation search (kedro viz shows each)


class SearchParams(Params):
    """Choosing the policy by proxy trainings (``augmentation.search``).

    Each candidate trains ``epochs`` epochs on ``subset`` of the training images with
    ``model`` (default ``training.model``) and the training recipe without SWA or EMA,
    and is scored by balanced accuracy on the validation split; the best ``1 / eta`` go on
    to ``eta`` times the epochs, over ``rungs`` rungs (successive halving).
    """

    key: ClassVar[str] = "augmentation.search"
    enabled: bool = Field(description="false: use augmentation.policy")
    candidates: list[str] = Field(description="policy strings to compare")
    model: str | None = Field(description="proxy architecture; null: training.model")
    epochs: int = Field(ge=1, le=1000, description="epochs of the first rung")
    eta: int = Field(ge=2, le=10, description="keep 1/eta, multiply epochs by eta")
    rungs: int = Field(ge=1, le=6, description="rounds of halving")
    subset: float = Field(gt=0.0, le=1.0, description="share of each training class")
    tie_tolerance: float = Field(ge=0.0, le=1.0, description="balanced accuracies this "
                                 "close count as tied; ties go to the cheaper policy")

    @field_validator("model")
    @classmethod
    def _known_architecture(cls, value: str | None) -> str | None:
        return value if value is None else check_architecture(value)

    @field_validator("candidates")
    @classmethod
    def _fits_the_slots(cls, value: list[str]) -> list[str]:
        if len(value) > SEARCH_SLOTS:
            raise ValueError(f"{len(value)} candidates; the search pipeline has "
                             f"{SEARCH_SLOTS} candidate slots (visrec.params.SEARCH_SLOTS): "
                             "list fewer, or raise SEARCH_SLOTS")
        return value

    @model_validator(mode="after")
    def _enough_candidates(self) -> SearchParams:
        if self.enabled and len(self.candidates) < 2:
            raise ValueError(f"augmentation.search.candidates has {len(self.candidates)} "
                             "policies: the search needs at least 2 (or set "
                             "augmentation.search.enabled: false)")
        return self


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
    search: SearchParams
    preview_images: int = Field(ge=1, le=64, description="images in the preview grid")
    preview_repeats: int = Field(ge=1, le=16, description="augmented copies per image")

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
        seen: dict[str, int] = {}
        for index, candidate in enumerate(self.search.candidates):
            path = f"augmentation.search.candidates[{index}]"
            policy = self.spec(candidate, path).policy
            if policy in seen:
                raise ValueError(f"{path} = {candidate!r} is the same policy as "
                                 f"augmentation.search.candidates[{seen[policy]}]")
            seen[policy] = index
        return self

    def spec(self, policy: str | None = None,
             path: str = "augmentation.policy") -> AugmentationSpec:
        """The augmentation spec of ``policy`` (default: ``augmentation.policy``)."""
        return make_spec(self.policy if policy is None else policy, self.imgaug,
                         scale=self.scale, hflip=self.hflip, path=path)
