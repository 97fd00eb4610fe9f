"""evaluation: every weight set scored and calibrated on test, the best served, reports drawn.

Logits are computed once per weight set and split, from the image files (what prediction
sees); temperature scaling is fitted on the
validation split; the weight set with the best validation metric is written, with its
temperature, to ``data/06_models/served`` (what prediction and export use); the figures
show the served weights.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    confusion_report,
    fit_temperatures,
    long_tail_report,
    loss_gallery,
    reliability_report,
    score_splits,
    score_weight_sets,
    served_model,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """The evaluation pipeline."""
    return pipeline([
        node(score_splits,
             inputs=["trained_models", "image_manifest", "ingestion_report",
                     "params:evaluation"],
             outputs="evaluation_logits", name="score_splits"),
        node(fit_temperatures,
             inputs=["evaluation_logits", "image_manifest", "params:evaluation"],
             outputs="temperatures", name="fit_temperatures"),
        node(score_weight_sets,
             inputs=["evaluation_logits", "temperatures", "image_manifest", "ingestion_report",
                     "class_counts", "params:evaluation"],
             outputs=["metrics", "weight_sets", "per_class_report", "test_predictions"],
             name="score_weight_sets"),
        node(served_model, inputs=["trained_models", "weight_sets", "temperatures",
                                   "ingestion_report", "class_balance_report"],
             outputs="served_model", name="choose_served_model"),
        node(confusion_report,
             inputs=["evaluation_logits", "served_model", "image_manifest", "ingestion_report",
                     "class_counts", "params:evaluation"],
             outputs=["confusion_matrix", "confused_pairs", "confused_pairs_chart"],
             name="confusion_report"),
        node(long_tail_report, inputs=["served_model", "per_class_report"],
             outputs=["long_tail", "long_tail_chart"], name="long_tail_report"),
        node(reliability_report,
             inputs=["evaluation_logits", "served_model", "image_manifest",
                     "params:evaluation"],
             outputs=["reliability", "reliability_diagram"], name="reliability_report"),
        node(loss_gallery,
             inputs=["evaluation_logits", "served_model", "image_manifest",
                     "ingestion_report", "params:evaluation"],
             outputs="high_loss_gallery", name="loss_gallery"),
    ])
