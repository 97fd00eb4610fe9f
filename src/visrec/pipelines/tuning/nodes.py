"""Nodes of the tuning pipeline: the plan, the Optuna search, its report and previews."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.balance import BalancePlan, make_balance_plan
from visrec.core.balance.analysis import class_counts as count_classes
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.models import model_inputs, select_device
from visrec.core.plots import (
    augmentation_preview_figure,
    importance_figure,
    tuning_history_figure,
)
from visrec.core.tune import (
    LEADERBOARD_COLUMNS,
    POLICY,
    STRATEGY,
    Noise,
    Search,
    SearchPlan,
    SearchSpace,
    importances,
    leaderboard,
    make_plan,
    make_sampler,
    open_study,
    proxy_size,
    safe_url,
    strategy_choice,
    strategy_value,
    subset_rows,
    tuned_parameters,
)
from visrec.params import AugmentationParams, ClassBalanceParams, TrainingParams, TuningParams
from visrec.params.tuning import MACHINE_KEYS, settings_digest, value_at

from .proxy import ProxyTrainer

logger = logging.getLogger(__name__)


def _space(tuning: TuningParams, training: TrainingParams, class_balance: ClassBalanceParams,
           augmentation: AugmentationParams) -> SearchSpace:
    return tuning.search_space(training.model_dump(), augmentation.model_dump(),
                               class_balance.model_dump())


def _strategy_plans(space: SearchSpace, counts: pd.DataFrame,
                    class_balance: ClassBalanceParams) -> dict[str, BalancePlan]:
    """The balance plan of each strategy choice of ``space`` on ``counts``."""
    raw = class_balance.model_dump()
    return {choice: make_balance_plan(counts, ClassBalanceParams.model_validate(
        raw | {"strategy": strategy_value(choice)}).settings()) for choice in space.strategies}


def _val_counts(manifest: pd.DataFrame, report: IngestionReport,
                warn: bool = False) -> tuple[int, ...]:
    """Validation images per class; ``warn``: log the classes without any (scored
    without them)."""
    counts = count_classes(manifest, list(report.classes))
    empty = counts.loc[counts["val"] == 0, "label"].astype(str).tolist()
    if len(empty) == len(counts):
        raise ValueError("tuning needs validation images, and the val split is empty: set "
                         "ingestion.val_fraction > 0 (or give a val folder), or "
                         "tuning.enabled: false")
    if empty and warn:
        logger.warning(
            "tuning: %d class(es) have no validation image (%s): the search scores the "
            "other %d; give them more images (or a val folder) to tune for them too",
            len(empty), ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else ""),
            len(counts) - len(empty))
    return tuple(int(n) for n in counts["val"])


def plan_search(manifest: pd.DataFrame, ingestion_report: IngestionReport,
                balance_plan: BalancePlan, tuning: TuningParams, training: TrainingParams,
                class_balance: ClassBalanceParams, augmentation: AugmentationParams,
                seed: int) -> SearchPlan:
    """The search's size from ``tuning.budget`` and the folder: proxy epochs, subset and
    what a trial costs, logged before the first trial.

    Args:
        manifest: The ingestion manifest.
        ingestion_report: Gives the classes.
        balance_plan: The configured balance plan (an epoch of the full training).
        tuning: The ``tuning`` block.
        training: The ``training`` block (epochs, recipe).
        class_balance: The ``class_balance`` block (the strategies' plans).
        augmentation: The ``augmentation`` block (policies of the space).
        seed: Draws the subset.
    """
    space = _space(tuning, training, class_balance, augmentation)
    val_images = sum(_val_counts(manifest, ingestion_report, warn=True)) if tuning.enabled else 0
    train_images = int((manifest["split"] == "train").sum())
    proxy_epochs, share = proxy_size(tuning.budget, training.epochs, train_images,
                                     val_images)
    subset = count_classes(subset_rows(manifest, share, seed),
                           list(ingestion_report.classes))
    plan = make_plan(tuning.budget, training.epochs, balance_plan,
                     _strategy_plans(space, subset, class_balance),
                     subset["train"].tolist(), share, proxy_epochs, val_images)
    if tuning.enabled:
        logger.info("tuning plan: %s", plan.describe())
        if plan.max_trial_cost > plan.budget_cost:
            logger.warning("tuning: tuning.budget = %g pays for no proxy trial here: training "
                           "keeps the configured settings; raise tuning.budget to search",
                           tuning.budget)
    return plan


def _fingerprint(manifest: pd.DataFrame, plan: SearchPlan, space: SearchSpace,
                 blocks: dict[str, Any]) -> str:
    """What the study's trials depend on: the images and splits, the proxy's size, the
    space and the blocks the settings start from."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(
        manifest[["path", "label", "split"]], index=False).to_numpy().tobytes())
    digest.update(json.dumps({"proxy": [plan.proxy_epochs, plan.subset, plan.val_images],
                              "space": repr(space), **blocks},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()


def run_search(tuning_study: str, tuning_plan: SearchPlan, manifest: pd.DataFrame,
               cache: ImageCache, ingestion_report: IngestionReport, tuning: TuningParams,
               training: TrainingParams, class_balance: ClassBalanceParams,
               augmentation: AugmentationParams,
               seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Run (or resume, or join) the study within the budget, and report it.

    Args:
        tuning_study: The database URL of the catalog's study (``tuning.storage``
            replaces it when set).
        tuning_plan: From :func:`plan_search`.

    Returns:
        ``(leaderboard, importances, tuned_parameters)``; without a search an empty
        leaderboard and importances, and parameters that change nothing.
    """
    if not tuning.enabled:
        return (pd.DataFrame(columns=LEADERBOARD_COLUMNS),
                pd.DataFrame(columns=["parameter", "importance"]), {"search": {"enabled": False}})
    space = _space(tuning, training, class_balance, augmentation)
    noise = Noise(_val_counts(manifest, ingestion_report), tuning.metric)
    rows = subset_rows(manifest, tuning_plan.subset, seed)
    blocks: dict[str, Any] = {
        "training": training.model_dump(exclude=set(MACHINE_KEYS)),
        "class_balance": class_balance.model_dump(),
        "augmentation": augmentation.model_dump(), "seed": seed, "metric": tuning.metric}
    fingerprint = _fingerprint(manifest, tuning_plan, space, blocks)
    url = tuning.storage or tuning_study
    name = tuning.study_name or f"visrec-{fingerprint[:12]}"
    written = augmentation.spec().policy  # the configured policy, as the space writes it
    configured = {POLICY: next(p for p in space.policies
                               if augmentation.spec(p).policy == written),
                  STRATEGY: strategy_choice(class_balance.strategy),
                  **{dimension.name: value_at(blocks["training"], dimension.path)
                     for dimension in space.recipe}}
    study = open_study(url, name, fingerprint, make_sampler(tuning.sampler, seed),
                       first=space.searched(configured))
    logger.info("tuning: study %r in %s, %d trials so far", name, safe_url(url),
                len(study.get_trials(deepcopy=False)))
    trainer = ProxyTrainer(
        rows=rows, cache=cache, report=ingestion_report,
        inputs=model_inputs(training.model, training.image_size,
                            len(ingestion_report.classes), ingestion_report.channels),
        training=training.model_dump(), augmentation=augmentation,
        plans=_strategy_plans(space, count_classes(rows, list(ingestion_report.classes)),
                              class_balance),
        plan=tuning_plan, metric=tuning.metric, seed=seed,
        device=select_device(training.device), study=study)
    # A diverged recipe, or one too big for the device's memory, fails its trial alone.
    Search(study=study, plan=tuning_plan, space=space, noise=noise, trainer=trainer,
           pruner=tuning.pruner.name, reduction_factor=tuning.pruner.reduction_factor,
           catch=(FloatingPointError, torch.OutOfMemoryError)).run()
    table = leaderboard(study, noise, tuning_plan.training_cost)
    if not (table["state"] == "complete").any():
        reason = ("every trial failed (see the log)" if len(table) else
                  f"tuning.budget = {tuning.budget:g} pays for no proxy trial here (one costs "
                  f"{tuning_plan.max_trial_cost / tuning_plan.training_cost:.2f} training)")
        logger.warning("tuning: %s; training keeps the configured settings", reason)
        return (table, pd.DataFrame(columns=["parameter", "importance"]),
                {"search": {"study": name, "trials": len(table), "kept": reason}})
    chosen = tuned_parameters(study, space, noise, tuning_plan.training_cost)
    chosen["search"]["based_on"] = settings_digest(training, class_balance, augmentation)
    return table, importances(study, seed), chosen


def plot_search(tuning_leaderboard: pd.DataFrame, tuning_importances: pd.DataFrame,
                tuning_plan: SearchPlan) -> tuple[Figure, Figure]:
    """The optimisation history (each trial's score with its standard error, the best so
    far) and the parameters' importances."""
    title = (f"{len(tuning_leaderboard)} trials, proxies of {tuning_plan.proxy_epochs} epochs "
             f"on {tuning_plan.subset:.0%} of the training images")
    return (tuning_history_figure(tuning_leaderboard, title),
            importance_figure(tuning_importances))


def preview_policies(manifest: pd.DataFrame, cache: ImageCache,
                     ingestion_report: IngestionReport, tuning: TuningParams,
                     augmentation: AugmentationParams, image_size: int | None,
                     seed: int) -> dict[str, Figure]:
    """A preview grid of each policy of the space (``policy_1`` ...); of
    ``augmentation.policy`` alone when tuning is off or the space lists none."""
    policies = (tuning.space.policies if tuning.enabled and tuning.space.policies
                else [augmentation.policy])
    return {f"policy_{index + 1}": augmentation_preview_figure(
        manifest, cache, ingestion_report, augmentation.spec(policy), image_size,
        augmentation.preview_images, augmentation.preview_repeats, seed)
        for index, policy in enumerate(policies)}

