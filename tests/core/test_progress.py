"""Progress bars: a training run draws the run's bar (epochs, time left) and the epoch's
on a terminal, and nothing but its log lines when its output is not one (CI logs, pipes,
the test suite)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from tests.conftest import PROJECT_ROOT
from visrec.core.train.loop import time_left

FIT = """
import logging, sys, torch
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from tests.core.conftest import colour_tensors
from tests.core.train.processes import CLASSES, make_model
from visrec.core.data import make_loader
from visrec.core.train import ClassificationTask, FitConfig, OptimizerSpec, fit

cpu = torch.device("cpu")
torch.set_num_threads(1)
train = make_loader(colour_tensors(24, 0), 8, cpu, seed=0, train=True, num_workers=0)
val = make_loader(colour_tensors(9, 1), 8, cpu, seed=0, train=False, num_workers=0)
fit(make_model(), train, val, FitConfig(epochs=3, optimizer=OptimizerSpec(lr=0.05)),
    ClassificationTask(num_classes=CLASSES), cpu)
"""


def _run_on_terminal() -> str:
    """The output of :data:`FIT` with stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    # A terminal of 40 rows, 120 columns (a new pseudo-terminal has 0 of each).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", FIT], cwd=PROJECT_ROOT,
                               stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                               env=os.environ | {"COLUMNS": "120"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert process.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # two Python processes
def test_bars_on_a_terminal_and_none_in_a_log():
    terminal = _run_on_terminal()
    assert "training: 100%" in terminal and "3/3" in terminal, terminal[-2000:]
    assert "epoch/s" in terminal or "s/epoch" in terminal  # the run's rate, hence its ETA
    assert "epoch 1:" in terminal and "batch" in terminal  # the epoch's own bar
    assert "validating" in terminal

    piped = subprocess.run([sys.executable, "-c", FIT], cwd=PROJECT_ROOT, check=True,
                           capture_output=True, text=True, timeout=300)
    log = piped.stdout + piped.stderr
    assert "\r" not in log and "training:" not in log and "validating" not in log
    lines = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[-1].endswith("(0 s left)") and "left)" in lines[0]


@pytest.mark.parametrize(("seconds", "done", "remaining", "expected"), [
    (30.0, 3, 6, "1 min 00 s"), (10.0, 1, 4, "40 s"), (100.0, 1, 37, "1 h 01 min"),
    (5.0, 2, 0, "0 s"), (0.0, 0, 3, "0 s")])
def test_time_left_is_the_mean_epoch_times_the_epochs_to_go(seconds, done, remaining,
                                                              expected):
    assert time_left(seconds, done, remaining) == expected
