"""dvc.yaml wraps the Kedro pipelines: one stage per stage of `train` and `metric_learning`,
each running its pipeline, with the files the next stage reads among its outputs."""

from __future__ import annotations

import yaml

from tests.conftest import PROJECT_ROOT
from visrec.pipeline_registry import TRAIN_STAGES

DVC_YAML = PROJECT_ROOT / "dvc.yaml"


def _stages() -> dict:
    return yaml.safe_load(DVC_YAML.read_text(encoding="utf-8"))["stages"]


def _paths(entries: list) -> set[str]:
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


def test_every_stage_of_train_runs_its_pipeline():
    stages = _stages()
    assert {*TRAIN_STAGES, "demo_data", "metric_learning"} <= set(stages)
    for name in TRAIN_STAGES:
        assert stages[name]["cmd"] == f"kedro run --env ${{kedro_env}} --pipelines={name}"


def test_the_tuning_hands_its_choice_to_training():
    stages = _stages()
    tuned = "data/05_model_input/tuned_parameters.yml"
    assert tuned in _paths(stages["tuning"]["outs"])
    assert tuned in stages["training"]["deps"]
    # The study is kept between runs (a killed search resumes), not cached.
    study = next(entry for entry in stages["tuning"]["outs"]
                 if isinstance(entry, dict) and "data/07_model_output/tuning/study.db" in entry)
    assert study["data/07_model_output/tuning/study.db"] == {"cache": False, "persist": True}


def test_every_dependency_of_a_stage_is_made_by_an_earlier_one_or_is_a_source():
    stages = _stages()
    made: set[str] = set()
    for name, stage in stages.items():
        for dependency in stage.get("deps", []):
            if dependency.startswith("data/") and not dependency.startswith("data/01_raw"):
                assert dependency in made, (name, dependency)
        made |= _paths(stage.get("outs", [])) | _paths(stage.get("metrics", []))


def test_the_served_models_are_dvc_model_artifacts():
    """`artifacts:` names each served model folder, an output of its stage, as a model
    with a description (what `dvc artifacts get` and DVC Studio's registry read)."""
    from dvc.repo import Repo

    artifacts = Repo(str(PROJECT_ROOT)).artifacts.read()["dvc.yaml"]
    stages = _stages()
    outputs = set().union(*(_paths(stage.get("outs", [])) for stage in stages.values()))
    assert {name: artifact.path for name, artifact in artifacts.items()} == {
        "classifier": "data/06_models/served", "embedder": "data/06_models/embedder_served"}
    for name, artifact in artifacts.items():
        assert artifact.type == "model" and len(artifact.desc) > 40, name
        assert artifact.path in outputs, name


def test_the_readme_figures_are_committed_dvc_outputs():
    """The README's figures are in git (a fresh clone shows them) and are outputs of their
    stage kept out of DVC's cache, so that `make run` / `dvc repro` redraws them."""
    import re
    import subprocess

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    figures = re.findall(r'<img src="(data/[^"]+\.png)"', readme)
    assert len(figures) >= 4, figures
    tracked = subprocess.run(["git", "ls-files", *figures], cwd=PROJECT_ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    assert sorted(tracked) == sorted(figures)
    outputs = {}
    for stage in _stages().values():
        for entry in stage.get("outs", []):
            if isinstance(entry, dict):
                outputs |= entry
    for figure in figures:
        assert outputs.get(figure) == {"cache": False}, figure


def test_the_stages_track_the_parameters_a_run_uses():
    """The first stage writes every parameter a run uses (conf/, then params.yaml) and the
    image folder; the others track their keys there, so `dvc exp show` reports the values
    used whichever layer set them. Both files are committed: each experiment's commit has
    them, and DVC reads the folder from the second before any stage runs."""
    import subprocess

    stages = _stages()
    first, *others = stages
    assert first == "parameters"
    written = {"data/05_model_input/parameters.yml", "data/05_model_input/data_roots.yml"}
    assert stages[first]["outs"] == [{path: {"cache": False}} for path in sorted(written)[::-1]]
    assert stages[first]["params"] == [{"params.yaml": None}]
    for name in others:
        assert _paths(stages[name].get("params", [])) <= {"data/05_model_input/parameters.yml"}
    assert "${data_roots.images}" in stages["ingestion"]["deps"]
    vars_ = yaml.safe_load(DVC_YAML.read_text(encoding="utf-8"))["vars"]
    assert "data/05_model_input/data_roots.yml" in vars_
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              *written], cwd=PROJECT_ROOT, check=True, capture_output=True,
                             text=True).stdout.split()
    assert set(tracked) == written
