"""training: a timm model trained with SGD (Nesterov), warmup + cosine, label smoothing, SWA."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import train_model


def create_pipeline(**kwargs: object) -> Pipeline:
    """The training pipeline."""
    return pipeline([
        node(train_model,
             inputs=["image_manifest", "image_cache", "ingestion_report", "balance_plan",
                     "augmentation_spec", "params:training", "params:seed"],
             outputs=["trained_models", "training_history", "learning_curve"],
             name="train_model"),
    ])
