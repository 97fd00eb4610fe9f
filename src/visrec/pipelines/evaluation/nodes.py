"""Nodes of the evaluation pipeline."""

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from visrec.core.balance import class_list
from visrec.core.data import IngestionReport, manifest_dataset
from visrec.core.evaluate import (
    choose_served,
    comparison_table,
    confused_pairs,
    confusion,
    expected_calibration_error,
    fit_temperature,
    metrics_on_test,
    per_class_report,
    reliability_table,
    side_by_side,
    softmax,
    split_logits,
    tta_metrics,
    validation_metrics,
)
from visrec.core.models import ModelInputs, WeightSet, model_from_weight_set, select_device
from visrec.core.plots import (
    confused_pairs_figure,
    gallery_figure,
    image_tile,
    long_tail_figure,
    reliability_figure,
    sorted_confusion_figure,
)
from visrec.core.serve import model_card
from visrec.params import EvaluationParams

logger = logging.getLogger(__name__)


def _split(manifest: pd.DataFrame, name: str) -> pd.DataFrame:
    return manifest[manifest["split"] == name]


def _labels(manifest: pd.DataFrame, name: str) -> np.ndarray:
    return _split(manifest, name)["class_index"].to_numpy()


def score_splits(trained_models: dict[str, WeightSet], manifest: pd.DataFrame,
                 ingestion_report: IngestionReport, params: EvaluationParams
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Logits of every weight set on the validation and test splits, from the image files
    (the input prediction gets, not the packed cache's resized copies).

    Args:
        trained_models: Weight sets by name (``final``, ``swa``, ``ema``), each with its config.
        manifest: The ingestion manifest.
        ingestion_report: Gives the image root.
        params: The ``evaluation`` block (batch size, device, test-time augmentation).

    Returns:
        ``{weights: {"val": logits, "test": logits[, "test_hflip": logits]}}``, each N x K
        in manifest row order; ``test_hflip`` only with ``tta: hflip`` and a weight set
        trained with horizontal flips.
    """
    if not trained_models:
        raise ValueError("evaluation: no trained weights in data/06_models/classifier; "
                         "run the training pipeline first")
    if _split(manifest, "test").empty:
        raise ValueError("evaluation: the manifest has no test images; set "
                         "ingestion.test_fraction > 0 or add a test/ folder")
    device = select_device(params.device, key="evaluation.device")
    splits = {name: _split(manifest, name) for name in ("val", "test")}
    flipped = {name for name, weight_set in trained_models.items()
               if params.tta == "hflip" and weight_set.config.augmentation.hflip}
    if params.tta == "hflip" and set(trained_models) - flipped:
        logger.info("evaluation.tta = 'hflip': skipped for %s weights, trained without "
                    "horizontal flips (their augmentation spec has hflip=false)",
                    sorted(set(trained_models) - flipped))
    # Weight sets with the same input (final, SWA and EMA of one run) share each decoded
    # batch: every image is read once, not once per weight set.
    groups: dict[ModelInputs, list[str]] = {}
    for name, weight_set in trained_models.items():
        groups.setdefault(weight_set.config.inputs, []).append(name)
    logits: dict[str, dict[str, np.ndarray]] = {}
    for inputs, names in groups.items():
        models = {name: model_from_weight_set(trained_models[name]).to(device)
                  for name in names}
        logits |= split_logits(models, inputs, splits, ingestion_report.root,
                               params.batch_size, device, flipped)
    return {name: logits[name] for name in trained_models}


def fit_temperatures(logits: dict[str, dict[str, np.ndarray]], manifest: pd.DataFrame,
                     params: EvaluationParams) -> dict[str, float]:
    """Temperature scaling (Guo et al. 2017): one T per weight set, fitted on validation.

    Args:
        logits: :func:`score_splits` output.
        manifest: Gives the validation labels.
        params: The ``evaluation`` block (``temperature_scaling``).

    Returns:
        ``{weights: T}``; 1.0 when scaling is off or there is no validation split.
    """
    labels = _labels(manifest, "val")
    if params.temperature_scaling and len(labels) == 0:
        logger.warning("evaluation: no validation split to fit the temperature on; "
                       "probabilities are left uncalibrated (T = 1)")
    temperatures = {}
    for name, split in logits.items():
        fitted = params.temperature_scaling and "val" in split
        temperatures[name] = fit_temperature(split["val"], labels) if fitted else 1.0
        logger.info("%s weights: temperature %.4f (fitted on %d validation images)", name,
                    temperatures[name], len(labels) if fitted else 0)
    return temperatures


def score_weight_sets(logits: dict[str, dict[str, np.ndarray]], temperatures: dict[str, float],
                      manifest: pd.DataFrame, ingestion_report: IngestionReport,
                      class_counts: pd.DataFrame, params: EvaluationParams
                      ) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Test metrics of every weight set, the comparison table and the served choice.

    Args:
        logits: :func:`score_splits` output.
        temperatures: :func:`fit_temperatures` output.
        manifest: Gives the validation and test labels and the test paths.
        ingestion_report: Gives the classes.
        class_counts: Training images and many/medium/few-shot group of each class.
        params: The ``evaluation`` block (served weights, ECE bins).

    Returns:
        ``(metrics, weight_sets, per_class, predictions)``: metrics by weight set (headline,
        shot groups, calibration before and after, ``val``, ``served``, ``tta_hflip``
        when scored); one row per weight set with the served one marked; per-class
        precision/recall/F1/support per weight set; one row per test image with
        ``predicted_<weights>`` and the calibrated ``confidence_<weights>``.
    """
    classes = list(ingestion_report.classes)
    test = _split(manifest, "test")
    labels, val_labels = test["class_index"].to_numpy(), _labels(manifest, "val")
    groups = class_counts.set_index("label").loc[classes, ["train", "group"]]
    class_groups = groups["group"].tolist()
    untested = [c for c, n in zip(classes, np.bincount(labels, minlength=len(classes)),
                                  strict=True) if n == 0]
    if untested:
        logger.warning("evaluation: classes %s have no test image: their accuracy is not "
                       "measured, and balanced accuracy and group accuracy leave them out",
                       class_list(untested))
    metrics: dict[str, dict[str, Any]] = {}
    validation: dict[str, dict[str, float]] = {}
    reports = []
    # One column pair per weight set, so each gets its own `dvc plots` confusion matrix.
    predictions = pd.DataFrame({"path": test["path"].to_numpy(),
                                "actual": test["label"].to_numpy()})
    for name, split in logits.items():
        temperature = temperatures[name]
        metrics[name] = metrics_on_test(split["test"], labels, temperature, class_groups,
                                        params.calibration_bins)
        validation[name] = validation_metrics(split.get("val"), val_labels)
        if "test_hflip" in split:
            metrics[name]["tta_hflip"] = tta_metrics(split["test"], split["test_hflip"], labels,
                                                     temperature, class_groups,
                                                     params.calibration_bins)
        predicted = split["test"].argmax(axis=1)
        reports.append(per_class_report(labels, predicted, classes).assign(
            group=groups["group"].to_numpy(), train_images=groups["train"].to_numpy(),
            weights=name))
        predictions[f"predicted_{name}"] = np.asarray(classes)[predicted]
        predictions[f"confidence_{name}"] = softmax(split["test"], temperature).max(
            axis=1).round(6)
    served = choose_served(comparison_table(metrics, validation), params.serve,
                           params.serve_metric)
    for name in metrics:
        # JSON has no NaN: a figure without a validation split is null.
        val = {k: None if np.isnan(v) else v for k, v in validation[name].items()}
        metrics[name] |= {"val": val, "served": name == served}
    table = comparison_table(metrics, validation, served)
    logger.info("weight sets (served: %s, by validation %s):\n%s", served,
                params.serve_metric, table.to_string(index=False, float_format="%.4f"))
    return metrics, table, pd.concat(reports, ignore_index=True), predictions


def served_model(trained_models: dict[str, WeightSet], weight_sets: pd.DataFrame,
                 temperatures: dict[str, float], ingestion_report: IngestionReport,
                 class_balance_report: dict[str, Any]) -> WeightSet:
    """The weight set marked to serve, with its temperature and figures in its config,
    and its model card.

    Args:
        trained_models: Weight sets by name.
        weight_sets: The comparison table (:func:`score_weight_sets`); one row is served.
        temperatures: Temperature of each weight set.
        ingestion_report: Where the images came from, for the card.
        class_balance_report: The class distribution, for the card.

    Returns:
        The weight set, its config with ``temperature``, ``served_from`` and ``scores``,
        its card (:func:`visrec.core.serve.model_card`).
    """
    row = weight_sets[weight_sets["served"]].iloc[0]
    name = row["weights"]
    chosen = trained_models[name]
    scores = {k: None if pd.isna(v) else float(v) for k, v in row.items()
              if k not in ("weights", "served")}
    config = chosen.config.model_copy(update={"temperature": temperatures[name],
                                              "served_from": name, "scores": scores})
    rows = [{str(key): value for key, value in row.items()}
            for row in weight_sets.to_dict(orient="records")]
    card = model_card(config, ingestion_report, class_balance_report, rows)
    return WeightSet(chosen.weights, config, card)


def _served(served: WeightSet, logits: dict[str, dict[str, np.ndarray]]
            ) -> tuple[str, float, np.ndarray]:
    name = str(served.config.served_from)
    temperature = 1.0 if served.config.temperature is None else served.config.temperature
    return name, temperature, logits[name]["test"]


def confusion_report(logits: dict[str, dict[str, np.ndarray]], served: WeightSet,
                     manifest: pd.DataFrame, ingestion_report: IngestionReport,
                     class_counts: pd.DataFrame, params: EvaluationParams
                     ) -> tuple[Figure, pd.DataFrame, Figure]:
    """The served weights' sorted confusion matrix and most-confused class pairs.

    Returns:
        ``(confusion_figure, pairs, pairs_figure)``: classes sorted by training images
        with the top confusions numbered; the pairs as a table (``pair``, ``true``,
        ``predicted``, ``images``, ``rate``) and as a bar chart.
    """
    name, _, test_logits = _served(served, logits)
    classes = list(ingestion_report.classes)
    labels = _labels(manifest, "test")
    counts = confusion(labels, test_logits.argmax(axis=1), len(classes))
    pairs = confused_pairs(counts, classes, params.top_confusions)
    train = class_counts.set_index("label").loc[classes]
    order = np.lexsort((np.arange(len(classes)), -train["train"].to_numpy()))
    figure = sorted_confusion_figure(counts, classes, order, train["group"].tolist(), pairs,
                                     f"Confusion matrix, {name} weights (served), row-normalised"
                                     f"; {len(labels)} test images")
    pairs_figure = confused_pairs_figure(pairs, f"Most confused class pairs, {name} weights")
    pairs.insert(0, "pair", [f"{t} → {p}" for t, p in zip(pairs["true"], pairs["predicted"],
                                                          strict=True)])
    return figure, pairs, pairs_figure


def long_tail_report(served: WeightSet, per_class: pd.DataFrame) -> tuple[pd.DataFrame,
                                                                              Figure]:
    """Per-class test accuracy of the served weights against training images.

    Returns:
        ``(table, figure)``: ``label``, ``group``, ``train_images``, ``test_images`` and
        ``accuracy`` (recall) of every class with test images; the scatter plot.
    """
    name = str(served.config.served_from)
    rows = per_class[per_class["weights"] == name]
    figure = long_tail_figure(rows, f"Per-class accuracy against training images, "
                                    f"{name} weights")
    tested = rows[rows["support"] > 0]
    table = pd.DataFrame({"label": tested["label"], "group": tested["group"],
                          "train_images": tested["train_images"],
                          "test_images": tested["support"], "accuracy": tested["recall"]})
    return table, figure


def reliability_report(logits: dict[str, dict[str, np.ndarray]], served: WeightSet,
                       manifest: pd.DataFrame, params: EvaluationParams
                       ) -> tuple[pd.DataFrame, Figure]:
    """The served weights' reliability diagram on test, before and after temperature scaling.

    Returns:
        ``(table, figure)``: one row per bin with ``confidence`` (bin centre), and
        ``accuracy``/``mean_confidence``/``images`` before and after (``_calibrated``);
        empty bins have no accuracy. The figure draws both diagrams.
    """
    name, temperature, test_logits = _served(served, logits)
    labels = _labels(manifest, "test")
    bins = params.calibration_bins
    probabilities = {"before": softmax(test_logits),
                     f"after (T = {temperature:.3f})": softmax(test_logits, temperature)}
    tables = {k: reliability_table(p, labels, bins) for k, p in probabilities.items()}
    eces = {k: expected_calibration_error(p, labels, bins) for k, p in probabilities.items()}
    figure = reliability_figure(tables, eces,
                                f"Reliability on test, {name} weights, "
                                f"{params.calibration_bins} bins")
    return side_by_side(*tables.values()), figure


def loss_gallery(logits: dict[str, dict[str, np.ndarray]], served: WeightSet,
                 manifest: pd.DataFrame, ingestion_report: IngestionReport,
                 params: EvaluationParams) -> Figure:
    """The test images the served weights get most wrong: highest cross-entropy first.

    Each image is captioned with its true label, the predicted label and the calibrated
    probability of the prediction.
    """
    name, temperature, test_logits = _served(served, logits)
    test = _split(manifest, "test")
    labels = test["class_index"].to_numpy()
    probabilities = softmax(test_logits, temperature)
    losses = -np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-12))
    worst = np.argsort(-losses, kind="stable")[:params.gallery_images]
    classes = ingestion_report.classes
    dataset = manifest_dataset(test.iloc[worst], None, ingestion_report.root, image_tile,
                               ingestion_report.channels)
    images, captions = [], []
    for position, row in enumerate(worst):
        predicted = int(probabilities[row].argmax())
        images.append(dataset[position][0])
        captions.append(f"true {classes[labels[row]]}\npredicted {classes[predicted]} "
                        f"({probabilities[row, predicted]:.2f})\nloss {losses[row]:.2f}")
    return gallery_figure(images, captions, f"Highest-loss test images, {name} weights "
                                            f"(calibrated probabilities)")
