"""Benchmark: the demo `kedro run` end to end, as `make run` does it.

Runs in a throwaway copy of the project (pyproject + conf; the package is imported
from the installed visrec), so the repository's data/ is untouched:

    .venv/bin/python benchmarks/demo_run.py [--env base] [--repeats 1]

Prints a Markdown table: wall seconds of `kedro run` (the default `train` pipeline),
seconds spent in training epochs, mean training images/s, peak memory of the run,
the test metrics of every weight set, and the served weights' calibration.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import pandas as pd
from common import machine, make_project, run_kedro

logger = logging.getLogger("benchmarks.demo_run")


def one_run(env: str) -> dict[str, float]:
    """Demo data, then `kedro run`; the figures of that run."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        run_kedro(project, "run", "--env", env, "--pipelines=demo_data")
        seconds, peak, _ = run_kedro(project, "run", "--env", env)
        history = pd.read_csv(project / "data/08_reporting/training_history.csv")
        metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    peak_mib = peak / 2**20  # the kedro process and its loader workers, summed
    figures = {"kedro_run_s": seconds, "epochs_s": history["seconds"].sum(),
               "images_per_s": history["images_per_s"].median(), "peak_rss_mib": peak_mib}
    for name, values in metrics.items():
        figures[f"{name}_balanced_accuracy"] = values["balanced_accuracy"]
        if values.get("served"):  # the weights prediction and export use
            figures |= {f"served_{k}": values[k] for k in
                        ("temperature", "ece", "ece_calibrated", "nll", "nll_calibrated")}
    return figures


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base", help="Kedro environment (base: the demo)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = pd.DataFrame([one_run(args.env) for _ in range(args.repeats)])
    logger.info("demo `kedro run` (env %s, %d run(s); medians) on %s\n", args.env,
                len(runs), machine())
    logger.info("| figure | value |\n| --- | --- |")
    for name, value in runs.median().items():
        logger.info("| %s | %.4g |", name, value)


if __name__ == "__main__":
    main()
