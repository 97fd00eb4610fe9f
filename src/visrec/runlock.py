"""One run at a time per project data folder.

Two runs writing one ``data/`` folder mix their files: two ingestions appending to one
packed cache left most manifest rows pointing at another image's pixels. Every
``kedro run`` of the project therefore holds an operating-system file lock on
``data/.visrec.lock`` (the ``filelock`` library: released by the system when the process
ends, however it ends) and writes who holds it beside it; a second run stops before its
first node with a message naming the holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".visrec.lock"
HOLDER_FILE = ".visrec.lock.json"


class DataFolderBusy(RuntimeError):
    """Another run holds the project's data folder."""


def _holder(folder: Path) -> str:
    """Who holds the lock, in words, from the file its holder wrote."""
    try:
        holder = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
        return (f"process {holder['pid']} on {holder['host']}, started {started}: "
                f"{holder['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"


@dataclass
class DataLock:
    """The lock of one data folder.

    Attributes:
        folder: The data folder (created if missing).
        timeout: Seconds to wait for another run to end; 0 stops at once.
    """

    folder: Path
    timeout: float = 0.0
    _lock: FileLock | None = field(default=None, init=False, repr=False)

    def acquire(self) -> None:
        """Hold the folder, and write who holds it.

        Raises:
            DataFolderBusy: Naming the run that holds it, when it does not end within
                ``timeout`` seconds.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.folder / LOCK_FILE)
        try:
            lock.acquire(timeout=self.timeout)
        except Timeout:
            raise DataFolderBusy(
                f"{self.folder} is in use by another visrec run ({_holder(self.folder)}); "
                "two runs writing one data folder would mix their files: wait for it to "
                "end, or stop it, then run again") from None
        self._lock = lock
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        temporary = self.folder / f"{HOLDER_FILE}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(holder), encoding="utf-8")
        os.replace(temporary, self.folder / HOLDER_FILE)

    def release(self) -> None:
        """Let the folder go (nothing happens when it is not held)."""
        if self._lock is None:
            return
        (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        self._lock.release(force=True)
        self._lock = None
