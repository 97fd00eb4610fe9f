"""Run one pipeline on an in-memory catalog, as spaceflights' pipeline tests do."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from tests.conftest import PROJECT_ROOT
from visrec.core.data import CacheSummary, IngestionReport, QuarantineCounts


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot empty: the test reads every output afterwards."""

    def _release(self) -> None:
        pass


@cache
def memory_copy_modes() -> dict[str, str | None]:
    """The project catalog's in-memory hand-offs (``model_inputs``, ``trained_weights``,
    ...) and the ``copy_mode`` each is declared with (None: Kedro's default)."""
    entries = {name: entry for path in sorted((PROJECT_ROOT / "conf/base").glob("catalog*.yml"))
               for name, entry in yaml.safe_load(path.read_text()).items()}
    return {name: entry.get("copy_mode") for name, entry in entries.items()
            if entry.get("type") in ("MemoryDataset", "kedro.io.MemoryDataset")}


def _output(name: str) -> KeptMemoryDataset:
    """An output as the project's catalog holds it in memory: a dataset declared as a
    MemoryDataset keeps its ``copy_mode`` (tensors passed by reference stay so)."""
    copy_mode = memory_copy_modes().get(name)
    return KeptMemoryDataset(copy_mode=copy_mode) if copy_mode else KeptMemoryDataset()


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> DataCatalog:
    """Run ``pipeline`` with ``inputs`` held in memory; all its outputs stay in the catalog."""
    datasets = {name: MemoryDataset(value) for name, value in inputs.items()}
    datasets |= {name: _output(name) for name in pipeline.all_outputs()}
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return catalog


def only(params: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
    """The parameter entries that ``pipeline`` takes."""
    return {k: v for k, v in params.items() if k in pipeline.inputs()}


def make_report(root: str, classes: list[str], channels: int = 3) -> IngestionReport:
    """An ingestion report of ``classes`` under ``root`` with nothing left out and no cache,
    for nodes that read only its root, classes and channels."""
    return IngestionReport(
        root=root, labels_file=None, channels=channels, classes=tuple(classes), num_images=0,
        counts={}, quarantine=QuarantineCounts(total=0, by_reason={}, by_class={},
                                               by_split={}),
        duplicates=(), leakage=(), dropped_classes=(),
        cache=CacheSummary(enabled=False, resolution=0, channels=channels, images=0, bytes=0))

