"""Augmentation: policy strings parsed and checked, recorded as a spec; the training and
evaluation transforms; imgaug pipelines from the parameters."""

from visrec.core.augment.batch import BatchAugment
from visrec.core.augment.imgaug_pipelines import (
    ImgaugTransform,
    augmenter_names,
    make_augmenter,
    make_imgaug_pipeline,
)
from visrec.core.augment.policies import (
    COMPONENTS,
    NAMES,
    STAGES,
    Component,
    PolicyError,
    canonical,
    parse_policy,
)
from visrec.core.augment.spec import (
    JSD_VIEWS,
    AugmentationSpec,
    MixSpec,
    SearchChoice,
    make_spec,
)
from visrec.core.augment.transforms import (
    CROP_FRACTION,
    MAX_ASPECT,
    LimitAspect,
    SquareImage,
    TrainTransform,
    make_eval_transform,
    make_train_transform,
)

__all__ = [
    "COMPONENTS", "CROP_FRACTION", "JSD_VIEWS", "MAX_ASPECT", "NAMES", "STAGES",
    "AugmentationSpec", "BatchAugment", "Component", "ImgaugTransform", "LimitAspect",
    "MixSpec", "PolicyError", "SearchChoice", "SquareImage", "TrainTransform",
    "augmenter_names", "canonical", "make_augmenter", "make_eval_transform",
    "make_imgaug_pipeline", "make_spec", "make_train_transform", "parse_policy",
]
