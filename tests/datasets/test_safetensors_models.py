"""Tests of visrec.datasets.SafetensorsModelsDataset: weight sets as safetensors + JSON."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from kedro.io import DataCatalog, DatasetError
from safetensors import safe_open

from visrec.core.augment import make_spec
from visrec.core.models import (
    CONFIG_FILE,
    TIMM_KEYS,
    WEIGHTS_FILE,
    BalanceSummary,
    WeightSet,
    WeightSetConfig,
    read_weight_set,
    write_weight_set,
)
from visrec.datasets import SafetensorsModelDataset, SafetensorsModelsDataset


def _config(classes: list[str], **changes: object) -> WeightSetConfig:
    values = {
        "architecture": "test_resnet", "classes": tuple(classes), "image_size": 32,
        "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "in_chans": 3, "seed": 7, "git_commit": None, "training": {"epochs": 2},
        "augmentation": make_spec("flip_crop"),
        "class_balance": BalanceSummary(strategy="none", components=(),
                                        reason="none: requested; plain cross-entropy"),
        "weights": "final", "val_metrics": {"loss": 0.5, "top1": 0.75}}
    return WeightSetConfig(**(values | changes))


def _weight_set(seed: int, classes: list[str]) -> WeightSet:
    """The weights of a timm ``test_resnet`` of ``classes``, initialised from ``seed``, with
    a batch count as training leaves it (an int64 tensor)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=len(classes))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["bn1.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    return WeightSet(weights=weights, config=_config(classes))


def _assert_same(loaded: dict[str, WeightSet], saved: dict[str, WeightSet]) -> None:
    assert set(loaded) == set(saved)
    for name, weight_set in saved.items():
        assert isinstance(loaded[name], WeightSet), name
        assert loaded[name].config == weight_set.config, name
        assert set(loaded[name].weights) == set(weight_set.weights), name
        for key, tensor in weight_set.weights.items():
            got = loaded[name].weights[key]
            assert got.dtype == tensor.dtype, (name, key)
            assert torch.equal(got, tensor), (name, key)


@pytest.fixture
def models() -> dict[str, WeightSet]:
    return {"final": _weight_set(0, ["a", "b", "c"]), "swa": _weight_set(1, ["a", "b", "c"])}


def test_round_trip(tmp_path, models):
    dataset = SafetensorsModelsDataset(path=str(tmp_path / "classifier"))
    dataset.save(models)
    _assert_same(dataset.load(), models)


def test_files_on_disk_are_safetensors_and_json(tmp_path, models):
    root = tmp_path / "classifier"
    SafetensorsModelsDataset(path=str(root)).save(models)
    assert sorted(p.name for p in root.iterdir()) == ["final", "swa"]
    for name in ("final", "swa"):
        folder = root / name
        assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
        assert WEIGHTS_FILE == "model.safetensors" and CONFIG_FILE == "config.json"
        raw = (folder / WEIGHTS_FILE).read_bytes()
        # safetensors: an 8-byte little-endian header length, then a JSON header; no pickle.
        (header_length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + header_length])
        assert set(header) - {"__metadata__"} == set(models[name].weights)
        assert not raw.startswith(b"\x80")  # a pickle stream starts with PROTO 0x80
        with safe_open(folder / WEIGHTS_FILE, framework="pt") as handle:
            assert set(handle.keys()) == set(models[name].weights)
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        # timm's hub config (written by timm.models.save_for_hf) beside visrec's record.
        own = {key: value for key, value in config.items() if key not in TIMM_KEYS}
        assert own == models[name].config.to_json()
        assert WeightSetConfig.from_json(own) == models[name].config
        assert config["architecture"] == "test_resnet" and config["num_classes"] == 3
        assert config["label_names"] == ["a", "b", "c"]
        assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
        assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    # No staging or retired folders are left beside the dataset.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]


def test_saving_again_replaces_stale_weight_sets(tmp_path, models):
    root = tmp_path / "classifier"
    dataset = SafetensorsModelsDataset(path=str(root))
    dataset.save(models)
    replacement = {"final": _weight_set(5, ["x", "y"])}
    dataset.save(replacement)
    loaded = dataset.load()
    assert list(loaded) == ["final"]
    _assert_same(loaded, replacement)
    assert not (root / "swa").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]


def test_failed_save_keeps_the_previous_weights(tmp_path, models):
    root = tmp_path / "classifier"
    dataset = SafetensorsModelsDataset(path=str(root))
    dataset.save(models)
    broken = {"final": _weight_set(9, ["a"]),
              "swa": WeightSet({"fc.weight": [[1.0, 2.0]]}, _config(["a"]))}  # not a tensor
    with pytest.raises(DatasetError):
        dataset.save(broken)
    _assert_same(dataset.load(), models)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]  # staging removed


def test_unserialisable_config_keeps_the_previous_weights(tmp_path, models):
    dataset = SafetensorsModelsDataset(path=str(tmp_path / "classifier"))
    dataset.save(models)
    broken = {"final": WeightSet(_weight_set(9, ["a"]).weights,
                                 _config(["a"], training={"device": torch.device("cpu")}))}
    with pytest.raises(DatasetError):
        dataset.save(broken)
    _assert_same(dataset.load(), models)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]


def test_exists(tmp_path, models):
    root = tmp_path / "classifier"
    dataset = SafetensorsModelsDataset(path=str(root))
    assert not dataset.exists()
    root.mkdir()
    (root / "final").mkdir()  # a folder without weights is not a saved model
    assert not dataset.exists()
    dataset.save(models)
    assert dataset.exists()


@pytest.mark.parametrize("name", ["../escape", "a b", "", "x/y", "näme"])
def test_bad_weight_set_name_is_rejected(tmp_path, models, name):
    root = tmp_path / "classifier"
    dataset = SafetensorsModelsDataset(path=str(root))
    with pytest.raises(DatasetError, match="must use letters, digits"):
        dataset.save({name: models["final"]})
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_name_leaves_saved_weights_alone(tmp_path, models):
    dataset = SafetensorsModelsDataset(path=str(tmp_path / "classifier"))
    dataset.save(models)
    with pytest.raises(DatasetError):
        dataset.save({"good": models["final"], "bad name": models["swa"]})
    _assert_same(dataset.load(), models)


def test_load_without_models_is_an_error(tmp_path):
    dataset = SafetensorsModelsDataset(path=str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match=r"no trained models at .*nothing"):
        dataset.load()


def test_load_ignores_folders_without_weights(tmp_path, models):
    root = tmp_path / "classifier"
    dataset = SafetensorsModelsDataset(path=str(root))
    dataset.save(models)
    (root / "notes").mkdir()
    (root / "README.txt").write_text("hello")
    assert sorted(dataset.load()) == ["final", "swa"]


def test_describe_and_metadata(tmp_path):
    dataset = SafetensorsModelsDataset(path=str(tmp_path / "m"), metadata={"owner": "ml"})
    assert dataset.metadata == {"owner": "ml"}
    assert str(tmp_path / "m") in str(dataset)


def test_catalog_entry(tmp_path, models):
    catalog = DataCatalog.from_config({"trained_models": {
        "type": "visrec.datasets.SafetensorsModelsDataset",
        "path": str(tmp_path / "06_models" / "classifier")}})
    catalog.save("trained_models", models)
    _assert_same(catalog.load("trained_models"), models)
    assert (tmp_path / "06_models" / "classifier" / "swa" / WEIGHTS_FILE).is_file()


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from visrec.datasets import SafetensorsModelsDataset

    umask = os.umask(0o022)
    try:
        dataset = SafetensorsModelsDataset(path=str(tmp_path / "models"))
        dataset.save({"final": _weight_set(0, ["a"])})
    finally:
        os.umask(umask)
    folder = tmp_path / "models"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert stat.S_IMODE((folder / "final" / "model.safetensors").stat().st_mode) == 0o644


# --- SafetensorsModelDataset: the one served weight set ----------------------------------


def test_single_model_round_trip(tmp_path):
    served = _weight_set(3, ["a", "b", "c"])
    dataset = SafetensorsModelDataset(path=str(tmp_path / "served"))
    dataset.save(served)
    _assert_same({"served": dataset.load()}, {"served": served})
    folder = tmp_path / "served"
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]  # nothing left beside


def test_single_model_save_replaces_the_previous_one(tmp_path):
    dataset = SafetensorsModelDataset(path=str(tmp_path / "served"))
    dataset.save(_weight_set(3, ["a", "b", "c"]))
    (tmp_path / "served" / "stale.txt").write_text("from before")
    replacement = _weight_set(4, ["x", "y"])
    dataset.save(replacement)
    _assert_same({"m": dataset.load()}, {"m": replacement})
    assert not (tmp_path / "served" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


@pytest.mark.parametrize("broken", [
    WeightSet({"fc.weight": [[1.0, 2.0]]}, _config(["a"])),  # not a tensor
    WeightSet(_weight_set(0, ["a"]).weights,
              _config(["a"], training={"device": torch.device("cpu")})),
    WeightSet({"fc.weight": torch.zeros(1, 4)}, _config(["a"])),  # not test_resnet's
], ids=["weights", "config", "architecture"])
def test_single_model_failed_save_keeps_the_previous_weights(tmp_path, broken):
    served = _weight_set(3, ["a", "b", "c"])
    dataset = SafetensorsModelDataset(path=str(tmp_path / "served"))
    dataset.save(served)
    with pytest.raises(DatasetError):
        dataset.save(broken)
    _assert_same({"m": dataset.load()}, {"m": served})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]  # staging removed


def test_single_model_failed_first_save_leaves_nothing(tmp_path):
    dataset = SafetensorsModelDataset(path=str(tmp_path / "served"))
    with pytest.raises(DatasetError):
        dataset.save(WeightSet({"w": "not a tensor"}, _config(["a"])))
    assert not dataset.exists()
    assert list(tmp_path.iterdir()) == []


def test_single_model_load_without_a_model_names_the_evaluation_pipeline(tmp_path):
    dataset = SafetensorsModelDataset(path=str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match=r"no model at .*nothing.*evaluation pipeline"):
        dataset.load()
    (tmp_path / "nothing").mkdir()  # an empty folder is no model either
    with pytest.raises(DatasetError, match="evaluation pipeline"):
        dataset.load()


def test_single_model_exists(tmp_path):
    folder = tmp_path / "served"
    dataset = SafetensorsModelDataset(path=str(folder))
    assert not dataset.exists()
    folder.mkdir()
    (folder / CONFIG_FILE).write_text("{}")  # a config without weights is not a model
    assert not dataset.exists()
    dataset.save(_weight_set(3, ["a"]))
    assert dataset.exists()


def test_single_model_catalog_entry(tmp_path):
    catalog = DataCatalog.from_config({"served_model": {
        "type": "visrec.datasets.SafetensorsModelDataset",
        "path": str(tmp_path / "06_models" / "served")}})
    served = _weight_set(5, ["a", "b"])
    catalog.save("served_model", served)
    _assert_same({"m": catalog.load("served_model")}, {"m": served})
    assert (tmp_path / "06_models" / "served" / WEIGHTS_FILE).is_file()


def test_read_and_write_weight_set(tmp_path):
    weight_set = _weight_set(6, ["a", "b"])
    write_weight_set(tmp_path, weight_set)
    _assert_same({"m": read_weight_set(tmp_path)}, {"m": weight_set})
    # The config is written with sorted keys and a final newline (diff-friendly).
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert text.endswith("}\n")
    config = json.loads(text)
    assert text == json.dumps(config, indent=2, sort_keys=True) + "\n"
    assert {k: v for k, v in config.items() if k not in TIMM_KEYS} == weight_set.config.to_json()
