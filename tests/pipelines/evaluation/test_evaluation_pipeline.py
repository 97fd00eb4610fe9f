"""The evaluation pipeline scores every weight set on the test split."""

import json
import logging

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.evaluate import negative_log_likelihood, softmax
from visrec.params import (
    AugmentationParams,
    ClassBalanceParams,
    EvaluationParams,
    IngestionParams,
)
from visrec.pipelines import augmentation, class_balance, ingestion, training
from visrec.pipelines.evaluation import create_pipeline


def _upstream(params):
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline() + training.create_pipeline())
    return run_pipeline(before, only(params, before))


INPUTS = ["trained_models", "image_manifest", "ingestion_report", "class_counts",
          "class_balance_report"]


def _evaluate(params):
    """Train upstream, then run evaluation: its inputs and its catalog."""
    upstream = _upstream(params)
    pipeline = create_pipeline()
    inputs = {name: upstream[name].load() for name in INPUTS}
    return inputs, run_pipeline(pipeline, inputs | only(params, pipeline))


HEADLINE = {"top1", "top5", "balanced_accuracy", "macro_f1", "weighted_f1", "num_test_images",
            "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"}
CALIBRATION = {"ece", "nll", "brier", "ece_calibrated", "nll_calibrated", "brier_calibrated",
               "temperature"}


def test_metrics_per_weight_set(tiny_params):
    params = tiny_params | {"params:class_balance": base_params(
        ClassBalanceParams, strategy="class_balanced_sampler", groups={"many": 15, "few": 10})}
    inputs, catalog = _evaluate(params)
    metrics = catalog["metrics"].load()
    predictions = catalog["test_predictions"].load()
    report = catalog["per_class_report"].load()
    counts = inputs["class_counts"]
    manifest = inputs["image_manifest"]
    logits = catalog["evaluation_logits"].load()
    val_labels = manifest.loc[manifest["split"] == "val", "class_index"].to_numpy()
    assert set(metrics) == {"final", "swa"}
    for name, values in metrics.items():
        assert set(values) == HEADLINE | CALIBRATION | {"val", "served"}
        assert values["num_test_images"] == 60
        hits = predictions["actual"] == predictions[f"predicted_{name}"]
        assert values["top1"] == pytest.approx(np.mean(hits))
        assert predictions[f"confidence_{name}"].between(0, 1).all()
        assert values["top1"] <= values["top5"]
        rows = report[report["weights"] == name]
        assert rows["support"].sum() == 60
        assert rows["group"].tolist() == counts["group"].tolist()
        assert rows["train_images"].tolist() == counts["train"].tolist()
        for group in ("many", "medium", "few"):  # the mean recall of the group's classes
            assert values[f"{group}_shot_accuracy"] == pytest.approx(
                rows.loc[rows["group"] == group, "recall"].mean())
        # Each test class has 6 images: balanced accuracy is the mean recall.
        assert values["balanced_accuracy"] == pytest.approx(rows["recall"].mean())
        # The temperature is the NLL minimiser on validation: neither end moves it lower.
        split = logits[name]
        assert split["val"].shape == (len(val_labels), 10)
        assert "test_hflip" not in split  # evaluation.tta defaults to none
        t = values["temperature"]
        nll = {f: negative_log_likelihood(softmax(split["val"], t * f), val_labels)
               for f in (0.9, 1.0, 1.1)}
        assert nll[1.0] <= min(nll[0.9], nll[1.1]) + 1e-9
        # The calibrated confidence in the predictions file uses that temperature.
        np.testing.assert_allclose(predictions[f"confidence_{name}"],
                                   softmax(split["test"], t).max(axis=1), atol=1e-6)
    assert len(predictions) == 60
    # The served weight set is the best on validation balanced accuracy (then val loss).
    table = catalog["weight_sets"].load()
    assert table["weights"].tolist() == ["final", "swa"]
    best = table.sort_values(["val_balanced_accuracy", "val_loss"],
                             ascending=[False, True]).iloc[0]["weights"]
    assert table.loc[table["served"], "weights"].tolist() == [best]
    assert [n for n, v in metrics.items() if v["served"]] == [best]
    served = catalog["served_model"].load()
    assert served.config.served_from == best
    assert served.config.temperature == metrics[best]["temperature"]
    trained = inputs["trained_models"][best].weights
    assert all(torch.equal(trained[k], v) for k, v in served.weights.items())
    _check_reports(catalog, best, predictions, report)


def _check_reports(catalog, best, predictions, report):
    """The figures and tables drawn for the served weights."""
    figure = catalog["confusion_matrix"].load()
    assert isinstance(figure, Figure)
    assert figure.axes[0].get_title().startswith(f"Confusion matrix, {best} weights (served)")
    pairs = catalog["confused_pairs"].load()
    served_hits = predictions["actual"] == predictions[f"predicted_{best}"]
    assert pairs["images"].sum() <= (~served_hits).sum()
    if len(pairs):
        top = pairs.iloc[0]
        wrong = predictions[(predictions["actual"] == top["true"])
                            & (predictions[f"predicted_{best}"] == top["predicted"])]
        assert len(wrong) == top["images"]
    long_tail = catalog["long_tail"].load()
    assert long_tail["accuracy"].tolist() == pytest.approx(
        report.loc[report["weights"] == best, "recall"].tolist())
    reliability = catalog["reliability"].load()
    assert len(reliability) == 15
    assert reliability["images"].sum() == reliability["images_calibrated"].sum() == 60
    for name in ("confused_pairs_chart", "long_tail_chart", "reliability_diagram",
                 "high_loss_gallery"):
        assert isinstance(catalog[name].load(), Figure)
    gallery = catalog["high_loss_gallery"].load()
    assert len([ax for ax in gallery.axes if ax.images]) == 24


def test_hflip_tta_is_reported_separately_for_models_trained_with_flips(tiny_params):
    params = tiny_params | {
        "params:augmentation": base_params(AugmentationParams, policy="flip_crop", hflip=True,
                                           scale=(0.35, 1.0), preview_images=2,
                                           preview_repeats=2),
        "params:evaluation": base_params(EvaluationParams, batch_size=64, tta="hflip",
                                         serve="final")}
    inputs, catalog = _evaluate(params)
    metrics = catalog["metrics"].load()
    logits = catalog["evaluation_logits"].load()
    labels = inputs["image_manifest"].query("split == 'test'")["class_index"].to_numpy()
    for name, values in metrics.items():
        tta = values["tta_hflip"]
        split = logits[name]
        t = values["temperature"]
        mean = (softmax(split["test"], t) + softmax(split["test_hflip"], t)) / 2
        assert tta["top1"] == pytest.approx(np.mean(mean.argmax(axis=1) == labels))
        assert not np.allclose(split["test"], split["test_hflip"])  # really mirrored
    assert catalog["served_model"].load().config.served_from == "final"  # as asked


def test_single_image_class_without_test_images_is_reported_not_fatal(tiny_params, caplog):
    """Class 3 keeps one training image and no val or test image: warnings, then metrics."""
    before = ingestion.create_pipeline()
    ingested = run_pipeline(before, only(tiny_params, before))
    manifest = ingested["image_manifest"].load()
    three = manifest["label"] == "3"
    first = manifest[three & (manifest["split"] == "train")].index[0]
    rest = (class_balance.create_pipeline() + augmentation.create_pipeline()
            + training.create_pipeline() + create_pipeline())
    inputs = {name: ingested[name].load() for name in ["image_cache", "ingestion_report"]}
    params = tiny_params | {"params:class_balance": base_params(ClassBalanceParams, strategy=[
        "oversample", "class_weights", "crt"], crt={"epochs": 1})}
    with caplog.at_level(logging.WARNING):
        catalog = run_pipeline(rest, inputs | only(params, rest) | {
            "image_manifest": manifest[~three | (manifest.index == first)]})
    assert "classes ['3'] have a single training image" in caplog.text
    assert "evaluation: classes ['3'] have no test image" in caplog.text
    metrics = catalog["metrics"].load()
    assert metrics["swa"]["num_test_images"] == 54
    report = catalog["per_class_report"].load()
    assert report.loc[report["label"] == "3", "support"].tolist() == [0, 0]
    assert catalog["balance_plan"].load().sampler.class_targets[3] == max(
        catalog["class_counts"].load()["train"])


def test_without_validation_split_serves_swa_uncalibrated(tiny_params, caplog):
    params = tiny_params | {"params:ingestion": base_params(
        IngestionParams, root=tiny_params["params:ingestion"].root, val_fraction=0.0,
        num_workers=1)}
    with caplog.at_level(logging.WARNING):
        _, catalog = _evaluate(params)
    assert "no validation split to fit the temperature on" in caplog.text
    assert "no validation split to choose the served weights by; serving 'swa'" in caplog.text
    metrics = catalog["metrics"].load()
    for values in metrics.values():
        assert values["temperature"] == 1.0
        assert values["ece_calibrated"] == values["ece"]
        assert values["val"] == {"loss": None, "top1": None, "balanced_accuracy": None}
    json.dumps(metrics, allow_nan=False)  # valid JSON for `dvc metrics show`
    served = catalog["served_model"].load().config
    assert served.served_from == "swa" and served.temperature == 1.0
    json.dumps(served.to_json(), allow_nan=False)
