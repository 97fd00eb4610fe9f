"""tuning: the plan (budget in trainings, proxy epochs and subset), the Optuna study that
runs, resumes or joins the search, the chosen settings as a parameters file, the
leaderboard, the figures, and a preview of each policy of the space.

The study is a dataset (``tuning_study``: its database), and so are the chosen settings
(``tuned_parameters``), which the training pipeline applies. The nodes share the namespace
``tuning``: ``kedro viz`` draws the search as one collapsible pipeline inside ``train``.
With ``tuning.enabled: false`` the nodes return at once and the settings change nothing.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import plan_search, plot_search, preview_policies, run_search

BLOCKS = ["params:tuning", "params:training", "params:class_balance", "params:augmentation",
          "params:seed"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """The tuning pipeline."""
    return pipeline([
        node(plan_search, inputs=["image_manifest", "ingestion_report", "balance_plan", *BLOCKS],
             outputs="tuning_plan", name="plan_search",
             namespace="tuning"),
        node(run_search,
             inputs=["tuning_study", "tuning_plan", "image_manifest", "image_cache",
                     "ingestion_report", *BLOCKS],
             outputs=["tuning_leaderboard", "tuning_importances", "tuned_parameters"],
             name="run_search",
             namespace="tuning"),
        node(plot_search, inputs=["tuning_leaderboard", "tuning_importances", "tuning_plan"],
             outputs=["tuning_history_chart", "tuning_importance_chart"], name="plot_search",
             namespace="tuning"),
        node(preview_policies,
             inputs=["image_manifest", "image_cache", "ingestion_report", "params:tuning",
                     "params:augmentation", "params:training.image_size", "params:seed"],
             outputs="tuning_policy_previews", name="preview_policies",
             namespace="tuning"),
    ])
