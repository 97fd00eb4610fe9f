"""The budget in trainings, and the proxy sizes derived from it."""

from __future__ import annotations

import pandas as pd
import pytest

from visrec.core.balance import BalanceSettings, make_balance_plan
from visrec.core.tune import (
    FULL_LENGTH_TRIALS,
    VAL_WEIGHT,
    epoch_cost,
    epoch_images,
    make_plan,
    proxy_size,
    subset_rows,
)


def _counts(train: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"label": [f"c{i}" for i in range(len(train))], "train": train,
                         "val": [10] * len(train), "test": [10] * len(train)})


def _plan(train: list[int], strategy: str):
    settings = BalanceSettings(strategies=(strategy,), class_weights="effective_number",
                               beta=0.999, resample_ratio=1.0, focal_gamma=2.0,
                               logit_adjustment_tau=1.0, drw_start_fraction=0.8,
                               crt_epochs=2, crt_lr=0.2, min_imbalance_ratio=3.0)
    return make_balance_plan(_counts(train), settings)


def test_oversampling_lengthens_an_epoch():
    assert epoch_images(_plan([100, 10], "none")) == 110
    assert epoch_images(_plan([100, 10], "oversample")) == 200
    assert epoch_images(_plan([100, 10], "class_balanced_sampler")) == 110


@pytest.mark.parametrize(("budget", "epochs", "train", "val"), [
    (1.0, 30, 1250, 270), (0.5, 30, 1250, 270), (3.0, 30, 1250, 270), (1.0, 3, 6400, 800),
    (1.0, 2, 100, 1000)])
def test_full_length_trials_of_the_proxy_spend_the_budget(budget, epochs, train, val):
    proxy_epochs, subset = proxy_size(budget, epochs, train, val)
    assert 1 <= proxy_epochs <= epochs and 0 <= subset <= 1
    one_training = epochs * epoch_cost(train, val)
    proxy = proxy_epochs * epoch_cost(subset * train, val)
    if 0 < subset < 1:  # sized exactly
        assert FULL_LENGTH_TRIALS * proxy == pytest.approx(budget * one_training)
    elif subset == 1:  # the whole split, for as many epochs as fit
        assert FULL_LENGTH_TRIALS * proxy <= budget * one_training
    else:  # the validation pass alone is over the share: one epoch, fewer trials
        assert proxy_epochs == 1 and FULL_LENGTH_TRIALS * proxy > budget * one_training


def test_the_plan_counts_the_costliest_strategy():
    configured = _plan([100, 10], "none")
    subset = {"none": _plan([50, 10], "none"), "oversample": _plan([50, 10], "oversample")}
    plan = make_plan(1.0, 10, configured, subset, [50, 10], 0.5, 4, val_images=30)
    assert plan.training_cost == 10 * (110 + VAL_WEIGHT * 30)
    assert plan.trial_cost == 4 * (60 + VAL_WEIGHT * 30)
    assert plan.max_trial_cost == 4 * (100 + VAL_WEIGHT * 30)  # oversampled to 50 + 50
    assert plan.budget_cost == plan.training_cost
    assert "proxy trials of 4 epochs on 50% of each training class" in plan.describe()


def test_the_subset_keeps_every_class_and_every_other_split():
    manifest = pd.DataFrame({
        "path": [f"{i}.png" for i in range(230)],
        "label": ["a"] * 200 + ["b"] * 30,
        "split": ["train"] * 150 + ["val"] * 50 + ["train"] * 5 + ["test"] * 25})
    rows = subset_rows(manifest, 0.1, seed=0)
    train = rows[rows["split"] == "train"]["label"].value_counts()
    assert train["a"] == 15 and train["b"] == 5  # 10 %, at least 10 or the whole class
    assert (rows["split"] != "train").sum() == 75
    assert subset_rows(manifest, 0.1, seed=0).equals(rows)  # the seed decides
    assert subset_rows(manifest, 1.0, seed=0) is manifest
