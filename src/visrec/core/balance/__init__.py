"""Class imbalance: the distribution's shape (counts, imbalance ratio, shot groups) and the
plan training applies against it (sampler, class weights, loss, classifier re-training)."""

from visrec.core.balance.analysis import (
    GROUPS,
    analyse_classes,
    class_counts,
    class_list,
    distribution_warnings,
    effective_number_weights,
    effective_numbers,
    imbalance_ratio,
    inverse_frequency_weights,
    normalised_entropy,
    shot_groups,
)
from visrec.core.balance.plan import (
    AUTO_REMEDY,
    BALANCE_PARTS,
    BALANCE_STRATEGIES,
    BalancePlan,
    BalanceSettings,
    ClassWeightsPlan,
    CrtPlan,
    LossPlan,
    make_balance_plan,
    resolve_strategy,
)

__all__ = [
    "AUTO_REMEDY", "BALANCE_PARTS", "BALANCE_STRATEGIES", "GROUPS", "BalancePlan",
    "BalanceSettings", "ClassWeightsPlan", "CrtPlan", "LossPlan", "analyse_classes",
    "class_counts", "class_list", "distribution_warnings",
    "effective_number_weights", "effective_numbers", "imbalance_ratio",
    "inverse_frequency_weights", "make_balance_plan", "normalised_entropy",
    "resolve_strategy", "shot_groups",
]
