"""The training pipeline: the model's input config, the run (SWA), classifier re-training
when the plan asks for it, and the weight sets with their configs."""

import PIL.Image
import PIL.ImageFile
import pytest
import timm
import torch
import torchvision.io
import yaml
from kedro.io import DataCatalog

from tests.conftest import PROJECT_ROOT
from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.models import ModelInputs, WeightSet
from visrec.core.train import TrainedWeights
from visrec.params import (
    AugmentationParams,
    ClassBalanceParams,
    IngestionParams,
)
from visrec.pipelines import augmentation, class_balance, ingestion
from visrec.pipelines.training import create_pipeline

TRAINING_INPUTS = ["image_manifest", "image_cache", "ingestion_report", "balance_plan",
                   "augmentation_spec", "class_counts"]


def _before_training(params: dict, names: list[str] = TRAINING_INPUTS) -> dict:
    """Outputs ``names`` of ingestion, class_balance and augmentation for ``params``."""
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline())
    catalog = run_pipeline(before, only(params, before))
    return {name: catalog[name].load() for name in names}


@pytest.fixture
def upstream(tiny_params):
    """Outputs of ingestion, class_balance and augmentation for the tiny params."""
    return _before_training(tiny_params)


def _through_the_catalog(name: str, data: object, folder):
    """``data`` saved and loaded back through the project's catalog entry ``name``, with
    its files in ``folder``."""
    entry = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())[name]
    entry["path"] = str(folder / name)
    catalog = DataCatalog.from_config({name: entry})
    catalog.save(name, data)
    return catalog.load(name)


def _head_keys(architecture: str) -> set[str]:
    """State-dict keys of the classifier head of ``architecture`` (timm's pretrained_cfg)."""
    model = timm.create_model(architecture, pretrained=False, num_classes=2)
    head = model.pretrained_cfg["classifier"]
    return {key for key in model.state_dict() if key.rsplit(".", 1)[0] == head}


def test_final_and_swa_weights_with_history(upstream, tiny_params, tmp_path):
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, upstream | only(tiny_params, pipeline))
    models = catalog["trained_models"].load()
    history = catalog["training_history"].load()
    assert set(models) == {"final", "swa"}
    assert all(isinstance(weight_set, WeightSet) for weight_set in models.values())
    config = models["swa"].config
    assert config.architecture == "test_resnet"
    assert list(config.classes) == [str(d) for d in range(10)]
    assert config.image_size == 32 and len(config.mean) == 3
    assert config.weights == "swa" and config.seed == tiny_params["params:seed"]
    assert history["epoch"].tolist() == [1, 2]
    assert history["phase"].tolist() == ["train", "swa"]
    assert history["val_top1"].between(0, 1).all()
    final, swa = models["final"].weights, models["swa"].weights
    assert final.keys() == swa.keys()
    assert any(not final[k].equal(swa[k]) for k in final if final[k].is_floating_point())
    # The hand-offs between the nodes: the input config the weight sets carry, the run's
    # state dicts, and no classifier re-training (the plan has none) but the same object.
    inputs = catalog["model_inputs"].load()
    assert inputs == ModelInputs(image_size=32, interpolation="bilinear",
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), in_chans=3)
    assert config.inputs == inputs
    trained = catalog["trained_weights"].load()
    assert isinstance(trained, TrainedWeights)
    assert catalog["retrained_weights"].load() is trained  # passed by reference
    assert trained.retraining == {}
    assert set(trained.weights) == {"final", "swa"}
    for name, weight_set in models.items():
        assert all(torch.equal(trained.weights[name][k], v)
                   for k, v in weight_set.weights.items())
    # Validation figures: the final weights' from the last epoch, SWA's measured anew.
    last = history.iloc[-1]
    assert models["final"].config.val_metrics == pytest.approx(
        {"loss": last["val_loss"], "top1": last["val_top1"],
         "balanced_accuracy": last["val_balanced_accuracy"]})
    assert 0 <= models["swa"].config.val_metrics["balanced_accuracy"] <= 1
    # What the catalog writes (safetensors and config.json per weight set) loads back equal:
    # the weights straight from a channels_last run included.
    loaded = _through_the_catalog("trained_models", models, tmp_path)
    assert set(loaded) == {"final", "swa"}
    for name, weight_set in models.items():
        assert loaded[name].config == weight_set.config
        assert loaded[name].weights.keys() == weight_set.weights.keys()
        assert all(torch.equal(loaded[name].weights[k], v)
                   for k, v in weight_set.weights.items())


def test_resampling_loss_and_classifier_retraining_from_the_plan(tiny_params):
    params = tiny_params | {"params:class_balance": base_params(
        ClassBalanceParams, strategy=["oversample", "logit_adjustment", "crt"],
        crt={"epochs": 2})}
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
    per_epoch = sum(plan.sampler.class_targets) // batch * batch
    assert (history.loc[history["phase"] != "crt_final", "images_per_s"]
            * history["seconds"]).round().iloc[:2].tolist() == [per_epoch, per_epoch]
    for weight_set in models.values():
        assert list(weight_set.config.class_balance.components) == [
            "oversample", "logit_adjustment", "crt"]
        assert 0 <= weight_set.config.val_metrics["balanced_accuracy"] <= 1
    # cRT: each weight set keeps its backbone (weights and BatchNorm statistics) and gets
    # a new head, trained on its own; the re-training histories are the stage's.
    trained, retrained = (catalog[name].load() for name in ("trained_weights",
                                                            "retrained_weights"))
    assert set(retrained.retraining) == {"final", "swa"}
    assert all(len(rows) == 2 for rows in retrained.retraining.values())
    head = _head_keys("test_resnet")
    for name, weight_set in models.items():
        before = trained.weights[name]
        assert head and head < before.keys()
        for key, tensor in weight_set.weights.items():
            assert torch.equal(tensor, retrained.weights[name][key]), (name, key)
            changed = not torch.equal(tensor, before[key])
            assert changed == (key in head), (name, key)
        last = retrained.retraining[name].iloc[-1]
        assert weight_set.config.val_metrics["loss"] == pytest.approx(last["val_loss"])


def test_a_policy_with_imgaug_augmix_views_and_erasing_trains_and_is_recorded(tiny_params):
    """Loader workers run imgaug and AugMix, batches carry three views, cRT takes one."""
    policy = "imgaug(light) + augmix(severity=2, jsd=true) + erasing(p=0.5)"
    params = tiny_params | {
        "params:augmentation": base_params(
            AugmentationParams, policy=policy, hflip=False, scale=(0.35, 1.0),
            preview_images=2, preview_repeats=2,
            imgaug={"light": [{"Affine": {"rotate": [-10, 10]}}, {"Fliplr": 0.0}]}),
        "params:training": tiny_params["params:training"].model_copy(
            update={"num_workers": 2}),
        "params:class_balance": base_params(ClassBalanceParams, strategy=["crt"],
                                            crt={"epochs": 1})}
    inputs = _before_training(params)
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, inputs | only(params, pipeline))
    history = catalog["training_history"].load()
    assert history["train_loss"].notna().all()
    # Images per second count each image once, not its three views.
    trained = history[history["phase"] != "crt_final"]
    assert ((trained["images_per_s"] * trained["seconds"]).round()
            <= (inputs["image_manifest"]["split"] == "train").sum()).all()
    spec = catalog["trained_models"].load()["final"].config.augmentation
    assert spec == inputs["augmentation_spec"]
    assert [c["name"] for c in spec.components] == ["flip_crop", "imgaug", "augmix",
                                                    "erasing"]
    assert spec.imgaug == {"light": [{"Affine": {"rotate": [-10, 10]}}, {"Fliplr": 0.0}]}
    live = yaml.safe_load((params["training_live"].folder / "params.yaml").read_text())
    assert live["augmentation"] == spec.policy


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
    params = tiny_params | {"params:ingestion": base_params(
        IngestionParams, root=tiny_params["params:ingestion"].root, num_workers=1,
        cache={"enabled": cache})}
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
