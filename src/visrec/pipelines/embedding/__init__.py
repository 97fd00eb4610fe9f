"""embedding: the metric-learning stage (an embedding of the ingested images, measured on
classes it never saw). ``kedro run --pipelines=metric_learning`` runs ingestion, then this."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
