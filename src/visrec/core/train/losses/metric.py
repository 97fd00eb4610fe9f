"""Metric-learning losses by name, written like augmentation policies: ``triplet``,
``triplet(margin=0.2, mining=semihard)``, ``multi_similarity(epsilon=0.1)``, ...

Each name is a pydantic model of its options (checked when parameters are validated) that
builds pytorch-metric-learning's loss and, where the method has one, its miner:

- ``contrastive`` (Hadsell et al. 2006): all pairs, positive and negative margins.
- ``triplet`` (Hermans et al. 2017): margin, with ``batch_hard`` (hardest positive and
  negative per anchor), ``semihard`` or ``all`` triplet mining.
- ``multi_similarity`` (Wang et al. 2019): with its miner (``epsilon``).
- ``proxy_anchor`` (Kim et al. 2020), ``normalized_softmax`` (Zhai & Wu 2019),
  ``arcface`` (Deng et al. 2019), ``cosface`` (Wang et al. 2018): one learnt proxy per
  training class; the proxies get their own learning rate.
- ``ntxent`` (Chen et al. 2020, supervised): every positive pair against the negatives.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from visrec.core.calls import build_options, call_arguments, call_name, format_value
from visrec.core.calls import parse_expression as parse_call_string


class MetricLossError(ValueError):
    """A metric-learning loss string that cannot be parsed or has bad options."""


class MetricLoss(BaseModel):
    """Options of one metric-learning loss; subclasses name it and the
    ``pytorch_metric_learning.losses`` class it builds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    loss_class: ClassVar[str]
    positional: ClassVar[str | None] = None
    proxies: ClassVar[bool] = False  # one learnt vector per training class

    def canonical(self) -> str:
        """The loss with all its options, as a loss string writes it."""
        arguments = ", ".join(f"{k}={format_value(v)}" for k, v in self.model_dump().items())
        return f"{self.name}({arguments})" if arguments else self.name

    def loss_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the loss class: the options, unless a subclass says."""
        return self.model_dump()

    def miner(self) -> nn.Module | None:
        """The method's miner, or None: every pair or triplet of the batch counts."""
        return None

    def build(self, num_classes: int, embedding_size: int) -> tuple[nn.Module, nn.Module | None]:
        """``(loss, miner)``: pytorch-metric-learning modules (miner None when unused).

        Args:
            num_classes: Training classes (proxy losses have one proxy each).
            embedding_size: Dimensions of the embeddings.
        """
        from pytorch_metric_learning import losses  # noqa: PLC0415

        proxies = (num_classes, embedding_size) if self.proxies else ()
        return getattr(losses, self.loss_class)(*proxies, **self.loss_arguments()), self.miner()


class Contrastive(MetricLoss):
    name: ClassVar[str] = "contrastive"
    loss_class: ClassVar[str] = "ContrastiveLoss"
    pos_margin: float = Field(default=0.0, ge=0.0)
    neg_margin: float = Field(default=1.0, gt=0.0)


class Triplet(MetricLoss):
    name: ClassVar[str] = "triplet"
    loss_class: ClassVar[str] = "TripletMarginLoss"
    positional: ClassVar[str | None] = "margin"
    margin: float = Field(default=0.1, gt=0.0)
    mining: Literal["batch_hard", "semihard", "all"] = "batch_hard"

    def loss_arguments(self) -> dict[str, Any]:
        return {"margin": self.margin}

    def miner(self) -> nn.Module | None:
        from pytorch_metric_learning import miners  # noqa: PLC0415

        if self.mining == "batch_hard":
            return miners.BatchHardMiner()
        return miners.TripletMarginMiner(margin=self.margin, type_of_triplets=self.mining)


class MultiSimilarity(MetricLoss):
    name: ClassVar[str] = "multi_similarity"
    loss_class: ClassVar[str] = "MultiSimilarityLoss"
    alpha: float = Field(default=2.0, gt=0.0)
    beta: float = Field(default=50.0, gt=0.0)
    base: float = Field(default=0.5)
    epsilon: float = Field(default=0.1, ge=0.0, description="the miner's margin")

    def loss_arguments(self) -> dict[str, Any]:
        return self.model_dump(exclude={"epsilon"})

    def miner(self) -> nn.Module | None:
        from pytorch_metric_learning import miners  # noqa: PLC0415

        return miners.MultiSimilarityMiner(epsilon=self.epsilon)


class ProxyAnchor(MetricLoss):
    name: ClassVar[str] = "proxy_anchor"
    loss_class: ClassVar[str] = "ProxyAnchorLoss"
    proxies: ClassVar[bool] = True
    margin: float = Field(default=0.1, ge=0.0)
    alpha: float = Field(default=32.0, gt=0.0)


class NormalizedSoftmax(MetricLoss):
    name: ClassVar[str] = "normalized_softmax"
    loss_class: ClassVar[str] = "NormalizedSoftmaxLoss"
    proxies: ClassVar[bool] = True
    temperature: float = Field(default=0.05, gt=0.0)


class ArcFace(MetricLoss):
    name: ClassVar[str] = "arcface"
    loss_class: ClassVar[str] = "ArcFaceLoss"
    proxies: ClassVar[bool] = True
    margin: float = Field(default=28.6, ge=0.0, lt=90.0, description="degrees")
    scale: float = Field(default=64.0, gt=0.0)


class CosFace(MetricLoss):
    name: ClassVar[str] = "cosface"
    loss_class: ClassVar[str] = "CosFaceLoss"
    proxies: ClassVar[bool] = True
    margin: float = Field(default=0.35, ge=0.0)
    scale: float = Field(default=64.0, gt=0.0)


class NTXent(MetricLoss):
    name: ClassVar[str] = "ntxent"
    loss_class: ClassVar[str] = "NTXentLoss"
    temperature: float = Field(default=0.07, gt=0.0)


METRIC_LOSSES: dict[str, type[MetricLoss]] = {kind.name: kind for kind in (
    Contrastive, Triplet, MultiSimilarity, ProxyAnchor, NormalizedSoftmax, ArcFace, CosFace,
    NTXent)}


def parse_metric_loss(text: str) -> MetricLoss:
    """The loss of a string such as ``triplet(margin=0.2, mining=semihard)``.

    Raises:
        MetricLossError: With what is wrong and what would be accepted.
    """
    hint = f"write name or name(key=value, ...); names: {list(METRIC_LOSSES)}"
    tree = parse_call_string(text, MetricLossError, "a loss", hint)
    written, call = call_name(tree)
    if written is None:
        raise MetricLossError(f"{text!r} is not a loss: {hint}")
    kind = METRIC_LOSSES.get(written.lower())
    if kind is None:
        raise MetricLossError(f"unknown loss {written!r}; accepted: {list(METRIC_LOSSES)}")
    arguments: dict[str, Any] = {} if call is None else call_arguments(
        call, kind.name, kind.model_fields, kind.positional, text.strip(), MetricLossError)
    return build_options(kind, kind.name, arguments, MetricLossError)
