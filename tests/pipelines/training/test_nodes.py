"""Unit tests of the training nodes."""

import pytest

from visrec.params import SwaParams, TrainingParams
from visrec.pipelines.training.nodes import fit_config


@pytest.mark.parametrize(("batch_size", "expected_lr"), [(256, 0.2), (64, 0.05), (512, 0.4)])
def test_learning_rates_scale_linearly_with_batch_size(batch_size, expected_lr):
    params = TrainingParams(model="test_resnet", lr=0.2, batch_size=batch_size, epochs=20,
                            swa=SwaParams(lr=0.04, start_fraction=0.75))
    config = fit_config(params, {"class_weights": None})
    assert config.lr == pytest.approx(expected_lr)
    assert config.swa_lr == pytest.approx(0.04 * batch_size / 256)
    assert config.swa_start == 15


def test_swa_off_and_class_weights_passed_to_the_loss():
    params = TrainingParams(model="test_resnet", epochs=5, swa=SwaParams(enabled=False))
    config = fit_config(params, {"class_weights": [0.5, 2.0]})
    assert config.swa_start is None
    assert config.class_weights == (0.5, 2.0)
    assert config.label_smoothing == params.label_smoothing
