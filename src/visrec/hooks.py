"""Kedro hooks of visrec: checks that must fail before any node runs.

Every parameter is checked first, whichever pipelines run: unknown top-level keys (a
misspelt block), ``seed``, and every block against its model. What depends on the images
as well (the class-disjoint split of metric learning, classes with
fewer images than ``metric_learning.m_per_class``) is checked here, from the manifest
when the run reads one, else from a listing of ``ingestion.root`` (files are stat-ed,
not opened), so that a bad setting stops the run before ingestion starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

if TYPE_CHECKING:  # settings.py imports this module for every kedro command: keep it light
    import pandas as pd

    from visrec.params import IngestionParams, MetricLearningParams

SPLIT_NODE = "make_class_split"


def _rows(pipeline: Pipeline, catalog: Any, ingestion: IngestionParams) -> pd.DataFrame:
    """Label and given split of every image the run will see."""
    from visrec.core.data import list_source, resolve_root  # noqa: PLC0415
    from visrec.core.retrieval import pooled_rows  # noqa: PLC0415

    if "image_manifest" not in pipeline.all_outputs() and catalog.exists("image_manifest"):
        cache = catalog.load("image_cache")
        return pooled_rows(catalog.load("image_manifest"), catalog.load("quarantine"),
                           cache.index, catalog.load("ingestion_report").carved_splits)
    listing, _ = list_source(resolve_root(ingestion.root), ingestion.labels_file,
                             ingestion.max_bytes)
    rows = listing.loc[listing["reason"] == "", ["path", "label", "split"]]
    return rows.assign(split=rows["split"].fillna("train"), cache_index=-1)


def check_metric_learning(rows: pd.DataFrame, params: MetricLearningParams) -> None:
    """Raise :class:`ParameterError` when the classes of ``rows`` cannot be split as
    ``metric_learning.split`` says, or cannot fill P x K batches."""
    from visrec.core.retrieval import (  # noqa: PLC0415
        ClassSplitError,
        apply_split,
        split_classes,
    )
    from visrec.params import ParameterError  # noqa: PLC0415

    try:
        split = split_classes(rows, params.split.test_classes, params.split.val_classes)
        table = apply_split(rows, split)
        params.check_classes(table.loc[table["split"] == "train", "label"].value_counts()
                             .to_dict())
    except (ClassSplitError, ValueError) as error:
        raise ParameterError(str(error)) from None


class RunChecks:
    """Checks of the parameters, and of parameters against the images, before the first
    node."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: Any) -> None:
        """Check every parameter; then metric learning's split and batches when the run
        trains an embedder."""
        from visrec.params import IngestionParams, MetricLearningParams  # noqa: PLC0415
        from visrec.params.project import check_parameters  # noqa: PLC0415

        check_parameters(catalog.load("parameters"))
        if not any(node.name == SPLIT_NODE for node in pipeline.nodes):
            return

        params = MetricLearningParams.model_validate(catalog.load("params:metric_learning"))
        ingestion = IngestionParams.model_validate(catalog.load("params:ingestion"))
        check_metric_learning(_rows(pipeline, catalog, ingestion), params)
