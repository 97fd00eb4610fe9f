"""Helpers of the end-to-end tests: a throwaway copy of the project and the real kedro CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import PROJECT_ROOT

KEDRO = str(Path(sys.executable).with_name("kedro"))
ENV = {"KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "COLUMNS": "200"}


def kedro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the kedro CLI in ``project``; fail the test with its output when it fails."""
    result = subprocess.run([KEDRO, *args], cwd=project, env=os.environ | ENV,
                            capture_output=True, check=False, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(f"kedro {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def kedro_process(project: Path, *args: str, log: Path) -> subprocess.Popen:
    """Start the kedro CLI in ``project`` in its own process group, output to ``log``."""
    with log.open("w") as stream:
        return subprocess.Popen([KEDRO, *args], cwd=project, env=os.environ | ENV,
                                stdout=stream, stderr=subprocess.STDOUT,
                                start_new_session=True)


def copy_project(root: Path) -> Path:
    """A throwaway project in ``root``: the repository's pyproject and conf, no data."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf",
                    ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # Kedro checks it exists; visrec is imported from the install
    return root


def wait_for_checkpoint(path: Path, epoch: int, process: subprocess.Popen,
                        timeout: float = 600) -> dict:
    """The checkpoint at ``path`` once it holds epoch ``epoch`` or later (read with
    ``weights_only=True``), while ``process`` still runs; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        if path.is_file():
            try:
                state = torch.load(path, weights_only=True)
            except (EOFError, RuntimeError):  # pragma: no cover - rename is atomic
                state = None
            if state is not None and state["epoch"] >= epoch:
                return state
        time.sleep(0.05)
    pytest.fail(f"no checkpoint of epoch {epoch} within {timeout} s")
