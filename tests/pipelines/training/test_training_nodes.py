"""Unit tests of the training nodes that need no training run."""

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from tests.params import base_params
from tests.pipelines.helpers import make_report
from visrec.core.balance import make_balance_plan
from visrec.core.models import ModelInputs
from visrec.core.train import TrainedWeights
from visrec.params import ClassBalanceParams, TrainingParams
from visrec.pipelines.training.nodes import (
    plot_learning_curve,
    resolve_model_inputs,
    retrain_classifiers,
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # resnet18
COUNTS = pd.DataFrame({"label": ["a", "b"], "train": [90, 10], "val": [0, 0], "test": [5, 5]})


@pytest.mark.parametrize(("image_size", "expected"), [(32, 32), (None, 160)])
def test_model_inputs_of_the_model_at_the_training_size(image_size, expected):
    """``training.image_size``, or the model's own (test_resnet: 160 px) when it is null,
    with the model's interpolation and normalisation."""
    inputs = resolve_model_inputs(make_report("images", ["a", "b", "c"]), "test_resnet",
                                  image_size)
    assert inputs == ModelInputs(image_size=expected, interpolation="bilinear",
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), in_chans=3)


def test_grayscale_model_inputs_average_the_rgb_normalisation():
    inputs = resolve_model_inputs(make_report("images", ["a", "b"], channels=1), "resnet18", 32)
    assert inputs.in_chans == 1 and inputs.interpolation == "bicubic"
    assert inputs.mean == pytest.approx((sum(IMAGENET_MEAN) / 3,))
    assert inputs.std == pytest.approx((sum(IMAGENET_STD) / 3,))


def test_without_classifier_retraining_the_weights_pass_through_unchanged():
    """A plan without cRT: the node returns its input, without reading any image."""
    trained = TrainedWeights({"final": {"w": torch.ones(2)}},
                             pd.DataFrame({"epoch": [1], "phase": ["train"]}),
                             random_state={})
    plan = make_balance_plan(COUNTS, base_params(ClassBalanceParams,
                                                 strategy="logit_adjustment").settings())
    params = base_params(TrainingParams, model="test_resnet", epochs=2)
    assert retrain_classifiers(trained, None, None, make_report("images", ["a", "b"]), plan,
                               None, None, params, seed=0) is trained


def test_learning_curve_draws_loss_and_accuracy():
    history = pd.DataFrame({"epoch": [1, 2, 3], "phase": ["train", "train", "swa"],
                            "lr": [0.1, 0.05, 0.01], "train_loss": [2.0, 1.5, 1.2],
                            "train_top1": [0.2, 0.4, 0.5], "val_loss": [2.1, 1.7, 1.4],
                            "val_top1": [0.2, 0.3, 0.45],
                            "val_balanced_accuracy": [0.2, 0.3, 0.4]})
    figure = plot_learning_curve(history)
    assert isinstance(figure, Figure)
    assert len(figure.axes) >= 2
    lines = [line for ax in figure.axes for line in ax.get_lines()]
    drawn = {tuple(line.get_ydata()) for line in lines}
    assert (2.0, 1.5, 1.2) in drawn and (2.1, 1.7, 1.4) in drawn
