"""The class_balance pipeline counts classes and plans the remedy."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.pipelines.helpers import only, run_pipeline
from visrec.params import ClassBalanceParams
from visrec.pipelines.class_balance import create_pipeline
from visrec.pipelines.ingestion import create_pipeline as ingestion


@pytest.fixture
def ingested(tiny_params):
    pipeline = ingestion()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline))
    return {"image_manifest": catalog["image_manifest"].load(),
            "ingestion_report": catalog["ingestion_report"].load()}


@pytest.mark.parametrize("strategy", ["none", "class_weights", "sampler"])
def test_plan_and_counts(ingested, strategy):
    catalog = run_pipeline(create_pipeline(), ingested | {
        "params:class_balance": ClassBalanceParams(strategy=strategy)})
    counts = catalog["class_counts"].load()
    plan = catalog["balance_plan"].load()
    train = counts["train"].to_numpy()
    assert counts["test"].tolist() == [6] * 10
    assert plan["imbalance_ratio"] == pytest.approx(train.max() / train.min())
    assert plan["strategy"] == strategy
    if strategy == "class_weights":
        weights = np.asarray(plan["class_weights"])
        assert np.allclose(weights * train, train.sum() / 10, rtol=1e-5)
    else:
        assert plan["class_weights"] is None
    if strategy == "sampler":
        assert np.allclose(np.asarray(plan["sampling_weights"]) * train, 1.0)
    figure = catalog["class_distribution_plot"].load()
    assert isinstance(figure, Figure)
    bars = figure.axes[0].patches
    assert len(bars) == 3 * 10  # train, val and test bars for each class
    assert sorted(b.get_height() for b in bars[:10]) == sorted(train.tolist())
