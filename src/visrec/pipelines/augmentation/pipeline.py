"""augmentation: the configured policy as a spec, and a preview of what it does.

The policies are a library (docs/augmentation.md): flip/crop, AutoAugment, RandAugment,
TrivialAugment, AugMix, imgaug pipelines, MixUp, CutMix, CutOut. Which of them trains is
``augmentation.policy``, or the tuning pipeline's choice among ``tuning.space.policies``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_policy_spec, preview_augmentation


def create_pipeline(**kwargs: object) -> Pipeline:
    """The augmentation pipeline."""
    return pipeline([
        node(make_policy_spec, inputs="params:augmentation", outputs="augmentation_spec",
             name="make_policy_spec"),
        node(preview_augmentation,
             inputs=["image_manifest", "image_cache", "ingestion_report", "augmentation_spec",
                     "params:augmentation", "params:training.image_size", "params:seed"],
             outputs="augmentation_preview", name="preview_augmentation"),
    ])
