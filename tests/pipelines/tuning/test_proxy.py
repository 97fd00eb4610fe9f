"""A proxy trial is the training recipe compressed to the plan's epochs."""

from __future__ import annotations

import pytest

from tests.params import base_values
from visrec.core.tune import SearchPlan
from visrec.params.tuning import merged
from visrec.pipelines.tuning.proxy import ProxyTrainer

PLAN = SearchPlan(budget=1.0, training_cost=4000.0, budget_cost=4000.0, epochs=40,
                  proxy_epochs=8, subset=0.5, proxy_images=50, val_images=20,
                  trial_cost=500.0, max_trial_cost=500.0, full_length_trials=8.0)


def _trainer(training: dict) -> ProxyTrainer:
    """A trainer whose data is never touched: only its recipe is read."""
    return ProxyTrainer(rows=None, cache=None, report=None, inputs=None,
                        training=training, augmentation=None, plans={},
                        plan=PLAN, metric="balanced_accuracy", seed=0, device=None,
                        study=None)


def test_every_length_in_epochs_is_scaled_to_the_proxy():
    training = merged(base_values()["training"], {
        "epochs": 40, "freeze_backbone_epochs": 10, "resume": "auto",
        "schedule": {"warmup_epochs": 4, "step_epochs": 20, "cycle_epochs": 8.0},
        "swa": {"start_epoch": 30, "anneal_epochs": 4, "cycle_epochs": 4}})
    params = _trainer(training).params({"training.lr": 0.3, "training.swa.lr": 0.05})
    assert (params.epochs, params.freeze_backbone_epochs, params.resume) == (8, 2, "never")
    assert (params.schedule.warmup_epochs, params.schedule.step_epochs) == (1, 4)
    assert params.schedule.cycle_epochs == pytest.approx(1.6)
    assert (params.swa.start_epoch, params.swa.anneal_epochs, params.swa.cycle_epochs) == (
        None, 1, 1)  # SWA starts at its fraction of the proxy
    assert (params.lr, params.swa.lr) == (0.3, 0.05)  # the trial's settings


def test_frozen_epochs_leave_the_proxy_an_epoch_to_train_the_backbone():
    training = merged(base_values()["training"], {"epochs": 20, "freeze_backbone_epochs": 19})
    assert _trainer(training).params({}).freeze_backbone_epochs == 7  # 7.6 rounds to 8
