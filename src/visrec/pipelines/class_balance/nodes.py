"""Nodes of the class_balance pipeline."""

import logging

import pandas as pd
from matplotlib.figure import Figure

from visrec.core.balance import BalancePlan, analyse_classes, class_counts, make_balance_plan
from visrec.core.data import IngestionReport
from visrec.core.plots import class_distribution_figure
from visrec.params import ClassBalanceParams

logger = logging.getLogger(__name__)


def analyse_class_distribution(manifest: pd.DataFrame, ingestion_report: IngestionReport,
                               params: ClassBalanceParams) -> tuple[pd.DataFrame, dict]:
    """Images per class and split, effective numbers, shot groups and the summary report.

    Args:
        manifest: The ingestion manifest.
        ingestion_report: Gives the classes in class-index order.
        params: Gives ``beta`` and the group thresholds.

    Returns:
        ``(class_counts, class_balance_report)``.
    """
    counts = class_counts(manifest, list(ingestion_report.classes))
    table, report = analyse_classes(counts, params.beta, params.groups.many, params.groups.few)
    logger.info("train: %d images of %d classes, imbalance ratio %.1f (%s %d / %s %d), "
                "normalised entropy %.3f; many/medium/few-shot classes: %s",
                report["train_images"], report["num_classes"], report["imbalance_ratio"],
                report["head"]["label"], report["head"]["train"], report["tail"]["label"],
                report["tail"]["train"], report["normalised_entropy"],
                " / ".join(str(len(report["groups"][g])) for g in report["groups"]))
    for warning in report["warnings"]:
        logger.warning("class_balance: %s", warning)
    return table, report


def plan_balance(counts: pd.DataFrame, params: ClassBalanceParams) -> BalancePlan:
    """The remedy for imbalance that training applies, and why."""
    plan = make_balance_plan(counts, params.settings())
    logger.info("class_balance plan: %s (%s)", plan.strategy, plan.reason)
    return plan


def plot_class_distribution(counts: pd.DataFrame, report: dict) -> Figure:
    """Log-scale bars of training images per class, coloured by shot group."""
    return class_distribution_figure(counts, report)
