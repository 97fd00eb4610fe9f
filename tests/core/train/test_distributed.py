"""Tests of ``fit`` in two CPU processes (torch's elastic launcher, gloo): every process
continues from rank 0's checkpoint, a finished run trains nothing again, and SWA's
BatchNorm update runs in every process (see tests/core/train/processes.py).

The runs are compared with one that was never stopped, bit for bit, as in
tests/core/train/test_checkpoint.py; the end-to-end version, killed with SIGKILL through
the CLI, is in tests/test_train_cli.py.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from tests.core.train.processes import fit_in_process
from visrec.core.train import (
    CheckpointStore,
    EmaSpec,
    FitConfig,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
)
from visrec.core.train.distributed import LaunchSpec, launch

pytestmark = pytest.mark.faults

TIMING_COLUMNS = ["seconds", "images_per_s", "data_wait"]
# SWA from the third epoch; the break after epoch 3 carries one average over.
CONFIG = FitConfig(epochs=5, optimizer=OptimizerSpec(lr=0.05),
                   schedule=ScheduleSpec("cosine", warmup_epochs=1),
                   swa=SwaSpec(start=2, lr=0.02, anneal_epochs=2), ema=EmaSpec(decay=0.9))
STOP = 3


def _launch(folder, stop_after: int | None = None) -> dict:
    return launch(LaunchSpec(nproc_per_node=2, run_id="test"), fit_in_process, CONFIG,
                  str(folder), stop_after)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A two-process run that was never stopped, and its checkpoint folder."""
    folder = tmp_path_factory.mktemp("unbroken")
    return _launch(folder), folder


def _assert_same_runs(result: dict, reference: dict) -> None:
    pd.testing.assert_frame_equal(result["history"].drop(columns=TIMING_COLUMNS),
                                  reference["history"].drop(columns=TIMING_COLUMNS),
                                  check_exact=True)
    assert result["weights"].keys() == reference["weights"].keys() == {"final", "swa", "ema"}
    for name, expected in reference["weights"].items():
        got = result["weights"][name]
        assert got.keys() == expected.keys(), name
        for key, tensor in expected.items():
            assert torch.equal(got[key], tensor), (name, key)


def test_the_unbroken_run_trains_every_epoch_and_averages(unbroken):
    result, folder = unbroken
    assert result["trained"] == [1, 2, 3, 4, 5]
    state = CheckpointStore(folder).load("run")
    assert state["epoch"] == CONFIG.epochs
    assert int(state["swa_model"]["n_averaged"]) == 3  # epochs 3, 4 and 5


def test_a_stopped_run_resumes_in_every_process_to_the_unbroken_result(unbroken, tmp_path):
    # Rank 0 raises after its checkpoint; the launcher reports whichever process it saw
    # fail first (the other one loses its partner).
    with pytest.raises(ChildFailedError):
        _launch(tmp_path, stop_after=STOP)
    state = CheckpointStore(tmp_path).load("run")
    assert state["epoch"] == STOP and int(state["swa_model"]["n_averaged"]) == 1

    resumed = _launch(tmp_path)
    assert resumed["trained"] == [4, 5]
    _assert_same_runs(resumed, unbroken[0])


def test_a_finished_run_trains_no_epoch_again(unbroken):
    result, folder = unbroken
    again = _launch(folder)
    assert again["trained"] == []  # no epoch ran on rank 0 (another rank's would time out)
    _assert_same_runs(again, result)
