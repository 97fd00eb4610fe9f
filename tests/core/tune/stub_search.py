"""A search whose trainer is a stub, run as a process::

    python -m tests.core.tune.stub_search URL LOG [--delay S] [--trials N] [--seed N]
        [--start DIR]

Each proxy "epoch" sleeps ``delay`` seconds and scores the trial's learning rate by a fixed
curve; every call is appended to ``LOG`` (JSON lines) when it starts and when it finishes,
with the process id."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from visrec.core.tune import (
    Dimension,
    Noise,
    Outcome,
    Report,
    Search,
    SearchPlan,
    SearchSpace,
    make_sampler,
    open_study,
)

EPOCHS = 3
VAL_COUNTS = (100,) * 10  # ten classes, 100 validation images each
SPACE = SearchSpace(policies=("flip_crop",), strategies=("none",),
                    recipe=(Dimension("lr", low=0.01, high=1.0, log=True),))
CONFIGURED = {"augmentation.policy": "flip_crop", "class_balance.strategy": "none",
              "training.lr": 0.2}


def plan(trials: int) -> SearchPlan:
    """A plan with room for ``trials`` full-length proxies of 100 image-steps an epoch."""
    trial_cost = EPOCHS * 100.0
    return SearchPlan(budget=1.0, training_cost=trials * trial_cost,
                      budget_cost=trials * trial_cost, epochs=10, proxy_epochs=EPOCHS,
                      subset=0.5, proxy_images=100, val_images=1000, trial_cost=trial_cost,
                      max_trial_cost=trial_cost, full_length_trials=float(trials))


def score(lr: float, epoch: int) -> float:
    """Above chance from the first epoch, best at lr = 0.2."""
    return 0.3 + 0.6 * max(0.0, 1 - abs(math.log10(lr / 0.2))) * epoch / EPOCHS


class StubTrainer:
    """Sleeps ``delay`` per epoch; logs each call to ``log``."""

    def __init__(self, log: Path, delay: float) -> None:
        self.log, self.delay = log, delay

    def _write(self, event: str, settings: dict[str, Any]) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "pid": os.getpid(),
                                  "lr": settings["training.lr"]}) + "\n")

    def __call__(self, settings: dict[str, Any], report: Report) -> Outcome:
        self._write("start", settings)
        for epoch in range(1, EPOCHS + 1):
            time.sleep(self.delay)
            report(epoch, score(settings["training.lr"], epoch), epoch * 100.0)
        self._write("finish", settings)
        return Outcome(value=score(settings["training.lr"], EPOCHS), cost_key=(100, 1.0))


def run(url: str, log: Path, delay: float, trials: int, seed: int = 0,
        start: Path | None = None) -> None:
    """Open (or resume) the stub study at ``url`` and search within its budget; with
    ``start``, say ``ready-<pid>`` there and wait for a file ``go`` before the first trial
    (so that processes started together search together, however slowly each starts)."""
    study = open_study(url, "stub", "fingerprint", make_sampler("random", seed),
                       first=SPACE.searched(CONFIGURED), heartbeat=1, grace=2)
    if start is not None:
        (start / f"ready-{os.getpid()}").touch()
        while not (start / "go").exists():
            time.sleep(0.05)
    Search(study=study, plan=plan(trials), space=SPACE, noise=Noise(VAL_COUNTS),
           trainer=StubTrainer(log, delay)).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=Path, default=None)
    arguments = parser.parse_args()
    run(arguments.url, arguments.log, arguments.delay, arguments.trials, arguments.seed,
        arguments.start)
