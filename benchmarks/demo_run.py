"""Benchmark: the demo `kedro run` end to end, as `make run` does it.

Runs in a throwaway copy of the project (pyproject + conf; the package is imported
from the installed visrec), so the repository's data/ is untouched:

    .venv/bin/python benchmarks/demo_run.py [--env base] [--repeats 1]

Prints a Markdown table: wall seconds of `kedro run` (the default `train` pipeline),
seconds spent in training epochs, mean training images/s, peak memory of the run,
and the test metrics of the final and SWA weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
logger = logging.getLogger("benchmarks.demo_run")


def make_project(workdir: Path) -> Path:
    """A copy of the project's pyproject and conf with empty data folders."""
    shutil.copy(ROOT / "pyproject.toml", workdir)
    shutil.copytree(ROOT / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"))
    (workdir / "conf" / "local").mkdir()
    (workdir / "src").mkdir()
    return workdir


def kedro(project: Path, *args: str) -> float:
    """Run the kedro CLI; return its wall seconds (raises if it fails)."""
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"}
    start = time.perf_counter()
    subprocess.run([KEDRO, *args], cwd=project, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def one_run(env: str) -> dict[str, float]:
    """Demo data, then `kedro run`; the figures of that run."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        kedro(project, "run", "--env", env, "--pipelines=demo_data")
        seconds = kedro(project, "run", "--env", env)
        history = pd.read_csv(project / "data/08_reporting/training_history.csv")
        metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    # ru_maxrss of the largest finished child, in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {"kedro_run_s": seconds, "epochs_s": history["seconds"].sum(),
               "images_per_s": history["images_per_s"].median(), "peak_rss_mib": peak_mib}
    for name, values in metrics.items():
        figures[f"{name}_balanced_accuracy"] = values["balanced_accuracy"]
    return figures


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base", help="Kedro environment (base: the demo)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = pd.DataFrame([one_run(args.env) for _ in range(args.repeats)])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    logger.info("demo `kedro run` (env %s, %d run(s); medians) on %s\n", args.env,
                len(runs), machine)
    logger.info("| figure | value |\n| --- | --- |")
    for name, value in runs.median().items():
        logger.info("| %s | %.4g |", name, value)


if __name__ == "__main__":
    main()
