"""Typed parameter blocks, one model per ``conf/base/parameters_<pipeline>.yml`` block.

The models hold types and checks; the values live in ``conf/base`` (a test fails when
the two disagree). Each model turns its validated block into the core's types
(:meth:`ClassBalanceParams.settings`, :meth:`TrainingParams.job`, ...), so that
:mod:`visrec.core` never imports this package.
"""

from visrec.params.augmentation import AugmentationParams
from visrec.params.base import (
    ParameterError,
    Params,
    check_architecture,
    format_validation_error,
)
from visrec.params.class_balance import (
    AutoParams,
    ClassBalanceParams,
    CrtParams,
    DrwParams,
    FocalParams,
    LogitAdjustmentParams,
    ResampleParams,
    ShotGroupParams,
)
from visrec.params.data import CacheParams, DemoDataParams, IngestionParams
from visrec.params.evaluation import EvaluationParams, ExportParams, PredictParams
from visrec.params.metric_learning import MetricLearningParams, RetrieveParams, SplitParams
from visrec.params.recipe import (
    DistillationParams,
    DistributedParams,
    EmaParams,
    LossParams,
    MixupParams,
    ScheduleParams,
    SwaParams,
)
from visrec.params.run import RunParams
from visrec.params.training import TrainingParams
from visrec.params.tuning import PrunerParams, SpaceParams, TuningParams

# Every top-level block and its model, in pipeline order: the parameter reference
# (docs/parameters.md) and the test that conf/base and the models agree walk this.
BLOCKS: dict[str, type[Params]] = {
    "demo_data": DemoDataParams,
    "ingestion": IngestionParams,
    "class_balance": ClassBalanceParams,
    "augmentation": AugmentationParams,
    "tuning": TuningParams,
    "training": TrainingParams,
    "evaluation": EvaluationParams,
    "predict": PredictParams,
    "export": ExportParams,
    "metric_learning": MetricLearningParams,
    "retrieve": RetrieveParams,
}

__all__ = [
    "BLOCKS", "AugmentationParams", "AutoParams", "CacheParams",
    "ClassBalanceParams", "CrtParams", "DemoDataParams", "DistillationParams",
    "DistributedParams", "DrwParams", "EmaParams", "EvaluationParams", "ExportParams",
    "FocalParams", "IngestionParams", "LogitAdjustmentParams", "LossParams",
    "MetricLearningParams", "MixupParams",
    "ParameterError", "Params", "PredictParams", "PrunerParams", "ResampleParams", "RetrieveParams",
    "RunParams", "ScheduleParams", "ShotGroupParams", "SpaceParams", "SplitParams",
    "SwaParams", "TrainingParams", "TuningParams", "check_architecture",
    "format_validation_error",
]
