"""TrainingParams into the core's run types: the recipe (learning rates per 256 images scaled
to the batch), the classification task (loss of the balance plan, batch mixing of the
policy, AugMix's consistency loss, distillation) and the classifier re-training recipe."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.params import base_params
from visrec.core.augment import MixSpec, make_spec
from visrec.core.balance import BalancePlan, make_balance_plan
from visrec.core.train import DistillSpec, LossSpec
from visrec.params import ClassBalanceParams, TrainingParams

COUNTS = pd.DataFrame({"label": ["a", "b"], "train": [90, 10], "val": [0, 0], "test": [5, 5]})
CPU = torch.device("cpu")
FLIP_CROP = make_spec("flip_crop")  # a policy without batch mixing or consistency loss


def _plan(strategy) -> BalancePlan:
    return make_balance_plan(COUNTS, base_params(ClassBalanceParams,
                                                 strategy=strategy).settings())


def _params(**overrides: object) -> TrainingParams:
    """conf/base's ``training`` block for test_resnet without EMA, with ``overrides``."""
    return base_params(TrainingParams, **({"model": "test_resnet", "ema": {"enabled": False}}
                                          | overrides))


def _task(params: TrainingParams, plan: BalancePlan, spec=FLIP_CROP):
    return params.classification_task(plan, spec, num_classes=2, channels=3)


@pytest.mark.parametrize(("batch_size", "expected_lr"), [(256, 0.2), (64, 0.05), (512, 0.4)])
def test_learning_rates_scale_linearly_with_batch_size(batch_size, expected_lr):
    params = _params(lr=0.2, batch_size=batch_size, epochs=20,
                     swa={"lr": 0.04, "start_fraction": 0.75})
    config = params.fit_config(seed=0, device=CPU)
    assert config.optimizer.lr == pytest.approx(expected_lr)
    assert config.swa.lr == pytest.approx(0.04 * batch_size / 256)
    assert config.swa.start == 15
    assert config.epochs == 20 and config.seed == 0
    assert _task(params, _plan("none")).loss == LossSpec(label_smoothing=params.label_smoothing)


def test_swa_start_epoch_overrides_the_fraction_and_the_cpu_runs_fp32_channels_last():
    params = _params(epochs=10, precision="auto", channels_last="auto",
                     swa={"start_epoch": 4, "start_fraction": 0.75})
    config = params.fit_config(seed=3, device=CPU)
    assert config.swa.start == 3  # 1-based epoch 4
    assert config.precision == "fp32" and config.channels_last is True
    assert config.ema is None and config.seed == 3


def test_swa_off_and_deferred_class_weights_reach_the_loss():
    params = _params(epochs=10, swa={"enabled": False})
    plan = _plan("drw")
    config = params.fit_config(seed=0, device=CPU)
    loss = _task(params, plan).loss
    assert config.swa is None
    assert loss.class_weights == tuple(plan.class_weights.values)
    assert loss.weights_from_epoch == 8  # drw.start_fraction 0.8 of 10 epochs
    assert loss.label_smoothing == params.label_smoothing


def test_focal_and_logit_adjustment_reach_the_loss():
    params = _params(epochs=4)
    loss = _task(params, _plan(["focal", "logit_adjustment"])).loss
    assert loss.name == "focal" and loss.options == {"gamma": 2.0}
    np.testing.assert_allclose(loss.logit_offsets, np.log([0.9, 0.1]), atol=1e-7)
    assert loss.class_weights is None


def test_a_plan_with_focal_and_another_training_loss_is_refused():
    params = _params(epochs=4, loss={"name": "focal", "options": {"gamma": 1.0}})
    assert _task(params, _plan("none")).loss == LossSpec(
        name="focal", options={"gamma": 1.0}, label_smoothing=params.label_smoothing)
    with pytest.raises(ValueError, match=r"keep one: training\.loss\.name: cross_entropy"):
        _task(params, _plan("focal"))


def test_classifier_retraining_recipe():
    params = _params(batch_size=64, epochs=4)
    assert params.crt_recipe(_plan("logit_adjustment"), num_classes=2, seed=0) is None
    config, task = params.crt_recipe(_plan(["logit_adjustment", "crt"]), num_classes=2, seed=5)
    assert config.epochs == 10
    assert config.optimizer.lr == pytest.approx(0.2 * 64 / 256)
    assert config.schedule.name == "cosine"
    assert config.schedule.min_lr == pytest.approx(0.2 * 64 / 256 / 1000)
    assert config.seed == 5 and task.num_classes == 2
    # Class-balanced batches balance the classes: plain (smoothed) cross-entropy.
    assert task.loss == LossSpec(label_smoothing=params.label_smoothing)
    assert config.swa is None and config.ema is None and task.mix is None


def test_the_policy_mixes_batches_and_wins_over_training_mixup(caplog):
    params = _params(epochs=4, mixup={"mixup_alpha": 0.4, "cutmix_alpha": 0.0})
    assert _task(params, _plan("none"), make_spec("flip_crop")).mix == (
        MixSpec(mixup_alpha=0.4, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5))
    spec = make_spec("flip_crop + mixup(alpha=0.2, prob=0.5) + cutmix(alpha=1.0)")
    with caplog.at_level("WARNING"):
        task = _task(params, _plan("none"), spec)
    assert task.mix == MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)
    assert "training.mixup is ignored" in caplog.text
    alone = _task(_params(epochs=4), _plan("none"), make_spec("cutmix(alpha=0.5, prob=0.3)"))
    assert alone.mix == MixSpec(mixup_alpha=0.0, cutmix_alpha=0.5, prob=0.3, switch_prob=0.0)
    assert alone.jsd_weight is None


def test_augmix_consistency_loss_reaches_the_task():
    params = _params(epochs=4)
    task = _task(params, _plan("none"), make_spec("augmix(jsd=true, jsd_weight=6)"))
    assert task.jsd_weight == 6.0 and task.mix is None
    assert _task(params, _plan("none"), make_spec("augmix")).jsd_weight is None


def test_distillation_reaches_the_task(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(b"")  # the parameters check that it exists; the task loads it later
    params = _params(epochs=4, distillation={"teacher_path": str(teacher),
                                             "teacher_model": "test_resnet",
                                             "temperature": 2.0, "weight": 0.3})
    task = params.classification_task(_plan("none"), FLIP_CROP, num_classes=2, channels=1)
    assert task.distill == DistillSpec(teacher_path=str(teacher),
                                       teacher_architecture="test_resnet", temperature=2.0,
                                       weight=0.3)
    assert task.in_chans == 1 and task.num_classes == 2
    assert _task(_params(epochs=4), _plan("none")).distill is None
