"""`kedro run --pipeline=predict --params "predict.input=FOLDER"` on a trained project."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.cli import ENV, kedro

pytestmark = pytest.mark.slow


def test_predict_folder_with_corrupt_and_text_files(trained_project: Path, tmp_path: Path):
    """Valid images (nested and flat), a corrupt PNG and a text file: 3 predictions, 2
    failures with reasons, exit code 0."""
    test_images = trained_project / "data/01_raw/demo/test"
    chosen = {label: sorted((test_images / label).glob("*.png"))[0] for label in ("0", "3", "7")}
    new = tmp_path / "new images"  # a space in the path, as users' folders have
    (new / "batch" / "day 2").mkdir(parents=True)
    shutil.copy(chosen["0"], new / "flat.png")
    shutil.copy(chosen["3"], new / "batch" / "three.png")
    shutil.copy(chosen["7"], new / "batch" / "day 2" / "seven.png")
    (new / "batch" / "broken.png").write_bytes(chosen["7"].read_bytes()[:80])
    (new / "readme.txt").write_text("these are new scans\n")
    result = kedro(trained_project, "run", "--env", "test", "--pipeline=predict",
                   "--params", f"predict.input={new}")
    assert "2 files could not be read" in result.stdout + result.stderr
    output = trained_project / "data/07_model_output"
    predictions = pd.read_csv(output / "predictions.csv", dtype={"label_1": str})
    failures = pd.read_csv(output / "prediction_failures.csv")
    assert predictions["path"].tolist() == ["batch/day 2/seven.png", "batch/three.png",
                                            "flat.png"]
    assert failures.set_index("path")["reason"].to_dict() == {
        "batch/broken.png": "truncated", "readme.txt": "not_an_image"}
    # Calibrated probabilities of the top-5 labels, in decreasing order, summing to <= 1.
    probabilities = predictions[[f"probability_{k}" for k in range(1, 6)]].to_numpy()
    assert (probabilities[:, :-1] >= probabilities[:, 1:]).all()
    assert (probabilities.sum(axis=1) <= 1 + 1e-5).all()
    # The served weights classify these clean test digits as their test predictions did.
    served = json.loads((trained_project / "data/06_models/served/config.json").read_text())
    tested = pd.read_csv(trained_project / "data/08_reporting/test_predictions.csv",
                         dtype=str).set_index("path")
    for path, label in (("batch/day 2/seven.png", "7"), ("batch/three.png", "3"),
                        ("flat.png", "0")):
        source = chosen[label].relative_to(trained_project / "data/01_raw/demo").as_posix()
        row = predictions.set_index("path").loc[path]
        assert row["label_1"] == tested.loc[source, f"predicted_{served['served_from']}"]
        assert row["probability_1"] == pytest.approx(
            float(tested.loc[source, f"confidence_{served['served_from']}"]), abs=1e-4)


def test_predict_without_input_names_the_parameter(trained_project: Path):
    result = kedro(trained_project, "run", "--env", "test", "--pipeline=predict", check=False)
    assert result.returncode != 0
    assert "predict.input is not set" in result.stdout + result.stderr


VISREC = str(Path(sys.executable).with_name("visrec"))


def _visrec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([VISREC, *args], cwd=cwd, env=os.environ | ENV, capture_output=True,
                          text=True, timeout=600, check=False)


def test_visrec_predict_from_anywhere_writes_where_asked(trained_project: Path, tmp_path: Path):
    """`visrec predict FOLDER --out FILE`: the project found upward from the working
    directory, or given with --project; relative paths taken from the working directory."""
    source = trained_project / "data/01_raw/demo/test/4"
    new = tmp_path / "inbox"
    new.mkdir()
    for image in sorted(source.glob("*.png"))[:3]:
        shutil.copy(image, new / image.name)
    (new / "notes.txt").write_text("not an image\n")

    inside = trained_project / "data" / "01_raw"  # below the project root: found upward
    umask = os.umask(0o022)
    try:
        result = _visrec("predict", str(new), "--out", str(tmp_path / "out/inside.csv"),
                         cwd=inside)
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"3 images classified into {tmp_path / 'out/inside.csv'}; 1 files could not be "
            f"read (reasons in {tmp_path / 'out/inside_failures.csv'})") in result.stdout
    inside_table = pd.read_csv(tmp_path / "out/inside.csv", dtype={"label_1": str})
    assert stat.S_IMODE((tmp_path / "out/inside.csv").stat().st_mode) == 0o644  # not 0600
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inside.csv",
                                                                   "inside_failures.csv"]
    assert sorted(inside_table["path"]) == sorted(p.name for p in new.glob("*.png"))
    failures = pd.read_csv(tmp_path / "out/inside_failures.csv")
    assert failures.set_index("path")["reason"].to_dict() == {"notes.txt": "not_an_image"}

    # Elsewhere, with --project, and the input and output relative to the working directory.
    result = _visrec("predict", "inbox", "--out", "elsewhere.csv", "--top-k", "2",
                     "--project", str(trained_project), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    elsewhere = pd.read_csv(tmp_path / "elsewhere.csv", dtype={"label_1": str})
    assert list(elsewhere.columns) == ["path", "label_1", "probability_1", "label_2",
                                       "probability_2"]
    assert elsewhere["label_1"].tolist() == inside_table["label_1"].tolist()

    # Outside any project, without --project: the command says what to do.
    outside = _visrec("predict", "inbox", "--out", "x.csv", cwd=tmp_path)
    assert outside.returncode != 0
    assert f"no visrec project in {tmp_path} or above it" in outside.stderr
    assert "--project DIR" in outside.stderr
