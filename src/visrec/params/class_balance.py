"""Parameters of the ``class_balance`` stage."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from visrec.core.balance import BALANCE_PARTS, BALANCE_STRATEGIES, BalanceSettings
from visrec.params.base import Params


class ShotGroupParams(Params):
    """Many/medium/few-shot thresholds in training images (Liu et al. 2019)."""

    key: ClassVar[str] = "class_balance.groups"
    many: int = Field(ge=1, description="many-shot: more than this many training images")
    few: int = Field(ge=1, description="few-shot: fewer than this many training images")

    @model_validator(mode="after")
    def _ordered(self) -> ShotGroupParams:
        if self.few > self.many + 1:
            raise ValueError(f"class_balance.groups: few = {self.few} must be at most many + 1 "
                             f"= {self.many + 1}, so that every class falls in one group")
        return self


class ResampleParams(Params):
    """Random over- or under-sampling of the training rows (``class_balance.resample``)."""

    key: ClassVar[str] = "class_balance.resample"
    ratio: float = Field(gt=0.0, le=1.0,
                         description="smallest / largest class after resampling")


class FocalParams(Params):
    """Focal loss (Lin et al. 2017)."""

    key: ClassVar[str] = "class_balance.focal"
    gamma: float = Field(ge=0.0, le=10.0, description="focusing exponent; 0 is cross-entropy")


class LogitAdjustmentParams(Params):
    """Logit-adjusted loss (Menon et al. 2021)."""

    key: ClassVar[str] = "class_balance.logit_adjustment"
    tau: float = Field(ge=0.0, le=10.0, description="scale of the log prior; 1 = balanced "
                                                     "softmax")


class DrwParams(Params):
    """Deferred re-weighting (Cao et al. 2019)."""

    key: ClassVar[str] = "class_balance.drw"
    start_fraction: float = Field(gt=0.0, lt=1.0,
                                  description="of the epochs before the class weights start")


class CrtParams(Params):
    """Classifier re-training with class-balanced sampling (Kang et al. 2020)."""

    key: ClassVar[str] = "class_balance.crt"
    epochs: int = Field(ge=1, le=1000, description="epochs of the classifier alone")
    lr: float = Field(gt=0.0, le=10.0, description="learning rate per 256 images")


class AutoParams(Params):
    """How ``strategy: auto`` decides (``class_balance.auto``)."""

    key: ClassVar[str] = "class_balance.auto"
    min_imbalance_ratio: float = Field(
        ge=1.0, description="below this train imbalance ratio, no remedy")


class ClassBalanceParams(Params):
    """Analysis of the class distribution and the remedy for imbalance (``class_balance``)."""

    key: ClassVar[str] = "class_balance"
    strategy: str | tuple[str, ...] = Field(
        description="none, auto, or a remedy (oversample, undersample, sqrt_sampler, "
                    "class_balanced_sampler, class_weights, drw, focal, logit_adjustment, "
                    "crt), or a list with at most one remedy per part")
    class_weights: Literal["effective_number", "inverse_frequency"] = Field(
        description="loss weights of class_weights and drw")
    beta: float = Field(ge=0.0, lt=1.0,
                        description="effective number of samples (1 - beta^n) / (1 - beta)")
    groups: ShotGroupParams
    resample: ResampleParams
    focal: FocalParams
    logit_adjustment: LogitAdjustmentParams
    drw: DrwParams
    crt: CrtParams
    auto: AutoParams

    @field_validator("strategy", mode="before")
    @classmethod
    def _known_strategy(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names or not all(
                isinstance(n, str) for n in names):
            raise ValueError(f"give one name or a list of names of {list(BALANCE_STRATEGIES)}")
        for name in names:
            if name not in BALANCE_STRATEGIES:
                close = difflib.get_close_matches(name, BALANCE_STRATEGIES, n=3, cutoff=0.6)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ValueError(f"unknown strategy {name!r}{hint}; accepted: "
                                 f"{', '.join(BALANCE_STRATEGIES)}")
        if {"none", "auto"} & set(names):
            if len(names) > 1:
                raise ValueError("'none' and 'auto' stand alone; list only remedies to combine")
            return value if isinstance(value, str) else tuple(value)
        parts: dict[str, str] = {}
        for name in names:
            part = BALANCE_PARTS[name]
            if part in parts:
                raise ValueError(f"{parts[part]!r} and {name!r} both set the {part}; "
                                 "combine at most one name per part")
            parts[part] = name
        return value if isinstance(value, str) else tuple(value)

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategy as a tuple of names."""
        return (self.strategy,) if isinstance(self.strategy, str) else self.strategy

    def settings(self) -> BalanceSettings:
        """The block as the core's balance settings."""
        return BalanceSettings(
            strategies=self.strategies, class_weights=self.class_weights, beta=self.beta,
            resample_ratio=self.resample.ratio, focal_gamma=self.focal.gamma,
            logit_adjustment_tau=self.logit_adjustment.tau,
            drw_start_fraction=self.drw.start_fraction, crt_epochs=self.crt.epochs,
            crt_lr=self.crt.lr, min_imbalance_ratio=self.auto.min_imbalance_ratio)
