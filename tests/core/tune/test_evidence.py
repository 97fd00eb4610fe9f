"""Evidence, not noise: standard errors, chance level, cuts only on evidence, ties to the
cheaper setting."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from tests.core.tune.stub_search import SPACE, plan
from visrec.core.tune import (
    Candidate,
    Noise,
    Outcome,
    Search,
    choose,
    first_cut,
    make_pruner,
    make_sampler,
)

TEN = (30,) * 10  # ten classes, 30 validation images each


def test_standard_error_is_binomial_per_class():
    noise = Noise(TEN)
    assert noise.chance == pytest.approx(0.1)
    # Balanced accuracy: sqrt(p (1 - p) * sum 1 / n_c) / C = sqrt(p (1 - p) / 300) here.
    assert noise.standard_error(0.5) == pytest.approx(math.sqrt(0.25 / 300))
    uneven = Noise((10, 90), metric="accuracy")
    assert uneven.chance == pytest.approx(0.9)  # the largest class's share
    assert uneven.standard_error(0.5) == pytest.approx(math.sqrt(0.25 / 100))
    assert Noise((10, 90)).standard_error(0.5) == pytest.approx(
        math.sqrt(0.25 * (1 / 10 + 1 / 90)) / 2)


def test_above_chance_and_differences_need_two_standard_errors():
    noise = Noise(TEN)
    margin = 2 * noise.standard_error(0.1)  # 0.0346
    assert not noise.above_chance(0.1 + 0.9 * margin)
    assert noise.above_chance(0.1 + 1.1 * margin)
    assert not noise.differs(0.80, 0.76)
    assert noise.differs(0.80, 0.70)
    with pytest.raises(ValueError, match=r"validation images per class \(0, 0\): a score"):
        Noise((0, 0))


def test_a_class_without_validation_images_counts_for_chance_only():
    noise = Noise((10, 90, 0))  # a rare class of a long tail: none in the val split
    assert noise.chance == pytest.approx(1 / 3)  # a guess spreads over every class
    assert noise.standard_error(0.5) == Noise((10, 90)).standard_error(0.5)


def _study() -> optuna.Study:
    # A fixed name: Hyperband puts trials in brackets by a hash of it.
    return optuna.create_study(study_name="evidence", direction="maximize",
                               sampler=make_sampler("random", 0))


def _run_trial(study: optuna.Study, scores: list[float]) -> TrialState:
    """A trial that reports ``scores`` epoch by epoch, stopping when the pruner says so."""
    trial = study.ask()
    for epoch, value in enumerate(scores, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
    study.tell(trial, scores[-1])
    return TrialState.COMPLETE


def _pruning_study(pruner: str) -> optuna.Study:
    """A study whose ``pruner`` may cut from epoch 1 of 9, keeping a third."""
    study = _study()
    study.pruner = make_pruner(pruner, 1, 9, 3, Noise(TEN))
    return study


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_a_score_at_chance_level_never_decides_a_cut(pruner):
    """Optuna's pruner alone would cut the second trial (worse at every rung); the first is
    at chance, so the cut is not taken."""
    study = _pruning_study(pruner)
    assert _run_trial(study, [0.1] * 9) == TrialState.COMPLETE
    assert _run_trial(study, [0.0] * 9) == TrialState.COMPLETE
    assert _run_trial(study, [0.05] * 9) == TrialState.COMPLETE


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_a_score_above_chance_cuts_a_clearly_worse_trial(pruner):
    study = _pruning_study(pruner)
    assert _run_trial(study, [0.9] * 9) == TrialState.COMPLETE
    assert _run_trial(study, [0.1] * 9) == TrialState.PRUNED
    # Within the noise of the better one: not cut, though the inner pruner says so.
    assert _run_trial(study, [0.88] * 9) == TrialState.COMPLETE


def test_a_stub_trainer_at_chance_runs_every_trial_to_the_end():
    """A search whose proxies all score chance: the configured trial never rises above it,
    so no epoch is ever a cut point, and the cheapest setting wins the tie."""
    noise = Noise(TEN)
    study = _study()

    def at_chance(settings, report):
        for epoch in range(1, 4):
            report(epoch, 0.1, epoch * 100.0)
        return Outcome(value=0.1, cost_key=(100, settings["training.lr"]))

    Search(study=study, plan=plan(6), space=SPACE, noise=noise, trainer=at_chance).run()
    states = {t.state for t in study.trials}
    assert states == {TrialState.COMPLETE} and len(study.trials) == 6
    assert first_cut(study, noise) is None
    # All tied at chance: the cheapest (here the smallest learning rate) is chosen.
    winner = choose([Candidate(t.number, t.value, tuple(t.user_attrs["cost_key"]))
                     for t in study.trials], noise)
    assert study.trials[winner.number].params["training.lr"] == min(
        t.params["training.lr"] for t in study.trials)


def test_ties_within_the_noise_go_to_the_cheaper_setting():
    noise = Noise(TEN)  # two standard errors of a difference near 0.8: about 0.065
    expensive = Candidate(0, 0.82, (200, 10.0))
    cheap = Candidate(1, 0.80, (100, 10.0))
    assert choose([expensive, cheap], noise) == cheap
    clearly_better = Candidate(2, 0.95, (400, 10.0))
    assert choose([expensive, cheap, clearly_better], noise) == clearly_better
    same_cost = [Candidate(3, 0.80, (100, 5.0)), Candidate(4, 0.81, (100, 5.0))]
    assert choose(same_cost, noise).number == 4  # equally cheap: the higher score
    # ... unless the settings as configured are among them: no change without evidence.
    configured = Candidate(0, 0.78, (100, 5.0), configured=True)
    assert choose([*same_cost, configured], noise) == configured
    assert choose([*same_cost, configured, clearly_better], noise) == clearly_better
    with pytest.raises(ValueError, match="no finished trial"):
        choose([], noise)
