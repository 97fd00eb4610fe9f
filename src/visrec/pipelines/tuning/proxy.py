"""One proxy trial: the training recipe with a trial's settings, compressed to the plan's
epochs and trained on its subset in this process, scored on the validation split."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import pandas as pd
import torch

from visrec.core.augment import AugmentationSpec, make_train_transform
from visrec.core.balance import BalancePlan
from visrec.core.data import ImageCache, IngestionReport, manifest_dataset
from visrec.core.models import ModelInputs
from visrec.core.train import final_validation, run_job
from visrec.core.tune import (
    POLICY,
    RECIPE_PREFIX,
    STRATEGY,
    Outcome,
    Report,
    SearchPlan,
    epoch_cost,
    epoch_images,
    policy_cost,
)
from visrec.params import AugmentationParams, TrainingParams
from visrec.params.tuning import with_value

logger = logging.getLogger(__name__)

COST_IMAGES = 64  # images timed through a policy's transform for its cost
METRIC_COLUMNS = {"balanced_accuracy": "balanced_accuracy", "accuracy": "top1"}


def policy_cost_us(spec: AugmentationSpec, rows: pd.DataFrame, cache: ImageCache,
                   report: IngestionReport, inputs: ModelInputs, seed: int) -> float:
    """Augmentation time per image in microseconds: both halves of the transform, timed in
    this process on up to 64 training images (the best of three passes after a warm-up)."""
    train = rows[rows["split"] == "train"].head(COST_IMAGES)
    transform = make_train_transform(
        spec, inputs.image_size, inputs.mean, inputs.std, inputs.interpolation,
        resolution=cache.settings.resolution if cache.enabled else None)
    images = manifest_dataset(train, cache, report.root, None, report.channels)
    decoded = [images[index][0] for index in range(len(train))]
    torch.manual_seed(seed)
    best = math.inf
    for attempt in range(4):  # the first pass warms up (lazy imports, imgaug's build)
        start = time.perf_counter()
        transform.batch(torch.stack([transform.sample(image) for image in decoded]))
        if attempt:
            best = min(best, time.perf_counter() - start)
    return 1e6 * best / max(len(decoded), 1)


@dataclass
class EpochReporter:
    """Hands each epoch's validation score and the trial's cost so far to the search."""

    report: Report
    column: str  # history column of the score
    epoch_cost: float  # image-steps of one epoch

    def __call__(self, history: list[dict[str, Any]]) -> None:
        """Report the last epoch (may raise ``optuna.TrialPruned``)."""
        epochs = len(history)
        self.report(epochs, float(history[-1][self.column]), epochs * self.epoch_cost)


@dataclass
class ProxyTrainer:
    """Trains the proxy of a trial's settings (a :data:`visrec.core.tune.Trainer`).

    Attributes:
        rows: The manifest with the plan's subset of the training split.
        cache: The packed images.
        report: The ingestion report.
        inputs: The model's input config.
        training: The ``training`` block as given.
        augmentation: The ``augmentation`` block.
        plans: The balance plan of each strategy choice, on the subset.
        plan: The search's plan (proxy epochs).
        metric: ``tuning.metric``.
        seed: The same for every trial: settings differ, the draw of data does not.
        device: Where the proxies train.
        study: Keeps each policy's time per image for every process (ties go to the
            cheaper setting, by the same figures everywhere).
    """

    rows: pd.DataFrame
    cache: ImageCache
    report: IngestionReport
    inputs: ModelInputs
    training: dict[str, Any]
    augmentation: AugmentationParams
    plans: dict[str, BalancePlan]
    plan: SearchPlan
    metric: str
    seed: int
    device: torch.device
    study: optuna.Study
    policy_costs: dict[str, float] = field(default_factory=dict)

    def params(self, settings: dict[str, Any]) -> TrainingParams:
        """The proxy's training block: the trial's recipe keys set, ``plan.proxy_epochs``
        epochs (every length in epochs scaled with them: frozen, warm-up, step and cycle
        epochs; SWA from its fraction), one process, no checkpoint to resume."""
        raw = copy.deepcopy(self.training)
        for path, value in settings.items():
            if path.startswith(RECIPE_PREFIX):
                raw = with_value(raw, path.removeprefix(RECIPE_PREFIX), value)
        proxy = self.plan.proxy_epochs
        ratio = proxy / raw["epochs"]
        schedule, swa = raw["schedule"], raw["swa"]
        raw |= {"epochs": proxy, "resume": "never", "devices": 1,
                "freeze_backbone_epochs": min(round(raw["freeze_backbone_epochs"] * ratio),
                                              proxy - 1)}
        raw["schedule"] = schedule | {
            "warmup_epochs": round(schedule["warmup_epochs"] * ratio),
            "step_epochs": max(1, round(schedule["step_epochs"] * ratio)),
            "cycle_epochs": schedule["cycle_epochs"] * ratio}
        raw["swa"] = swa | {"start_epoch": None,
                            "anneal_epochs": round(swa["anneal_epochs"] * ratio),
                            "cycle_epochs": max(1, round(swa["cycle_epochs"] * ratio))}
        return TrainingParams.model_validate(raw)

    def _cost_us(self, spec: AugmentationSpec) -> float:
        if spec.policy not in self.policy_costs:
            self.policy_costs[spec.policy] = policy_cost(
                self.study, spec.policy, lambda: policy_cost_us(
                    spec, self.rows, self.cache, self.report, self.inputs, self.seed))
        return self.policy_costs[spec.policy]

    def __call__(self, settings: dict[str, Any], report: Report) -> Outcome:
        """Train the proxy of ``settings``, reporting each epoch; score its weight sets."""
        params = self.params(settings)
        spec = self.augmentation.spec(settings[POLICY], "tuning.space.policies")
        balance = self.plans[settings[STRATEGY]]
        images = epoch_images(balance)
        column = METRIC_COLUMNS[self.metric]
        job = params.job(self.rows, self.cache, self.report, balance, spec, self.inputs,
                         self.seed, self.device)
        job = replace(job, live=EpochReporter(report, f"val_{column}",
                                              epoch_cost(images, self.plan.val_images)))
        start = time.perf_counter()
        result = run_job(job)
        if result is None:  # one process: rank 0 always returns
            raise RuntimeError("tuning: the proxy training returned nothing")
        figures = final_validation(result, params.model_spec(self.report), job.data,
                                   self.device)
        scored = {name: values[column] for name, values in figures.items()
                  if values is not None and not math.isnan(values[column])}
        if not scored:
            raise FloatingPointError("tuning: no weight set of the proxy has a score")
        name = max(scored, key=lambda key: (scored[key], key == "final"))
        return Outcome(value=float(scored[name]), cost_key=(images, self._cost_us(spec)),
                       details={"weight_set": name,
                                "seconds": time.perf_counter() - start,
                                "scores": {key: float(v) for key, v in scored.items()}})
