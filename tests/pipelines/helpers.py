"""Run one pipeline on an in-memory catalog, as spaceflights' pipeline tests do."""

from __future__ import annotations

from typing import Any

from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot empty: the test reads every output afterwards."""

    def _release(self) -> None:
        pass


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> DataCatalog:
    """Run ``pipeline`` with ``inputs`` held in memory; all its outputs stay in the catalog."""
    datasets = {name: MemoryDataset(value) for name, value in inputs.items()}
    datasets |= {name: KeptMemoryDataset() for name in pipeline.all_outputs()}
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return catalog


def only(params: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
    """The parameter entries that ``pipeline`` takes."""
    return {k: v for k, v in params.items() if k in pipeline.inputs()}
