"""Training: one loop for every task (:func:`fit`), its recipe (optimizer, schedules, SWA,
EMA, mixed precision), losses and tasks by name, crash-safe checkpoints, per-epoch logging,
and the launcher that runs a job in one process or several."""

from visrec.core.train.checkpoint import (
    CheckpointStore,
    fingerprint,
    rng_state,
    set_rng_state,
    source_digest,
)
from visrec.core.train.config import (
    PRECISIONS,
    EmaSpec,
    FitConfig,
    SwaSpec,
    resolve_channels_last,
    resolve_precision,
    swa_start_epoch,
)
from visrec.core.train.cpu_bf16 import onednn_cpu_isa
from visrec.core.train.crt import retrain_classifier
from visrec.core.train.distributed import LaunchSpec, backend_for, resolve_devices
from visrec.core.train.epoch import StepOptions, train_one_epoch
from visrec.core.train.launcher import (
    DataSpec,
    TrainedWeights,
    TrainingJob,
    make_data_spec,
    make_job_transform,
    make_train_loader,
    make_training_job,
    make_val_loader,
    run_job,
    train,
)
from visrec.core.train.live import LiveLog
from visrec.core.train.loop import FitResult, fit, format_row, reseed_for_epoch
from visrec.core.train.losses import LOSSES, LossSpec, check_loss, loss_spec, register_loss
from visrec.core.train.losses.metric import (
    METRIC_LOSSES,
    MetricLoss,
    MetricLossError,
    parse_metric_loss,
)
from visrec.core.train.model_spec import ModelSpec, make_model, state_on_cpu
from visrec.core.train.provenance import git_commit
from visrec.core.train.recipe import (
    LR_REFERENCE_BATCH,
    OPTIMIZERS,
    SCHEDULES,
    LrSchedule,
    OptimizerSpec,
    ScheduleSpec,
    make_optimizer,
    make_schedule,
    scaled_lr,
)
from visrec.core.train.tasks import (
    ClassificationTask,
    DistillSpec,
    LossAttached,
    MetricLearningTask,
    Task,
    TaskStep,
)
from visrec.core.train.weight_sets import (
    final_validation,
    retrain_classifiers,
    stage_history,
    weight_set_models,
)

__all__ = [
    "LOSSES",
    "LR_REFERENCE_BATCH",
    "METRIC_LOSSES",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "CheckpointStore",
    "ClassificationTask",
    "DataSpec",
    "DistillSpec",
    "EmaSpec",
    "FitConfig",
    "FitResult",
    "LaunchSpec",
    "LiveLog",
    "LossAttached",
    "LossSpec",
    "LrSchedule",
    "MetricLearningTask",
    "MetricLoss",
    "MetricLossError",
    "ModelSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "StepOptions",
    "SwaSpec",
    "Task",
    "TaskStep",
    "TrainedWeights",
    "TrainingJob",
    "backend_for",
    "check_loss",
    "final_validation",
    "fingerprint",
    "fit",
    "format_row",
    "git_commit",
    "loss_spec",
    "make_data_spec",
    "make_job_transform",
    "make_model",
    "make_optimizer",
    "make_schedule",
    "make_train_loader",
    "make_training_job",
    "make_val_loader",
    "onednn_cpu_isa",
    "parse_metric_loss",
    "register_loss",
    "reseed_for_epoch",
    "resolve_channels_last",
    "resolve_devices",
    "resolve_precision",
    "retrain_classifier",
    "retrain_classifiers",
    "rng_state",
    "run_job",
    "scaled_lr",
    "set_rng_state",
    "source_digest",
    "stage_history",
    "state_on_cpu",
    "swa_start_epoch",
    "train",
    "train_one_epoch",
    "weight_set_models",
]
