"""AtomicDataset: a save is all or nothing, through the wrapped Kedro dataset."""

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog
from matplotlib.figure import Figure

from visrec.datasets import AtomicDataset


def test_round_trip_through_the_wrapped_dataset(tmp_path: Path):
    dataset = AtomicDataset(filepath=str(tmp_path / "sub" / "m.json"),
                            dataset={"type": "json.JSONDataset", "save_args": {"indent": 2}})
    assert not dataset.exists()
    dataset.save({"top1": 0.5})
    assert dataset.load() == {"top1": 0.5}
    assert (tmp_path / "sub" / "m.json").read_text().startswith("{\n  ")  # save_args used
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m.json"]  # no leftovers


def test_failed_save_keeps_the_previous_file(tmp_path: Path):
    path = tmp_path / "table.csv"
    dataset = AtomicDataset(filepath=str(path), dataset="pandas.CSVDataset")
    dataset.save(pd.DataFrame({"a": [1, 2]}))
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever the writer raises
        dataset.save("not a data frame")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_figure_format_follows_the_target_suffix(tmp_path: Path):
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    catalog = DataCatalog.from_config({"plot": {
        "type": "visrec.datasets.AtomicDataset", "filepath": str(tmp_path / "plot.png"),
        "dataset": {"type": "matplotlib.MatplotlibDataset"}}})
    catalog.save("plot", figure)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kedro_viz_sees_the_wrapped_type_and_its_preview(tmp_path: Path):
    """kedro viz names a dataset by its class and reads the kind of preview from the
    return annotation of ``preview``: both come from the wrapped dataset."""
    import inspect

    table = AtomicDataset(filepath=str(tmp_path / "t.csv"),
                          dataset={"type": "pandas.CSVDataset", "save_args": {"index": False}})
    assert type(table).__qualname__ == "AtomicDataset[CSVDataset]"
    assert isinstance(table, AtomicDataset)
    table.save(pd.DataFrame({"label": ["a", "b", "c"], "n": [3, 2, 1]}))
    assert inspect.signature(table.preview).return_annotation == "TablePreview"
    assert table.preview(nrows=2) == {"index": [0, 1], "columns": ["label", "n"],
                                      "data": [["a", 3], ["b", 2]]}

    figure = AtomicDataset(filepath=str(tmp_path / "f.png"),
                           dataset="matplotlib.MatplotlibDataset")
    plot = Figure(figsize=(1, 1))
    plot.add_subplot().plot([0, 1])
    figure.save(plot)
    assert inspect.signature(figure.preview).return_annotation == "ImagePreview"
    import base64

    assert base64.b64decode(figure.preview()) == (tmp_path / "f.png").read_bytes()
    # One class per wrapped type; a wrapped type without a preview gives none.
    again = AtomicDataset(filepath=str(tmp_path / "u.csv"), dataset="pandas.CSVDataset")
    assert type(again) is type(table)
    raw = AtomicDataset(filepath=str(tmp_path / "m.onnx"), dataset="visrec.datasets.BytesDataset")
    assert not hasattr(raw, "preview")


def test_copies_and_pickles_rebuild_the_wrapper(tmp_path: Path):
    import copy
    import pickle

    dataset = AtomicDataset(filepath=str(tmp_path / "m.json"), dataset="json.JSONDataset",
                            metadata={"kedro-viz": {"layer": "reporting"}})
    dataset.save({"a": 1})
    for clone in (pickle.loads(pickle.dumps(dataset)), copy.deepcopy(dataset)):
        assert type(clone) is type(dataset)
        assert clone.load() == {"a": 1} and clone.metadata == dataset.metadata


def test_a_wrapped_dataset_without_a_type_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"dataset = \{'save_args'.*names no type"):
        AtomicDataset(filepath=str(tmp_path / "m.json"), dataset={"save_args": {}})
