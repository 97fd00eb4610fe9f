"""class_balance: counts, imbalance ratio, a bar chart and the balancing plan."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import count_classes, plan_balance, plot_class_distribution


def create_pipeline(**kwargs: object) -> Pipeline:
    """The class_balance pipeline."""
    return pipeline([
        node(count_classes, inputs=["image_manifest", "ingestion_report"],
             outputs="class_counts", name="count_classes"),
        node(plan_balance, inputs=["class_counts", "params:class_balance"],
             outputs="balance_plan", name="plan_balance"),
        node(plot_class_distribution, inputs=["class_counts", "balance_plan"],
             outputs="class_distribution_plot", name="plot_class_distribution"),
    ])
