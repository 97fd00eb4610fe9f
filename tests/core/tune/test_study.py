"""The study in a database: a killed search resumes without repeating a finished trial, two
processes share one SQLite study, and the budget is never overrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import PROJECT_ROOT
from tests.core.tune.stub_search import EPOCHS, run
from visrec.core.tune import StudyMismatch, make_sampler, open_study, spent

pytestmark = pytest.mark.faults


def _start(url: str, log: Path, delay: float, trials: int, seed: int = 0,
           start: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.core.tune.stub_search", url, str(log), "--delay",
         str(delay), "--trials", str(trials), "--seed", str(seed),
         *(["--start", str(start)] if start else [])],
        cwd=PROJECT_ROOT, env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="stub", storage=url)


def _complete(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _load(url).get_trials(states=(TrialState.COMPLETE,))
    except KeyError:  # the study is not created yet
        return []


def test_a_search_killed_mid_trial_resumes_and_repeats_no_finished_trial(tmp_path: Path):
    url, log = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "calls.jsonl"
    process = _start(url, log, delay=0.3, trials=8)
    deadline = time.monotonic() + 120
    while len(_complete(url)) < 3:  # three trials done, the fourth under way
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the search did not get going"
        time.sleep(0.1)
    time.sleep(0.4)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _load(url).trials
    finished = {t.number: t.params["training.lr"] for t in before
                if t.state == TrialState.COMPLETE}
    assert len(finished) >= 3
    assert any(t.state == TrialState.RUNNING for t in before)  # killed mid-trial
    calls_before = len(_events(log))
    time.sleep(2.5)  # past the heartbeat's grace period: the killed trial is stale

    run(url, log, delay=0.0, trials=8, seed=1)

    after = _load(url).trials
    assert [t.number for t in after] == list(range(len(after)))  # numbering goes on
    assert len(after) > len(before)
    for number, lr in finished.items():  # finished trials are kept as they were
        assert after[number].state == TrialState.COMPLETE
        assert after[number].params["training.lr"] == lr
    rerun = [event["lr"] for event in _events(log)[calls_before:] if event["event"] == "start"]
    assert rerun and not set(rerun) & set(finished.values())  # none of them ran again
    killed = [t for t in before if t.state == TrialState.RUNNING]
    assert all(after[t.number].state == TrialState.FAIL for t in killed)
    retried = [t for t in after if t.system_attrs.get("failed_trial") is not None]
    assert [t.params for t in retried] == [t.params for t in killed]  # queued again, once
    study = _load(url)
    assert spent(study) <= 8 * EPOCHS * 100.0  # the budget holds across the restart


def test_two_processes_share_one_sqlite_study(tmp_path: Path):
    """Both start on a database that does not exist yet: they take turns to make it."""
    url, log = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "calls.jsonl"
    start = tmp_path / "start"
    start.mkdir()
    processes = [_start(url, log, delay=0.2, trials=10, seed=seed, start=start)
                 for seed in (1, 2)]
    deadline = time.monotonic() + 120
    while len(list(start.glob("ready-*"))) < 2:  # both started: then they search together
        ended = [p for p in processes if p.poll() is not None]
        assert not ended, [p.stderr.read() if p.stderr else "" for p in ended]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    (start / "go").touch()
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    events = _events(log)
    finished = [e for e in events if e["event"] == "finish"]
    by_process = {process.pid: [e for e in finished if e["pid"] == process.pid]
                  for process in processes}
    assert all(by_process.values()), by_process  # each process ran trials
    study = _load(url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(finished) == len(complete)  # every finished trial ran in exactly one process
    assert {t.number for t in study.trials} == set(range(len(study.trials)))
    assert sum(t.user_attrs.get("configured", False) for t in study.trials) == 1
    # Each process checks the budget before a trial: together they overrun it by at most
    # one trial each.
    assert spent(study) <= (10 + 2) * EPOCHS * 100.0


def test_a_named_study_of_other_settings_is_refused(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(url, "shared", "one", make_sampler("tpe", 0))
    with pytest.raises(StudyMismatch, match=r"tuning.study_name = 'shared'.*other data"):
        open_study(url, "shared", "two", make_sampler("tpe", 0))
    assert open_study(url, "shared", "one", make_sampler("tpe", 0)).study_name == "shared"
