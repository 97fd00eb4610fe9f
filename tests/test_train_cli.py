"""Training through the real CLI: a run killed mid-epoch resumes to the same result, in one
process and in two (torch elastic launch, gloo, CPU); a finished two-process run is not
trained again; and two CPU processes train as well as one."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from tests.cli import assert_same_results, copy_project, kedro, kill_mid_epoch_then_resume
from tests.hub import ARCHITECTURE, REPO_ID, offline_env, write_hub_cache

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

TIMING = ["seconds", "images_per_s", "data_wait"]
CHECKPOINT = "data/06_models/checkpoints/last.pt"
# Long enough epochs (about a second each on 2 cores) to be killed in the middle of one.
RESUMABLE = "training.model=resnet10t,training.epochs=5,training.ema.enabled=true"
TWO_PROCESSES = f"{RESUMABLE},training.devices=2"
RUN = ["run", "--env", "test", "--pipelines=training,evaluation", "--params"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the demo images ingested and balanced, the configured policy and
    recipe (tuning off: every test trains the same settings)."""
    project = copy_project(tmp_path_factory.mktemp("train_cli"))
    kedro(project, "run", "--env", "test", "--pipelines=demo_data")
    kedro(project, "run", "--env", "test",
          "--pipelines=ingestion,class_balance,augmentation,tuning", "--params",
          "tuning.enabled=false")
    return project


def _results(project: Path) -> dict:
    """History (without timings), weights of every set, and test metrics."""
    history = pd.read_csv(project / "data/08_reporting/training_history.csv")
    models = project / "data/06_models/classifier"
    return {"history": history.drop(columns=TIMING),
            "weights": {folder.name: load_file(folder / "model.safetensors")
                        for folder in sorted(models.iterdir())},
            "metrics": json.loads((project / "data/08_reporting/metrics.json").read_text())}


def test_sigkill_mid_epoch_then_resume_auto_gives_the_same_results(prepared, tmp_path):
    kedro(prepared, *RUN, f"{RESUMABLE},training.resume=never")
    reference = _results(prepared)

    (prepared / CHECKPOINT).unlink()
    kill_mid_epoch_then_resume(prepared, RUN, RESUMABLE, CHECKPOINT, tmp_path / "killed.log")
    assert_same_results(_results(prepared), reference)


@pytest.fixture(scope="module")
def two_process_run(prepared: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[dict, Path, str]:
    """The results of an unbroken two-process run, a copy of its last checkpoint, and its
    output."""
    result = kedro(prepared, *RUN, f"{TWO_PROCESSES},training.resume=never")
    finished = tmp_path_factory.mktemp("two_processes") / "last.pt"
    shutil.copy(prepared / CHECKPOINT, finished)
    return _results(prepared), finished, result.stdout + result.stderr


@pytest.mark.faults
def test_two_processes_killed_mid_epoch_resume_to_the_same_results(prepared, two_process_run,
                                                                  tmp_path):
    reference, _, _ = two_process_run
    (prepared / CHECKPOINT).unlink()
    kill_mid_epoch_then_resume(prepared, RUN, TWO_PROCESSES, CHECKPOINT,
                               tmp_path / "killed.log")
    assert_same_results(_results(prepared), reference)


@pytest.mark.faults
def test_a_finished_two_process_run_is_not_trained_again(prepared, two_process_run):
    reference, finished, trained = two_process_run
    shutil.copy(finished, prepared / CHECKPOINT)
    start = time.monotonic()
    again = kedro(prepared, *RUN, TWO_PROCESSES)
    logger.info("a finished two-process run ran again in %.1f s", time.monotonic() - start)
    output = again.stdout + again.stderr
    assert "resuming after epoch 5 of 5" in output and "every epoch is done" in output
    epoch_line = re.compile(r"epoch (\d)/5 ")  # rank 0 logs every epoch it trains
    assert epoch_line.findall(trained) == list("12345")
    assert epoch_line.findall(output) == [], output[-3000:]
    assert_same_results(_results(prepared), reference)


def test_two_cpu_processes_train_the_demo_as_well_as_one(prepared):
    # The demo recipe (conf/base: resnet18, SWA, EMA), 2 processes of 32 images per step
    # against 1 of 64: the same global batch, learning rate and epochs.
    scores = {}
    for devices in (1, 2):
        result = kedro(prepared, "run", "--pipelines=training,evaluation", "--params",
                       f"training.devices={devices},training.resume=never")
        if devices == 2:
            assert "launching 2 training processes" in result.stdout + result.stderr
        metrics = json.loads((prepared / "data/08_reporting/metrics.json").read_text())
        scores[devices] = {name: values["balanced_accuracy"]
                           for name, values in metrics.items()}
    logger.info("test balanced accuracy by training.devices: %s", scores)
    for name in ("final", "swa", "ema"):
        assert abs(scores[2][name] - scores[1][name]) <= 0.03, scores
    assert scores[1]["swa"] > 0.9, scores


def test_pretrained_hub_weights_train_offline_from_the_cache(prepared, tmp_path):
    """``training.pretrained=true`` with ``HF_HUB_OFFLINE=1``: without the weights in the
    cache the run stops before any node, naming the model and what to do; with them
    cached it trains from them."""
    cache = tmp_path / "hub"
    pretrained = ["run", "--env", "test", "--pipelines=training", "--params",
                  "training.pretrained=true,training.resume=never"]
    stopped = kedro(prepared, *pretrained, check=False, env=offline_env(cache))
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert (f"training.pretrained = true: the pretrained weights of '{ARCHITECTURE}' (hub "
            f"repository {REPO_ID}) are not in the Hugging Face cache") in " ".join(output.split())
    assert "Running node" not in output and "Completed node" not in output

    write_hub_cache(cache)
    trained = kedro(prepared, *pretrained, env=offline_env(cache))
    assert "Completed node: train_model" in " ".join((trained.stdout + trained.stderr).split())
    history = pd.read_csv(prepared / "data/08_reporting/training_history.csv")
    assert len(history) >= 1
