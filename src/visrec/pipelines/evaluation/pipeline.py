"""evaluation: test metrics (per shot group too), per-class report, confusion matrices."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import evaluate_models


def create_pipeline(**kwargs: object) -> Pipeline:
    """The evaluation pipeline."""
    return pipeline([
        node(evaluate_models,
             inputs=["trained_models", "image_manifest", "image_cache", "ingestion_report",
                     "class_counts", "params:evaluation"],
             outputs=["metrics", "per_class_report", "confusion_matrix", "test_predictions"],
             name="evaluate_models"),
    ])
