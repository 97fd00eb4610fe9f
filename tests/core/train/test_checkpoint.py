"""Tests of crash-safe checkpoints (visrec.core.train.checkpoint) and resuming ``fit`` from
them (the distributed ``ShardedSampler`` that resumed epochs rely on is tested in
tests/core/data/test_sharded_sampler.py).

Resuming is checked the strong way: a run stopped after two epochs and continued in a
new model must end with exactly the weights (final, SWA, EMA) and history of a run
that was never stopped.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from tests.core.conftest import colour_tensors
from visrec.core.augment import MixSpec
from visrec.core.data import make_loader
from visrec.core.models import make_classifier
from visrec.core.train import (
    CheckpointStore,
    ClassificationTask,
    EmaSpec,
    FitConfig,
    LossSpec,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
    fingerprint,
    fit,
    rng_state,
    set_rng_state,
    source_digest,
)

CPU = torch.device("cpu")
CLASSES = 3
BATCH = 8
TIMING_COLUMNS = ["seconds", "images_per_s", "data_wait"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- CheckpointStore ---------------------------------------------------------------------------


def _state(value: float, mark: str = "a") -> dict:
    return {"fingerprint": mark, "epoch": 3, "model": {"w": torch.full((2, 3), value)},
            "history": '[{"epoch": 1}]', "numbers": [1, 2.5, "x"], "none": None}


def test_save_load_round_trip(tmp_path):
    store = CheckpointStore(tmp_path / "new" / "folder")  # made on the first save
    assert store.load("a") is None  # nothing saved yet
    store.save(_state(1.5))
    assert store.path == tmp_path / "new" / "folder" / "last.pt"
    loaded = store.load("a")
    assert loaded is not None
    assert torch.equal(loaded["model"]["w"], torch.full((2, 3), 1.5))
    assert {k: v for k, v in loaded.items() if k != "model"} == {
        k: v for k, v in _state(1.5).items() if k != "model"}
    store.save(_state(2.0))  # replaces the previous one
    assert float(store.load("a")["model"]["w"][0, 0]) == 2.0
    assert [p.name for p in store.folder.iterdir()] == ["last.pt"]
    store.clear()
    assert store.load("a") is None
    store.clear()  # clearing twice is fine


def test_load_with_another_fingerprint_is_none(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(_state(1.0, mark="settings-a"))
    with caplog.at_level(logging.INFO, logger="visrec.core.train.checkpoint"):
        assert store.load("settings-b") is None
    assert "other settings" in caplog.text
    assert store.load("settings-a") is not None  # still there


def test_truncated_checkpoint_is_ignored_with_a_warning(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(_state(1.0))
    whole = store.path.read_bytes()
    for cut in (len(whole) // 2, 10, 0):
        store.path.write_bytes(whole[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="visrec.core.train.checkpoint"):
            assert store.load("a") is None, cut
        assert "unreadable" in caplog.text, cut


class _Arbitrary:
    """An object that ``torch.load(weights_only=True)`` refuses to unpickle."""


@pytest.mark.parametrize("content", ["garbage", "pickle", "object"])
def test_corrupt_checkpoint_is_ignored_with_a_warning(tmp_path, caplog, content):
    store = CheckpointStore(tmp_path)
    if content == "garbage":
        store.path.write_bytes(b"not a checkpoint " * 20)
    elif content == "pickle":
        store.path.write_bytes(b"\x80\x02abc")
    else:
        torch.save({"fingerprint": "a", "object": _Arbitrary()}, store.path)
    with caplog.at_level(logging.WARNING, logger="visrec.core.train.checkpoint"):
        assert store.load("a") is None
    assert "unreadable" in caplog.text


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.save(_state(1.0))

    def half_written(state, stream):
        stream.write(b"PK\x03\x04 half a zip")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="no space left"):
        store.save(_state(2.0))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
    loaded = store.load("a")
    assert loaded is not None
    assert torch.equal(loaded["model"]["w"], torch.full((2, 3), 1.0))


def test_fingerprint_depends_on_every_part():
    base = fingerprint({"lr": 0.1, "epochs": 3}, ["a.png", "b.png"], "code")
    assert len(base) == 32
    assert fingerprint({"epochs": 3, "lr": 0.1}, ["a.png", "b.png"], "code") == base  # key order
    assert fingerprint({"lr": 0.2, "epochs": 3}, ["a.png", "b.png"], "code") != base
    assert fingerprint({"lr": 0.1, "epochs": 3}, ["a.png"], "code") != base
    assert fingerprint({"lr": 0.1, "epochs": 3}, ["a.png", "b.png"], "other") != base


def test_source_digest_changes_with_the_code(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = source_digest(tmp_path)
    assert source_digest(tmp_path) == first
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert source_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != first


# --- random generators -------------------------------------------------------------------------


def _draws() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
            float(np.random.standard_normal()), torch.rand(3).tolist(), torch.randn(2).tolist())


def test_rng_state_restores_every_generator_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    # Odd numbers of normal draws leave cached second values (Python's gauss_next,
    # NumPy's has_gauss): those must come back too.
    random.gauss(0, 1)
    np.random.standard_normal()
    store = CheckpointStore(tmp_path)
    store.save({"fingerprint": "f", "rng": rng_state()})  # saved and read back weights-only
    assert np.random.get_state()[3] == 1
    expected = _draws()
    _draws()  # move every generator on
    set_rng_state(store.load("f")["rng"])
    assert _draws() == expected


# --- resuming fit ------------------------------------------------------------------------------




class _Stop(Exception):
    """Raised from on_epoch to break a run after its checkpoint is written."""


def _stop_after(epochs: int):
    def on_epoch(history: list[dict]) -> None:
        if len(history) == epochs:
            raise _Stop

    return on_epoch


def _fit(config: FitConfig, store: CheckpointStore | None, mark: str = "run", init: int = 0,
         on_epoch=None, task: ClassificationTask | None = None):
    """Fit a fresh test_resnet (initialised with seed ``init``) on 24 images, 9 to validate."""
    torch.manual_seed(init)
    model = make_classifier("test_resnet", CLASSES)
    train = make_loader(colour_tensors(24, 0), BATCH, CPU, seed=0, train=True, num_workers=0)
    val = make_loader(colour_tensors(9, 1), BATCH, CPU, seed=0, train=False, num_workers=0)
    task = task or ClassificationTask(num_classes=CLASSES)
    return fit(model, train, val, config, task, CPU, checkpoints=store, fingerprint=mark,
               on_epoch=on_epoch)


RESUME_CASES = {  # name: (config, epoch after which the first run is stopped)
    # Stopped after one SWA average, half-way through SWALR's 2-epoch anneal.
    "cosine, constant SWA": (FitConfig(
        epochs=5, optimizer=OptimizerSpec(lr=0.05),
        schedule=ScheduleSpec("cosine", warmup_epochs=1),
        swa=SwaSpec(start=2, lr=0.02, anneal_epochs=2), ema=EmaSpec(decay=0.9)), 3),
    # Stopped after the first cycle's average, in the middle of the second saw-tooth.
    "cyclic SWA": (FitConfig(
        epochs=5, optimizer=OptimizerSpec(lr=0.05), schedule=ScheduleSpec("cosine"),
        swa=SwaSpec(start=0, lr=0.05, schedule="cyclic", cycle_epochs=2, min_lr=0.001),
        ema=EmaSpec(decay=0.9)), 3),
    # Stopped half-way through the one cycle, AdamW's moments in the checkpoint.
    "onecycle, no SWA": (FitConfig(
        epochs=4, optimizer=OptimizerSpec("adamw", lr=0.01, weight_decay=0.01),
        schedule=ScheduleSpec("onecycle", warmup_epochs=1), ema=EmaSpec(decay=0.9)), 2),
}


def _assert_same_runs(resumed, whole) -> None:
    pd.testing.assert_frame_equal(resumed.history.drop(columns=TIMING_COLUMNS),
                                  whole.history.drop(columns=TIMING_COLUMNS), check_exact=True)
    assert set(resumed.weights) == set(whole.weights)
    for name, model in whole.weights.items():
        expected, got = model.state_dict(), resumed.weights[name].state_dict()
        assert list(got) == list(expected)
        for key in expected:
            assert torch.equal(got[key], expected[key]), (name, key)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")
@pytest.mark.parametrize("mix", [False, True], ids=["plain", "mixup"])
@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_resumed_run_equals_an_unbroken_one(tmp_path, name, mix):
    config, stop = RESUME_CASES[name]
    task = ClassificationTask(num_classes=CLASSES)
    if mix:
        task = replace(task, mix=MixSpec(mixup_alpha=0.4, cutmix_alpha=1.0),
                       loss=LossSpec(label_smoothing=0.1))
    whole = _fit(config, CheckpointStore(tmp_path / "whole"), task=task)
    assert len(whole.history) == config.epochs

    store = CheckpointStore(tmp_path / "broken")
    with pytest.raises(_Stop):
        _fit(config, store, on_epoch=_stop_after(stop), task=task)
    state = store.load("run")
    assert (state["epoch"], state["global_step"]) == (stop, stop * 3)
    if config.swa is not None:  # the break comes after an average: it must be carried over
        assert int(state["swa_model"]["n_averaged"]) == 1

    continued: list[int] = []
    # Another initialisation: everything the run continues with comes from the checkpoint.
    resumed = _fit(config, store, init=99,
                   on_epoch=lambda history: continued.append(len(history)), task=task)
    assert continued == list(range(stop + 1, config.epochs + 1))
    _assert_same_runs(resumed, whole)
    assert store.load("run")["epoch"] == config.epochs


def test_checkpoint_of_other_settings_is_ignored(tmp_path, caplog):
    config = RESUME_CASES["onecycle, no SWA"][0]
    store = CheckpointStore(tmp_path)
    with pytest.raises(_Stop):
        _fit(config, store, mark="old settings", init=5, on_epoch=_stop_after(2))
    epochs: list[int] = []
    with caplog.at_level(logging.INFO, logger="visrec.core.train.checkpoint"):
        restarted = _fit(config, store, mark="new settings",
                         on_epoch=lambda history: epochs.append(len(history)))
    assert "other settings" in caplog.text
    assert epochs == [1, 2, 3, 4]  # from epoch 1
    _assert_same_runs(restarted, _fit(config, None))
    assert store.load("new settings")["epoch"] == 4
    assert store.load("old settings") is None  # replaced
