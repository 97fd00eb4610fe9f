"""Evidence, not noise: the uncertainty of a validation score, chance level, and the two
decisions the search takes on scores (a cut, and the choice among the best).

A validation accuracy on ``n`` images is a binomial proportion: its standard error is
``sqrt(p (1 - p) / n)``. Balanced accuracy is the mean of the per-class recalls, each a
proportion over that class's images, so its standard error is
``sqrt(p (1 - p) * sum_c 1 / n_c) / C`` (the recalls taken equal to ``p``). Two scores
differ when they are more than ``z`` standard errors of their difference apart.

A cut (Optuna's pruner says a trial is not in the top ``1 / eta`` of its rung) is taken
only when the score the trial failed to reach is itself above chance, and above the
trial's by more than the noise: a proxy still at chance level never decides a cut on its
own. The best trial is the cheapest of those within the noise of the best score (the settings
as configured when they are among the cheapest: no change without evidence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

METRICS = ("balanced_accuracy", "accuracy")
Z = 2.0  # standard errors of a difference that count as a difference (about 95 %)


@dataclass(frozen=True)
class Noise:
    """The sampling noise of a validation score.

    Attributes:
        val_counts: Validation images per class. A class without any (a rare class of a
            long tail) is left out of the balanced accuracy, as the training loop's score
            leaves it out, but still counts for chance: a guess spreads over every class.
        metric: ``balanced_accuracy`` or ``accuracy``.
        z: Standard errors of a difference that make two scores differ.
    """

    val_counts: tuple[int, ...]
    metric: str = "balanced_accuracy"
    z: float = Z

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r}: use one of {', '.join(METRICS)}")
        if sum(self.val_counts) < 1 or min(self.val_counts) < 0:
            raise ValueError(f"validation images per class {self.val_counts}: a score needs "
                             "some")

    @property
    def chance(self) -> float:
        """The score of a guess: ``1 / C`` balanced, the largest class's share plain."""
        if self.metric == "balanced_accuracy":
            return 1.0 / len(self.val_counts)
        return max(self.val_counts) / sum(self.val_counts)

    def standard_error(self, value: float) -> float:
        """Binomial standard error of the score ``value``."""
        spread = max(value * (1.0 - value), 0.0)
        if self.metric == "balanced_accuracy":
            present = [n for n in self.val_counts if n > 0]
            return math.sqrt(spread * sum(1.0 / n for n in present)) / len(present)
        return math.sqrt(spread / sum(self.val_counts))

    def above_chance(self, value: float) -> bool:
        """Whether ``value`` is above chance by more than ``z`` standard errors of chance."""
        return value - self.chance > self.z * self.standard_error(self.chance)

    def differs(self, better: float, worse: float) -> bool:
        """Whether ``better`` exceeds ``worse`` by more than the noise of the difference."""
        spread = math.hypot(self.standard_error(better), self.standard_error(worse))
        return better - worse > self.z * spread


class EvidencePruner(BasePruner):
    """Optuna's pruner, with a cut only where the scores are evidence.

    ``inner`` (successive halving or Hyperband) proposes the cut; it is taken only when the
    score the trial had to reach to stay (the ``ceil(n / eta)``-th best at this step among
    the trials that reported it) is above chance and above this trial's by more than the
    noise. Otherwise the trial goes on.
    """

    def __init__(self, inner: BasePruner, noise: Noise, reduction_factor: int) -> None:
        self.inner = inner
        self.noise = noise
        self.reduction_factor = reduction_factor

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether to stop ``trial`` at its last reported step."""
        step = trial.last_step
        if step is None or not self.inner.prune(study, trial):
            return False
        value = trial.intermediate_values[step]
        others = [other.intermediate_values[step] for other in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                    TrialState.RUNNING))
            if other.number != trial.number and step in other.intermediate_values]
        if not others:
            return False
        kept = math.ceil((len(others) + 1) / self.reduction_factor)
        line = sorted(others, reverse=True)[min(kept, len(others)) - 1]
        return self.noise.above_chance(line) and self.noise.differs(line, value)


@dataclass(frozen=True)
class Candidate:
    """A finished trial as the final choice sees it.

    Attributes:
        number: Optuna's trial number (the settings as configured are trial 0).
        value: Its validation score.
        cost: What a training with its settings costs, as a sortable key: training images
            per epoch, then augmentation time per image.
        configured: Whether it tried the settings as configured.
    """

    number: int
    value: float
    cost: tuple[float, ...]
    configured: bool = False


def tied_with_best(candidates: Sequence[Candidate], noise: Noise) -> list[Candidate]:
    """The candidates whose score is within the noise of the best one."""
    best = max(candidates, key=lambda c: (c.value, -c.number))
    return [c for c in candidates if not noise.differs(best.value, c.value)]


def choose(candidates: Sequence[Candidate], noise: Noise) -> Candidate:
    """The winner: of the candidates tied with the best, the cheapest; among equally cheap
    ones the settings as configured (no change without evidence), then the higher score,
    then the earlier trial.

    Raises:
        ValueError: If there is no candidate.
    """
    if not candidates:
        raise ValueError("no finished trial to choose from")
    tied = tied_with_best(candidates, noise)
    return min(tied, key=lambda c: (c.cost, not c.configured, -c.value, c.number))
