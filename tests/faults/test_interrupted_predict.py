"""A `kedro run --pipelines=predict` killed half-way (SIGKILL) leaves the rows done so far
readable in predictions.csv.partial; run again, it does only the rest and ends with the
tables an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.cli import copy_project, kedro, kedro_process
from tests.conftest import write_png
from tests.pipelines.served import served_artifact
from visrec.datasets import SafetensorsModelDataset

pytestmark = [pytest.mark.faults, pytest.mark.slow]

IMAGES = 2000  # good ones; two bad files besides
OUTPUT = "data/07_model_output"


def _project(root: Path) -> tuple[Path, Path]:
    """A project whose served model is made by hand (no training), and a folder of
    ``IMAGES`` PNGs with a corrupt one and a text file among them."""
    (root / "project").mkdir()
    project = copy_project(root / "project")
    SafetensorsModelDataset(str(project / "data/06_models/served")).save(served_artifact())
    images = root / "images"
    for index in range(IMAGES):
        write_png(images / f"{index // 100:02d}" / f"{index:04d}.png", (32, 32), seed=index)
    (images / "05" / "0500b.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (images / "15" / "notes.txt").write_text("not an image\n")
    return project, images


def _committed(project: Path, table: str) -> int:
    """Rows committed to ``table``'s partial file (0 when there is none yet)."""
    try:
        state = json.loads((project / OUTPUT / f"{table}.partial.json").read_text())
    except (OSError, ValueError):  # not written yet, or being renamed into place
        return 0
    return state["rows"]


def _kill_when_some_rows_are_done(project: Path, params: str, log: Path,
                                  rows: int = 500) -> None:
    """Start the predict run and SIGKILL its process group once ``rows`` are committed."""
    process = kedro_process(project, "run", "--env", "test", "--pipelines=predict",
                            "--params", params, log=log)
    deadline = time.monotonic() + 600
    while _committed(project, "predictions.csv") < rows:
        assert process.poll() is None, f"predict ended before it was killed:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def test_a_killed_predict_leaves_its_rows_and_the_rerun_does_only_the_rest(tmp_path: Path):
    project, images = _project(tmp_path)
    params = (f"predict.input={images},predict.chunk_size=100,predict.batch_size=50,"
              "predict.num_workers=0")
    output = project / OUTPUT
    kedro(project, "run", "--env", "test", "--pipelines=predict", "--params", params)
    reference = {name: pd.read_csv(output / name, dtype=str, keep_default_na=False)
                 for name in ("predictions.csv", "prediction_failures.csv")}
    shutil.rmtree(output)

    _kill_when_some_rows_are_done(project, params, tmp_path / "killed.log")
    assert not (output / "predictions.csv").exists()
    # The rows done so far are readable, whole, and as the uninterrupted run wrote them.
    done = _committed(project, "predictions.csv")
    failed = _committed(project, "prediction_failures.csv")
    assert 500 <= done < IMAGES, done
    partial = pd.read_csv(output / "predictions.csv.partial", dtype=str,
                          keep_default_na=False, nrows=done)
    assert len(partial) == done
    pd.testing.assert_frame_equal(partial, reference["predictions.csv"].head(done))

    rerun = kedro(project, "run", "--env", "test", "--pipelines=predict", "--params", params)
    log = " ".join((rerun.stdout + rerun.stderr).split())
    assert f"{done + failed} of {IMAGES + 2} files already done" in log, log[-3000:]
    classified = re.search(r"predict: (\d+) images classified", log)
    assert classified is not None and int(classified.group(1)) == IMAGES - done
    for name, table in reference.items():
        pd.testing.assert_frame_equal(
            pd.read_csv(output / name, dtype=str, keep_default_na=False), table)
    assert sorted(path.name for path in output.iterdir()) == ["prediction_failures.csv",
                                                              "predictions.csv"]
