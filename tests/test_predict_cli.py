"""`kedro run --pipeline=predict --params "predict.input=FOLDER"` on a trained project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.cli import kedro

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
