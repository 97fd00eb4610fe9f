"""class_balance: the class distribution (counts, imbalance, groups), its chart, the plan."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import analyse_class_distribution, plan_balance, plot_class_distribution


def create_pipeline(**kwargs: object) -> Pipeline:
    """The class_balance pipeline."""
    return pipeline([
        node(analyse_class_distribution,
             inputs=["image_manifest", "ingestion_report", "params:class_balance"],
             outputs=["class_counts", "class_balance_report"], name="analyse_class_distribution"),
        node(plan_balance, inputs=["class_counts", "params:class_balance"],
             outputs="balance_plan", name="plan_balance"),
        node(plot_class_distribution, inputs=["class_counts", "class_balance_report"],
             outputs="class_distribution_plot", name="plot_class_distribution"),
    ])
