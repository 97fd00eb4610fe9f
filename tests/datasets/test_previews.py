"""kedro viz previews: every table, metric file and figure of the catalog has one, of the
kind its content is, and every dataset has its layer."""

from __future__ import annotations

import base64
import inspect
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from kedro.io import AbstractDataset, DataCatalog, DatasetError
from matplotlib.figure import Figure

from tests.conftest import PROJECT_ROOT
from visrec.core.chunks import TableChunk
from visrec.core.train import LiveLog

CATALOGS = ("catalog.yml", "catalog_metric_learning.yml")
# What a file's suffix says it is, and the preview kedro viz should draw of it.
PREVIEW_OF_SUFFIX = {".csv": "TablePreview", ".parquet": "TablePreview",
                     ".json": "JSONPreview", ".yml": "JSONPreview", ".png": "ImagePreview"}
# Folders that hold tables or figures, and their previews.
PREVIEW_OF_FOLDER = {"visrec.datasets.FigureFolderDataset": "ImagePreview",
                     "visrec.datasets.LiveDataset": "JSONPreview",
                     "visrec.datasets.OptunaStorageDataset": "TablePreview"}
LAYERS = {"raw", "intermediate", "primary", "feature", "model_input", "models",
          "model_output", "reporting"}


def _conf_catalog() -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for name in CATALOGS:
        entries |= yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text())
    return entries


def _preview_kind(dataset: AbstractDataset) -> str | None:
    preview = getattr(dataset, "preview", None)
    return None if preview is None else str(inspect.signature(preview).return_annotation)


def test_every_table_metric_and_figure_of_the_catalog_has_its_preview_and_a_layer():
    entries = _conf_catalog()
    catalog = DataCatalog.from_config(entries)
    expected: dict[str, str] = {}
    for name, entry in entries.items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer in LAYERS, f"{name}: layer {layer!r}, expected one of {sorted(LAYERS)}"
        if entry["type"] == "visrec.datasets.PartialCSVDataset":
            continue  # the keys an interrupted run left: its table has the preview
        suffix = Path(str(entry.get("filepath", ""))).suffix
        kind = PREVIEW_OF_SUFFIX.get(suffix) or PREVIEW_OF_FOLDER.get(entry["type"])
        if kind:
            expected[name] = kind
    seen = {name: _preview_kind(catalog.get(name)) for name in expected}
    assert seen == expected
    # The figures, metric files and tables are most of what a run writes.
    assert len(expected) >= 45, sorted(expected)
    # A dataset sits in the layer of its data/ folder, or an earlier one when a later
    # stage reads it: layers never go backwards along the pipelines' edges (kedro viz
    # orders them, and gives up on a cycle).
    folders = {"01_raw": "raw", "02_intermediate": "intermediate", "04_feature": "feature",
               "05_model_input": "model_input", "06_models": "models",
               "07_model_output": "model_output", "08_reporting": "reporting"}
    order = list(folders.values())
    order.insert(2, "primary")
    for name, entry in entries.items():
        path = str(entry.get("filepath") or entry.get("path") or "")
        layer = entry["metadata"]["kedro-viz"]["layer"]
        for folder, folder_layer in folders.items():
            if f"data/{folder}/" in path:
                assert order.index(layer) <= order.index(folder_layer), name
    layers = {name: entry["metadata"]["kedro-viz"]["layer"] for name, entry in entries.items()}
    backwards = [(source, node.name, target)
                 for node in _all_nodes() for source in node.inputs for target in node.outputs
                 if source in layers and target in layers
                 and order.index(layers[source]) > order.index(layers[target])]
    assert not backwards, backwards


def _all_nodes() -> list:
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    return [node for name in pipelines for node in pipelines[name].nodes]


def _dataset(config: dict) -> AbstractDataset:
    return AbstractDataset.from_config("d", config)


def test_record_preview_is_its_json(tmp_path: Path):
    from tests.datasets.test_records import PLAN_TYPE, _plan

    dataset = _dataset({"type": "visrec.datasets.RecordDataset",
                        "filepath": str(tmp_path / "plan.json"), "record_type": PLAN_TYPE})
    plan = _plan()
    dataset.save(plan)
    assert json.loads(dataset.preview()) == plan.to_json()


def test_chunked_table_preview_is_its_first_rows(tmp_path: Path):
    dataset = _dataset({"type": "visrec.datasets.ChunkedCSVDataset",
                        "filepath": str(tmp_path / "p.csv"), "text_columns": ["label_*"]})
    with pytest.raises(DatasetError, match="no file at"):
        dataset.preview()
    rows = pd.DataFrame({"path": [f"{i}.png" for i in range(8)], "label_1": ["01"] * 8})
    dataset.save(TableChunk(rows, {"input": "x"}, last=True))
    assert dataset.preview(nrows=2) == {"index": [0, 1], "columns": ["path", "label_1"],
                                        "data": [["0.png", "01"], ["1.png", "01"]]}


def test_figure_folder_preview_is_its_first_figure(tmp_path: Path):
    dataset = _dataset({"type": "visrec.datasets.FigureFolderDataset",
                        "path": str(tmp_path / "figures")})
    figures = {}
    for name in ("policy_2", "policy_1"):
        figures[name] = Figure(figsize=(1, 1))
        figures[name].add_subplot().plot([0, 1])
    dataset.save(figures)
    first = (tmp_path / "figures/policy_1.png").read_bytes()
    assert base64.b64decode(dataset.preview()) == first


def test_live_preview_is_the_last_epoch(tmp_path: Path):
    dataset = _dataset({"type": "visrec.datasets.LiveDataset", "path": str(tmp_path / "live")})
    with pytest.raises(DatasetError, match="run the training"):
        dataset.preview()
    LiveLog(tmp_path / "live")([{"epoch": 1, "phase": "train", "train_loss": 0.5},
                                {"epoch": 2, "phase": "train", "train_loss": 0.25}])
    assert json.loads(dataset.preview())["train_loss"] == 0.25


def test_study_preview_is_its_studies_and_best_trials(tmp_path: Path):
    dataset = _dataset({"type": "visrec.datasets.OptunaStorageDataset",
                        "filepath": str(tmp_path / "tuning/study.db")})
    with pytest.raises(DatasetError, match="no study"):
        dataset.preview()
    study = optuna.create_study(study_name="s", storage=dataset.load(), direction="maximize")
    for value in (0.25, 0.75, 0.5):
        study.enqueue_trial({"x": value})
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert dataset.preview() == {"columns": ["study", "trials", "best trial", "best value"],
                                 "index": [0], "data": [["s", 3, 1, 0.75]]}
