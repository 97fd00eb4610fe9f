"""The evaluation pipeline scores every weight set on the test split."""

import logging

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.pipelines.helpers import only, run_pipeline
from visrec.params import ClassBalanceParams
from visrec.pipelines import augmentation, class_balance, ingestion, training
from visrec.pipelines.evaluation import create_pipeline


def _upstream(params):
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline() + training.create_pipeline())
    return run_pipeline(before, only(params, before))


INPUTS = ["trained_models", "image_manifest", "image_cache", "ingestion_report", "class_counts"]


def test_metrics_per_weight_set(tiny_params):
    params = tiny_params | {"params:class_balance": ClassBalanceParams(
        strategy="class_balanced_sampler", groups={"many": 15, "few": 10})}
    upstream = _upstream(params)
    pipeline = create_pipeline()
    inputs = {name: upstream[name].load() for name in INPUTS}
    catalog = run_pipeline(pipeline, inputs | only(params, pipeline))
    metrics = catalog["metrics"].load()
    predictions = catalog["test_predictions"].load()
    report = catalog["per_class_report"].load()
    counts = inputs["class_counts"]
    assert set(metrics) == {"final", "swa"}
    for name, values in metrics.items():
        assert set(values) == {"top1", "top5", "balanced_accuracy", "macro_f1",
                               "num_test_images", "many_shot_accuracy", "medium_shot_accuracy",
                               "few_shot_accuracy"}
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
    assert len(predictions) == 60
    figure = catalog["confusion_matrix"].load()
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes] == ["final weights (row-normalised)",
                                                       "swa weights (row-normalised)"]


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
    params = tiny_params | {"params:class_balance": ClassBalanceParams(strategy=[
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
    assert catalog["balance_plan"].load()["sampler"]["class_targets"][3] == max(
        catalog["class_counts"].load()["train"])
