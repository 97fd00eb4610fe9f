"""Nothing leaves the machine unless the user opts in: the project's committed
``.telemetry`` refuses Kedro's telemetry, and the repository's DVC config turns DVC's
analytics and update check off, without the environment variables that `make` and CI set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from dvc import analytics
from dvc.config import Config, to_bool
from kedro_telemetry.plugin import _check_for_telemetry_consent

from tests.cli import KEDRO, copy_project
from tests.conftest import PROJECT_ROOT

OPT_OUTS = ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS", "DVC_TEST")


@pytest.fixture
def no_opt_out_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPT_OUTS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_opt_out_environment")
def test_the_project_refuses_kedro_telemetry(tmp_path: Path):
    assert _check_for_telemetry_consent(PROJECT_ROOT) is False
    # Without the file Kedro takes consent as given: the file is what opts out.
    assert _check_for_telemetry_consent(tmp_path) is None


@pytest.mark.usefixtures("no_opt_out_environment")
def test_dvc_analytics_and_update_check_are_off(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(PROJECT_ROOT)
    assert analytics.is_enabled() is False
    repository = Config.from_cwd(validate=False)
    assert to_bool(repository["core"]["check_update"]) is False
    tracked = (PROJECT_ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in tracked and "check_update = false" in tracked


@pytest.mark.slow
def test_a_kedro_command_without_the_environment_opt_out_writes_no_telemetry_id(
        tmp_path: Path):
    """With consent Kedro's telemetry writes a user id under ~/.config/kedro and a project
    id into pyproject.toml before it sends; the committed opt-out leaves both alone."""
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    before = (project / "pyproject.toml").read_text()
    home = tmp_path / "home"
    environment = {name: value for name, value in os.environ.items() if name not in OPT_OUTS}
    result = subprocess.run([KEDRO, "registry", "list"], cwd=project, capture_output=True,
                            text=True, timeout=300, check=False,
                            env=environment | {"HOME": str(home), "XDG_CONFIG_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "metric_learning" in result.stdout
    assert (project / "pyproject.toml").read_text() == before
    assert not list(home.rglob("telemetry.toml"))
    assert "telemetry" not in (result.stdout + result.stderr).lower()
