"""Unit tests of the training nodes."""

import numpy as np
import pandas as pd
import pytest

from visrec.core.balance import make_balance_plan
from visrec.core.engine import MixSpec
from visrec.core.losses import LossSpec
from visrec.core.transforms import make_spec
from visrec.params import ClassBalanceParams, SwaParams, TrainingParams
from visrec.pipelines.training.nodes import crt_config, fit_config

COUNTS = pd.DataFrame({"label": ["a", "b"], "train": [90, 10], "val": [0, 0], "test": [5, 5]})


def _plan(strategy) -> dict:
    return make_balance_plan(COUNTS, ClassBalanceParams(strategy=strategy))


@pytest.mark.parametrize(("batch_size", "expected_lr"), [(256, 0.2), (64, 0.05), (512, 0.4)])
def test_learning_rates_scale_linearly_with_batch_size(batch_size, expected_lr):
    params = TrainingParams(model="test_resnet", lr=0.2, batch_size=batch_size, epochs=20,
                            swa=SwaParams(lr=0.04, start_fraction=0.75))
    config = fit_config(params, _plan("none"))
    assert config.optimizer.lr == pytest.approx(expected_lr)
    assert config.swa.lr == pytest.approx(0.04 * batch_size / 256)
    assert config.swa.start == 15
    assert config.loss == LossSpec(label_smoothing=params.label_smoothing)


def test_swa_off_and_deferred_class_weights_reach_the_loss():
    params = TrainingParams(model="test_resnet", epochs=10, swa=SwaParams(enabled=False))
    plan = _plan("drw")
    config = fit_config(params, plan)
    assert config.swa is None
    assert config.loss.class_weights == tuple(plan["class_weights"]["values"])
    assert config.loss.weights_from_epoch == 8  # drw.start_fraction 0.8 of 10 epochs
    assert config.loss.label_smoothing == params.label_smoothing


def test_focal_and_logit_adjustment_reach_the_loss():
    params = TrainingParams(model="test_resnet", epochs=4)
    config = fit_config(params, _plan(["focal", "logit_adjustment"]))
    assert config.loss.focal_gamma == 2.0
    np.testing.assert_allclose(config.loss.logit_offsets, np.log([0.9, 0.1]), atol=1e-7)
    assert config.loss.class_weights is None


def test_classifier_retraining_recipe():
    params = TrainingParams(model="test_resnet", batch_size=64, epochs=4)
    assert crt_config(params, _plan("logit_adjustment")) is None
    config = crt_config(params, _plan(["logit_adjustment", "crt"]))
    assert config.epochs == 10
    assert config.optimizer.lr == pytest.approx(0.2 * 64 / 256)
    # Class-balanced batches balance the classes: plain (smoothed) cross-entropy.
    assert config.loss == LossSpec(label_smoothing=params.label_smoothing)
    assert config.swa is None and config.ema is None and config.mix is None


def test_the_policy_mixes_batches_and_wins_over_training_mixup(caplog):
    params = TrainingParams(model="test_resnet", epochs=4,
                            mixup={"mixup_alpha": 0.4, "cutmix_alpha": 0.0})
    assert fit_config(params, _plan("none"), augmentation_spec=make_spec("flip_crop")).mix == (
        MixSpec(mixup_alpha=0.4, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5))
    spec = make_spec("flip_crop + mixup(alpha=0.2, prob=0.5) + cutmix(alpha=1.0)")
    with caplog.at_level("WARNING"):
        config = fit_config(params, _plan("none"), augmentation_spec=spec)
    assert config.mix == MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
    assert "training.mixup is ignored" in caplog.text
    alone = fit_config(TrainingParams(model="test_resnet", epochs=4), _plan("none"),
                       augmentation_spec=make_spec("cutmix(alpha=0.5, prob=0.3)"))
    assert alone.mix == MixSpec(mixup_alpha=0.0, cutmix_alpha=0.5, prob=0.3, switch_prob=0.0)
    assert alone.jsd_weight is None


def test_augmix_consistency_loss_reaches_the_recipe():
    params = TrainingParams(model="test_resnet", epochs=4)
    config = fit_config(params, _plan("none"),
                        augmentation_spec=make_spec("augmix(jsd=true, jsd_weight=6)"))
    assert config.jsd_weight == 6.0 and config.mix is None
    assert fit_config(params, _plan("none"),
                      augmentation_spec=make_spec("augmix")).jsd_weight is None
