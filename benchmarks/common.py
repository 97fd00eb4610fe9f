"""Helpers shared by the benchmarks: a throwaway project copy and a memory sampler."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def make_project(workdir: Path) -> Path:
    """A copy of the project's pyproject and conf with empty data folders.

    The package is imported from the installed visrec, so the repository's data/ is
    never touched by a benchmark.
    """
    shutil.copy(ROOT / "pyproject.toml", workdir)
    shutil.copytree(ROOT / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"))
    (workdir / "conf" / "local").mkdir()
    (workdir / "src").mkdir()
    return workdir


def machine() -> str:
    """One line naming the machine the figures come from."""
    memory = psutil.virtual_memory().total / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
            f"Python {platform.python_version()}")


class TreeMemory:
    """Peak resident memory of a process and all its children, summed, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def run_kedro(project: Path, *args: str) -> tuple[float, int, str]:
    """Run the kedro CLI in ``project``.

    Returns:
        ``(wall seconds, peak resident bytes of the process tree, its output)``.

    Raises:
        subprocess.CalledProcessError: If the command fails.
    """
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "400"}
    start = time.perf_counter()
    process = subprocess.Popen([KEDRO, *args], cwd=project, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    memory = TreeMemory(process.pid)
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    peak = memory.stop()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, output)
    return seconds, peak, output


def run_session(project: Path, pipelines: list[str], params: dict) -> None:
    """One `kedro run --pipelines=...` with runtime parameters, in this process."""
    from kedro.framework.session import KedroSession  # noqa: PLC0415

    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=pipelines)
