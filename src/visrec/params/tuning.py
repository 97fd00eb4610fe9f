"""Parameters of the ``tuning`` stage: a budgeted Optuna search over the augmentation
policy, the class-balance strategy and the training recipe."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from visrec.core import trees
from visrec.core.tune import Dimension, SearchSpace, strategy_choice
from visrec.params.base import ParameterError, Params

RANGE_KEYS = {"low", "high", "log"}
_MACHINE = "a setting of the machine, not of the recipe"
_MODEL = "the proxies train the configured model on its own input"
NOT_SEARCHED = {  # training keys the recipe may not search, and why
    "epochs": "the budget is counted in trainings of training.epochs",
    "model": _MODEL, "pretrained": _MODEL, "pretrained_path": _MODEL, "image_size": _MODEL,
    "resume": _MACHINE, "device": _MACHINE, "devices": _MACHINE, "num_workers": _MACHINE,
    "distributed": _MACHINE, "precision": _MACHINE, "channels_last": _MACHINE,
    "compile": _MACHINE,
}
# Keys that differ between the machines sharing a study without changing what it compares.
MACHINE_KEYS = frozenset(key for key, why in NOT_SEARCHED.items() if why == _MACHINE)


def _leaf(value: Any) -> bool:
    """Whether a ``tuning.space.recipe`` entry is a range or a list of choices (not a
    group of keys such as ``swa: {lr: ...}``)."""
    return isinstance(value, Mapping) and (set(value) <= RANGE_KEYS or "choices" in value)


def parse_recipe(recipe: Mapping[str, Any], prefix: str = "") -> list[Dimension]:
    """The dimensions of ``tuning.space.recipe``: ``{low, high[, log]}`` is a range,
    ``{choices: [...]}`` a list; any other mapping groups keys (``swa: {lr: ...}``).

    Raises:
        ValueError: Naming the entry, when it is neither.
    """
    found: list[Dimension] = []
    for key, value in recipe.items():
        path = f"{prefix}{key}"
        where = f"tuning.space.recipe.{path}"
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} = {value!r}: give a range {{low: 0.05, high: 0.8, "
                             "log: true}, choices {choices: [cosine, linear]}, or a group of "
                             "keys")
        if not _leaf(value):
            found += parse_recipe(value, f"{path}.")
        elif "choices" in value:
            choices = value["choices"]
            if set(value) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ValueError(f"{where} = {dict(value)!r}: choices need a non-empty list "
                                 "and no other key")
            found.append(Dimension(path, choices=tuple(choices)))
        else:
            low, high = value.get("low"), value.get("high")
            if not all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in (low, high)) or not low <= high:  # type: ignore[operator]
                raise ValueError(f"{where} = {dict(value)!r}: a range needs numbers low <= "
                                 "high")
            log = value.get("log", False)
            if not isinstance(log, bool) or (log and low <= 0):  # type: ignore[operator]
                raise ValueError(f"{where}.log = {log!r}: true or false; a log range needs "
                                 "low > 0")
            found.append(Dimension(path, low=float(low), high=float(high), log=log))  # type: ignore[arg-type]
    return found


def plain(value: Any) -> Any:
    """``value`` with every parameter model in it as plain data (Kedro may hand over a
    block whose sub-blocks were already validated into models)."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return copy.deepcopy(value)


def with_value(block: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``block`` with the dotted ``path`` set to ``value``."""
    changed = plain(block)
    *groups, last = path.split(".")
    node = changed
    for group in groups:
        node = node[group]
    node[last] = value
    return changed


def merged(block: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``block`` (parameter models in it as plain data) with the nested
    ``changes`` applied (mappings merge, other values replace)."""
    return trees.merged(plain(block), changes)


def settings_digest(training: Any, class_balance: Any, augmentation: Any) -> str:
    """A digest of the blocks a search starts from (the machine's keys aside): training
    applies a search's choice only to the settings it was made for."""
    blocks = {"training": {key: value for key, value in plain(training).items()
                           if key not in MACHINE_KEYS},
              "class_balance": plain(class_balance), "augmentation": plain(augmentation)}
    return hashlib.sha256(json.dumps(blocks, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def value_at(block: Mapping[str, Any], path: str) -> Any:
    """The value at the dotted ``path`` of ``block``."""
    node: Any = block
    for part in path.split("."):
        node = node[part]
    return node


class SpaceParams(Params):
    """What the search may change (``tuning.space``); a list of one value is fixed."""

    key: ClassVar[str] = "tuning.space"
    policies: list[str] = Field(description="augmentation policies to try; [] keeps "
                                            "augmentation.policy")
    class_balance: list[str | list[str]] = Field(
        description="class_balance.strategy values to try; [] keeps the configured one")
    recipe: dict[str, Any] = Field(
        description="training keys: {low, high, log} ranges or {choices: [...]}; groups "
                    "nest (swa: {lr: ...})")

    @field_validator("recipe")
    @classmethod
    def _ranges(cls, value: dict[str, Any]) -> dict[str, Any]:
        parse_recipe(value)
        return value


class PrunerParams(Params):
    """How trials are cut (``tuning.pruner``), by Optuna's pruners, reporting per epoch."""

    key: ClassVar[str] = "tuning.pruner"
    name: Literal["successive_halving", "hyperband", "none"] = Field(
        description="successive_halving | hyperband | none")
    reduction_factor: int = Field(ge=2, le=10, description="keep the best 1/this at each rung")


class TuningParams(Params):
    """The search (``tuning``): its budget, space, sampler, pruner and database."""

    key: ClassVar[str] = "tuning"
    enabled: bool = Field(description="false: train with the configured settings")
    budget: float = Field(gt=0.0, le=100.0,
                          description="the whole search's cost, in trainings of the current "
                                      "settings")
    metric: Literal["balanced_accuracy", "accuracy"] = Field(
        description="validation score to maximise")
    space: SpaceParams
    sampler: Literal["tpe", "random"] = Field(description="Optuna sampler: tpe | random")
    pruner: PrunerParams
    storage: str | None = Field(description="Optuna storage URL; null: SQLite under data/")
    study_name: str | None = Field(description="null: one name per data, space and settings")

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from sqlalchemy.engine import make_url  # noqa: PLC0415
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL: give sqlite:///path/study.db, "
                             "postgresql://user@host/db or mysql://..., or null") from None
        return value

    def search_space(self, training: Mapping[str, Any], augmentation: Mapping[str, Any],
                     class_balance: Mapping[str, Any]) -> SearchSpace:
        """The space, every value of it checked against the block it goes into.

        Args:
            training: The ``training`` block as given (raw).
            augmentation: The ``augmentation`` block as given.
            class_balance: The ``class_balance`` block as given.

        Raises:
            ParameterError: Naming each value the blocks refuse.
        """
        from visrec.params import (  # noqa: PLC0415
            AugmentationParams,
            ClassBalanceParams,
            TrainingParams,
        )

        training, augmentation, class_balance = (plain(training), plain(augmentation),
                                                 plain(class_balance))
        problems: list[str] = []

        def check(model: type[Params], block: Mapping[str, Any], path: str, value: Any,
                  where: str) -> None:
            try:
                model.model_validate(with_value(block, path, value))
            except (ParameterError, KeyError, TypeError) as error:
                problems.append(f"{where} = {value!r}: {str(error).strip()}")

        space = self.space
        seen: dict[str, int] = {}
        for index, policy in enumerate(space.policies):
            where = f"tuning.space.policies[{index}]"
            before = len(problems)
            check(AugmentationParams, augmentation, "policy", policy, where)
            if len(problems) == before:
                written = AugmentationParams.model_validate(
                    with_value(augmentation, "policy", policy)).spec().policy
                if written in seen:
                    problems.append(f"{where} = {policy!r}: the same policy as "
                                    f"tuning.space.policies[{seen[written]}]")
                seen.setdefault(written, index)
        for index, strategy in enumerate(space.class_balance):
            check(ClassBalanceParams, class_balance, "strategy", strategy,
                  f"tuning.space.class_balance[{index}]")
        dimensions = parse_recipe(space.recipe)
        for dimension in dimensions:
            where = f"tuning.space.recipe.{dimension.path}"
            fixed = NOT_SEARCHED.get(dimension.path.split(".")[0])
            if fixed:
                problems.append(f"{where}: not searched ({fixed}); set training."
                                f"{dimension.path} itself")
                continue
            try:
                configured = value_at(training, dimension.path)
            except (KeyError, TypeError):  # an unknown key: the check below names it
                configured = 0.0 if dimension.low is None else dimension.low
            numeric = isinstance(configured, int | float) and not isinstance(configured, bool)
            unreachable = not numeric or (dimension.log and configured <= 0)
            if dimension.choices is None and unreachable:
                problems.append(
                    f"{where}: a range of {dimension.low:g} to {dimension.high:g}"
                    f"{' on a log scale' if dimension.log else ''} cannot hold the configured "
                    f"training.{dimension.path} = {configured!r}, which the first trial "
                    "tries: " + ("give log: false, or configure a value > 0" if numeric
                                 else "give {choices: [...]} instead"))
                continue
            values = dimension.choices or (dimension.low, dimension.high)
            for value in values:
                check(TrainingParams, training, dimension.path, value, where)
        if problems:
            raise ParameterError("\n" + "\n".join(problems))
        return SearchSpace(policies=_with_configured(space.policies, augmentation["policy"],
                                                     seen, augmentation),
                           strategies=tuple(dict.fromkeys(strategy_choice(s) for s in [
                               class_balance["strategy"], *space.class_balance])),
                           recipe=tuple(_reaching(dimension, value_at(training, dimension.path))
                                        for dimension in dimensions))


def _with_configured(policies: list[str], configured: str, seen: Mapping[str, int],
                     augmentation: Mapping[str, Any]) -> tuple[str, ...]:
    """``policies`` with the configured one first when it is not among them (the search's
    first trial tries the settings as configured)."""
    from visrec.params import AugmentationParams  # noqa: PLC0415

    written = AugmentationParams.model_validate(augmentation).spec().policy
    return tuple(policies) if written in seen else (configured, *policies)


def _reaching(dimension: Dimension, configured: Any) -> Dimension:
    """``dimension`` widened to hold the configured value: a range to reach it, choices
    with it first."""
    if dimension.choices is not None:
        if configured in dimension.choices:
            return dimension
        return Dimension(dimension.path, choices=(configured, *dimension.choices))
    assert dimension.low is not None and dimension.high is not None  # a number: checked
    return Dimension(dimension.path, low=min(dimension.low, float(configured)),
                     high=max(dimension.high, float(configured)), log=dimension.log)
