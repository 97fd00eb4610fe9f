"""Helpers shared by the benchmarks: a throwaway project copy, generated images and a memory
sampler."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def make_project(workdir: Path, root: Path = ROOT) -> Path:
    """A copy of the project's pyproject, telemetry opt-out and conf (those of the checkout
    ``root``) with empty data folders.

    The package is imported from the installed visrec (or ``PYTHONPATH``), so the
    repository's data/ is never touched by a benchmark.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "pyproject.toml", workdir)
    shutil.copy(root / ".telemetry", workdir)  # nothing leaves the machine
    shutil.copytree(root / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"))
    (workdir / "conf" / "local").mkdir()
    (workdir / "src").mkdir()
    return workdir


def demo_project(workdir: Path, params: dict | None = None) -> Path:
    """A project copy in ``workdir``, bootstrapped, with the demo images made (with
    ``params`` as runtime parameters, e.g. another ``demo_data`` block)."""
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    project = make_project(workdir)
    bootstrap_project(project)
    run_session(project, ["demo_data"], params or {})
    return project


def _write_noise_pngs(task: tuple[str, int, int, int, int]) -> None:
    folder, start, stop, classes, side = task
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        path = Path(folder) / f"class_{i % classes:02d}" / f"{i:07d}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)


def write_noise_pngs(folder: Path, n: int, classes: int = 10, side: int = 32) -> None:
    """Write ``n`` unique ``side`` x ``side`` noise PNGs into ``classes`` class folders
    (``class_00/0000000.png``, ...), in parallel."""
    for label in range(classes):
        (folder / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    step = 5000
    tasks = [(str(folder), start, min(start + step, n), classes, side)
             for start in range(0, n, step)]
    with get_context("fork").Pool() as pool:
        pool.map(_write_noise_pngs, tasks)


SHAPES = ("circle", "square", "triangle", "cross", "ring", "hbar", "vbar", "diamond",
          "dots", "corner")


def _draw_shape(draw, shape: str, box: tuple[float, float, float, float], colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, max(2.0, (x1 - x0) / 5)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - w / 2, y0, cx + w / 2, y1), fill=colour)
        draw.rectangle((x0, cy - w / 2, x1, cy + w / 2), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=int(w))
    elif shape == "hbar":
        draw.rectangle((x0, cy - w, x1, cy + w), fill=colour)
    elif shape == "vbar":
        draw.rectangle((cx - w, y0, cx + w, y1), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "dots":
        draw.ellipse((x0, y0, cx - 1, cy - 1), fill=colour)
        draw.ellipse((cx + 1, cy + 1, x1, y1), fill=colour)
    else:  # corner: an L
        draw.rectangle((x0, y0, x0 + w, y1), fill=colour)
        draw.rectangle((x0, y1 - w, x1, y1), fill=colour)


def _write_shape_pngs(task: tuple[str, int, int, int]) -> None:
    from PIL import ImageDraw  # noqa: PLC0415

    folder, start, stop, side = task
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        label = i % len(SHAPES)
        background = rng.integers(0, 256, 3)
        pixels = (background + rng.normal(0, 40, (side, side, 3))).clip(0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        size = rng.uniform(0.35, 0.8) * side
        x0, y0 = rng.uniform(0, side - size, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        _draw_shape(ImageDraw.Draw(image), SHAPES[label], (x0, y0, x0 + size, y0 + size),
                    colour)
        image.save(Path(folder) / f"class_{label:02d}" / f"{i:07d}.png")


def write_shape_pngs(folder: Path, n: int, side: int = 32) -> None:
    """Write ``n`` PNGs of ``side`` pixels into 10 class folders, one shape per class
    (circle, square, ... at a random place, size and colour over a noisy background of a
    random colour): learnable, and not at once."""
    for label in range(len(SHAPES)):
        (folder / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    tasks = [(str(folder), start, min(start + 2000, n), side) for start in range(0, n, 2000)]
    with get_context("fork").Pool() as pool:
        pool.map(_write_shape_pngs, tasks)


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine the figures come from: CPU and the vector instructions
    torch's kernels use (results differ between them), cores, memory, Python, torch."""
    import torch  # noqa: PLC0415

    memory = psutil.virtual_memory().total / 2**30
    return (f"{_cpu_model()} ({platform.machine()}, torch kernels "
            f"{torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
            f"{memory:.0f} GiB, Python {platform.python_version()}, torch {torch.__version__}")


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


def run_kedro(project: Path, *args: str, env: dict[str, str] | None = None
              ) -> tuple[float, int, str]:
    """Run the kedro CLI in ``project`` (with ``env`` added to the environment).

    Returns:
        ``(wall seconds, peak resident bytes of the process tree, its output)``.

    Raises:
        subprocess.CalledProcessError: If the command fails.
    """
    start = time.perf_counter()
    process = subprocess.Popen([KEDRO, *args], cwd=project, text=True,
                               env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1",
                                                 "COLUMNS": "400"} | (env or {}),
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


def add_runs_arguments(parser: argparse.ArgumentParser, report: bool = True) -> None:
    """``--out`` (append each run as a JSON line) and ``--report`` (only print a table)."""
    parser.add_argument("--out", type=Path, default=None,
                        help="append every run to this file as a JSON line")
    if report:
        parser.add_argument("--report", type=Path, default=None,
                            help="only print the table of the runs in this JSON-lines file")


def read_runs(path: Path) -> list[dict]:
    """The runs of a JSON-lines file written by :func:`append_runs`."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def append_runs(path: Path | None, rows: list[dict]) -> None:
    """Append ``rows`` to ``path`` as JSON lines (nothing when ``path`` is None), so that a
    long benchmark keeps every finished run even if it is stopped."""
    if path is not None:
        with path.open("a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
