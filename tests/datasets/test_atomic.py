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
