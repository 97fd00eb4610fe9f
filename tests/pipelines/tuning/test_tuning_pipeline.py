"""The tuning pipeline: a budgeted Optuna study of real proxy trainings on the tiny digits,
resumed without rerunning a trial, its choice applied by training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from matplotlib.figure import Figure

from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.tune import POLICY
from visrec.params import TuningParams
from visrec.pipelines import augmentation, class_balance, ingestion
from visrec.pipelines.training.nodes import apply_tuned_parameters
from visrec.pipelines.tuning import create_pipeline

UPSTREAM = ["image_manifest", "image_cache", "ingestion_report", "balance_plan",
            "augmentation_spec", "class_counts"]


def _upstream(params: dict) -> dict:
    before = (ingestion.create_pipeline() + class_balance.create_pipeline()
              + augmentation.create_pipeline())
    catalog = run_pipeline(before, only(params, before))
    return {name: catalog[name].load() for name in UPSTREAM}


def _tuning(**overrides: object) -> TuningParams:
    """A small search: two policies and the learning rate, half a training's budget."""
    raw = base_params(TuningParams).model_dump()
    raw["space"] = {"policies": ["flip_crop", "flip_crop + erasing(p=0.5)"],
                    "class_balance": ["class_balanced_sampler"],
                    "recipe": {"lr": {"low": 0.05, "high": 0.4, "log": True}}}
    return TuningParams.model_validate(raw | {"budget": 1.0} | overrides)


def _run(tiny_params: dict, upstream: dict, tuning: TuningParams, study: Path):
    pipeline = create_pipeline()
    inputs = only(tiny_params, pipeline) | upstream | {
        "params:tuning": tuning, "tuning_study": f"sqlite:///{study}"}
    return run_pipeline(pipeline, inputs)


@pytest.fixture
def upstream(tiny_params) -> dict:
    return _upstream(tiny_params)


def test_the_search_spends_its_budget_and_training_applies_its_choice(
        tiny_params, upstream, tmp_path, caplog):
    caplog.set_level("INFO", logger="visrec")
    study = tmp_path / "study.db"
    catalog = _run(tiny_params, upstream, _tuning(), study)
    plan = catalog["tuning_plan"].load()
    assert "tuning plan: budget 1 training(s)" in caplog.text  # logged before any trial
    assert plan.proxy_epochs == 2 and 0 < plan.subset <= 1  # the tiny recipe: 2 epochs
    table = catalog["tuning_leaderboard"].load()
    assert sorted(table["trial"]) == list(range(len(table)))
    first = table[table["trial"] == 0].iloc[0]
    assert first["configured"] and first["training.lr"] == 0.2  # the settings as configured
    assert table["cost_trainings"].sum() <= plan.budget + 1e-9  # never over the budget
    assert ((table["value"] >= 0) & (table["value"] <= 1)).all()
    assert (table["standard_error"] > 0).all()
    assert table["selected"].sum() == 1 and table["tied"].any()
    chosen = table[table["selected"]].iloc[0]
    tuned = catalog["tuned_parameters"].load()
    assert tuned["search"]["trial"] == chosen["trial"]
    assert tuned["training"]["lr"] == pytest.approx(chosen["training.lr"])
    assert tuned["augmentation"]["policy"] == chosen[POLICY]
    assert tuned["class_balance"]["strategy"] == "class_balanced_sampler"
    history, importance = (catalog["tuning_history_chart"].load(),
                           catalog["tuning_importance_chart"].load())
    assert isinstance(history, Figure) and isinstance(importance, Figure)
    assert sorted(catalog["tuning_policy_previews"].load()) == ["policy_1", "policy_2"]

    training, plan_used, spec = apply_tuned_parameters(
        tuned, True, upstream["class_counts"], upstream["balance_plan"],
        upstream["augmentation_spec"], tiny_params["params:training"],
        tiny_params["params:class_balance"], tiny_params["params:augmentation"])
    assert training.lr == pytest.approx(chosen["training.lr"])
    assert training.epochs == tiny_params["params:training"].epochs  # the rest as configured
    assert plan_used.strategy == "class_balanced_sampler"
    assert spec.search is not None and spec.search.candidate == chosen["trial"]

    # Chosen for other settings (the training pipeline run alone after a change): refused.
    changed = tiny_params["params:training"].model_copy(update={"epochs": 3})
    with pytest.raises(ValueError, match=r"chosen for other training, class_balance or "
                                         r"augmentation settings.*tuning.enabled=false"):
        apply_tuned_parameters(tuned, True, upstream["class_counts"],
                               upstream["balance_plan"], upstream["augmentation_spec"],
                               changed, tiny_params["params:class_balance"],
                               tiny_params["params:augmentation"])
    # Tuning off: the file is not read, whatever it holds.
    assert apply_tuned_parameters(
        tuned, False, upstream["class_counts"], upstream["balance_plan"],
        upstream["augmentation_spec"], changed, tiny_params["params:class_balance"],
        tiny_params["params:augmentation"])[0] == changed

    # Run again: the study resumes, the budget is spent, no trial runs again.
    trials = len(optuna.load_study(study_name=tuned["search"]["study"],
                                   storage=f"sqlite:///{study}").trials)
    again = _run(tiny_params, upstream, _tuning(), study)
    assert len(again["tuning_leaderboard"].load()) == len(table) == trials
    assert again["tuned_parameters"].load() == tuned


def test_tuning_off_changes_nothing(tiny_params, upstream, tmp_path):
    catalog = _run(tiny_params, upstream, _tuning(enabled=False), tmp_path / "study.db")
    assert catalog["tuning_leaderboard"].load().empty
    tuned = catalog["tuned_parameters"].load()
    assert tuned == {"search": {"enabled": False}}
    training, plan, spec = apply_tuned_parameters(
        tuned, False, upstream["class_counts"], upstream["balance_plan"],
        upstream["augmentation_spec"], tiny_params["params:training"],
        tiny_params["params:class_balance"], tiny_params["params:augmentation"])
    assert (training, plan, spec) == (tiny_params["params:training"], upstream["balance_plan"],
                                      upstream["augmentation_spec"])
    assert list(catalog["tuning_policy_previews"].load()) == ["policy_1"]
    assert not (tmp_path / "study.db").exists()


@pytest.mark.faults
def test_the_search_needs_a_validation_split(tiny_params, tmp_path):
    no_val = tiny_params | {"params:ingestion": tiny_params["params:ingestion"].model_copy(
        update={"val_fraction": 0.0})}
    with pytest.raises(Exception, match=r"tuning needs validation images, and the val split "
                                        r"is empty: set ingestion.val_fraction > 0"):
        _run(no_val, _upstream(no_val), _tuning(), tmp_path / "study.db")


def test_a_class_without_validation_images_is_named_and_the_rest_scored(
        tiny_params, upstream, tmp_path, caplog):
    manifest = upstream["image_manifest"].copy()
    rare = manifest["label"].astype(str).min()  # all its val images go to training
    manifest.loc[(manifest["label"].astype(str) == rare) & (manifest["split"] == "val"),
                 "split"] = "train"
    catalog = _run(tiny_params, upstream | {"image_manifest": manifest}, _tuning(budget=0.5),
                   tmp_path / "study.db")
    assert f"1 class(es) have no validation image ({rare})" in caplog.text
    table = catalog["tuning_leaderboard"].load()
    assert (table["state"] == "complete").any() and (table["standard_error"] > 0).all()


@pytest.mark.faults
def test_a_budget_too_small_for_one_trial_keeps_the_configured_settings(
        tiny_params, upstream, tmp_path, caplog):
    catalog = _run(tiny_params, upstream, _tuning(budget=0.01), tmp_path / "study.db")
    assert catalog["tuning_leaderboard"].load().empty
    tuned = catalog["tuned_parameters"].load()
    assert set(tuned) == {"search"}  # nothing to apply
    assert "pays for no proxy trial here" in tuned["search"]["kept"]
    assert "training keeps the configured settings" in caplog.text
