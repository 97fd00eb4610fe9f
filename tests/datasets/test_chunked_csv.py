"""ChunkedCSVDataset and PartialCSVDataset through a catalog, as conf/base declares them."""

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError

from visrec.core.chunks import PartialTable, TableChunk

RUN = {"input": "/images"}


def _catalog(path: Path) -> DataCatalog:
    return DataCatalog.from_config({
        "table": {"type": "visrec.datasets.ChunkedCSVDataset", "filepath": str(path),
                  "text_columns": ["path", "label_*"], "load_args": {"keep_default_na": False}},
        "table_partial": {"type": "visrec.datasets.PartialCSVDataset",
                          "filepath": str(path)}})


def test_chunks_saved_then_the_finished_table_loaded_with_names_kept(tmp_path: Path):
    catalog = _catalog(tmp_path / "predictions.csv")
    assert catalog.load("table_partial") == PartialTable()
    assert not catalog.exists("table")
    rows = pd.DataFrame({"path": ["0001.png", "NA.png"], "label_1": ["01", "NA"],
                         "probability_1": [0.5, 0.25], "label_2": ["NA", "007"]})
    catalog.save("table", TableChunk(rows.head(1), RUN))
    assert catalog.load("table_partial") == PartialTable(RUN, ("0001.png",))
    catalog.save("table", TableChunk(rows.tail(1), RUN, last=True))
    loaded = catalog.load("table")
    assert loaded["label_1"].tolist() == ["01", "NA"]  # not 1 and NaN
    assert loaded["label_2"].tolist() == ["NA", "007"]
    assert loaded["probability_1"].tolist() == [0.5, 0.25]


def test_what_the_datasets_refuse(tmp_path: Path):
    catalog = _catalog(tmp_path / "predictions.csv")
    with pytest.raises(DatasetError, match="expected a TableChunk"):
        catalog.save("table", pd.DataFrame({"path": ["a.png"]}))
    with pytest.raises(DatasetError, match="written through the ChunkedCSVDataset"):
        catalog.save("table_partial", PartialTable())
    with pytest.raises(DatasetError, match="no file at"):
        catalog.load("table")
    catalog.save("table", TableChunk(pd.DataFrame({"path": ["a.png"]}), RUN))
    with pytest.raises(DatasetError, match="cannot follow"):
        catalog.save("table", TableChunk(pd.DataFrame({"name": ["a.png"]}), RUN))
