"""Helpers of the end-to-end tests: a throwaway copy of the project and the real kedro CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import PROJECT_ROOT

KEDRO = str(Path(sys.executable).with_name("kedro"))
ENV = {"KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "COLUMNS": "200"}


def kedro(project: Path, *args: str, check: bool = True,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the kedro CLI in ``project`` (in ``env``, by default this process's); fail the
    test with its output when it fails."""
    result = subprocess.run([KEDRO, *args], cwd=project, env=(env or os.environ) | ENV,
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
    """A throwaway project in ``root``: the repository's pyproject, telemetry opt-out and
    conf, no data."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copy(PROJECT_ROOT / ".telemetry", root)
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


def kill_mid_epoch_then_resume(project: Path, run: list[str], params: str, checkpoint: str,
                               log: Path, epochs: int = 5) -> None:
    """Start ``kedro <run> <params>``, SIGKILL its process group in the epoch after the
    second checkpoint, then rerun it: the rerun must resume from the checkpoint."""
    process = kedro_process(project, *run, params, log=log)
    state = wait_for_checkpoint(project / checkpoint, 2, process)
    # Into epoch 3: a quarter of an epoch (the checkpoint's history has the epochs'
    # durations), at most 0.2 s, so that a loaded machine, slow to see the checkpoint,
    # still kills before the run ends.
    time.sleep(min(json.loads(state["history"])[-1]["seconds"] / 4, 0.2))
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    killed_at = torch.load(project / checkpoint, weights_only=True)["epoch"]
    assert 2 <= killed_at < epochs, log.read_text()[-3000:]
    resumed = kedro(project, *run, params)
    assert f"resuming after epoch {killed_at} of {epochs}" in resumed.stdout + resumed.stderr


def assert_same_results(result: dict, reference: dict) -> None:
    """Two runs' ``history`` (timings dropped), ``weights`` (by weight set) and ``metrics``
    are equal, tensors bit for bit."""
    pd.testing.assert_frame_equal(result["history"], reference["history"], check_exact=True)
    assert result["weights"].keys() == reference["weights"].keys() == {"final", "swa", "ema"}
    for name, weights in reference["weights"].items():
        assert weights.keys() == result["weights"][name].keys(), name
        for key, tensor in weights.items():
            assert torch.equal(result["weights"][name][key], tensor), (name, key)
    assert result["metrics"] == reference["metrics"]
