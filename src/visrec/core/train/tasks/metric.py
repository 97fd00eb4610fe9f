"""Metric learning: an embedding trained with a pytorch-metric-learning loss (and its
miner) on P x K batches, validated by retrieval among held-out classes (MAP@R).

With several processes the loss and the miner are wrapped in pytorch-metric-learning's
``DistributedLossWrapper`` / ``DistributedMinerWrapper``: they gather every process's
embeddings, so pairs and triplets span the whole global batch, as in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.evaluate import predict_logits
from visrec.core.models import EmbeddingNet, timm_api
from visrec.core.retrieval import retrieval_metrics
from visrec.core.train.losses.metric import MetricLoss
from visrec.core.train.tasks.base import Task, TaskStep, unwrap


class LossAttached(nn.Module):
    """The embedding model and its loss in one module, so that the loop's optimizer, EMA,
    SWA and checkpoints cover a proxy loss's proxies too; the forward pass is what the loss
    trains on (an :class:`~visrec.core.models.EmbeddingNet`'s ``project``).

    Attributes:
        net: The embedding model (what a weight set keeps).
        criterion: The loss module (proxies, if any).
    """

    def __init__(self, net: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.net, self.criterion = net, criterion

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``images`` that the loss trains on."""
        if isinstance(self.net, EmbeddingNet):
            return self.net.project(images)
        return self.net(images)

    def get_classifier(self) -> nn.Module:
        """What trains while the trunk is frozen: the embedder and the proxies."""
        return nn.ModuleList([timm_api(self.net).get_classifier(), self.criterion])


def tuples_in_batch(labels: torch.Tensor, triplets: bool) -> int:
    """Triplets (anchor, positive, negative), or positive and negative pairs, of a batch."""
    same = labels[:, None] == labels[None, :]
    positives = same.sum(dim=1) - 1
    negatives = (~same).sum(dim=1)
    if triplets:
        return int((positives * negatives).sum())
    return int(positives.sum() + negatives.sum())


def _distributed() -> bool:
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _gathered(labels: torch.Tensor) -> torch.Tensor:
    """The labels of every process's batch, in rank order (this batch's alone in one)."""
    if not _distributed():
        return labels
    parts = [torch.empty_like(labels) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def active_share(mined: tuple[torch.Tensor, ...], labels: torch.Tensor) -> float:
    """The share of the batch's triplets (3-tuples) or pairs (4-tuples) the miner kept."""
    triplets = len(mined) == 3
    kept = len(mined[0]) if triplets else len(mined[0]) + len(mined[2])
    return kept / max(tuples_in_batch(labels, triplets), 1)


@dataclass
class MetricLearningTask(Task):
    """Learning unit-length embeddings whose neighbours share their class.

    Attributes:
        loss: The loss and its options (:data:`~visrec.core.train.losses.METRIC_LOSSES`).
        num_classes: Training classes (one proxy each for proxy losses).
        embedding_size: Dimensions of the embedding.
        knn_backend: k-NN search of validation, ``torch`` or ``faiss``.
    """

    score: ClassVar[str] = "mean_average_precision_at_r"

    loss: MetricLoss
    num_classes: int
    embedding_size: int
    knn_backend: str = "torch"
    _miner: Any = field(default=None, init=False, repr=False, compare=False)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model with the loss attached (its proxies train with it); the loss gathers
        the embeddings of every process when there are several."""
        criterion, _ = self.loss.build(self.num_classes, self.embedding_size)
        if _distributed():
            from pytorch_metric_learning.utils import distributed  # noqa: PLC0415

            criterion = distributed.DistributedLossWrapper(criterion)
        return LossAttached(model, criterion)

    def product(self, trained: nn.Module) -> nn.Module:
        """The embedding model without the loss."""
        return trained.net if isinstance(trained, LossAttached) else trained

    def setup(self, model: nn.Module, device: torch.device, channels_last: bool) -> None:
        """Make the method's miner, if it has one (gathering every process's embeddings
        when there are several)."""
        miner = self.loss.miner()
        if miner is not None and _distributed():
            from pytorch_metric_learning.utils import distributed  # noqa: PLC0415

            miner = distributed.DistributedMinerWrapper(miner)
        self._miner = miner

    def step(self, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor) -> TaskStep:
        """The loss of the batch's embeddings on the pairs or triplets the miner keeps, and
        the share it keeps (``train_active``)."""
        embeddings = model(images).float()
        criterion = cast(nn.Module, unwrap(model).criterion)
        sums: dict[str, torch.Tensor | float] = {}
        if self._miner is None:
            loss = criterion(embeddings, targets)
        else:
            mined = self._miner(embeddings, targets)
            loss = criterion(embeddings, targets, mined)
            sums["active"] = active_share(mined, _gathered(targets)) * len(targets)
        return TaskStep(loss, len(targets), sums)

    def validate(self, model: nn.Module, loader: DataLoader,
                 device: torch.device) -> dict[str, float]:
        """Precision@1, R-Precision and MAP@R among the validation classes' images, of
        what the model serves (its trunk's features with ``output="trunk"``)."""
        embeddings, labels = predict_logits(self.product(unwrap(model)), loader, device)
        figures = retrieval_metrics(torch.from_numpy(embeddings), labels,
                                    backend=self.knn_backend)
        return {name: float(value) for name, value in figures.items()
                if name not in ("num_query_images", "num_classes")}
