"""What the search may change: the augmentation policy, the class-balance strategy and
ranges of the training recipe, as Optuna distributions named by parameter path.

A trial's settings are keyed by the parameter they set (``augmentation.policy``,
``class_balance.strategy``, ``training.lr``, ``training.swa.lr``), so that the best trial
is a parameters file as it stands. A combined strategy is one choice, its names joined by
``+`` (Optuna's categorical choices are scalars).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)
from optuna.trial import Trial

POLICY = "augmentation.policy"
STRATEGY = "class_balance.strategy"
RECIPE_PREFIX = "training."


def strategy_choice(strategy: str | list[str] | tuple[str, ...]) -> str:
    """``class_balance.strategy`` as one categorical choice: ``[a, b]`` is ``"a+b"``."""
    return strategy if isinstance(strategy, str) else "+".join(strategy)


def strategy_value(choice: str) -> str | list[str]:
    """The ``class_balance.strategy`` value of a choice: ``"a+b"`` is ``[a, b]``."""
    names = [name.strip() for name in choice.split("+")]
    return names[0] if len(names) == 1 else names


@dataclass(frozen=True)
class Dimension:
    """One searched key of the training recipe: a range or a list of choices.

    Attributes:
        path: The key under ``training`` (``lr``, ``swa.lr``, ``schedule.name``).
        low: Lower end of a range.
        high: Upper end of a range.
        log: Sample the range on a log scale (rates, decays).
        choices: The values to choose from, instead of a range.
    """

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def name(self) -> str:
        """The full parameter path: ``training.<path>``."""
        return RECIPE_PREFIX + self.path

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of this dimension."""
        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        return FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """Every searched parameter. A list of one choice is fixed, not searched.

    Attributes:
        policies: Augmentation policy strings.
        strategies: Class-balance strategy choices (:func:`strategy_choice`).
        recipe: Ranges and choices of training keys.
    """

    policies: tuple[str, ...]
    strategies: tuple[str, ...]
    recipe: tuple[Dimension, ...]

    def distributions(self) -> dict[str, BaseDistribution]:
        """The searched parameters by full path (fixed ones left out)."""
        found: dict[str, BaseDistribution] = {}
        if len(self.policies) > 1:
            found[POLICY] = CategoricalDistribution(self.policies)
        if len(self.strategies) > 1:
            found[STRATEGY] = CategoricalDistribution(self.strategies)
        for dimension in self.recipe:
            if dimension.choices is None or len(dimension.choices) > 1:
                found[dimension.name] = dimension.distribution()
        return found

    def fixed(self) -> dict[str, Any]:
        """The parameters set to a single choice, by full path."""
        found: dict[str, Any] = {}
        if len(self.policies) == 1:
            found[POLICY] = self.policies[0]
        if len(self.strategies) == 1:
            found[STRATEGY] = self.strategies[0]
        for dimension in self.recipe:
            if dimension.choices is not None and len(dimension.choices) == 1:
                found[dimension.name] = dimension.choices[0]
        return found

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """A trial's settings by full path: what the sampler suggests, and the fixed ones."""
        settings = self.fixed()
        for name, distribution in self.distributions().items():
            if isinstance(distribution, CategoricalDistribution):
                settings[name] = trial.suggest_categorical(name, distribution.choices)
            else:
                assert isinstance(distribution, FloatDistribution)
                settings[name] = trial.suggest_float(name, distribution.low, distribution.high,
                                                     log=distribution.log)
        return settings

    def searched(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (a full-path mapping of the configured settings) restricted to the
        searched parameters: the trial that tries the settings as configured."""
        return {name: values[name] for name in self.distributions() if name in values}
