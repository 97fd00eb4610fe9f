"""Tasks: what a training run learns. The loop asks a task for each batch's loss and for the
validation figures; a new task is one class in one file (see :class:`Task`)."""

from visrec.core.train.tasks.base import Task, TaskStep, unwrap
from visrec.core.train.tasks.classification import ClassificationTask, DistillSpec
from visrec.core.train.tasks.metric import LossAttached, MetricLearningTask, active_share

__all__ = ["ClassificationTask", "DistillSpec", "LossAttached", "MetricLearningTask", "Task",
           "TaskStep", "active_share", "unwrap"]
