"""training: a timm model trained with the Bag of Tricks, SWA and EMA, resumable, on 1-N
processes."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import train_model


def create_pipeline(**kwargs: object) -> Pipeline:
    """The training pipeline."""
    return pipeline([
        node(train_model,
             inputs=["image_manifest", "image_cache", "ingestion_report", "balance_plan",
                     "augmentation_spec", "params:training", "params:seed",
                     "training_checkpoints", "training_live"],
             outputs=["trained_models", "training_history", "learning_curve"],
             name="train_model"),
    ])
