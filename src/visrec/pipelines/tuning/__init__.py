"""tuning: a budgeted Optuna search over the policy, the balance strategy and the recipe."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
