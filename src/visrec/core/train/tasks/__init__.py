"""Tasks: what a training run learns. The loop asks a task for each batch's loss and for the
validation figures; a new task is one class in one file (see :class:`Task`)."""

from visrec.core.train.tasks.base import Task, TaskStep
from visrec.core.train.tasks.classification import ClassificationTask, DistillSpec

__all__ = ["ClassificationTask", "DistillSpec", "Task", "TaskStep"]
