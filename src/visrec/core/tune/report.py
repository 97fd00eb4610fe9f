"""What a study tells: the leaderboard (every trial with its score, uncertainty and cost),
the parameters' importances, and the chosen settings as a parameters file."""

from __future__ import annotations

import logging
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from visrec.core.trees import nested
from visrec.core.tune.evidence import Noise, choose
from visrec.core.tune.space import STRATEGY, SearchSpace, strategy_value
from visrec.core.tune.study import CONFIGURED, candidates, experimental_ok, spent

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 5  # finished trials before importances mean anything
LEADERBOARD_COLUMNS = ["place", "trial", "state", "value", "standard_error", "epochs",
                       "cost_trainings", "epoch_images", "augmentation_us", "configured",
                       "tied", "selected"]


def leaderboard(study: optuna.Study, noise: Noise, training_cost: float) -> pd.DataFrame:
    """Every trial of the study that ran, ranked: finished trials by score (the chosen one
    first), then cut ones by their last score, then failed ones.

    Columns: :data:`LEADERBOARD_COLUMNS`, then one per searched parameter. ``value`` is a
    finished trial's score (a cut trial's last reported one), ``epochs`` how many it
    trained, ``tied`` whether it is within the noise of the best.
    """
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    if not trials:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    found = candidates(study)
    winner = choose(found, noise).number if found else None
    best = max((c.value for c in found), default=None)
    rows = []
    for trial in trials:
        value = (trial.value if trial.state == TrialState.COMPLETE
                 else trial.intermediate_values.get(trial.last_step)
                 if trial.last_step is not None else None)
        key = trial.user_attrs.get("cost_key", [None, None])
        rows.append({
            "trial": trial.number, "state": trial.state.name.lower(), "value": value,
            "standard_error": None if value is None else noise.standard_error(value),
            "epochs": len(trial.intermediate_values),
            "cost_trainings": float(trial.user_attrs.get("cost", 0.0)) / training_cost,
            "epoch_images": key[0], "augmentation_us": key[1] if len(key) > 1 else None,
            "configured": bool(trial.user_attrs.get(CONFIGURED, False)),
            "tied": (trial.state == TrialState.COMPLETE and best is not None
                     and trial.value is not None and not noise.differs(best, trial.value)),
            "selected": trial.number == winner, **trial.params})
    table = pd.DataFrame(rows)
    order = {"complete": 0, "pruned": 1, "fail": 2}
    table = table.assign(_state=table["state"].map(order), _value=-table["value"].fillna(-1))
    table = table.sort_values(["selected", "_state", "_value", "trial"],
                              ascending=[False, True, True, True])
    table = table.drop(columns=["_state", "_value"]).reset_index(drop=True)
    table.insert(0, "place", range(1, len(table) + 1))
    return table


def importances(study: optuna.Study, seed: int = 0) -> pd.DataFrame:
    """How much of the score's variance each searched parameter explains (fANOVA over the
    finished trials, its random forest seeded with ``seed``); empty with fewer than
    :data:`MIN_TRIALS_FOR_IMPORTANCE`."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE or not any(t.params for t in finished):
        return pd.DataFrame(columns=["parameter", "importance"])
    with experimental_ok():
        try:
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                normalize=True)
        except (RuntimeError, ValueError) as error:  # all params constant, one trial, ...
            logger.info("tuning: no parameter importances: %s", error)
            return pd.DataFrame(columns=["parameter", "importance"])
    return pd.DataFrame({"parameter": list(found), "importance": list(found.values())})


def _nested(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"training.swa.lr": 0.1}`` as ``{"training": {"swa": {"lr": 0.1}}}``, the balance
    strategy as the parameter writes it."""
    return nested({path: strategy_value(value) if path == STRATEGY else value
                   for path, value in settings.items()})


def tuned_parameters(study: optuna.Study, space: SearchSpace, noise: Noise,
                     training_cost: float) -> dict[str, Any]:
    """The chosen trial's settings as a parameters file: the ``training``,
    ``augmentation`` and ``class_balance`` keys it sets, and ``search``: where they come
    from.

    Raises:
        ValueError: If no trial finished.
    """
    winner = choose(candidates(study), noise)
    trials = study.get_trials(deepcopy=False)
    trial = trials[winner.number]
    settings = space.fixed() | trial.params
    return {"search": {
        "study": study.study_name, "trial": trial.number, "value": winner.value,
        "standard_error": noise.standard_error(winner.value),
        "configured": bool(trial.user_attrs.get(CONFIGURED, False)),
        "trials": len(trials),
        "spent_trainings": spent(study) / training_cost}, **_nested(settings)}
