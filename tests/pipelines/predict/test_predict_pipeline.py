"""The predict pipeline classifies any folder layout or list of paths; bad files are listed.

The pipeline runs with the project's catalog entries of its tables (chunked CSV files,
here under a temporary folder), since a generator node's chunks are saved one by one.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import AbstractDataset, DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from tests.conftest import PROJECT_ROOT, write_png
from tests.params import base_params
from tests.pipelines.served import CLASSES, served_artifact
from visrec.core.chunks import ChunkedCSV, TableChunk
from visrec.core.evaluate import softmax
from visrec.core.images import load_image
from visrec.core.models import WeightSet, model_from_weight_set
from visrec.core.serve import PredictInputError, Predictor, list_inputs, predict_files
from visrec.params import PredictParams
from visrec.pipelines.predict import create_pipeline


def _folder(root: Path) -> Path:
    """Valid PNGs nested and flat, a corrupt PNG, a text file, an empty file, a hidden file."""
    write_png(root / "flat.png", (40, 30), seed=1)
    write_png(root / "a" / "b" / "deep.png", (20, 50), seed=2)
    write_png(root / "a" / "grey.png", (32, 32), seed=3)
    Image.open(root / "a" / "grey.png").convert("L").save(root / "a" / "grey.png")
    (root / "a" / "corrupt.png").write_bytes((root / "flat.png").read_bytes()[:60])
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / ".hidden.png").write_bytes(b"junk")
    return root


def _params(**overrides: object) -> PredictParams:
    """The ``predict`` block of conf/base with ``overrides``."""
    return base_params(PredictParams, **overrides)


TABLES = ("predictions", "predictions_partial", "prediction_failures",
          "prediction_failures_partial")


def _table_datasets(folder: Path) -> dict[str, AbstractDataset]:
    """The predict tables as conf/base/catalog.yml declares them, with files in ``folder``."""
    entries = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
    return {name: AbstractDataset.from_config(name, {
        **entries[name], "filepath": str(folder / Path(entries[name]["filepath"]).name)})
        for name in TABLES}


def _predict(params: PredictParams, served: WeightSet, out: Path) -> tuple:
    """``(predictions, failures)`` of a predict run writing its tables into ``out``."""
    catalog = DataCatalog({"served_model": MemoryDataset(served),
                           "params:predict": MemoryDataset(params), **_table_datasets(out)})
    SequentialRunner().run(create_pipeline(), catalog)
    assert sorted(p.name for p in out.iterdir()) == ["prediction_failures.csv",
                                                     "predictions.csv"]  # no partial left
    return catalog.load("predictions"), catalog.load("prediction_failures")


@pytest.mark.faults
def test_folder_of_any_layout_with_bad_files(tmp_path):
    root = _folder(tmp_path / "new")
    served = served_artifact(temperature=2.0)
    predictions, failures = _predict(_params(input=str(root), top_k=2, batch_size=2),
                                     served, tmp_path / "out")
    assert predictions["path"].tolist() == ["a/b/deep.png", "a/grey.png", "flat.png"]
    assert list(predictions.columns) == ["path", "label_1", "probability_1", "label_2",
                                         "probability_2"]
    assert failures.set_index("path")["reason"].to_dict() == {
        "a/corrupt.png": "truncated", "empty.jpg": "empty_file", "notes.txt": "not_an_image"}
    assert failures["detail"].str.len().gt(0).all()
    # Calibrated probabilities: softmax(logits / T) of the evaluation transform's input.
    predictor = Predictor(model_from_weight_set(served), served.config)
    transform = predictor.transform()
    for row in predictions.itertuples(index=False):
        with torch.no_grad():
            logits = predictor.model(transform(load_image(root / row.path))[None]).numpy()
        expected = softmax(logits, 2.0)[0]
        order = np.argsort(-expected)
        assert [row.label_1, row.label_2] == [CLASSES[i] for i in order[:2]]
        assert [row.probability_1, row.probability_2] == pytest.approx(expected[order[:2]],
                                                                       abs=2e-6)
        assert row.probability_1 < 0.99  # T = 2 softens random logits


def test_temperature_changes_probabilities_not_labels(tmp_path):
    root = _folder(tmp_path / "new")
    cold, _ = _predict(_params(input=str(root)), served_artifact(temperature=0.5),
                       tmp_path / "out")
    warm, _ = _predict(_params(input=str(root)), served_artifact(temperature=4.0),
                       tmp_path / "out")
    assert cold["label_1"].tolist() == warm["label_1"].tolist()
    assert (cold["probability_1"] > warm["probability_1"]).all()
    assert list(cold.columns)[-1] == "probability_3"  # top_k 5 capped at the 3 classes


def test_list_file_and_list_of_paths(tmp_path):
    root = _folder(tmp_path / "new")
    listing = tmp_path / "todo.txt"
    listing.write_text(f"# images to check\nnew/flat.png\n\n{root / 'a' / 'grey.png'}\n"
                       "new/missing.png\n")
    predictions, failures = _predict(_params(input=str(listing)), served_artifact(),
                                     tmp_path / "out")
    assert predictions["path"].tolist() == ["new/flat.png", str(root / "a" / "grey.png")]
    assert failures[["path", "reason"]].values.tolist() == [["new/missing.png", "unreadable"]]
    listed, _ = _predict(_params(input=[str(root / "flat.png")]), served_artifact(),
                         tmp_path / "out")
    assert listed["label_1"].tolist() == predictions["label_1"].tolist()[:1]


def test_bad_input_names_the_parameter(tmp_path):
    with pytest.raises(PredictInputError, match=r"predict\.input is not set"):
        list_inputs(None, tmp_path)
    with pytest.raises(PredictInputError, match=r"predict\.input = 'nope': no such file"):
        list_inputs("nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictInputError, match="the folder has no files"):
        list_inputs("empty", tmp_path)
    write_png(tmp_path / "one.png", (8, 8))
    root, paths, unlisted = list_inputs("one.png", tmp_path)
    assert (root, paths, unlisted.empty) == (tmp_path, ["one.png"], True)


def test_batches_of_only_bad_files_and_worker_processes(tmp_path):
    """Batch size 1 makes batches with no good image; 2 workers decode in other processes."""
    root = _folder(tmp_path / "new")
    served = served_artifact()
    alone, alone_failures = _predict(_params(input=str(root), batch_size=1, num_workers=0),
                                     served, tmp_path / "out")
    pooled, pooled_failures = _predict(_params(input=str(root), batch_size=3, num_workers=2),
                                       served, tmp_path / "out")
    assert len(alone) == 3 and len(alone_failures) == 3
    assert pooled["path"].tolist() == alone["path"].tolist()
    np.testing.assert_allclose(pooled["probability_1"], alone["probability_1"], atol=1e-6)
    assert sorted(pooled_failures["path"]) == sorted(alone_failures["path"])


def test_linked_folders_are_followed_once(tmp_path):
    root = tmp_path / "in"
    write_png(root / "own.png", (20, 20), seed=5)
    write_png(tmp_path / "elsewhere" / "x.png", (20, 20), seed=6)
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "linked_again").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "back").symlink_to(root)  # a loop
    _, paths, unlisted = list_inputs(str(root), tmp_path)
    assert paths == ["linked/x.png", "own.png"] and unlisted.empty


@pytest.mark.faults
def test_extreme_aspect_ratio_and_unexpected_errors_are_not_fatal(tmp_path, monkeypatch):
    root = tmp_path / "new"
    root.mkdir()
    Image.new("RGB", (60_000, 1), (200, 10, 10)).save(root / "strip.png")
    write_png(root / "ok.png", (20, 20), seed=7)
    predictions, failures = _predict(_params(input=str(root)), served_artifact(),
                                     tmp_path / "out")
    assert predictions["path"].tolist() == ["ok.png", "strip.png"] and failures.empty

    def explode(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr("visrec.core.serve.predict.read_checked", explode)
    predictions, failures = _predict(_params(input=str(root)), served_artifact(),
                                     tmp_path / "out")
    assert predictions.empty
    assert failures["reason"].tolist() == ["unreadable", "unreadable"]
    assert failures["detail"].str.startswith("MemoryError: no room").all()


def test_empty_list_and_pixel_limit_name_the_predict_parameters(tmp_path):
    with pytest.raises(PredictInputError, match=r"predict\.input = \[\]: the list is empty"):
        list_inputs([], tmp_path)
    write_png(tmp_path / "big.png", (100, 100), seed=8)
    _, failures = _predict(_params(input=str(tmp_path / "big.png"), max_pixels=5000),
                           served_artifact(), tmp_path / "out")
    assert failures["reason"].tolist() == ["too_many_pixels"]
    assert "predict.max_pixels = 5000" in failures["detail"].iloc[0]


def _images(root: Path, count: int) -> Path:
    """``count`` PNGs in folders of ten, a corrupt one and a text file among them."""
    for index in range(count):
        write_png(root / f"{index // 10}" / f"{index:03d}.png", (24, 20), seed=index)
    (root / "0" / "005b.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (root / "1" / "notes.txt").write_text("not an image\n")
    return root


def _count_appends(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Rows of each chunk appended to each table, by file name, as the run goes."""
    appended: dict[str, list[int]] = {}
    append = ChunkedCSV.append

    def counted(self: ChunkedCSV, chunk: TableChunk) -> None:
        appended.setdefault(self.path.name, []).append(len(chunk.rows))
        append(self, chunk)

    monkeypatch.setattr(ChunkedCSV, "append", counted)
    return appended


def test_chunked_output_equals_the_unchunked_result(tmp_path, monkeypatch):
    root = _images(tmp_path / "new", 23)
    served = served_artifact()
    whole, whole_failures = _predict(_params(input=str(root), batch_size=4), served,
                                     tmp_path / "whole")
    appended = _count_appends(monkeypatch)
    chunked, chunked_failures = _predict(_params(input=str(root), batch_size=4, chunk_size=5),
                                         served, tmp_path / "chunked")
    # Chunks of two batches (8 files, rounded up from 5): 25 files in 4 chunks, between the
    # unlisted failures' chunk and the final marker, each saved as it came; the corrupt PNG
    # is the 7th file, the text file the 22nd.
    assert appended["predictions.csv"] == [0, 7, 8, 7, 1, 0]
    assert appended["prediction_failures.csv"] == [0, 1, 0, 1, 0, 0]
    pd.testing.assert_frame_equal(chunked, whole)
    pd.testing.assert_frame_equal(chunked_failures, whole_failures)
    # The same as the tables made in memory at once.
    predictor = Predictor(model_from_weight_set(served), served.config)
    _, paths, _ = list_inputs(str(root), tmp_path)
    expected, expected_failures = predict_files(predictor, root, paths, 5, 4,
                                                torch.device("cpu"), 0, 10**8, 2**30)
    pd.testing.assert_frame_equal(whole, expected, check_dtype=False)
    pd.testing.assert_frame_equal(whole_failures, expected_failures, check_dtype=False)
    assert len(whole) == 23 and whole["path"].is_monotonic_increasing


class _Crash(Exception):
    """Stands for the end of a process half-way through a run."""


def _crash_at_chunk(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make the ``number``-th save of the predictions table fail (before it writes)."""
    append, saves = ChunkedCSV.append, []

    def failing(self: ChunkedCSV, chunk: TableChunk) -> None:
        if self.path.name == "predictions.csv":
            saves.append(len(chunk.rows))
            if len(saves) == number:
                raise _Crash
        append(self, chunk)

    monkeypatch.setattr(ChunkedCSV, "append", failing)


def test_a_run_stopped_half_way_resumes_without_redoing_images(tmp_path, monkeypatch, caplog):
    root = _images(tmp_path / "new", 30)
    served = served_artifact()
    params = _params(input=str(root), batch_size=4, chunk_size=4)
    reference, reference_failures = _predict(params, served, tmp_path / "reference")
    out = tmp_path / "out"
    _crash_at_chunk(monkeypatch, 5)  # after the empty first chunk and 3 chunks of 4 files
    with pytest.raises(DatasetError, match="Failed while saving") as crashed:
        _predict(params, served, out)
    cause: BaseException = crashed.value
    while cause.__cause__ is not None:  # Kedro wraps the dataset's error, twice
        cause = cause.__cause__
    assert isinstance(cause, _Crash)
    # What is done so far is readable: whole rows, as the uninterrupted run wrote them.
    state = json.loads((out / "predictions.csv.partial.json").read_text())
    partial = pd.read_csv(out / "predictions.csv.partial",
                          dtype={f"label_{k}": str for k in (1, 2, 3)})
    assert state["rows"] == len(partial) == 11  # 12 files, the corrupt one among them
    pd.testing.assert_frame_equal(partial, reference.head(11), check_dtype=False)
    assert not (out / "predictions.csv").exists()
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="visrec"):
        predictions, failures = _predict(params, served, out)
    assert "12 of 32 files already done, 20 to go" in caplog.text
    assert "predict: 19 images classified" in caplog.text  # 30 - 11; the text file fails
    pd.testing.assert_frame_equal(predictions, reference)
    pd.testing.assert_frame_equal(failures, reference_failures)


def test_another_model_or_input_starts_the_partial_output_anew(tmp_path, monkeypatch, caplog):
    root = _images(tmp_path / "new", 20)
    params = _params(input=str(root), batch_size=4, chunk_size=4)
    out = tmp_path / "out"
    _crash_at_chunk(monkeypatch, 4)
    with pytest.raises(DatasetError, match="Failed while saving"):
        _predict(params, served_artifact(seed=0), out)
    monkeypatch.undo()
    other = served_artifact(seed=1)
    with caplog.at_level(logging.INFO, logger="visrec"):
        predictions, _ = _predict(params, other, out)
    assert "already done" not in caplog.text and "starting it anew" in caplog.text
    assert "predict: 20 images classified" in caplog.text
    expected, _ = _predict(params, other, tmp_path / "reference")
    pd.testing.assert_frame_equal(predictions, expected)
