"""class_balance outputs through the project's real catalog entries (files on disk)."""

from pathlib import Path

import pandas as pd
import yaml
from kedro.io import DataCatalog

from tests.conftest import PROJECT_ROOT
from visrec.params import ClassBalanceParams
from visrec.pipelines.class_balance.nodes import plan_balance


def test_class_names_survive_the_csv_round_trip(tmp_path: Path):
    """Names like "01", "1" or "NA" must come back as the same strings, not 1 or NaN."""
    entry = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())["class_counts"]
    entry["filepath"] = str(tmp_path / "class_counts.csv")
    catalog = DataCatalog.from_config({"class_counts": entry})
    counts = pd.DataFrame({"label": ["01", "1", "NA"], "train": [5, 3, 2], "val": [1, 1, 0],
                           "test": [2, 2, 2]})
    catalog.save("class_counts", counts)
    loaded = catalog.load("class_counts")
    assert loaded["label"].tolist() == ["01", "1", "NA"]
    plan = plan_balance(loaded, ClassBalanceParams(strategy="class_weights"))
    assert plan["classes"] == ["01", "1", "NA"]
