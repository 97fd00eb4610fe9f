"""The configuration loader: DVC's params.yaml applied over conf/ (and under
``kedro run --params``), so that ``dvc exp run -S training.epochs=2`` reaches the run; and
``visrec params``, which writes the values a run uses and keeps params.yaml's list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.cli import ENV, copy_project
from tests.conftest import PROJECT_ROOT
from visrec.config import (
    ConfigLoader,
    ParamsFileError,
    overrides,
    read_params_file,
    skeleton,
    synced_params_file,
)
from visrec.params import BLOCKS
from visrec.settings import CONFIG_LOADER_ARGS

VISREC = str(Path(sys.executable).with_name("visrec"))
ORDER = ["seed", *BLOCKS]


def _params_file(project: Path, text: str) -> Path:
    path = project / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _parameters(project: Path, env: str = "test", runtime: dict | None = None,
                loader: type[OmegaConfigLoader] = ConfigLoader) -> dict:
    return loader(str(project / "conf"), env=env, runtime_params=runtime,
                  **CONFIG_LOADER_ARGS)["parameters"]


def _base() -> dict:
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"),
                             **(CONFIG_LOADER_ARGS | {"default_run_env": "base"}))["parameters"]


def test_params_yaml_wins_over_conf_and_loses_to_runtime_params(tmp_path):
    project = copy_project(tmp_path)
    _params_file(project, "kedro_env: test\ntraining:\n  epochs: 2\n  lr: null\n"
                          "  schedule: {warmup_epochs: 0, min_lr: null}\nseed: 7\n")
    conf = _parameters(project, loader=OmegaConfigLoader)
    assert conf["training"]["epochs"] == 3  # conf/test over conf/base's
    used = _parameters(project)
    assert used["training"]["epochs"] == 2 and used["seed"] == 7
    assert used["training"]["schedule"]["warmup_epochs"] == 0
    # null leaves the value to conf/ (conf/test's model, conf/base's rate), key by key
    assert used["training"]["model"] == conf["training"]["model"] == "test_resnet"
    assert used["training"]["lr"] == conf["training"]["lr"]
    assert used["training"]["schedule"]["min_lr"] == conf["training"]["schedule"]["min_lr"]
    assert "kedro_env" not in used
    assert {key: value for key, value in used.items() if key not in ("training", "seed")} \
        == {key: value for key, value in conf.items() if key not in ("training", "seed")}
    runtime = _parameters(project, runtime={"training": {"epochs": 5}})
    assert runtime["training"]["epochs"] == 5 and runtime["seed"] == 7


@pytest.mark.parametrize("text", [None, "", "kedro_env: local\n"])
def test_without_values_the_loader_is_kedros(tmp_path, text):
    project = copy_project(tmp_path)
    if text is not None:
        _params_file(project, text)
    assert _parameters(project) == _parameters(project, loader=OmegaConfigLoader)


def test_the_committed_params_yaml_leaves_every_parameter_to_conf():
    assert _parameters(PROJECT_ROOT, env="base") == _base()
    assert overrides(read_params_file(PROJECT_ROOT / "params.yaml")) == {}


def test_the_committed_params_yaml_lists_every_parameter_of_conf_base():
    """`dvc exp run -S KEY=VALUE` takes only keys params.yaml has: `visrec params --sync`
    after a new parameter in conf/base."""
    path = PROJECT_ROOT / "params.yaml"
    assert path.read_text(encoding="utf-8") == synced_params_file(
        read_params_file(path), _base(), ORDER), "run `visrec params --sync`"


def test_a_session_runs_with_params_yaml(tmp_path):
    project = copy_project(tmp_path)
    _params_file(project, "training:\n  epochs: 2\n")
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        assert session.load_context().params["training"].epochs == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("training: [1, 2\n", "not valid YAML"),
    ("- training\n", "give a mapping of parameter names to values"),
])
def test_a_bad_params_yaml_is_named(tmp_path, text, expected):
    project = copy_project(tmp_path)
    path = _params_file(project, text)
    with pytest.raises(ParamsFileError, match=expected) as error:
        _parameters(project)
    assert str(path) in str(error.value)


def test_the_skeleton_keeps_values_and_adds_keys_under_a_null_leaf():
    tree = {"seed": 1, "training": {"epochs": 3, "loss": {"name": "ce", "options": {}}}}
    assert skeleton(tree, {}) == {
        "seed": None, "training": {"epochs": None, "loss": {"name": None, "options": None}}}
    kept = skeleton(tree, {"training.epochs": 2, "training.loss.options.gamma": 2.0,
                           "extra.key": [1]})
    assert kept["training"] == {"epochs": 2, "loss": {"name": None, "options": {"gamma": 2.0}}}
    assert kept["extra"] == {"key": [1]}


def _visrec(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VISREC, "params", *args], cwd=project, env=os.environ | ENV,
                          capture_output=True, text=True, check=False, timeout=300)


def test_visrec_params_writes_the_values_a_run_uses_and_syncs_the_list(tmp_path):
    project = copy_project(tmp_path)
    path = _params_file(project, "kedro_env: test\ntraining:\n  epochs: 2\n")
    written = _visrec(project, "--env", "test", "--out", "used.yml",
                      "--data-roots", "roots.yml")
    assert written.returncode == 0, written.stderr
    used = yaml.safe_load((project / "used.yml").read_text(encoding="utf-8"))
    assert used == _parameters(project)
    assert list(used) == ORDER
    assert used["training"]["epochs"] == 2 and used["training"]["model"] == "test_resnet"
    roots = yaml.safe_load((project / "roots.yml").read_text(encoding="utf-8"))
    assert roots == {"data_roots": {"images": used["ingestion"]["root"]}}

    synced = _visrec(project, "--sync")
    assert synced.returncode == 0, synced.stderr
    assert "1 set" in synced.stdout
    content = read_params_file(path)
    assert content["kedro_env"] == "test" and overrides(content) == {"training.epochs": 2}
    assert content["training"]["lr"] is None and content["class_balance"]["strategy"] is None
    assert "up to date" in _visrec(project, "--sync").stdout


def test_visrec_params_stops_on_a_bad_value_naming_it(tmp_path):
    project = copy_project(tmp_path)
    _params_file(project, "training:\n  epochs: 0\n")
    result = _visrec(project, "--env", "test", "--out", "used.yml")
    assert result.returncode == 1
    assert "training.epochs" in result.stderr, result.stderr
    assert not (project / "used.yml").exists()
