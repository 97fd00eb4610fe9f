"""One run at a time per data folder: a second run stops before its first node, naming the
run that holds the folder; the lock goes with its process, however that process ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from visrec.runlock import HOLDER_FILE, DataFolderBusy, DataLock

pytestmark = pytest.mark.faults

HOLD = """
import sys, time
from pathlib import Path
from visrec.runlock import DataLock
lock = DataLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holding(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), "--tag", "x"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path: Path):
    process = _holding(tmp_path / "data")
    try:
        with pytest.raises(DataFolderBusy) as caught:
            DataLock(tmp_path / "data").acquire()
        message = str(caught.value)
        assert f"is in use by another visrec run (process {process.pid} on " in message
        assert "-c " in message and "--tag x" in message
        assert "wait for it to end, or stop it, then run again" in message
    finally:
        process.kill()
        process.wait()


def test_a_waiting_run_gets_the_folder_when_the_holder_is_killed(tmp_path: Path):
    process = _holding(tmp_path / "data")
    killer = threading.Timer(1.0, os.kill, (process.pid, signal.SIGKILL))
    killer.start()
    waiter = DataLock(tmp_path / "data", timeout=120)
    waiter.acquire()  # waits: the system lets go of the lock when its holder dies
    assert process.wait(timeout=5) == -signal.SIGKILL
    killer.join()
    holder = json.loads((tmp_path / "data" / HOLDER_FILE).read_text())
    assert holder["pid"] == os.getpid()
    waiter.release()
    assert not (tmp_path / "data" / HOLDER_FILE).exists()
    again = DataLock(tmp_path / "data")
    again.acquire()
    again.release()
