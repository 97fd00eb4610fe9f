"""training: a timm model trained with the Bag of Tricks, SWA and EMA, resumable, on 1-N
processes; classifier re-training when the balance plan asks for it; the weight sets.

In ``kedro viz`` each step is a node with its inputs: the settings of the run (the
configured ones with the tuning's choice applied), the model's input config, the training
run, classifier re-training, the weight sets with their configs, the curve.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    apply_tuned_parameters,
    make_weight_sets,
    plot_learning_curve,
    resolve_model_inputs,
    retrain_classifiers,
    train_model,
)

# What every step after the run reads besides the weights: the images and how they are
# read, augmented and balanced, with the training parameters and seed.
RUN_INPUTS = ["image_manifest", "image_cache", "ingestion_report", "run_balance_plan",
              "run_augmentation_spec", "model_inputs", "run_training", "params:seed"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """The training pipeline."""
    return pipeline([
        node(apply_tuned_parameters,
             inputs=["tuned_parameters", "params:tuning.enabled", "class_counts",
                     "balance_plan", "augmentation_spec", "params:training",
                     "params:class_balance", "params:augmentation"],
             outputs=["run_training", "run_balance_plan", "run_augmentation_spec"],
             name="apply_tuned_parameters"),
        node(resolve_model_inputs,
             inputs=["ingestion_report", "params:training.model", "params:training.image_size"],
             outputs="model_inputs", name="resolve_model_inputs"),
        node(train_model, inputs=[*RUN_INPUTS, "training_checkpoints", "training_live"],
             outputs="trained_weights", name="train_model"),
        node(retrain_classifiers, inputs=["trained_weights", *RUN_INPUTS],
             outputs="retrained_weights", name="retrain_classifiers"),
        node(make_weight_sets, inputs=["retrained_weights", *RUN_INPUTS],
             outputs=["trained_models", "training_history"], name="make_weight_sets"),
        node(plot_learning_curve, inputs="training_history", outputs="learning_curve",
             name="plot_learning_curve"),
    ])
