"""The training pipeline trains, averages (SWA) and returns weight artifacts."""

import PIL.Image
import PIL.ImageFile
import pytest
import torchvision.io
import yaml

from tests.pipelines.helpers import only, run_pipeline
from visrec.params import (
    AugmentationParams,
    CacheParams,
    ClassBalanceParams,
    IngestionParams,
)
from visrec.pipelines import augmentation, class_balance, ingestion
from visrec.pipelines.training import create_pipeline

TRAINING_INPUTS = ["image_manifest", "image_cache", "ingestion_report", "balance_plan",
                   "augmentation_spec"]


def _before_training(params: dict, names: list[str] = TRAINING_INPUTS) -> dict:
    """Outputs ``names`` of ingestion, class_balance and augmentation for ``params``."""
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline())
    catalog = run_pipeline(before, only(params, before))
    return {name: catalog[name].load() for name in names}


@pytest.fixture
def upstream(tiny_params):
    """Outputs of ingestion, class_balance and augmentation for the tiny params."""
    return _before_training(tiny_params, [*TRAINING_INPUTS, "class_counts"])


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


def test_resampling_loss_and_classifier_retraining_from_the_plan(tiny_params):
    params = tiny_params | {"params:class_balance": ClassBalanceParams(
        strategy=["oversample", "logit_adjustment", "crt"], crt={"epochs": 2})}
    inputs = _before_training(params)
    plan = inputs["balance_plan"]
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, inputs | only(params, pipeline))
    history = catalog["training_history"].load()
    models = catalog["trained_models"].load()
    assert history["phase"].tolist() == ["train", "swa", "crt_final", "crt_final"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    # Oversampling: every epoch holds every class at the largest class's size.
    batch = params["params:training"].batch_size
    per_epoch = sum(plan["sampler"]["class_targets"]) // batch * batch
    assert (history.loc[history["phase"] != "crt_final", "images_per_s"]
            * history["seconds"]).round().iloc[:2].tolist() == [per_epoch, per_epoch]
    for artifact in models.values():
        assert artifact["config"]["class_balance"]["components"] == [
            "oversample", "logit_adjustment", "crt"]
        assert 0 <= artifact["config"]["val_metrics"]["balanced_accuracy"] <= 1


def test_a_policy_with_imgaug_augmix_views_and_erasing_trains_and_is_recorded(tiny_params):
    """Loader workers run imgaug and AugMix, batches carry three views, cRT takes one."""
    policy = "imgaug(light) + augmix(severity=2, jsd=true) + erasing(p=0.5)"
    params = tiny_params | {
        "params:augmentation": AugmentationParams(
            policy=policy, hflip=False, preview_images=2, preview_repeats=2,
            imgaug={"light": [{"Affine": {"rotate": [-10, 10]}}, {"Fliplr": 0.0}]}),
        "params:training": tiny_params["params:training"].model_copy(
            update={"num_workers": 2}),
        "params:class_balance": ClassBalanceParams(strategy=["crt"], crt={"epochs": 1})}
    inputs = _before_training(params)
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, inputs | only(params, pipeline))
    history = catalog["training_history"].load()
    assert history["train_loss"].notna().all()
    # Images per second count each image once, not its three views.
    trained = history[history["phase"] != "crt_final"]
    assert ((trained["images_per_s"] * trained["seconds"]).round()
            <= (inputs["image_manifest"]["split"] == "train").sum()).all()
    spec = catalog["trained_models"].load()["final"]["config"]["augmentation"]
    assert spec == inputs["augmentation_spec"]
    assert [c["name"] for c in spec["components"]] == ["flip_crop", "imgaug", "augmix",
                                                      "erasing"]
    assert spec["imgaug"] == {"light": [{"Affine": {"rotate": [-10, 10]}}, {"Fliplr": 0.0}]}
    live = yaml.safe_load((params["training_live"].folder / "params.yaml").read_text())
    assert live["augmentation"] == spec["policy"]


class DecodedDuringTraining(AssertionError):
    """An image file was decoded while training."""


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of decoding a PNG or JPEG file raise."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise DecodedDuringTraining(f"decoded an image file: {args[:1]}")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", refuse)
    for name in ("decode_image", "decode_png", "decode_jpeg", "read_image"):
        monkeypatch.setattr(torchvision.io, name, refuse)


@pytest.mark.parametrize("cache", [True, False])
def test_epochs_read_the_packed_cache_not_the_files(tiny_params, monkeypatch, cache):
    params = tiny_params | {"params:ingestion": IngestionParams(
        root=tiny_params["params:ingestion"].root, num_workers=1,
        cache=CacheParams(enabled=cache))}
    inputs = _before_training(params, [*TRAINING_INPUTS, "class_counts"])
    assert (inputs["image_manifest"]["cache_index"] >= 0).all() == cache
    _forbid_decoding(monkeypatch)
    # Training only: evaluation decodes the files on purpose (the input a served model gets).
    after = create_pipeline()
    if cache:
        catalog = run_pipeline(after, inputs | only(params, after))
        assert set(catalog["trained_models"].load()) == {"final", "swa"}
    else:  # the control: the patch does catch decoding when files are read
        with pytest.raises(DecodedDuringTraining):
            run_pipeline(after, inputs | only(params, after))
