"""Nodes of the augmentation pipeline: the policy, chosen by a search or named, and previews."""

import logging
import math
import time

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.augment import (
    AugmentationSpec,
    Score,
    SearchChoice,
    leaderboard,
    make_eval_transform,
    make_train_transform,
    rank,
    rung_epochs,
    survivors,
)
from visrec.core.balance import BalancePlan
from visrec.core.data import ImageCache, IngestionReport, manifest_dataset
from visrec.core.models import ModelInputs, model_inputs, select_device
from visrec.core.plots import image_grid_figure, leaderboard_figure
from visrec.core.train import run_job
from visrec.params import AugmentationParams, SearchParams, TrainingParams

logger = logging.getLogger(__name__)

COST_IMAGES = 64  # images timed through a candidate's transform for its cost
LEADERBOARD_COLUMNS = ["place", "candidate", "written", "policy", "reached_rung", "cost_us",
                       "seconds", "selected"]


def _proxy_params(training: TrainingParams, search: SearchParams, epochs: int) -> TrainingParams:
    """The training recipe of a proxy run: ``epochs`` epochs, one process, no SWA or EMA."""
    raw = training.model_dump()
    raw |= {"model": search.model or training.model, "epochs": epochs, "resume": "never",
            "devices": 1, "swa": raw["swa"] | {"enabled": False},
            "ema": raw["ema"] | {"enabled": False},
            "freeze_backbone_epochs": min(training.freeze_backbone_epochs, epochs - 1)}
    if search.model is not None and search.model != training.model:
        raw["pretrained_path"] = None  # the file holds another architecture's weights
    return TrainingParams.model_validate(raw)


def _subset(manifest: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``manifest`` with ``share`` of each training class (at least one image each)."""
    if share >= 1.0:
        return manifest
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for _, rows in manifest[manifest["split"] == "train"].groupby("label"):
        count = max(1, math.ceil(share * len(rows)))
        keep.extend(rng.choice(rows.index.to_numpy(), size=count, replace=False))
    return manifest[(manifest["split"] != "train") | manifest.index.isin(keep)]


def _cost_us(spec: AugmentationSpec, manifest: pd.DataFrame, cache: ImageCache,
             ingestion_report: IngestionReport, inputs: ModelInputs, seed: int) -> float:
    """Augmentation time per image in microseconds: both halves of the transform, timed in
    this process on up to 64 training images (the best of three passes after a warm-up)."""
    rows = manifest[manifest["split"] == "train"].head(COST_IMAGES)
    transform = make_train_transform(
        spec, inputs.image_size, inputs.mean, inputs.std, inputs.interpolation,
        resolution=cache.settings.resolution if cache.enabled else None)
    images = manifest_dataset(rows, cache, ingestion_report.root, None,
                              ingestion_report.channels)
    decoded = [images[index][0] for index in range(len(rows))]
    torch.manual_seed(seed)
    best = math.inf
    for attempt in range(4):  # the first pass warms up (lazy imports, imgaug's build)
        start = time.perf_counter()
        transform.batch(torch.stack([transform.sample(image) for image in decoded]))
        if attempt:
            best = min(best, time.perf_counter() - start)
    return 1e6 * best / max(len(decoded), 1)


def _proxy_score(index: int, rung: int, epochs: int, manifest: pd.DataFrame,
                 cache: ImageCache, ingestion_report: IngestionReport,
                 balance_plan: BalancePlan,
                 params: AugmentationParams, training: TrainingParams, seed: int,
                 cost_us: float | None = None) -> Score:
    """Train candidate ``index`` for ``epochs`` epochs; its validation score (and its
    augmentation cost, timed unless an earlier rung gives it as ``cost_us``)."""
    search = params.search
    spec = params.spec(search.candidates[index], f"augmentation.search.candidates[{index}]")
    proxy = _proxy_params(training, search, epochs)
    if not (manifest["split"] == "val").any():
        raise ValueError("augmentation.search.enabled needs a validation split: set "
                         "ingestion.val_fraction > 0 (or give a val folder)")
    device = select_device(proxy.device)
    inputs = model_inputs(proxy.model, proxy.image_size, len(ingestion_report.classes),
                          ingestion_report.channels)
    rows = _subset(manifest, search.subset, seed)
    job = proxy.job(rows, cache, ingestion_report, balance_plan, spec, inputs, seed, device)
    start = time.perf_counter()
    result = run_job(job)
    seconds = time.perf_counter() - start
    if result is None:  # one process: rank 0 always returns
        raise RuntimeError("augmentation search: the proxy training returned nothing")
    last = result.history.iloc[-1]
    score = Score(candidate=index, policy=spec.policy, rung=rung, epochs=epochs,
                  balanced_accuracy=float(last["val_balanced_accuracy"]),
                  val_loss=float(last["val_loss"]), seconds=seconds,
                  cost_us=cost_us if cost_us is not None
                  else _cost_us(spec, manifest, cache, ingestion_report, inputs, seed))
    logger.info("augmentation search, rung %d (%d epochs): candidate %d %r: val balanced "
                "accuracy %.3f, loss %.3f, %.0f s, %.0f us/image", rung, epochs, index,
                search.candidates[index], score.balanced_accuracy, score.val_loss, seconds,
                score.cost_us)
    return score


def score_candidate(slot: int, manifest: pd.DataFrame, cache: ImageCache,
                    ingestion_report: IngestionReport, balance_plan: BalancePlan,
                    params: AugmentationParams,
                    training: TrainingParams, seed: int) -> dict:
    """The first rung of the search for the candidate in ``slot`` (0-based).

    Returns:
        The score as a dict, or ``{"slot": slot, "skipped": reason}`` when the search is
        off or the list of candidates is shorter.
    """
    search = params.search
    if not search.enabled:
        return {"slot": slot, "skipped": "augmentation.search.enabled is false"}
    if slot >= len(search.candidates):
        return {"slot": slot, "skipped": f"{len(search.candidates)} candidates"}
    first = rung_epochs(search.epochs, search.eta, search.rungs)[0]
    return _proxy_score(slot, 1, first, manifest, cache, ingestion_report, balance_plan,
                        params, training, seed).record()


def successive_halving(manifest: pd.DataFrame, cache: ImageCache,
                       ingestion_report: IngestionReport, balance_plan: BalancePlan,
                       params: AugmentationParams,
                       training: TrainingParams, seed: int, *first_rung: dict) -> list[dict]:
    """The later rungs: the best ``1 / eta`` of each rung train ``eta`` times longer.

    Args:
        first_rung: What :func:`score_candidate` returned for each slot.

    Returns:
        Every score of every rung (the first rung's included), as dicts.
    """
    search = params.search
    scores = [Score(**record) for record in first_rung if "skipped" not in record]
    if not search.enabled:
        return []
    epochs = rung_epochs(search.epochs, search.eta, search.rungs)
    current = scores
    for rung in range(2, search.rungs + 1):
        if len(current) == 1:
            break
        chosen = rank(current, search.tie_tolerance)[:survivors(len(current), search.eta)]
        logger.info("augmentation search: rung %d trains %s for %d epochs", rung,
                    [s.policy for s in chosen], epochs[rung - 1])
        current = [_proxy_score(s.candidate, rung, epochs[rung - 1], manifest, cache,
                                ingestion_report, balance_plan, params, training, seed,
                                cost_us=s.cost_us)
                   for s in chosen]
        scores += current
    return [score.record() for score in scores]


def choose_policy(params: AugmentationParams,
                  scores: list[dict]) -> tuple[AugmentationSpec, pd.DataFrame, Figure]:
    """The policy training uses: the search's winner, or ``augmentation.policy``.

    Returns:
        ``(augmentation_spec, leaderboard, leaderboard chart)``; without a search the
        leaderboard has no rows and the chart says so.
    """
    search = params.search
    if not search.enabled:
        spec = params.spec()
        return (spec, pd.DataFrame(columns=LEADERBOARD_COLUMNS),
                leaderboard_figure(None, f"no search: augmentation.policy = {spec.policy}"))
    table = leaderboard([Score(**record) for record in scores], search.tie_tolerance)
    table.insert(2, "written", [search.candidates[index] for index in table["candidate"]])
    winner = int(table.loc[table["selected"], "candidate"].iloc[0])
    spec = params.spec(search.candidates[winner], f"augmentation.search.candidates[{winner}]")
    spec = spec.model_copy(update={"search": SearchChoice(
        candidate=winner, written=search.candidates[winner])})
    logger.info("augmentation search selected candidate %d: %s", winner, spec.policy)
    title = (f"augmentation search: {len(table)} candidates, rungs of "
             f"{rung_epochs(search.epochs, search.eta, search.rungs)} epochs")
    return spec, table, leaderboard_figure(table, title)


def preview_candidates(manifest: pd.DataFrame, cache: ImageCache,
                       ingestion_report: IngestionReport,
                       params: AugmentationParams, image_size: int | None,
                       seed: int) -> dict[str, Figure]:
    """A preview grid of each candidate (of ``augmentation.policy`` without a search),
    keyed by file name: ``candidate_1`` ..."""
    policies = params.search.candidates if params.search.enabled else [params.policy]
    names = ([f"candidate_{i + 1}" for i in range(len(policies))]
             if params.search.enabled else ["policy"])
    return {name: preview_augmentation(manifest, cache, ingestion_report,
                                       params.spec(policy), params, image_size, seed)
            for name, policy in zip(names, policies, strict=True)}


def preview_augmentation(manifest: pd.DataFrame, cache: ImageCache,
                         ingestion_report: IngestionReport, spec: AugmentationSpec,
                         params: AugmentationParams, image_size: int | None,
                         seed: int) -> Figure:
    """A grid: each row one training image, then augmented copies of it.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root.
        spec: The augmentation spec.
        params: Number of images and copies.
        image_size: ``training.image_size``; None previews at the images' median side.
        seed: Seeds which images are shown and how they are augmented.
    """
    train = manifest[manifest["split"] == "train"]
    if image_size is None:
        image_size = int(np.median(np.minimum(train["width"], train["height"])))
    rng = np.random.default_rng(seed)
    chosen = train.iloc[rng.choice(len(train), size=min(params.preview_images, len(train)),
                                   replace=False)]
    augment = make_train_transform(spec, image_size)
    original = make_eval_transform(image_size)
    torch.manual_seed(seed)
    rows, titles = [], []
    images = manifest_dataset(chosen, cache, ingestion_report.root, None,
                              ingestion_report.channels)
    for index, label in enumerate(chosen["label"]):
        image, _ = images[index]
        rows.append([original(image)] + [augment(image) for _ in range(params.preview_repeats)])
        titles.append(f"{label}: original, then {spec.policy}")
    return image_grid_figure(rows, titles, f"augmentation policy '{spec.policy}'")
