"""Pipelines: every folder under ``pipelines/`` by name, plus the composed ``train`` (and
``__default__``) and ``metric_learning``."""

import warnings
from importlib import import_module

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The stages of `train`, in order; `demo_data` stays out (it only makes sample images), and
# so does `predict` (it needs new images: `--params "predict.input=FOLDER"`).
TRAIN_STAGES = ("ingestion", "class_balance", "augmentation", "tuning", "training",
                "evaluation", "export")
# From an image folder to the metrics of an embedding: the same ingestion, then the stage.
METRIC_LEARNING_STAGES = ("ingestion", "embedding")
COMPOSED = ("train", "__default__", "metric_learning")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``find_pipelines`` loads only the folders named on the command line, and warns about
    names that are no folder (``--pipelines=train``); the stages of the composed pipelines
    are therefore created here directly, and a stage that fails to import raises.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    with warnings.catch_warnings():
        names = "|".join(COMPOSED)
        warnings.filterwarnings("ignore", message=rf".*'visrec\.pipelines\.({names})' module")
        pipelines = find_pipelines(raise_errors=False)
    def composed(names: tuple[str, ...]) -> Pipeline:
        stages = [pipelines.get(name)
                  or import_module(f"visrec.pipelines.{name}").create_pipeline()
                  for name in names]
        return sum(stages, Pipeline([]))

    pipelines["train"] = composed(TRAIN_STAGES)
    pipelines["__default__"] = pipelines["train"]
    pipelines["metric_learning"] = composed(METRIC_LEARNING_STAGES)
    return pipelines
