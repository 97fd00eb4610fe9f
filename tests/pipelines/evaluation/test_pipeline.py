"""The evaluation pipeline scores every weight set on the test split."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.pipelines.helpers import only, run_pipeline
from visrec.pipelines import augmentation, class_balance, ingestion, training
from visrec.pipelines.evaluation import create_pipeline


def test_metrics_per_weight_set(tiny_params):
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline() + training.create_pipeline())
    upstream = run_pipeline(before, only(tiny_params, before))
    pipeline = create_pipeline()
    inputs = {name: upstream[name].load()
              for name in ["trained_models", "image_manifest", "image_cache", "ingestion_report"]}
    catalog = run_pipeline(pipeline, inputs | only(tiny_params, pipeline))
    metrics = catalog["metrics"].load()
    predictions = catalog["test_predictions"].load()
    report = catalog["per_class_report"].load()
    assert set(metrics) == {"final", "swa"}
    for name, values in metrics.items():
        assert set(values) == {"top1", "top5", "balanced_accuracy", "macro_f1",
                               "num_test_images"}
        assert values["num_test_images"] == 60
        hits = predictions["actual"] == predictions[f"predicted_{name}"]
        assert values["top1"] == pytest.approx(np.mean(hits))
        assert predictions[f"confidence_{name}"].between(0, 1).all()
        assert values["top1"] <= values["top5"]
        assert report.loc[report["weights"] == name, "support"].sum() == 60
    assert len(predictions) == 60
    figure = catalog["confusion_matrix"].load()
    assert isinstance(figure, Figure)
    assert [ax.get_title() for ax in figure.axes] == ["final weights (row-normalised)",
                                                       "swa weights (row-normalised)"]
