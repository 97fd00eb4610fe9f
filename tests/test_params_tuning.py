"""The ``tuning`` block: its space is checked against the blocks its values go into, before
any node runs, with the full key of each bad value."""

from __future__ import annotations

import pytest

from tests.params import base_params, base_values
from visrec.core.tune import POLICY, STRATEGY
from visrec.params import ParameterError, TuningParams
from visrec.params.project import check_parameters
from visrec.params.tuning import merged, parse_recipe, with_value


def _space(**space: object):
    """The space of conf/base's tuning block with the keys of ``space`` replaced whole."""
    values = base_values()
    raw = values["tuning"] | {"space": values["tuning"]["space"] | space}
    tuning = TuningParams.model_validate(raw)
    return tuning.search_space(values["training"], values["augmentation"],
                               values["class_balance"])


def test_the_base_space_searches_policy_strategy_and_recipe():
    space = _space()
    searched = space.distributions()
    assert {POLICY, STRATEGY, "training.lr", "training.weight_decay",
            "training.label_smoothing", "training.mixup.mixup_alpha", "training.swa.lr",
            "training.swa.start_fraction", "training.schedule.name"} == set(searched)
    assert searched["training.lr"].log and not searched["training.label_smoothing"].log
    configured = space.searched({POLICY: "flip_crop", "training.lr": 0.2, "other": 1})
    assert configured == {POLICY: "flip_crop", "training.lr": 0.2}


def test_one_choice_is_fixed_and_an_empty_list_keeps_the_configured_value():
    space = _space(policies=[], class_balance=["auto"],
                   recipe={"schedule": {"name": {"choices": ["cosine"]}}})
    assert space.distributions() == {}
    assert space.fixed() == {POLICY: "flip_crop", STRATEGY: "auto",
                             "training.schedule.name": "cosine"}


def test_the_configured_settings_are_always_in_the_space():
    """The first trial tries them: a policy, strategy or choice not listed is added, a
    range is widened to reach the configured value (conf/base: lr 0.2, flip_crop, auto)."""
    space = _space(policies=["randaugment(n=2, m=9)"],
                   class_balance=[["class_balanced_sampler", "focal"]],
                   recipe={"lr": {"low": 0.3, "high": 0.8, "log": True},
                           "schedule": {"name": {"choices": ["linear"]}}})
    searched = space.distributions()
    assert searched[POLICY].choices == ("flip_crop", "randaugment(n=2, m=9)")
    assert searched[STRATEGY].choices == ("auto", "class_balanced_sampler+focal")
    assert (searched["training.lr"].low, searched["training.lr"].high) == (0.2, 0.8)
    assert searched["training.schedule.name"].choices == ("cosine", "linear")
    # Written another way, the configured policy is not listed twice.
    same = _space(policies=["flip_crop(scale=(0.5, 1.0))", "trivialaugment"])
    assert same.distributions()[POLICY].choices == ("flip_crop(scale=(0.5, 1.0))",
                                                    "trivialaugment")


@pytest.mark.faults
@pytest.mark.parametrize(("space", "expected"), [
    ({"policies": ["flip_crop", "augmix(depth=0)"]},
     "tuning.space.policies[1] = 'augmix(depth=0)': "),
    ({"policies": ["randaugment", "flip_crop + randaugment(n=2, m=9)"]},
     "tuning.space.policies[1] = 'flip_crop + randaugment(n=2, m=9)': the same policy as "
     "tuning.space.policies[0]"),
    ({"class_balance": ["auto", "oversampel"]}, "tuning.space.class_balance[1] = 'oversampel'"),
    ({"recipe": {"lr": {"low": 0.1, "high": 20.0}}},
     "tuning.space.recipe.lr = 20.0: training.lr = 20.0: Input should be less than or "
     "equal to 10"),
    ({"recipe": {"schedule": {"name": {"choices": ["cosine", "sine"]}}}},
     "tuning.space.recipe.schedule.name = 'sine'"),
    ({"recipe": {"swa": {"lr": {"low": 0.0, "high": 0.1}}}},
     "tuning.space.recipe.swa.lr = 0.0: training.swa.lr = 0.0: Input should be greater"),
    ({"recipe": {"lrr": {"low": 0.1, "high": 0.2}}}, "tuning.space.recipe.lrr = 0.1"),
    ({"recipe": {"epochs": {"low": 5, "high": 10}}},
     "tuning.space.recipe.epochs: not searched (the budget is counted in trainings of "
     "training.epochs); set training.epochs itself"),
    ({"recipe": {"image_size": {"choices": [32, 64]}}},
     "tuning.space.recipe.image_size: not searched (the proxies train the configured model"),
    ({"recipe": {"swa": {"start_epoch": {"low": 20, "high": 25}}}},
     "tuning.space.recipe.swa.start_epoch: a range of 20 to 25 cannot hold the configured "
     "training.swa.start_epoch = None, which the first trial tries: give {choices: [...]}"),
])
def test_a_bad_space_value_names_its_key(space, expected):
    with pytest.raises(ParameterError) as caught:
        _space(**space)
    assert expected in str(caught.value)


@pytest.mark.faults
def test_a_log_range_cannot_reach_a_configured_zero():
    values = base_values()
    tuning = TuningParams.model_validate(values["tuning"])
    with pytest.raises(ParameterError) as caught:
        tuning.search_space(values["training"] | {"weight_decay": 0.0},
                            values["augmentation"], values["class_balance"])
    assert ("tuning.space.recipe.weight_decay: a range of 1e-05 to 0.002 on a log scale "
            "cannot hold the configured training.weight_decay = 0.0, which the first trial "
            "tries: give log: false, or configure a value > 0") in str(caught.value)


@pytest.mark.faults
@pytest.mark.parametrize(("recipe", "expected"), [
    ({"lr": 0.1}, "tuning.space.recipe.lr = 0.1: give a range {low: 0.05, high: 0.8"),
    ({"lr": {"low": 0.5, "high": 0.1}}, "a range needs numbers low <= high"),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
    ({"lr": {"choices": []}}, "choices need a non-empty list"),
])
def test_a_malformed_range_is_refused(recipe, expected):
    with pytest.raises(ParameterError) as caught:
        _space(recipe=recipe)
    assert expected in str(caught.value)


@pytest.mark.faults
@pytest.mark.parametrize(("change", "expected"), [
    ({"storage": "not a url"}, "tuning.storage = 'not a url': not a database URL"),
    ({"budget": 0}, "tuning.budget = 0: Input should be greater than 0"),
    ({"sampler": "grid"}, "tuning.sampler = 'grid': Input should be 'tpe' or 'random'"),
    ({"pruner": {"name": "median"}}, "tuning.pruner.name = 'median'"),
    ({"metric": "f1"}, "tuning.metric = 'f1'"),
])
def test_bad_tuning_values_name_their_key(change, expected):
    with pytest.raises(ParameterError) as caught:
        base_params(TuningParams, **change)
    assert expected in str(caught.value)


def test_the_run_checks_check_the_space_against_the_other_blocks():
    parameters = base_values() | {}
    parameters["tuning"] = merged(parameters["tuning"],
                                  {"space": {"recipe": {"swa": {"start_fraction": {
                                      "low": 0.5, "high": 1.0}}}}})
    with pytest.raises(ParameterError, match="invalid parameters") as caught:
        check_parameters(parameters)
    assert "tuning.space.recipe.swa.start_fraction = 1.0" in str(caught.value)


def test_recipe_groups_nest_into_dotted_paths():
    found = parse_recipe({"swa": {"lr": {"low": 0.1, "high": 0.2}},
                          "schedule": {"name": {"choices": ["cosine"]}}})
    assert [d.path for d in found] == ["swa.lr", "schedule.name"]
    block = {"swa": {"lr": 0.1, "enabled": True}}
    assert with_value(block, "swa.lr", 0.3) == {"swa": {"lr": 0.3, "enabled": True}}
    assert block["swa"]["lr"] == 0.1  # a copy
