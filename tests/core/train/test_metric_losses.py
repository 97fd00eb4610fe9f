"""Tests of the metric-learning losses by name (visrec.core.train.losses.metric), the
share of a batch's tuples a miner keeps (visrec.core.train.tasks.metric), and the
proxies' own learning rate (visrec.core.train.recipe)."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils import loss_and_miner_utils
from torch.nn import functional

from visrec.core.models import make_embedder
from visrec.core.train import OptimizerSpec, ScheduleSpec
from visrec.core.train.losses.metric import (
    METRIC_LOSSES,
    MetricLossError,
    parse_metric_loss,
)
from visrec.core.train.recipe import make_optimizer, make_schedule
from visrec.core.train.tasks.metric import LossAttached, active_share, tuples_in_batch

P, K, DIMS = 4, 3, 8

# What each name builds: (loss class, miner class or None, one learnt proxy per class).
EXPECTED = {
    "contrastive": (losses.ContrastiveLoss, None, False),
    "triplet": (losses.TripletMarginLoss, miners.BatchHardMiner, False),
    "multi_similarity": (losses.MultiSimilarityLoss, miners.MultiSimilarityMiner, False),
    "proxy_anchor": (losses.ProxyAnchorLoss, None, True),
    "normalized_softmax": (losses.NormalizedSoftmaxLoss, None, True),
    "arcface": (losses.ArcFaceLoss, None, True),
    "cosface": (losses.CosFaceLoss, None, True),
    "ntxent": (losses.NTXentLoss, None, False),
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``P x K`` random unit-length embeddings (a leaf that takes gradients) and labels."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = functional.normalize(torch.randn(P * K, DIMS, generator=generator), dim=1)
    return embeddings.requires_grad_(), torch.arange(P).repeat_interleave(K)


def test_the_registry_is_the_documented_set():
    assert set(METRIC_LOSSES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_loss_builds_and_back_propagates(name):
    spec = parse_metric_loss(name)
    loss_class, miner_class, proxies = EXPECTED[name]
    assert type(spec) is METRIC_LOSSES[name] and spec.name == name
    assert spec.proxies is proxies
    loss, miner = spec.build(P, DIMS)
    assert type(loss) is loss_class
    assert (miner is None) if miner_class is None else type(miner) is miner_class
    parameters = list(loss.parameters())
    if proxies:  # one DIMS-vector per training class
        assert [p.numel() for p in parameters] == [P * DIMS]
        assert DIMS in parameters[0].shape and P in parameters[0].shape
    else:
        assert parameters == []
    embeddings, labels = _batch()
    value = (loss(embeddings, labels) if miner is None
             else loss(embeddings, labels, miner(embeddings, labels)))
    assert value.ndim == 0 and math.isfinite(value.item()) and value.item() > 0
    value.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0
    for parameter in parameters:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


@pytest.mark.parametrize("mining", ["semihard", "all"])
def test_triplet_mining_by_margin(mining):
    spec = parse_metric_loss(f"triplet(margin=0.3, mining={mining})")
    loss, miner = spec.build(P, DIMS)
    assert isinstance(miner, miners.TripletMarginMiner)
    assert miner.margin == pytest.approx(0.3) and miner.type_of_triplets == mining
    assert loss.margin == pytest.approx(0.3)


def test_options_reach_the_loss_and_the_miner():
    loss, miner = parse_metric_loss("multi_similarity(alpha=3, beta=40, epsilon=0.2)").build(
        P, DIMS)
    assert (loss.alpha, loss.beta, loss.base) == (3, 40, 0.5)
    assert miner.epsilon == pytest.approx(0.2)
    anchor, _ = parse_metric_loss("proxy_anchor(margin=0.2, alpha=16)").build(5, DIMS)
    assert (anchor.margin, anchor.alpha) == (pytest.approx(0.2), 16)
    assert anchor.proxies.shape == (5, DIMS)


@pytest.mark.parametrize("text", [
    *sorted(EXPECTED),
    "triplet(0.25)", "triplet(margin=0.2, mining=semihard)", "Triplet(mining=all)",
    "contrastive(pos_margin=0.1, neg_margin=0.8)", "multi_similarity(epsilon=0.05)",
    "arcface(margin=20, scale=32)", "cosface(margin=0.2)", "ntxent(temperature=0.1)",
    "normalized_softmax(temperature=0.1)", "proxy_anchor(alpha=16)",
])
def test_canonical_round_trips(text):
    spec = parse_metric_loss(text)
    canonical = spec.canonical()
    assert canonical.startswith(f"{spec.name}(")
    assert parse_metric_loss(canonical) == spec
    assert parse_metric_loss(canonical).canonical() == canonical


def test_canonical_writes_every_option():
    assert parse_metric_loss("triplet(0.25)").canonical() == \
        "triplet(margin=0.25, mining=batch_hard)"
    assert parse_metric_loss("ntxent").canonical() == "ntxent(temperature=0.07)"


def test_an_unknown_name_lists_the_accepted_ones():
    with pytest.raises(MetricLossError, match=r"unknown loss 'tripplet'; accepted") as info:
        parse_metric_loss("tripplet(margin=0.2)")
    assert all(repr(name) in str(info.value) for name in METRIC_LOSSES)


@pytest.mark.parametrize(("text", "pattern"), [
    ("triplet(margin=-1)", r"triplet margin = -1: .*greater than 0"),
    ("triplet(mining=hardest)", r"triplet mining = 'hardest': .*'batch_hard'"),
    ("arcface(margin=90)", r"arcface margin = 90: .*less than 90"),
    ("triplet(margn=0.2)", r"triplet has no argument 'margn'; accepted: \['margin', 'mining'\]"),
    ("ntxent(0.1)", r"ntxent takes keyword arguments only: ntxent\(temperature=\.\.\.\)"),
    ("triplet(0.1, 0.2)", r"triplet takes keyword arguments only"),
    ("", r"a loss is a non-empty string; .*names: \['contrastive'"),
    ("   ", r"a loss is a non-empty string"),
    ("triplet(", r"cannot be read"),
    ("3", r"'3' is not a loss"),
    ("triplet(margin=0.1, margin=0.2)", r"argument 'margin' is given twice"),
])
def test_bad_loss_strings_are_refused(text, pattern):
    with pytest.raises(MetricLossError, match=pattern) as info:
        parse_metric_loss(text)
    assert isinstance(info.value, ValueError)


# --- tuples of a batch, and the share a miner keeps -----------------------------------------


def test_tuples_of_two_pairs_by_hand():
    """Labels [0, 0, 1, 1]: each of 4 anchors has 1 positive and 2 negatives: 4 x 1 x 2 = 8
    triplets; ordered pairs: 4 positive + 8 negative = 12."""
    labels = torch.tensor([0, 0, 1, 1])
    assert tuples_in_batch(labels, triplets=True) == 8
    assert tuples_in_batch(labels, triplets=False) == 12
    triplets = (torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([2, 0]))
    assert active_share(triplets, labels) == 2 / 8
    pairs = (torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0, 2, 3]),
             torch.tensor([2, 3, 1]))
    assert active_share(pairs, labels) == 5 / 12
    nothing = tuple(torch.empty(0, dtype=torch.long) for _ in range(3))
    assert active_share(nothing, labels) == 0.0


def test_tuples_of_uneven_classes_by_hand():
    """Labels [0, 0, 0, 1, 1, 2]: positives per anchor 2, 2, 2, 1, 1, 0 (8 pairs),
    negatives 3, 3, 3, 4, 4, 5 (22 pairs); triplets 3 x 2 x 3 + 2 x 1 x 4 = 26."""
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert tuples_in_batch(labels, triplets=True) == 26
    assert tuples_in_batch(labels, triplets=False) == 30
    # The same count as pytorch-metric-learning's every triplet and every pair.
    assert len(loss_and_miner_utils.get_all_triplets_indices(labels)[0]) == 26
    assert active_share(loss_and_miner_utils.get_all_triplets_indices(labels), labels) == 1.0
    assert active_share(loss_and_miner_utils.get_all_pairs_indices(labels), labels) == 1.0
    assert tuples_in_batch(torch.tensor([0, 1, 2]), triplets=True) == 0
    assert active_share((torch.empty(0),) * 3, torch.tensor([0, 1, 2])) == 0.0


def test_batch_hard_keeps_one_triplet_per_anchor():
    embeddings, labels = _batch(seed=1)
    mined = miners.BatchHardMiner()(embeddings, labels)
    every = P * K * (K - 1) * (P - 1) * K  # anchors x positives x negatives
    assert tuples_in_batch(labels, triplets=True) == every
    assert active_share(mined, labels) == pytest.approx(len(mined[0]) / every)
    assert len(mined[0]) == P * K


# --- the proxies' learning rate ------------------------------------------------------------


def _proxy_model() -> LossAttached:
    criterion, _ = parse_metric_loss("proxy_anchor").build(5, 16)
    return LossAttached(make_embedder("test_resnet", 16, True), criterion)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "step", "constant", "cyclic",
                                      "onecycle"])
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_proxies_learn_at_their_own_rate(schedule):
    model = _proxy_model()
    optimizer = make_optimizer(model, OptimizerSpec(lr=0.1, lr_scales=(("criterion.", 100.0),)))
    proxies = model.criterion.proxies
    groups = [g for g in optimizer.param_groups if any(p is proxies for p in g["params"])]
    assert len(groups) == 1 and groups[0]["params"] == [proxies]  # a group of their own
    assert groups[0]["weight_decay"] == 0.0
    others = [g for g in optimizer.param_groups if g is not groups[0]]
    assert sum(len(g["params"]) for g in others) == len(list(model.net.parameters()))
    plan = make_schedule(optimizer, ScheduleSpec(schedule, warmup_epochs=1, min_lr=0.001),
                         0.1, epochs=4, updates_per_epoch=5)
    for update in (1, 3, 7, 12, 19):
        plan.step(update)
        rates = {g["lr"] for g in others}
        assert len(rates) == 1 and rates.pop() > 0
        assert groups[0]["lr"] == pytest.approx(100 * others[0]["lr"], rel=1e-9), update


def test_without_lr_scales_the_proxies_share_the_rate():
    model = _proxy_model()
    optimizer = make_optimizer(model, OptimizerSpec(lr=0.1))
    plan = make_schedule(optimizer, ScheduleSpec("cosine"), 0.1, epochs=2, updates_per_epoch=3)
    plan.step(2)
    assert len({g["lr"] for g in optimizer.param_groups}) == 1
    assert sum(len(g["params"]) for g in optimizer.param_groups) == \
        len(list(model.parameters()))
