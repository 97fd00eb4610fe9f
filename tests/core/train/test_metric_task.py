"""Tests of the metric-learning task (visrec.core.train.tasks.metric) in the training loop:
a tiny embedding model learns patterned colour images in P x K batches, validated by
retrieval among held-out classes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from visrec.core.data import MPerClassBatches, make_loader
from visrec.core.models import make_embedder
from visrec.core.models.embedding import EmbeddingNet
from visrec.core.retrieval import RETRIEVAL_METRICS, retrieval_metrics
from visrec.core.seeding import seed_everything
from visrec.core.train import FitConfig, OptimizerSpec, ScheduleSpec, fit
from visrec.core.train.losses.metric import MetricLoss, parse_metric_loss
from visrec.core.train.tasks.metric import LossAttached, MetricLearningTask

CPU = torch.device("cpu")
ARCH, DIMS, SIZE = "test_resnet", 8, 16
TRAIN_CLASSES, VAL_CLASSES = 4, 2  # classes 0-3 train, 4-5 are held out
K, BATCH = 4, 8  # P = 2 classes per batch
EPOCHS = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(classes: list[int], per_class: int, seed: int) -> TensorDataset:
    """Noise images whose class sets a bright channel (class % 3) and stripes (horizontal
    for classes 0-2, vertical for 3-5); labels numbered from 0 in ``classes`` order."""
    generator = torch.Generator().manual_seed(seed)
    rows = len(classes) * per_class
    pixels = torch.rand(rows, 3, SIZE, SIZE, generator=generator) * 0.3
    stripes = (torch.arange(SIZE) % 4 < 2).float() * 0.4
    for row in range(rows):
        kind = classes[row // per_class]
        pixels[row, kind % 3] += 0.3
        pixels[row, kind % 3] += stripes[:, None] if kind < 3 else stripes[None, :]
    labels = torch.arange(len(classes)).repeat_interleave(per_class)
    return TensorDataset((pixels - 0.5) / 0.5, labels)


def _loaders(seed: int = 0):
    train = _images(list(range(TRAIN_CLASSES)), 12, seed=1)
    sampler = MPerClassBatches(train.tensors[1].numpy(), K, BATCH, seed)
    val = _images(list(range(TRAIN_CLASSES, TRAIN_CLASSES + VAL_CLASSES)), 8, seed=2)
    return (make_loader(train, BATCH, CPU, seed, train=True, sampler=sampler, num_workers=0),
            make_loader(val, 16, CPU, seed, train=False, num_workers=0))


@dataclass
class RecordingTask(MetricLearningTask):
    """The task, keeping the labels of every training batch it is given."""

    batches: list[list[int]] = field(default_factory=list)

    def step(self, model, images, targets):
        self.batches.append(targets.tolist())
        return super().step(model, images, targets)


@dataclass(frozen=True)
class Run:
    task: RecordingTask
    start: dict[str, torch.Tensor]
    trained: dict[str, nn.Module]
    history: object


def _fit(loss: MetricLoss, lr: float = 0.05) -> Run:
    seed_everything(0)
    task = RecordingTask(loss=loss, num_classes=TRAIN_CLASSES, embedding_size=DIMS)
    model = task.prepare_model(make_embedder(ARCH, DIMS, batch_norm=True))
    start = {name: value.detach().clone() for name, value in model.state_dict().items()}
    train, val = _loaders()
    config = FitConfig(epochs=EPOCHS, optimizer=OptimizerSpec(
        lr=lr, weight_decay=1e-4, lr_scales=(("criterion.", 100.0),) if loss.proxies else ()),
        schedule=ScheduleSpec("cosine", min_lr=lr / 100))
    result = fit(model, train, val, config, task, CPU)
    return Run(task, start, result.weights, result.history)


@pytest.fixture(scope="module")
def triplet_run(one_torch_thread) -> Run:
    return _fit(parse_metric_loss("triplet(margin=0.2)"))


@pytest.fixture(scope="module")
def proxy_run(one_torch_thread) -> Run:
    return _fit(parse_metric_loss("proxy_anchor"), lr=0.01)


def _assert_history(run: Run) -> None:
    history = run.history
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert history["train_loss"].map(math.isfinite).all()
    for name in RETRIEVAL_METRICS:
        values = history[f"val_{name}"]
        assert values.between(0.0, 1.0).all(), name
    assert "val_num_query_images" not in history and "val_num_classes" not in history


def _assert_p_by_k(batches: list[list[int]]) -> None:
    assert len(batches) == EPOCHS * 48 // BATCH
    for labels in batches:
        counts = np.unique(labels, return_counts=True)[1]
        assert counts.tolist() == [K] * (BATCH // K)


def test_triplet_training_history(triplet_run):
    _assert_history(triplet_run)
    _assert_p_by_k(triplet_run.task.batches)
    # Batch-hard mining keeps one triplet per anchor: 8 of 8 x 3 x 4 = 96 in a batch.
    assert triplet_run.history["train_active"].tolist() == pytest.approx([1 / 12] * EPOCHS)


def test_triplet_training_lowers_the_loss_and_retrieves(triplet_run):
    history = triplet_run.history
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    # Colour and stripes set even the held-out classes apart (an untrained trunk already
    # retrieves them), so near-perfect figures here check that validation lines the
    # embeddings up with their labels; a shuffle would give about 7/15 (chance).
    assert history["val_mean_average_precision_at_r"].min() > 0.9
    assert history["val_precision_at_1"].min() > 0.9


def _assert_product(run: Run) -> EmbeddingNet:
    trained = run.trained["final"]
    assert isinstance(trained, LossAttached)
    product = run.task.product(trained)
    assert isinstance(product, EmbeddingNet) and product is trained.net
    keys = list(product.state_dict())
    assert not any(key.startswith(("criterion.", "net.")) for key in keys)
    assert keys == list(make_embedder(ARCH, DIMS, batch_norm=True).state_dict())
    images = _images([4, 5], 3, seed=9).tensors[0]
    with torch.no_grad():
        norms = product.eval()(images).norm(dim=1)
    np.testing.assert_allclose(norms.numpy(), 1.0, atol=1e-5)
    return product


def test_the_product_is_the_embedder_without_the_loss(triplet_run):
    _assert_product(triplet_run)


def test_a_proxy_loss_trains_its_proxies(proxy_run):
    _assert_history(proxy_run)
    _assert_p_by_k(proxy_run.task.batches)
    assert "train_active" not in proxy_run.history  # no miner
    trained = proxy_run.trained["final"]
    proxies = trained.criterion.proxies
    assert proxies.shape == (TRAIN_CLASSES, DIMS)
    assert "criterion.proxies" in trained.state_dict()
    assert not torch.equal(proxies.detach(), proxy_run.start["criterion.proxies"])
    assert torch.isfinite(proxies).all()
    product = _assert_product(proxy_run)
    assert "criterion.proxies" not in product.state_dict()
    assert proxy_run.history["train_loss"].iloc[-1] < 0.5 * proxy_run.history["train_loss"].iloc[0]


def test_validate_gives_the_retrieval_figures(triplet_run):
    _, val = _loaders()
    figures = triplet_run.task.validate(triplet_run.trained["final"], val, CPU)
    assert sorted(figures) == sorted(RETRIEVAL_METRICS)
    last = triplet_run.history.iloc[-1]
    for name in RETRIEVAL_METRICS:  # the final weights are the last epoch's
        assert figures[name] == pytest.approx(last[f"val_{name}"], abs=1e-9)


def test_with_trunk_output_the_loss_trains_the_projection_and_validation_measures_the_trunk():
    seed_everything(0)
    task = MetricLearningTask(loss=parse_metric_loss("multi_similarity"),
                              num_classes=TRAIN_CLASSES, embedding_size=DIMS)
    model = task.prepare_model(make_embedder(ARCH, DIMS, batch_norm=True, output="trunk"))
    net = task.product(model)
    assert isinstance(net, EmbeddingNet) and net.output == "trunk"
    width = net.trunk.num_features
    assert width != DIMS and net.output_size == width
    # Noise with arbitrary labels: no layout retrieves it perfectly, so the trunk's and
    # the projection's figures differ.
    generator = torch.Generator().manual_seed(3)
    noise = TensorDataset(torch.rand(24, 3, SIZE, SIZE, generator=generator) * 2 - 1,
                          torch.arange(3).repeat(8))
    val = make_loader(noise, 16, CPU, 0, train=False, num_workers=0)
    images, labels = noise.tensors
    model.eval()
    with torch.no_grad():
        projected, served = model(images), net(images)
        features = torch.nn.functional.normalize(net.trunk(images), dim=1)
    assert projected.shape == (len(images), DIMS)  # what the loss sees
    torch.testing.assert_close(projected, net.project(images))
    torch.testing.assert_close(served, features)  # what is measured and served
    figures = task.validate(model, val, CPU)
    expected = retrieval_metrics(features, labels.numpy())
    projected_figures = retrieval_metrics(projected, labels.numpy())
    for name in RETRIEVAL_METRICS:
        assert figures[name] == pytest.approx(float(expected[name]), abs=1e-6), name
    assert any(abs(figures[name] - float(projected_figures[name])) > 1e-3
               for name in RETRIEVAL_METRICS)


def test_an_embedding_model_refuses_an_unknown_output():
    with pytest.raises(ValueError, match=r"output 'logits': accepted 'embedding', 'trunk'"):
        make_embedder(ARCH, DIMS, batch_norm=False, output="logits")
