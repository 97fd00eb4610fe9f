"""Kedro hooks of visrec: one run at a time per data folder, and the checks that must fail
before any node runs.

Every parameter is checked first, whichever pipelines run: unknown top-level keys (a
misspelt block), ``seed``, and every block against its model. A run that reads the packed
cache without running ingestion checks that the manifest was written against it. What
depends on the images as well (the class-disjoint split of metric learning, classes with
fewer images than ``metric_learning.m_per_class``) is checked here, from the manifest
when the run reads one, else from a listing of ``ingestion.root`` (files are stat-ed,
not opened), so that a bad setting stops the run before ingestion starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

if TYPE_CHECKING:  # settings.py imports this module for every kedro command: keep it light
    import pandas as pd

    from visrec.params import IngestionParams, MetricLearningParams
    from visrec.runlock import DataLock

SPLIT_NODE = "make_class_split"
LOCK_WAIT_VARIABLE = "VISREC_LOCK_WAIT"  # seconds a run waits for another to end (0: none)


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
    """Before the first node: hold the project's data folder (one run at a time,
    :mod:`visrec.runlock`), then check the parameters, and parameters against the images.
    The folder is let go when the run ends or fails."""

    def __init__(self) -> None:
        self._lock: DataLock | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline,
                            catalog: Any) -> None:
        """Hold ``data/``; check every parameter; then metric learning's split and batches
        when the run trains an embedder (the folder is let go if a check fails)."""
        from visrec.runlock import DataLock  # noqa: PLC0415

        wait = float(os.environ.get(LOCK_WAIT_VARIABLE) or 0)
        self._lock = DataLock(Path(run_params.get("project_path") or Path.cwd()) / "data",
                              timeout=wait)
        self._lock.acquire()
        try:
            self._check(pipeline, catalog)
        except BaseException:
            self._release()
            raise

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Let the data folder go."""
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        """Let the data folder go."""
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @staticmethod
    def _check(pipeline: Pipeline, catalog: Any) -> None:
        from visrec.params import IngestionParams, MetricLearningParams  # noqa: PLC0415
        from visrec.params.project import check_parameters  # noqa: PLC0415

        check_parameters(catalog.load("parameters"))
        if "image_cache" in pipeline.inputs() and catalog.exists("image_manifest"):
            from visrec.core.data import check_manifest_cache  # noqa: PLC0415

            check_manifest_cache(catalog.load("image_manifest"), catalog.load("image_cache"))
        if not any(node.name == SPLIT_NODE for node in pipeline.nodes):
            return

        params = MetricLearningParams.model_validate(catalog.load("params:metric_learning"))
        ingestion = IngestionParams.model_validate(catalog.load("params:ingestion"))
        check_metric_learning(_rows(pipeline, catalog, ingestion), params)
