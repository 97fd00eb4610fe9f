"""augmentation: the training transform as a recorded spec, and a preview grid."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import preview_augmentation, select_policy


def create_pipeline(**kwargs: object) -> Pipeline:
    """The augmentation pipeline."""
    return pipeline([
        node(select_policy, inputs="params:augmentation", outputs="augmentation_spec",
             name="select_policy"),
        node(preview_augmentation,
             inputs=["image_manifest", "image_cache", "ingestion_report", "augmentation_spec",
                     "params:augmentation", "params:training.image_size", "params:seed"],
             outputs="augmentation_preview", name="preview_augmentation"),
    ])
