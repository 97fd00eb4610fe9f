"""Tests of visrec.params: typed parameter blocks, their agreement with conf/base, and their
error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml
from kedro.config import OmegaConfigLoader

import visrec.params
from tests.params import base_params, base_raw
from visrec.core.balance import BALANCE_STRATEGIES
from visrec.core.seeding import seed_everything
from visrec.params import (
    BLOCKS,
    AugmentationParams,
    ClassBalanceParams,
    DemoDataParams,
    EvaluationParams,
    IngestionParams,
    ParameterError,
    Params,
    SwaParams,
    TrainingParams,
)
from visrec.params.project import SEED_MAX, check_parameters
from visrec.params.tuning import merged
from visrec.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"


def _base_parameters() -> dict:
    merged: dict = {}
    for path in sorted((CONF / "base").glob("parameters*.yml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        assert not set(loaded) & set(merged), f"{path.name} repeats a block"
        merged |= loaded
    return merged


def _error(model: type[Params], raw: dict) -> str:
    """The error of conf/base's block of ``model`` with ``raw`` merged in."""
    with pytest.raises(ParameterError) as info:
        model.model_validate(base_raw(model, **raw))
    return str(info.value)


def _models() -> list[type[Params]]:
    """Every parameter model of visrec.params, nested blocks included (bases without a
    block of their own, such as RunParams, left out)."""
    return [value for value in vars(visrec.params).values()
            if isinstance(value, type) and issubclass(value, Params) and value.key]


# --- the project's own configuration ----------------------------------------------------


def test_every_block_has_a_model():
    parameters = _base_parameters()
    assert set(parameters) == {*BLOCKS, "seed"}
    assert isinstance(parameters["seed"], int)


def test_the_base_parameter_tree_passes_the_run_checks():
    check_parameters(_base_parameters())


@pytest.mark.faults
@pytest.mark.parametrize(("change", "expected"), [
    ({"trainig": {"epochs": 5}}, "trainig: not a visrec parameter; did you mean 'training'? "
                                 "the top-level keys are seed, demo_data, ingestion"),
    ({"zzz": 1}, "zzz: not a visrec parameter; the top-level keys are seed, demo_data"),
    ({"seed": -1}, "seed = -1: give a whole number from 0 to 2**63 - 1"),
    ({"seed": 2**63}, "seed = 9223372036854775808: give a whole number"),
    ({"seed": "42"}, "seed = '42': give a whole number"),
    ({"seed": True}, "seed = True: give a whole number"),
    ({"seed": 1.5}, "seed = 1.5: give a whole number"),
    ({"seed": None}, "seed = None: give a whole number"),
    ({"retrieve": {"top_k": 0}}, "retrieve.top_k = 0"),
])
def test_the_run_checks_name_the_bad_key(change, expected):
    parameters = _base_parameters()
    for key, value in change.items():
        if isinstance(value, dict) and key in parameters:
            parameters[key] = parameters[key] | value
        else:
            parameters[key] = value
    with pytest.raises(ParameterError, match="invalid parameters") as caught:
        check_parameters(parameters)
    assert expected in str(caught.value)


def test_the_run_checks_list_every_problem_and_missing_keys():
    parameters = _base_parameters()
    del parameters["seed"], parameters["export"]
    parameters["evalution"] = {}
    with pytest.raises(ParameterError) as caught:
        check_parameters(parameters)
    lines = str(caught.value).splitlines()[1:]
    assert lines[0].startswith("evalution: not a visrec parameter; did you mean 'evaluation'?")
    assert lines[1:] == ["seed: missing (conf/base/parameters.yml sets it)",
                         "export: missing (conf/base/parameters_export.yml defines it)"]


def test_the_largest_seed_seeds_every_generator():
    parameters = _base_parameters() | {"seed": SEED_MAX}
    check_parameters(parameters)
    seed_everything(SEED_MAX)
    np.random.default_rng(SEED_MAX)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_base_parameters_validate(block):
    raw = _base_parameters()[block]
    params = BLOCKS[block].model_validate(raw)
    dumped = params.model_dump()
    for key, value in raw.items():
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                assert dumped[key][inner_key] == inner_value, f"{block}.{key}.{inner_key}"
        elif isinstance(value, list):
            assert list(dumped[key]) == value, f"{block}.{key}"
        else:
            assert dumped[key] == value, f"{block}.{key}"


def test_base_training_values():
    training = TrainingParams.model_validate(_base_parameters()["training"])
    assert (training.model, training.epochs, training.batch_size) == ("resnet18", 30, 64)
    assert training.image_size == 32
    assert training.pretrained_path is None
    assert (training.swa.enabled, training.swa.start_fraction, training.swa.lr,
            training.swa.anneal_epochs) == (True, 0.75, 0.1, 1)
    assert (training.loss.name, training.loss.options) == ("cross_entropy", {})


@pytest.mark.parametrize("model", _models(), ids=lambda model: model.__name__)
def test_models_hold_no_defaults(model):
    """Values live in conf/base alone: a default in a model could drift from it unseen."""
    with_default = [name for name, field in model.model_fields.items()
                    if not field.is_required()]
    assert not with_default, (f"{model.__name__} ({model.key}) gives defaults to "
                              f"{with_default}: put the value in conf/base instead")


@pytest.mark.parametrize("model", _models(), ids=lambda model: model.__name__)
def test_every_field_is_in_conf_base_and_described(model):
    block = base_raw(model)
    assert set(block) == set(model.model_fields), (
        f"{model.key}: conf/base has {sorted(set(block) - set(model.model_fields))} "
        f"unknown to {model.__name__}, and lacks {sorted(set(model.model_fields) - set(block))}")
    for name, field in model.model_fields.items():
        nested = isinstance(field.annotation, type) and issubclass(field.annotation, Params)
        assert nested or field.description, f"{model.key}.{name} has no description"


def test_a_block_missing_a_key_names_it_and_where_values_live():
    raw = base_raw(TrainingParams)
    del raw["epochs"]
    with pytest.raises(ParameterError) as info:
        TrainingParams.model_validate(raw)
    assert "training.epochs: required but not set (conf/base/parameters_*.yml" in str(info.value)


@pytest.mark.parametrize("env", ["local", "test"])
def test_parameters_of_each_environment_validate(env):
    loader = OmegaConfigLoader(conf_source=str(CONF), env=env, **CONFIG_LOADER_ARGS)
    parameters = loader["parameters"]
    validated = {block: model.model_validate(parameters[block]) for block, model in BLOCKS.items()}
    if env == "test":
        training = validated["training"]
        assert (training.model, training.epochs, training.batch_size) == ("test_resnet", 3, 32)
        assert training.swa.start_fraction == 0.5
        assert training.swa.lr == 0.1  # soft merge keeps the base keys of the block
        assert training.image_size == 32
        assert validated["augmentation"].preview_images == 2
        assert validated["augmentation"].hflip is False


# --- error messages ----------------------------------------------------------------------


def test_error_names_the_full_key_and_value():
    message = _error(TrainingParams, {"epochs": 0})
    assert "training.epochs = 0" in message
    assert "greater than or equal to 1" in message
    assert issubclass(ParameterError, ValueError)


def test_error_has_no_pydantic_traceback_chain():
    with pytest.raises(ParameterError) as info:
        TrainingParams.model_validate(base_raw(TrainingParams, epochs=0))
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert not isinstance(info.value, pydantic.ValidationError)


def test_unknown_timm_model():
    message = _error(TrainingParams, {"model": "resnet999"})
    assert "training.model = 'resnet999'" in message
    assert "not a timm architecture" in message
    assert "close names:" in message
    assert "resnet" in message.split("close names:")[1]


def test_unknown_timm_model_without_close_names():
    message = _error(TrainingParams, {"model": "qqqqqqqqqq"})
    assert "training.model = 'qqqqqqqqqq'" in message
    assert "timm.list_models()" in message


def test_tiny_timm_model_is_known():
    assert base_params(TrainingParams, model="test_resnet").model == "test_resnet"


@pytest.mark.parametrize(("model", "raw", "key"), [
    (TrainingParams, {"epoch": 10}, "training.epoch"),
    (TrainingParams, {"swa": {"start": 0.5}}, "training.swa.start"),
    (AugmentationParams, {"polcy": "none"}, "augmentation.polcy"),
    (EvaluationParams, {"batchsize": 3}, "evaluation.batchsize"),
])
def test_unknown_key(model, raw, key):
    message = _error(model, raw)
    assert f"{key}: unknown parameter" in message


def test_strategy_lists_accepted_values():
    message = _error(ClassBalanceParams, {"strategy": "bogus"})
    assert "class_balance.strategy = 'bogus': unknown strategy 'bogus'" in message
    assert "accepted: " + ", ".join(BALANCE_STRATEGIES) in message


def test_strategy_suggests_a_close_name():
    message = _error(ClassBalanceParams, {"strategy": "logit_adjust"})
    assert "did you mean logit_adjustment?" in message


@pytest.mark.parametrize("strategy", [*BALANCE_STRATEGIES, ["class_balanced_sampler", "focal"],
                                      ["oversample", "drw", "logit_adjustment", "crt"]])
def test_every_strategy_and_combination_is_accepted(strategy):
    params = base_params(ClassBalanceParams, strategy=strategy)
    expected = (strategy,) if isinstance(strategy, str) else tuple(strategy)
    assert params.strategies == expected


@pytest.mark.parametrize(("strategy", "expected"), [
    (["oversample", "sqrt_sampler"], "'oversample' and 'sqrt_sampler' both set the sampler"),
    (["class_weights", "drw"], "'class_weights' and 'drw' both set the class weights"),
    (["auto", "focal"], "'none' and 'auto' stand alone"),
    (["focal", "nope"], "unknown strategy 'nope'"),
    ([], "give one name or a list of names"),
    (3, "give one name or a list of names"),
])
def test_bad_strategy_combinations(strategy, expected):
    message = _error(ClassBalanceParams, {"strategy": strategy})
    assert "class_balance.strategy = " in message
    assert expected in message


def test_shot_group_thresholds_must_leave_no_gap():
    message = _error(ClassBalanceParams, {"groups": {"many": 10, "few": 20}})
    assert "few = 20 must be at most many + 1 = 11" in message
    assert base_params(ClassBalanceParams, groups={"many": 19, "few": 20}).groups.few == 20


def test_augmentation_policy_lists_accepted_values():
    message = _error(AugmentationParams, {"policy": "autoaug"})
    assert "augmentation.policy = 'autoaug': unknown component 'autoaug'" in message
    for accepted in ("'none'", "'flip_crop'", "'autoaugment'", "'randaugment'", "'augmix'",
                     "'imgaug'", "'mixup'", "'cutmix'"):
        assert accepted in message


def test_pretrained_path_must_exist(tmp_path):
    missing = tmp_path / "missing.safetensors"
    message = _error(TrainingParams, {"pretrained_path": str(missing)})
    assert f"training.pretrained_path = '{missing}'" in message
    assert "no such file" in message
    present = tmp_path / "weights.safetensors"
    present.write_bytes(b"\0")
    params = base_params(TrainingParams, pretrained_path=str(present))
    assert params.pretrained_path == str(present)


def test_pretrained_and_a_weights_file_are_one_source_too_many(tmp_path):
    present = tmp_path / "weights.safetensors"
    present.write_bytes(b"\0")
    message = _error(TrainingParams, {"pretrained": True, "pretrained_path": str(present)})
    assert (f"training.pretrained = true and training.pretrained_path = '{present}': give "
            "one source of weights") in message


@pytest.mark.parametrize(("epochs", "warmup"), [(5, 4), (1, 0), (2, 0), (2, 2), (3, 7)])
def test_any_warmup_is_valid_training_shortens_it(epochs, warmup):
    params = base_params(TrainingParams, epochs=epochs, schedule={"warmup_epochs": warmup})
    assert (params.epochs, params.schedule.warmup_epochs) == (epochs, warmup)


def test_nested_swa_key():
    message = _error(TrainingParams, {"swa": {"lr": 0}})
    assert "training.swa.lr = 0" in message
    assert "greater than 0" in message
    # The block validated alone names the same key.
    assert "training.swa.lr = -1" in _error(SwaParams, {"lr": -1})
    message = _error(TrainingParams, {"swa": {"start_fraction": 1.0}})
    assert "training.swa.start_fraction = 1.0" in message


def test_one_line_per_bad_key():
    message = _error(TrainingParams, {"epochs": 0, "batch_size": -2, "device": "tpu", "x": 1})
    lines = message.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("training.epochs = 0:")
    assert any(line.startswith("training.batch_size = -2:") for line in lines)
    assert any(line.startswith("training.device = 'tpu':") for line in lines)
    assert "training.x: unknown parameter (check the spelling)" in lines


def test_missing_required_key():
    with pytest.raises(ParameterError) as info:
        IngestionParams.model_validate({})
    assert "ingestion.root: required but not set" in str(info.value)


def test_blank_ingestion_root():
    message = _error(IngestionParams, {"root": "   "})
    assert "ingestion.root = '   '" in message
    assert "give the path of an image folder" in message


@pytest.mark.parametrize("fraction_key", ["val_fraction", "test_fraction"])
def test_carve_fractions_below_half(fraction_key):
    message = _error(IngestionParams, {"root": "data", fraction_key: 0.5})
    assert f"ingestion.{fraction_key} = 0.5" in message


@pytest.mark.parametrize(("raw", "expected"), [
    ({"labels_file": "labels.txt"}, "ingestion.labels_file = 'labels.txt': give a .csv or "
                                    ".parquet file"),
    ({"channels": 2}, "ingestion.channels = 2"),
    ({"max_pixels": 0}, "ingestion.max_pixels = 0"),
    ({"num_workers": 0}, "ingestion.num_workers = 0"),
    ({"cache": {"resolution": 4}}, "ingestion.cache.resolution = 4"),
    ({"cache": {"max_disk_gb": -1}}, "ingestion.cache.max_disk_gb = -1"),
    ({"cache": {"size": 64}}, "ingestion.cache.size: unknown parameter"),
])
def test_bad_ingestion_values_name_their_key(raw, expected):
    assert expected in _error(IngestionParams, {"root": "data"} | raw)


def test_ingestion_accepts_a_labels_file_and_grayscale():
    params = base_params(IngestionParams, root="data", labels_file="x/labels.PARQUET",
                         channels=1, cache={"resolution": 64})
    assert (params.labels_file, params.channels, params.cache.resolution) == (
        "x/labels.PARQUET", 1, 64)


@pytest.mark.parametrize("scale", [[0.9, 0.5], [0.0, 1.0], [0.5, 1.5]])
def test_augmentation_scale_range(scale):
    message = _error(AugmentationParams, {"scale": scale})
    assert "augmentation.scale" in message
    assert "need 0 < low <= high <= 1" in message


@pytest.mark.parametrize(("model", "raw", "expected"), [
    (DemoDataParams, {"image_size": 4}, "demo_data.image_size = 4"),
    (DemoDataParams, {"imbalance_ratio": 0.5}, "demo_data.imbalance_ratio = 0.5"),
    (TrainingParams, {"lr": 20}, "training.lr = 20"),
    (TrainingParams, {"momentum": 1.0}, "training.momentum = 1.0"),
    (TrainingParams, {"image_size": 2048}, "training.image_size = 2048"),
    (EvaluationParams, {"device": "gpu"}, "evaluation.device = 'gpu'"),
])
def test_range_errors(model, raw, expected):
    assert expected in _error(model, raw)


def test_params_are_frozen():
    params = base_params(TrainingParams, epochs=4)
    with pytest.raises(pydantic.ValidationError):
        params.epochs = 5


def test_timm_name_with_a_pretrained_tag_is_accepted():
    assert base_params(TrainingParams, model="resnet18.a1_in1k").model == "resnet18.a1_in1k"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"batch_size": 63, "mixup": {"mixup_alpha": 0.2}}, "training.batch_size = 63: MixUp"),
    ({"batch_size": 64, "devices": 3}, "give a multiple of training.devices = 3"),
    ({"devices": 0}, "training.devices = 0: give a number of worker processes >= 1, or auto"),
    ({"epochs": 3, "freeze_backbone_epochs": 3}, "training.freeze_backbone_epochs = 3"),
    ({"optimizer": "lamb"}, "training.optimizer = 'lamb'"),
    ({"schedule": {"name": "exp"}}, "training.schedule.name = 'exp'"),
    ({"precision": "fp8"}, "training.precision = 'fp8'"),
    ({"resume": "yes"}, "training.resume = 'yes'"),
    ({"swa": {"schedule": "linear"}}, "training.swa.schedule = 'linear'"),
    ({"ema": {"decay": 1.0}}, "training.ema.decay = 1.0"),
    ({"distillation": {"teacher_path": "/no/such/teacher"}},
     "training.distillation.teacher_path = '/no/such/teacher': no such file or folder"),
    ({"distillation": {"teacher_model": "resnet999"}},
     "training.distillation.teacher_model = 'resnet999'"),
    ({"loss": {"name": "hinge"}}, "training.loss.name = 'hinge': accepted ['cross_entropy', "
                                  "'focal']"),
    ({"loss": {"name": "focal", "options": {"gama": 2}}},
     "training.loss.options = {'gama': 2}: focal refused them"),
])
def test_recipe_parameters_are_checked_before_training(raw, expected):
    assert expected in _error(TrainingParams, raw)


def test_teacher_file_needs_its_architecture(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(b"\0")
    message = _error(TrainingParams, {"distillation": {"teacher_path": str(teacher)}})
    assert "set training.distillation.teacher_model" in message


def test_mixup_is_off_unless_an_alpha_is_set():
    assert not base_params(TrainingParams).mixup.enabled
    assert base_params(TrainingParams, mixup={"cutmix_alpha": 1.0}).mixup.enabled
    assert not base_params(TrainingParams, mixup={"cutmix_alpha": 1.0, "prob": 0.0}).mixup.enabled


def test_the_old_augmentation_search_is_refused_with_where_it_went():
    message = _error(AugmentationParams, {"search": {"enabled": True}})
    assert "augmentation.search was replaced by the tuning block" in message
    assert "tuning.space.policies" in message


def test_loss_options_reach_the_loss():
    params = base_params(TrainingParams, loss={"name": "focal", "options": {"gamma": 1.5}})
    assert (params.loss.name, params.loss.options) == ("focal", {"gamma": 1.5})


def test_a_soft_merge_override_keeps_the_other_keys_of_a_block():
    raw = merged(base_raw(TrainingParams), {"swa": {"lr": 0.05}})
    params = TrainingParams.model_validate(raw)
    assert (params.swa.lr, params.swa.start_fraction) == (0.05, 0.75)
