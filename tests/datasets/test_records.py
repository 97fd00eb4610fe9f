"""visrec.datasets.RecordDataset: a typed hand-off between stages as a JSON file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError

from tests.params import base_params
from visrec.core.augment import make_spec
from visrec.core.balance import BalancePlan, make_balance_plan
from visrec.core.data import IngestionReport, ingestion_report, make_manifest, read_cache
from visrec.core.images import InspectSettings
from visrec.core.records import Record
from visrec.datasets import RecordDataset
from visrec.params import ClassBalanceParams

PLAN_TYPE = "visrec.core.balance.BalancePlan"


def _plan() -> BalancePlan:
    """A plan with every part set: sampler, class weights, focal loss, logit adjustment, cRT."""
    params = base_params(ClassBalanceParams, strategy=[
        "class_balanced_sampler", "drw", "focal", "logit_adjustment", "crt"])
    counts = pd.DataFrame({"label": ["cat", "dog", "eel"], "train": [300, 30, 3],
                           "val": [3, 3, 1], "test": [5, 5, 5]})
    return make_balance_plan(counts, params.settings())


def _report(tmp_path: Path, png: Callable[..., Path]) -> IngestionReport:
    for label, n in {"a": 3, "b": 2}.items():
        for i in range(n):
            png(tmp_path / "images" / label / f"{i}.png")
    manifest, quarantine, facts = make_manifest(tmp_path / "images", 0.0, 0.0, seed=0)
    cache = read_cache(tmp_path / "cache", InspectSettings(10**8, 0, 3))
    return ingestion_report(facts, manifest, quarantine, cache, root="images",
                            labels_file=None, channels=3)


def _records(tmp_path: Path, png: Callable[..., Path]) -> dict[str, Record]:
    return {"visrec.core.balance.BalancePlan": _plan(),
            "visrec.core.augment.AugmentationSpec": make_spec("flip_crop + augmix + mixup"),
            "visrec.core.data.IngestionReport": _report(tmp_path, png)}


@pytest.mark.parametrize("record_type", ["visrec.core.balance.BalancePlan",
                                         "visrec.core.augment.AugmentationSpec",
                                         "visrec.core.data.IngestionReport"])
def test_round_trip_through_a_file(tmp_path, png, record_type):
    record = _records(tmp_path, png)[record_type]
    path = tmp_path / "out" / "record.json"
    dataset = RecordDataset(filepath=str(path), record_type=record_type)
    assert not dataset.exists()
    dataset.save(record)
    assert dataset.exists()
    assert path.read_text(encoding="utf-8") == json.dumps(record.to_json(), indent=2) + "\n"
    loaded = RecordDataset(filepath=str(path), record_type=record_type).load()
    assert type(loaded) is type(record)
    assert loaded == record


def test_loaded_plan_has_its_typed_parts(tmp_path):
    plan = _plan()
    dataset = RecordDataset(filepath=str(tmp_path / "plan.json"), record_type=PLAN_TYPE)
    dataset.save(plan)
    loaded = dataset.load()
    assert loaded.strategy == "class_balanced_sampler+drw+focal+logit_adjustment+crt"
    assert loaded.classes == ("cat", "dog", "eel")  # tuples again, not JSON's lists
    assert loaded.train_counts == (300, 30, 3)
    assert loaded.sampler.kind == "class_balanced_sampler" and loaded.sampler.q == 0.0
    assert loaded.sampler.class_probabilities == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert (loaded.loss.name, loaded.loss.options) == ("focal", {"gamma": 2.0})
    assert loaded.loss.logit_adjustment_tau == 1.0
    assert loaded.class_weights.start_fraction == 0.8
    assert (loaded.crt.epochs, loaded.crt.lr) == (10, 0.2)


def test_catalog_entry_as_conf_base_writes_it(tmp_path):
    catalog = DataCatalog.from_config({"balance_plan": {
        "type": "visrec.datasets.AtomicDataset",
        "filepath": str(tmp_path / "05_model_input" / "balance_plan.json"),
        "dataset": {"type": "visrec.datasets.RecordDataset", "record_type": PLAN_TYPE}}})
    plan = _plan()
    catalog.save("balance_plan", plan)
    assert catalog.load("balance_plan") == plan
    assert [p.name for p in (tmp_path / "05_model_input").iterdir()] == ["balance_plan.json"]


def test_a_record_of_another_type_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    dataset = RecordDataset(filepath=str(path), record_type=PLAN_TYPE)
    with pytest.raises(DatasetError, match="expected a BalancePlan, got AugmentationSpec"):
        dataset.save(make_spec("flip_crop"))
    with pytest.raises(DatasetError, match="expected a BalancePlan, got dict"):
        dataset.save(_plan().to_json())  # the record's data is not the record
    assert not path.exists()


def _old_plan() -> dict:
    """A plan as visrec wrote it before the plan was a record: the loss held focal_gamma."""
    data = _plan().to_json()
    data["loss"] = {"focal_gamma": 2.0, "logit_adjustment_tau": 1.0,
                    "log_prior": data["loss"]["log_prior"]}
    return data


@pytest.mark.parametrize("content", [
    _old_plan,
    lambda: make_spec("flip_crop").to_json(),
    lambda: [1, 2, 3],
], ids=["older plan", "another record", "a list"])
def test_a_file_of_another_shape_is_a_dataset_error_naming_the_file(tmp_path, content):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(content()), encoding="utf-8")
    dataset = RecordDataset(filepath=str(path), record_type=PLAN_TYPE)
    with pytest.raises(DatasetError, match=re.escape(f"'{path}' is not a BalancePlan")):
        dataset.load()


def test_a_file_that_is_not_json_is_a_dataset_error_naming_the_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text('{"strategy": "none", ', encoding="utf-8")  # cut short
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        RecordDataset(filepath=str(path), record_type=PLAN_TYPE).load()


def test_loading_a_missing_file_names_it(tmp_path):
    path = tmp_path / "nothing.json"
    dataset = RecordDataset(filepath=str(path), record_type=PLAN_TYPE)
    with pytest.raises(DatasetError, match=re.escape(f"no file at '{path}'")):
        dataset.load()


@pytest.mark.parametrize(("record_type", "message"), [
    ("visrec.core.balance.make_balance_plan", "is not a visrec.core.records.Record"),
    ("builtins.dict", "is not a visrec.core.records.Record"),
    ("visrec.core.balance.NoSuchPlan", "no such class"),
    ("no_such_package.Plan", "no such class"),
    ("BalancePlan", "no such class"),
])
def test_record_type_must_name_a_record(tmp_path, record_type, message):
    with pytest.raises(DatasetError, match=re.escape(f"record_type = {record_type!r}")) as info:
        RecordDataset(filepath=str(tmp_path / "x.json"), record_type=record_type)
    assert message in str(info.value)


def test_describe_names_file_and_type(tmp_path):
    dataset = RecordDataset(filepath=str(tmp_path / "plan.json"), record_type=PLAN_TYPE,
                            metadata={"owner": "ml"})
    assert dataset._describe() == {"filepath": str(tmp_path / "plan.json"),
                                   "record_type": PLAN_TYPE}
    assert dataset.metadata == {"owner": "ml"}
