"""Two `kedro run --pipelines=ingestion` started together on one project: both end, one
refuses with a message naming the other (or runs after it), and every manifest row's cache
slot holds that file's pixels. Without the data folder lock most rows pointed at another
image's pixels."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli import ENV, KEDRO, copy_project
from tests.conftest import write_png
from visrec.core.data import read_cache
from visrec.core.images import fit_square, load_image

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BUSY = "is in use by another visrec run (process "


def _project(tmp_path: Path, images: int, classes: int, size: tuple[int, int]
             ) -> tuple[Path, Path, list[str]]:
    """A project copy, a folder of noise PNGs, and the command that ingests it."""
    folder = tmp_path / "images"
    for i in range(images):
        write_png(folder / f"class{i % classes}" / f"{i:03d}.png", size, seed=i)
    project = tmp_path / "project"
    project.mkdir()
    copy_project(project)
    return folder, project, [KEDRO, "run", "--pipelines=ingestion", "--params",
                             f"ingestion.root={folder}"]


def test_two_ingestions_at_once_leave_a_consistent_cache(tmp_path: Path):
    images, project, command = _project(tmp_path, 400, 4, (40, 32))
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    processes = []
    for log in logs:
        with log.open("w") as stream:
            processes.append(subprocess.Popen(command, cwd=project, env=os.environ | ENV,
                                              stdout=stream, stderr=subprocess.STDOUT))
    codes = [process.wait(timeout=900) for process in processes]
    outputs = [log.read_text() for log in logs]
    assert 0 in codes, outputs
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0 or (BUSY in output and "Running node" not in output), output[-3000:]
    manifest = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    cache = read_cache(project / "data/04_feature/image_cache")
    assert len(manifest) == 400 and (manifest["cache_index"] >= 0).all()
    for path, slot in zip(manifest["path"], manifest["cache_index"], strict=True):
        expected = fit_square(load_image(images / path), cache.settings.resolution)
        np.testing.assert_array_equal(cache.pixels[slot], expected, err_msg=path)


def test_training_refuses_a_manifest_left_behind_by_a_failed_ingestion(tmp_path: Path):
    """Ingestion commits the packed cache, then writes the manifest; when it fails in
    between (here: one class left), the old manifest points into a compacted pool."""
    images, project, ingestion = _project(tmp_path, 30, 3, (24, 24))
    first = subprocess.run(ingestion, cwd=project, env=os.environ | ENV, capture_output=True,
                           text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    for label in ("class1", "class2"):
        for path in (images / label).iterdir():
            path.unlink()
    failed = subprocess.run(ingestion, cwd=project, env=os.environ | ENV, capture_output=True,
                            text=True, timeout=600, check=False)
    assert failed.returncode != 0 and "found 1 class" in failed.stdout + failed.stderr
    training = subprocess.run([KEDRO, "run", "--pipelines=training", "--env", "test"],
                              cwd=project, env=os.environ | ENV, capture_output=True,
                              text=True, timeout=600, check=False)
    output = " ".join((training.stdout + training.stderr).split())
    assert training.returncode != 0
    assert "the manifest does not match the packed cache" in output, output[-3000:]
    assert "Run ingestion again (kedro run --pipelines=ingestion)" in output
    assert "Running node" not in output
