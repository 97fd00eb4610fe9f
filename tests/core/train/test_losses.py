"""Tests of visrec.core.train.losses: focal loss, class weights, logit adjustment, the criterion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from visrec.core.balance import BalancePlan, ClassWeightsPlan, LossPlan
from visrec.core.train.losses import (
    FocalLoss,
    JsdLoss,
    LogitAdjustedLoss,
    LossSpec,
    loss_spec,
    make_criterion,
)

WEIGHTS = (1.0, 3.0, 0.5)


@pytest.fixture
def batch():
    """Six rows of three-class logits, every class a target at least once."""
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0],
                           [1.0, -2.0, 2.5], [0.0, 0.0, 0.0], [3.0, 1.0, -0.5]])
    target = torch.tensor([0, 2, 1, 2, 1, 1])
    return logits, target


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _focal_row(row, soft, gamma):
    """``-sum_k q_k (1 - p_k)^gamma log p_k`` in plain Python."""
    p = _softmax(row)
    return -sum(q * (1 - pk) ** gamma * math.log(pk) for q, pk in zip(soft, p, strict=True))


@pytest.mark.parametrize("weight", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_focal_gamma_zero_is_cross_entropy(batch, weight):
    logits, target = batch
    w = None if weight is None else torch.tensor(weight)
    expected = F.cross_entropy(logits, target, weight=w)
    got = FocalLoss(w, gamma=0.0)(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_focal_gamma_zero_with_label_smoothing_is_cross_entropy(batch, smoothing):
    logits, target = batch
    expected = F.cross_entropy(logits, target, label_smoothing=smoothing)
    got = FocalLoss(gamma=0.0, label_smoothing=smoothing)(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_gamma_two_matches_hand_formula():
    """Two rows: ``mean(-(1 - p_y)^2 log p_y)`` computed with plain math."""
    rows, target = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0, 2]
    p0 = math.exp(2) / (math.exp(2) + 2)  # row 0, class 0
    p1 = 1 / (2 + math.e)  # row 1, class 2
    losses = [-((1 - p0) ** 2) * math.log(p0), -((1 - p1) ** 2) * math.log(p1)]
    got = FocalLoss(gamma=2.0)(torch.tensor(rows), torch.tensor(target))
    assert got.item() == pytest.approx(sum(losses) / 2, rel=1e-6)
    # focusing: each row counts less than under cross-entropy, the easy row far less
    assert losses[0] < 0.05 * -math.log(p0)
    assert got.item() < F.cross_entropy(torch.tensor(rows), torch.tensor(target)).item()


def test_focal_gamma_two_with_label_smoothing_matches_hand_formula():
    rows, target, smoothing = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0, 2], 0.3
    soft = [[(1 - smoothing) * (k == y) + smoothing / 3 for k in range(3)] for y in target]
    expected = (_focal_row(rows[0], soft[0], 2) + _focal_row(rows[1], soft[1], 2)) / 2
    got = FocalLoss(gamma=2.0, label_smoothing=smoothing)(torch.tensor(rows), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_class_weighted_mean(batch, gamma):
    """The weighted loss is ``sum(w_y * l) / sum(w_y)`` over the rows."""
    logits, target = batch
    per_row = [_focal_row(row, [float(k == y) for k in range(3)], gamma)
               for row, y in zip(logits.tolist(), target.tolist(), strict=True)]
    w_y = [WEIGHTS[y] for y in target.tolist()]
    expected = sum(w * loss for w, loss in zip(w_y, per_row, strict=True)) / sum(w_y)
    got = FocalLoss(torch.tensor(WEIGHTS), gamma=gamma)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(sum(per_row) / len(per_row), rel=1e-3)  # weights matter


@pytest.mark.parametrize("weight", [None, WEIGHTS], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_one_hot_soft_targets_equal_hard_targets(batch, gamma, weight):
    logits, target = batch
    w = None if weight is None else torch.tensor(weight)
    loss = FocalLoss(w, gamma=gamma)
    one_hot = F.one_hot(target, 3).float()
    assert loss(logits, one_hot).item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_focal_gamma_zero_soft_targets_are_soft_cross_entropy(batch):
    """Mixed soft targets (as from mixup) give ``-sum_k q_k log p_k`` averaged over rows."""
    logits, _ = batch
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0],
                         [0.2, 0.2, 0.6], [0.0, 0.0, 1.0], [0.4, 0.0, 0.6]])
    expected = sum(_focal_row(row, q, 0) for row, q in zip(logits.tolist(), soft.tolist(),
                                                            strict=True)) / 6
    assert FocalLoss(gamma=0.0)(logits, soft).item() == pytest.approx(expected, rel=1e-6)
    assert F.cross_entropy(logits, soft).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("base", [nn.CrossEntropyLoss(), FocalLoss(gamma=2.0),
                                  nn.CrossEntropyLoss(weight=torch.tensor(WEIGHTS)),
                                  FocalLoss(torch.tensor(WEIGHTS), 0.1, gamma=1.0)],
                         ids=["ce", "focal", "weighted-ce", "weighted-smoothed-focal"])
def test_logit_adjusted_loss_is_base_of_shifted_logits(batch, base):
    logits, target = batch
    offsets = torch.tensor([0.5, -1.0, 2.0])
    got = LogitAdjustedLoss(base, offsets)(logits, target)
    assert got.item() == pytest.approx(base(logits + offsets, target).item(), rel=1e-6)
    assert got.item() != pytest.approx(base(logits, target).item(), rel=1e-3)


def test_logit_adjustment_with_log_prior_favours_the_rare_class_target():
    """With prior (0.9, 0.1) the head class is cheap to predict; the loss asks more of the tail.

    Plain cross-entropy on logits (0, 1) is lowest for class 1; after adding ``log prior``
    class 0 has the lowest loss, so training must push the tail logit up further.
    """
    prior = [0.9, 0.1]
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    plain = nn.CrossEntropyLoss(reduction="none")
    adjusted = LogitAdjustedLoss(plain, torch.log(torch.tensor(prior)))
    target = torch.tensor([0, 1])
    plain_loss, adjusted_loss = plain(logits, target), adjusted(logits, target)
    assert plain_loss.argmin().item() == 1
    assert adjusted_loss.argmin().item() == 0
    shifted = [math.log(0.9), 1.0 + math.log(0.1)]
    expected = [-math.log(p) for p in _softmax(shifted)]
    assert adjusted_loss.tolist() == pytest.approx(expected, rel=1e-6)
    # zero logits: the adjusted model "predicts" the prior, so the losses are -log prior
    zero = adjusted(torch.zeros(2, 2), target)
    assert zero.tolist() == pytest.approx([-math.log(0.9), -math.log(0.1)], rel=1e-6)


def test_logit_adjusted_offsets_are_a_buffer():
    """The offsets move with ``.to()`` and are saved with the criterion."""
    loss = LogitAdjustedLoss(nn.CrossEntropyLoss(), torch.tensor([0.1, 0.2]))
    assert torch.equal(loss.state_dict()["offsets"], torch.tensor([0.1, 0.2]))
    assert loss.to(torch.float64).offsets.dtype == torch.float64


@pytest.mark.parametrize(("epoch", "weighted"), [(0, False), (2, False), (3, True), (7, True)])
def test_make_criterion_defers_class_weights(batch, epoch, weighted):
    logits, target = batch
    spec = LossSpec(class_weights=WEIGHTS, weights_from_epoch=3)
    criterion = make_criterion(spec, epoch)
    assert isinstance(criterion, nn.CrossEntropyLoss)
    w = torch.tensor(WEIGHTS) if weighted else None
    expected = F.cross_entropy(logits, target, weight=w)
    other = F.cross_entropy(logits, target, weight=None if weighted else torch.tensor(WEIGHTS))
    assert criterion(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert criterion(logits, target).item() != pytest.approx(other.item(), rel=1e-3)


def test_make_criterion_default_is_cross_entropy_with_smoothing(batch):
    logits, target = batch
    criterion = make_criterion(LossSpec(label_smoothing=0.2), 5)
    assert type(criterion) is nn.CrossEntropyLoss
    assert criterion.weight is None
    expected = F.cross_entropy(logits, target, label_smoothing=0.2)
    assert criterion(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_make_criterion_focal_when_gamma_set(batch):
    logits, target = batch
    criterion = make_criterion(LossSpec(name="focal", options={"gamma": 2.0},
                                        label_smoothing=0.1), 0)
    assert isinstance(criterion, FocalLoss)
    assert (criterion.gamma, criterion.label_smoothing, criterion.weight) == (2.0, 0.1, None)
    soft_rows = [[0.9 * (k == y) + 0.1 / 3 for k in range(3)] for y in target.tolist()]
    expected = sum(_focal_row(row, q, 2) for row, q in zip(logits.tolist(), soft_rows,
                                                            strict=True)) / 6
    assert criterion(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_make_criterion_wraps_cross_entropy_with_offsets(batch):
    logits, target = batch
    offsets = (math.log(0.7), math.log(0.2), math.log(0.1))
    criterion = make_criterion(LossSpec(logit_offsets=offsets), 0)
    assert isinstance(criterion, LogitAdjustedLoss)
    assert type(criterion.base) is nn.CrossEntropyLoss
    expected = F.cross_entropy(logits + torch.tensor(offsets), target)
    assert criterion(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(("epoch", "weighted"), [(1, False), (2, True)])
def test_make_criterion_stacks_focal_weights_and_offsets(batch, epoch, weighted):
    logits, target = batch
    offsets = (0.3, -0.4, 1.1)
    spec = LossSpec(name="focal", options={"gamma": 2.0}, logit_offsets=offsets,
                    class_weights=WEIGHTS, weights_from_epoch=2)
    criterion = make_criterion(spec, epoch)
    assert isinstance(criterion, LogitAdjustedLoss)
    assert isinstance(criterion.base, FocalLoss)
    assert (criterion.base.weight is not None) == weighted
    shifted = (logits + torch.tensor(offsets)).tolist()
    per_row = [_focal_row(row, [float(k == y) for k in range(3)], 2)
               for row, y in zip(shifted, target.tolist(), strict=True)]
    w_y = [WEIGHTS[y] if weighted else 1.0 for y in target.tolist()]
    expected = sum(w * loss for w, loss in zip(w_y, per_row, strict=True)) / sum(w_y)
    assert criterion(logits, target).item() == pytest.approx(expected, rel=1e-6)


def _plan(log_prior: list[float], loss: str | None = None, options: dict | None = None,
          tau: float | None = None, weights: ClassWeightsPlan | None = None) -> BalancePlan:
    """A balance plan with the given loss part and class weights (the rest is irrelevant)."""
    classes = len(log_prior)
    return BalancePlan(
        strategy="test", requested=("test",), components=(), reason="test",
        classes=tuple(f"c{i}" for i in range(classes)), train_counts=(10,) * classes,
        imbalance_ratio=1.0, sampler=None, class_weights=weights,
        loss=LossPlan(name=loss, options=options or {}, logit_adjustment_tau=tau,
                      log_prior=tuple(log_prior)),
        crt=None)


def test_loss_spec_offsets_are_tau_log_prior():
    log_prior = [math.log(0.6), math.log(0.3), math.log(0.1)]
    spec = loss_spec(_plan(log_prior, loss="focal", options={"gamma": 1.5}, tau=2.0),
                     "cross_entropy", {}, 0.1, 10)
    assert spec.logit_offsets == pytest.approx(tuple(2.0 * v for v in log_prior))
    assert isinstance(spec.logit_offsets, tuple)
    assert (spec.name, spec.options) == ("focal", {"gamma": 1.5})
    assert spec.label_smoothing == 0.1


def test_loss_spec_takes_the_training_loss_unless_the_plan_names_one():
    plain = _plan([0.0, 0.0])
    spec = loss_spec(plain, "focal", {"gamma": 3.0}, 0.0, 5)
    assert (spec.name, spec.options) == ("focal", {"gamma": 3.0})
    # The plan's focal loss and another training.loss: one of them must go.
    with pytest.raises(ValueError, match=r"training\.loss\.name = 'poly'"):
        loss_spec(_plan([0.0, 0.0], loss="focal", options={"gamma": 2.0}), "poly", {}, 0.0, 5)


@pytest.mark.parametrize(("epochs", "fraction", "start"), [
    (10, 0.0, 0),
    (10, 0.8, 8),
    (12, 0.75, 9),
    (7, 0.6, 4),  # round(4.2)
    (7, 0.7, 5),  # round(4.9)
    (10, 1.0, 9),  # capped at the last epoch so the weights are used at all
    (3, 0.99, 2),  # round(2.97) = 3, capped
    (1, 0.9, 0),
])
def test_loss_spec_weights_from_epoch(epochs, fraction, start):
    weights_plan = ClassWeightsPlan(kind="effective_number", beta=0.999,
                                    values=(0.5, 1.5, 4.0), start_fraction=fraction)
    spec = loss_spec(_plan([0.0, 0.0, 0.0], weights=weights_plan), "cross_entropy", {}, 0.0,
                     epochs)
    assert spec.weights_from_epoch == start
    assert spec.class_weights == (0.5, 1.5, 4.0)


def test_loss_spec_none_parts_give_none():
    spec = loss_spec(_plan([-0.1, -2.3]), "cross_entropy", {}, 0.05, 20)
    assert spec == LossSpec(label_smoothing=0.05)
    assert (spec.name, spec.logit_offsets, spec.class_weights) == ("cross_entropy", None, None)
    assert spec.weights_from_epoch == 0
    assert loss_spec(_plan([-0.1, -2.3]), "cross_entropy", {}, 0.0, 5) == LossSpec()


VIEWS = torch.tensor([[[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]],  # clean
                      [[1.0, 1.0, 0.0], [-1.0, 0.5, 2.0]],  # view 1
                      [[3.0, -0.5, 0.5], [0.0, 0.0, 0.0]]])  # view 2
VIEW_TARGET = torch.tensor([0, 2])


def _js_by_hand(views: list[list[list[float]]]) -> float:
    """``mean_i KL(p_i || M)`` with ``M = mean_i p_i``, averaged over the rows."""
    total = 0.0
    for row in range(len(views[0])):
        probabilities = [_softmax(view[row]) for view in views]
        mixture = [sum(column) / len(views) for column in zip(*probabilities, strict=True)]
        total += sum(sum(p * math.log(p / m) for p, m in zip(ps, mixture, strict=True))
                     for ps in probabilities) / len(views)
    return total / len(views[0])


@pytest.mark.parametrize("base", [nn.CrossEntropyLoss(), FocalLoss(gamma=2.0),
                                  nn.CrossEntropyLoss(weight=torch.tensor(WEIGHTS))],
                         ids=["ce", "focal", "weighted-ce"])
def test_jsd_loss_of_identical_views_is_the_base_loss(batch, base):
    logits, target = batch
    got = JsdLoss(base)(torch.cat([logits, logits, logits]), target)
    assert got.item() == pytest.approx(base(logits, target).item(), rel=1e-6, abs=1e-7)


def test_jsd_divergence_matches_hand_computation():
    js = _js_by_hand(VIEWS.tolist())
    assert js > 0.05  # the views disagree
    clean = F.cross_entropy(VIEWS[0], VIEW_TARGET).item()
    for weight in (1.0, 12.0):
        got = JsdLoss(nn.CrossEntropyLoss(), weight)(VIEWS.flatten(0, 1), VIEW_TARGET)
        assert got.item() == pytest.approx(clean + weight * js, rel=1e-5)


def test_jsd_loss_with_cross_entropy_is_timms_jsd_cross_entropy(batch):
    from timm.loss import JsdCrossEntropy

    logits, target = batch
    views = torch.cat([logits, logits.flip(0), logits * 0.5 - 1.0])
    expected = JsdCrossEntropy(num_splits=3, alpha=12, smoothing=0.0)(views, target)
    got = JsdLoss(nn.CrossEntropyLoss())(views, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_jsd_base_sees_only_the_clean_split():
    weight = torch.tensor([1.0, 3.0, 0.5])
    seen = []

    def base(logits, target):
        seen.append(logits.detach().clone())
        return F.cross_entropy(logits, target, weight=weight)

    flat = VIEWS.flatten(0, 1)
    got = JsdLoss(base, weight=2.0)(flat, VIEW_TARGET)
    assert len(seen) == 1 and torch.equal(seen[0], VIEWS[0])
    weighted = F.cross_entropy(VIEWS[0], VIEW_TARGET, weight=weight).item()
    assert got.item() == pytest.approx(weighted + 2.0 * _js_by_hand(VIEWS.tolist()), rel=1e-5)
    assert weighted != pytest.approx(F.cross_entropy(VIEWS[0], VIEW_TARGET).item(), rel=1e-3)
    # without the consistency term, the views do not matter
    other = torch.cat([VIEWS[0], VIEWS[2], VIEWS[1] * 3])
    loss = JsdLoss(nn.CrossEntropyLoss(weight=weight), weight=0.0)
    assert loss(other, VIEW_TARGET).item() == pytest.approx(weighted, rel=1e-6)


def test_jsd_gradient_reaches_every_view():
    logits = VIEWS.flatten(0, 1).clone().requires_grad_(True)
    JsdLoss(nn.CrossEntropyLoss())(logits, VIEW_TARGET).backward()
    grads = logits.grad.view(3, 2, 3)
    assert all(grads[view].abs().sum() > 1e-3 for view in range(3))
    assert torch.isfinite(grads).all()
    plain = logits.detach().clone().requires_grad_(True)
    JsdLoss(nn.CrossEntropyLoss(), weight=0.0)(plain, VIEW_TARGET).backward()
    assert torch.equal(plain.grad.view(3, 2, 3)[1:], torch.zeros(2, 2, 3))
    base = VIEWS[0].clone().requires_grad_(True)
    F.cross_entropy(base, VIEW_TARGET).backward()
    torch.testing.assert_close(plain.grad.view(3, 2, 3)[0], base.grad)
