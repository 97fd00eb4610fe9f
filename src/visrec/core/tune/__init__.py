"""Tuning by evidence: a budgeted Optuna search over the augmentation policy, the
class-balance strategy and the training recipe (:mod:`.study`), sized in trainings
(:mod:`.plan`), cutting and choosing only on scores that rise above their noise
(:mod:`.evidence`)."""

from visrec.core.tune.evidence import (
    METRICS,
    Candidate,
    EvidencePruner,
    Noise,
    choose,
    tied_with_best,
)
from visrec.core.tune.plan import (
    FULL_LENGTH_TRIALS,
    VAL_WEIGHT,
    SearchPlan,
    epoch_cost,
    epoch_images,
    make_plan,
    proxy_size,
    subset_rows,
)
from visrec.core.tune.report import (
    LEADERBOARD_COLUMNS,
    importances,
    leaderboard,
    tuned_parameters,
)
from visrec.core.tune.space import (
    POLICY,
    RECIPE_PREFIX,
    STRATEGY,
    Dimension,
    SearchSpace,
    strategy_choice,
    strategy_value,
)
from visrec.core.tune.study import (
    CONFIGURED,
    PRUNERS,
    SAMPLERS,
    Outcome,
    Report,
    Search,
    StudyMismatch,
    Trainer,
    candidates,
    first_cut,
    make_pruner,
    make_sampler,
    make_storage,
    open_study,
    policy_cost,
    safe_url,
    spent,
)

__all__ = [
    "CONFIGURED", "FULL_LENGTH_TRIALS", "LEADERBOARD_COLUMNS", "METRICS", "POLICY", "PRUNERS",
    "RECIPE_PREFIX", "SAMPLERS", "STRATEGY", "VAL_WEIGHT", "Candidate", "Dimension",
    "EvidencePruner", "Noise", "Outcome", "Report", "Search", "SearchPlan", "SearchSpace",
    "StudyMismatch", "Trainer", "candidates", "choose", "epoch_cost", "epoch_images",
    "first_cut", "importances", "leaderboard", "make_plan", "make_pruner", "make_sampler",
    "make_storage", "open_study", "policy_cost", "proxy_size", "safe_url", "spent",
    "strategy_choice", "strategy_value", "subset_rows", "tied_with_best", "tuned_parameters",
]
