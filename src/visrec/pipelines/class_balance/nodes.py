"""Nodes of the class_balance pipeline."""

import logging

import pandas as pd
from matplotlib.figure import Figure

from visrec.core.balance import class_counts, make_balance_plan
from visrec.core.plots import class_distribution_figure
from visrec.params import ClassBalanceParams

logger = logging.getLogger(__name__)


def count_classes(manifest: pd.DataFrame, ingestion_report: dict) -> pd.DataFrame:
    """Images per class and split.

    Args:
        manifest: The ingestion manifest.
        ingestion_report: Gives the classes in class-index order.
    """
    return class_counts(manifest, ingestion_report["classes"])


def plan_balance(counts: pd.DataFrame, params: ClassBalanceParams) -> dict:
    """The remedy for imbalance that training applies."""
    plan = make_balance_plan(params.strategy, counts["label"].tolist(), counts["train"].to_numpy())
    logger.info("train imbalance ratio %.1f; strategy %s", plan["imbalance_ratio"],
                plan["strategy"])
    return plan


def plot_class_distribution(counts: pd.DataFrame, plan: dict) -> Figure:
    """Bar chart of images per class and split."""
    return class_distribution_figure(counts, plan["imbalance_ratio"])
