"""class_balance outputs through the project's real catalog entries (files on disk)."""

import json
from pathlib import Path

import pandas as pd
import yaml
from kedro.io import DataCatalog

from tests.conftest import PROJECT_ROOT
from tests.params import base_params
from visrec.core.balance import BalancePlan
from visrec.params import ClassBalanceParams
from visrec.pipelines.class_balance.nodes import plan_balance


def _entry(name: str, filepath: Path) -> dict:
    """The catalog.yml entry ``name``, writing to ``filepath``."""
    entry = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())[name]
    entry["filepath"] = str(filepath)
    return entry


def test_class_names_survive_the_csv_round_trip(tmp_path: Path):
    """Names like "01", "1" or "NA" must come back as the same strings, not 1 or NaN."""
    catalog = DataCatalog.from_config({"class_counts": _entry("class_counts",
                                                              tmp_path / "class_counts.csv")})
    counts = pd.DataFrame({"label": ["01", "1", "NA"], "train": [5, 3, 2], "val": [1, 1, 0],
                           "test": [2, 2, 2]})
    catalog.save("class_counts", counts)
    loaded = catalog.load("class_counts")
    assert loaded["label"].tolist() == ["01", "1", "NA"]
    plan = plan_balance(loaded, base_params(ClassBalanceParams, strategy="class_weights"))
    assert list(plan.classes) == ["01", "1", "NA"]


def test_the_balance_plan_loads_as_the_plan_it_saved(tmp_path: Path):
    """The balance_plan entry writes JSON and loads a typed BalancePlan, equal to the saved."""
    counts = pd.DataFrame({"label": ["01", "1", "NA"], "train": [50, 10, 5], "val": [1, 1, 0],
                           "test": [2, 2, 2]})
    plan = plan_balance(counts, base_params(ClassBalanceParams,
                                            strategy=["oversample", "class_weights", "crt"]))
    path = tmp_path / "balance_plan.json"
    catalog = DataCatalog.from_config({"balance_plan": _entry("balance_plan", path)})
    catalog.save("balance_plan", plan)
    loaded = catalog.load("balance_plan")
    assert isinstance(loaded, BalancePlan)
    assert loaded == plan
    assert json.loads(path.read_text())["classes"] == ["01", "1", "NA"]
    assert list(loaded.sampler.class_targets) == [50, 50, 50]
    assert loaded.crt is not None and loaded.crt.epochs == 10
