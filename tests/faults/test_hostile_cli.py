"""The fault suite through the real CLI: `kedro run --pipelines=train` and then
`--pipelines=predict` on the hostile folder both exit 0 without a traceback, list every bad
file with its reason, and never start Ghostscript (a recording stand-in is first on PATH)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.cli import ENV, KEDRO, copy_project
from tests.hostile import Hostile, ghostscript_stand_in, make_hostile_folder

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _run(project: Path, path: str, *args: str) -> str:
    result = subprocess.run([KEDRO, "run", "--env", "test", *args], cwd=project,
                            env=os.environ | ENV | {"PATH": path}, capture_output=True,
                            text=True, timeout=1200, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    return output


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Hostile, Path]:
    root = tmp_path_factory.mktemp("hostile")
    hostile = make_hostile_folder(root / "in")
    project = root / "project"
    project.mkdir()
    copy_project(project)
    path, record = ghostscript_stand_in(root / "bin")
    _run(project, path, "--pipelines=train", "--params", f"ingestion.root={hostile.root}")
    _run(project, path, "--pipelines=predict", "--params", f"predict.input={hostile.root}")
    return project, hostile, record


def test_train_lists_every_hostile_file_with_its_reason(hostile_runs):
    project, hostile, _ = hostile_runs
    quarantine = pd.read_csv(project / "data/08_reporting/quarantine.csv", dtype=str,
                             keep_default_na=False)
    assert dict(zip(quarantine["path"], quarantine["reason"], strict=True)) == hostile.bad
    manifest = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    assert set(manifest["path"]) == hostile.valid


def test_predict_lists_every_hostile_file_with_its_reason(hostile_runs):
    project, hostile, _ = hostile_runs
    failures = pd.read_csv(project / "data/07_model_output/prediction_failures.csv",
                           dtype=str, keep_default_na=False)
    assert dict(zip(failures["path"], failures["reason"], strict=True)) == hostile.bad
    predictions = pd.read_csv(project / "data/07_model_output/predictions.csv")
    assert set(predictions["path"]) == hostile.valid


def test_ghostscript_never_started(hostile_runs):
    _, _, record = hostile_runs
    assert not record.exists()
