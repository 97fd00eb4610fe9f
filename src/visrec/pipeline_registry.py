"""Pipelines: every folder under ``pipelines/`` by name, plus ``train`` and ``__default__``."""

from importlib import import_module

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The stages of `train`, in order; `demo_data` stays out: it only makes sample images.
TRAIN_STAGES = ("ingestion", "class_balance", "augmentation", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``find_pipelines`` loads only the folders named on the command line
    (``--pipelines=train`` names none), so the stages of ``train`` are created directly.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    stages = [pipelines.get(name) or import_module(f"visrec.pipelines.{name}").create_pipeline()
              for name in TRAIN_STAGES]
    pipelines["train"] = sum(stages, Pipeline([]))
    pipelines["__default__"] = pipelines["train"]
    return pipelines
