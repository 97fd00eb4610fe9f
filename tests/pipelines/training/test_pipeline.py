"""The training pipeline trains, averages (SWA) and returns weight artifacts."""

import pytest

from tests.pipelines.helpers import only, run_pipeline
from visrec.pipelines import augmentation, class_balance, ingestion
from visrec.pipelines.training import create_pipeline


@pytest.fixture
def upstream(tiny_params):
    """Outputs of ingestion, class_balance and augmentation for the tiny params."""
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline())
    catalog = run_pipeline(before, only(tiny_params, before))
    names = ["image_manifest", "ingestion_report", "balance_plan", "augmentation_spec"]
    return {name: catalog[name].load() for name in names}


def test_final_and_swa_weights_with_history(upstream, tiny_params):
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, upstream | only(tiny_params, pipeline))
    models = catalog["trained_models"].load()
    history = catalog["training_history"].load()
    assert set(models) == {"final", "swa"}
    config = models["swa"]["config"]
    assert config["architecture"] == "test_resnet"
    assert config["classes"] == [str(d) for d in range(10)]
    assert config["image_size"] == 32 and len(config["mean"]) == 3
    assert history["epoch"].tolist() == [1, 2]
    assert history["phase"].tolist() == ["train", "swa"]
    assert history["val_top1"].between(0, 1).all()
    final, swa = models["final"]["weights"], models["swa"]["weights"]
    assert final.keys() == swa.keys()
    assert any(not final[k].equal(swa[k]) for k in final if final[k].is_floating_point())
