"""The class_balance pipeline analyses the class distribution and plans the remedy."""

import logging

import numpy as np
import pytest
from matplotlib.colors import to_hex

from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.plots import GROUP_COLOURS
from visrec.params import ClassBalanceParams
from visrec.pipelines.class_balance import create_pipeline
from visrec.pipelines.ingestion import create_pipeline as ingestion

# The tiny digits have 5 to 20 training images per class: these thresholds make all groups.
GROUPS = {"many": 15, "few": 10}


@pytest.fixture
def ingested(tiny_params):
    pipeline = ingestion()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline))
    return {"image_manifest": catalog["image_manifest"].load(),
            "ingestion_report": catalog["ingestion_report"].load()}


def _run(ingested, **params):
    return run_pipeline(create_pipeline(), ingested | {
        "params:class_balance": base_params(ClassBalanceParams, groups=GROUPS, **params)})


def test_analysis_counts_groups_and_report(ingested):
    catalog = _run(ingested, strategy="none")
    counts = catalog["class_counts"].load()
    report = catalog["class_balance_report"].load()
    manifest = ingested["image_manifest"]
    expected = manifest[manifest["split"] == "train"]["label"].value_counts()
    assert counts.set_index("label")["train"].to_dict() == expected.to_dict()
    assert counts["test"].tolist() == [6] * 10
    train = counts["train"].to_numpy()
    groups = np.where(train > 15, "many", np.where(train < 10, "few", "medium"))
    assert counts["group"].tolist() == groups.tolist()
    assert {g for g in groups} == {"many", "medium", "few"}
    assert report["imbalance_ratio"] == pytest.approx(train.max() / train.min())
    assert report["groups"]["few"] == counts.loc[groups == "few", "label"].tolist()
    assert 0 < report["normalised_entropy"] < 1
    np.testing.assert_allclose(counts["effective_number"],
                               (1 - 0.999**train) / 0.001, atol=1e-4)


def test_chart_is_log_scale_and_coloured_by_group(ingested):
    catalog = _run(ingested, strategy="none")
    counts = catalog["class_counts"].load()
    ax = catalog["class_distribution_plot"].load().axes[0]
    assert ax.get_yscale() == "log"
    bars = ax.patches
    assert len(bars) == 10
    by_height = sorted(((b.get_height(), to_hex(b.get_facecolor())) for b in bars),
                       reverse=True)
    expected = sorted(((n, GROUP_COLOURS[g]) for n, g in zip(counts["train"], counts["group"],
                                                              strict=True)), reverse=True)
    assert by_height == expected
    # Classes are drawn from the largest to the smallest.
    heights = [b.get_height() for b in sorted(bars, key=lambda b: b.get_x())]
    assert heights == sorted(heights, reverse=True)
    assert "imbalance ratio" in ax.get_title()


@pytest.mark.parametrize("strategy", ["none", "class_weights", "class_balanced_sampler",
                                      "oversample", "logit_adjustment", "auto"])
def test_plan_matches_the_counts(ingested, strategy):
    catalog = _run(ingested, strategy=strategy)
    counts = catalog["class_counts"].load()
    plan = catalog["balance_plan"].load()
    train = counts["train"].to_numpy()
    assert list(plan.train_counts) == train.tolist()
    assert plan.classes == ingested["ingestion_report"].classes
    np.testing.assert_allclose(plan.loss.log_prior, np.log(train / train.sum()),
                               atol=1e-7)
    if strategy == "class_weights":
        weights = np.asarray(plan.class_weights.values)
        assert np.argsort(weights).tolist() == np.argsort(-train, kind="stable").tolist() or \
            np.all(np.diff(weights[np.argsort(train)]) <= 1e-9)
    if strategy == "class_balanced_sampler":
        np.testing.assert_allclose(plan.sampler.class_probabilities, 0.1)
    if strategy == "oversample":
        assert list(plan.sampler.class_targets) == [int(train.max())] * 10
    if strategy == "auto":  # the tiny digits have an imbalance ratio of about 4
        assert list(plan.components) == ["logit_adjustment", "crt"]
        assert "auto: train imbalance ratio" in plan.reason


def test_single_image_and_untested_classes_are_warned_about(ingested, caplog):
    manifest = ingested["image_manifest"]
    three = manifest["label"] == "3"
    keep = ~three | (manifest.index == manifest[three & (manifest["split"] == "train")].index[0])
    with caplog.at_level(logging.WARNING):
        catalog = _run(ingested | {"image_manifest": manifest[keep]}, strategy="auto")
    assert "classes ['3'] have a single training image" in caplog.text
    assert "classes ['3'] have no test image" in caplog.text
    report = catalog["class_balance_report"].load()
    assert len(report["warnings"]) == 3  # single image, no val image, no test image
    assert report["tail"] == {"label": "3", "train": 1}
