"""`dvc exp run -S <kedro key>=<value>` reaches the parameters a run uses, and
`dvc exp show` reports them; a bad value stops the experiment at its first stage.

In a throwaway git repository made from this checkout's files (as .ci/run does), the
experiment runs the first stage, `parameters`, which every other stage reads its keys from;
.ci/run runs the whole pipeline so on the CI configuration and checks the training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli import ENV
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
USED = "data/05_model_input/parameters.yml"


def _run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    environment = os.environ | ENV | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                            check=False, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository with this checkout's files (tracked, and new ones not ignored)."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  PROJECT_ROOT).stdout.split("\0")
    repo = tmp_path / "visrec"
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _run(["git", "init", "--quiet"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit",
          "--quiet", "-m", "copy"], repo)
    return repo


def _experiments(repo: Path) -> dict[str, dict]:
    """``dvc exp show``'s parameters of each experiment, by name (the baseline: "HEAD")."""
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo).stdout)
    baseline = next(entry for entry in shown if entry["rev"] != "workspace")
    found = {"HEAD": baseline["data"]["params"]}
    for experiment in baseline.get("experiments") or []:
        for revision in experiment["revs"]:
            found[revision["name"]] = revision["data"]["params"]
    return found


def test_a_kedro_key_set_by_dvc_reaches_the_run_and_dvc_exp_show(repository):
    committed = yaml.safe_load((repository / USED).read_text(encoding="utf-8"))
    assert committed["training"]["epochs"] != 2
    _run(["dvc", "exp", "run", "--name", "two-epochs", "-S", "training.epochs=2",
          "-S", "kedro_env=test", "parameters"], repository)

    used = yaml.safe_load((repository / USED).read_text(encoding="utf-8"))
    assert used["training"]["epochs"] == 2
    assert used["training"]["model"] == "test_resnet"  # conf/test, under params.yaml
    shown = _experiments(repository)
    experiment = shown["two-epochs"]
    assert experiment["params.yaml"]["data"]["training"]["epochs"] == 2
    assert experiment["params.yaml"]["data"]["kedro_env"] == "test"
    assert experiment[USED]["data"]["training"]["epochs"] == 2
    assert experiment[USED]["data"]["training"]["model"] == "test_resnet"
    assert shown["HEAD"][USED]["data"]["training"]["epochs"] == committed["training"]["epochs"]
    assert shown["HEAD"]["params.yaml"]["data"]["training"]["epochs"] is None


def test_a_bad_value_stops_the_experiment_naming_the_key(repository):
    result = _run(["dvc", "exp", "run", "-S", "training.epochs=0", "parameters"], repository,
                  check=False)
    assert result.returncode != 0
    assert "training.epochs = 0" in result.stdout + result.stderr
