"""embedding: the metric-learning stage. The classes are split (not the images); an
embedder is trained with a pytorch-metric-learning loss on P x K batches, resumable, with
SWA and EMA; it is measured on the test classes against two baselines trained or taken
in the same run; the best on the validation classes is served and exported (ONNX).

In ``kedro viz`` each step is a node with its inputs and its artifacts.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    embed_evaluation_splits,
    make_class_split,
    make_embedder_sets,
    resolve_embedding_inputs,
    score_embedders,
    serve_embedder,
    train_baseline,
    train_embedder,
)
from .reports import (
    embedding_map,
    export_embedder,
    per_class_retrieval,
    plot_metric_learning_curve,
    retrieval_gallery,
)

# What each training run reads: the images, their split by class, the input config.
RUN_INPUTS = ["metric_learning_manifest", "image_cache", "ingestion_report", "class_split",
              "embedding_model_inputs", "params:metric_learning", "params:seed"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """The embedding pipeline."""
    return pipeline([
        node(make_class_split,
             inputs=["image_manifest", "quarantine", "image_cache", "ingestion_report",
                     "params:metric_learning"],
             outputs=["metric_learning_manifest", "class_split"], name="make_class_split"),
        node(resolve_embedding_inputs,
             inputs=["ingestion_report", "params:metric_learning.model",
                     "params:metric_learning.image_size"],
             outputs="embedding_model_inputs", name="resolve_embedding_inputs"),
        node(train_embedder, inputs=[*RUN_INPUTS, "embedding_checkpoints", "embedding_live"],
             outputs="trained_embedder", name="train_embedder"),
        node(train_baseline, inputs=[*RUN_INPUTS, "baseline_checkpoints"],
             outputs="baseline_weights", name="train_cross_entropy_baseline"),
        node(embed_evaluation_splits,
             inputs=["trained_embedder", "baseline_weights", *RUN_INPUTS],
             outputs="evaluation_embeddings", name="embed_evaluation_splits"),
        node(score_embedders,
             inputs=["evaluation_embeddings", "metric_learning_manifest", "class_split",
                     "params:metric_learning"],
             outputs="metric_learning_metrics", name="score_embedders"),
        node(make_embedder_sets,
             inputs=["trained_embedder", "metric_learning_metrics", "class_split",
                     "embedding_model_inputs", "params:metric_learning", "params:seed"],
             outputs=["embedding_models", "metric_learning_history"],
             name="make_embedder_sets"),
        node(serve_embedder, inputs=["embedding_models", "metric_learning_metrics"],
             outputs="served_embedder", name="serve_embedder"),
        node(per_class_retrieval,
             inputs=["evaluation_embeddings", "metric_learning_metrics",
                     "metric_learning_manifest", "params:metric_learning"],
             outputs=["per_class_retrieval", "per_class_retrieval_chart"],
             name="per_class_retrieval"),
        node(retrieval_gallery,
             inputs=["evaluation_embeddings", "metric_learning_metrics",
                     "metric_learning_manifest", "ingestion_report", "params:metric_learning",
                     "params:seed"],
             outputs="retrieval_gallery", name="retrieval_gallery"),
        node(embedding_map,
             inputs=["evaluation_embeddings", "metric_learning_metrics",
                     "metric_learning_manifest", "params:metric_learning", "params:seed"],
             outputs="embedding_map", name="embedding_map"),
        node(plot_metric_learning_curve, inputs="metric_learning_history",
             outputs="metric_learning_curve", name="plot_metric_learning_curve"),
        node(export_embedder,
             inputs=["served_embedder", "metric_learning_manifest", "ingestion_report",
                     "params:metric_learning"],
             outputs=["embedder_onnx", "embedder_export_report"], name="export_embedder"),
    ])
