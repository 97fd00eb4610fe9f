"""Benchmark: every class-balance strategy on the demo digits made long-tailed.

The demo digits get a train imbalance ratio of 50 (150 images in the largest class, 3 in
the smallest) and a balanced test split (30 per class). Every strategy trains the same
model for the same epochs (the demo recipe of `conf/base`, 10 epochs instead of 30 unless
`--epochs` says otherwise) with 3 seeds; the real
`class_balance`, `training` and `evaluation` pipelines run through Kedro sessions in a
throwaway project copy, so the repository's data/ is untouched:

    .venv/bin/python benchmarks/long_tail.py [--seeds 0 1 2] [--epochs 30]
        [--strategies none auto ...] [--params JSON] [--out runs.jsonl]

Prints a Markdown table of balanced accuracy and many/medium/few-shot accuracy (mean and
standard deviation over the seeds) of the SWA weights, and the final weights' balanced
accuracy, and checks that `auto` beats `none`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import add_runs_arguments, append_runs, demo_project, machine, run_session

logger = logging.getLogger("benchmarks.long_tail")

STRATEGIES: dict[str, str | list[str]] = {
    "none": "none",
    "oversample": "oversample",
    "undersample": "undersample",
    "sqrt_sampler": "sqrt_sampler",
    "class_balanced_sampler": "class_balanced_sampler",
    "class_weights": "class_weights",
    "focal": "focal",
    "focal+class_weights": ["focal", "class_weights"],
    "logit_adjustment": "logit_adjustment",
    "drw": "drw",
    "crt": "crt",
    "auto": "auto",
}
DATA = {"demo_data": {"imbalance_ratio": 50, "largest_class": 150, "test_per_class": 30}}
# The demo recipe over 10 epochs instead of 30: with 30 epochs and SWA, plain cross-entropy
# already reaches about 96% balanced accuracy on these easy digits (the README gives both).
EPOCHS = 10
REPORTED = ("balanced_accuracy", "many_shot_accuracy", "medium_shot_accuracy",
            "few_shot_accuracy")


def one_run(project: Path, strategy: str | list[str], seed: int, extra: dict) -> dict:
    """Class balance, training and evaluation with ``strategy``; the test metrics."""
    params = DATA | extra | {"seed": seed, "class_balance": {"strategy": strategy}}
    start = time.perf_counter()
    run_session(project, ["class_balance", "training", "evaluation"], params)
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    plan = json.loads((project / "data/05_model_input/balance_plan.json").read_text())
    row = {"seed": seed, "applied": plan["strategy"], "seconds": time.perf_counter() - start}
    for weights, values in metrics.items():
        row |= {f"{weights}_{key}": values.get(key) for key in REPORTED}
    return row


def summary(runs: pd.DataFrame, weights: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds, in percent, one row per strategy."""
    columns = list(dict.fromkeys([f"{weights}_{key}" for key in REPORTED]
                                 + ["final_balanced_accuracy"]))
    grouped = runs.groupby("strategy", sort=False)[columns]
    return pd.concat({"mean": grouped.mean() * 100, "std": grouped.std(ddof=0) * 100}, axis=1)


def markdown(table: pd.DataFrame, weights: str, applied: pd.Series) -> list[str]:
    """The table's lines: each cell ``mean ± std``."""
    names = ["balanced", "many-shot", "medium-shot", "few-shot"]
    label = weights.upper() if weights == "swa" else weights
    lines = [f"| strategy (applied) | {' | '.join(f'{n}, {label}' for n in names)} | "
             "balanced, final weights |", "| --- " * (len(names) + 2) + "|"]
    for strategy, row in table.iterrows():
        cells = [f"{row[('mean', c)]:.1f} ± {row[('std', c)]:.1f}"
                 for c in table["mean"].columns]
        shown = strategy if applied[strategy] == strategy else f"{strategy} ({applied[strategy]})"
        lines.append(f"| {shown} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    """Parse arguments, run every strategy and seed, print the table and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"training epochs (default {EPOCHS}); 0: the demo's 30")
    parser.add_argument("--params", type=json.loads, default={},
                        help='more runtime parameters as JSON: \'{"training": {"lr": 0.1}}\'')
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=list(STRATEGIES))
    add_runs_arguments(parser, report=False)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = args.params
    if args.epochs:
        extra = extra | {"training": extra.get("training", {}) | {"epochs": args.epochs}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = demo_project(Path(tmp), DATA)
        for seed in args.seeds:
            # The seed carves val from train: ingest anew for each.
            # ingestion.root is a parameter, resolved from the working directory, not the
            # project: name the copy's folder, never the repository's demo images.
            # One augmentation policy (augmentation.policy) for every strategy: no tuning.
            run_session(project, ["ingestion", "class_balance", "augmentation", "tuning"],
                        DATA | {"seed": seed,
                                "ingestion": {"root": str(project / "data/01_raw/demo")},
                                "tuning": {"enabled": False}})
            for name in args.strategies:
                row = {"strategy": name} | one_run(project, STRATEGIES[name], seed, extra)
                rows.append(row)
                append_runs(args.out, [row])
    runs = pd.DataFrame(rows)
    has_swa = "swa_balanced_accuracy" in runs and runs["swa_balanced_accuracy"].notna().all()
    weights = "swa" if has_swa else "final"
    table = summary(runs, weights)
    applied = runs.groupby("strategy", sort=False)["applied"].first()
    lines = [f"long-tailed digits (train imbalance ratio 50, balanced test), "
             f"{args.epochs or 'the demo'} epochs, {len(args.seeds)} seeds, "
             f"{runs['seconds'].mean():.0f} s per run on {machine()}",
             "", *markdown(table, weights, applied)]
    if {"auto", "none"} <= set(table.index):
        gain = table.loc["auto", "mean"] - table.loc["none", "mean"]
        lines += ["", f"auto - none: balanced {gain[f'{weights}_balanced_accuracy']:+.1f} points "
                  f"(goal >= 5), few-shot {gain[f'{weights}_few_shot_accuracy']:+.1f} (goal >= 15)"]
    # The table is the program's output, not a log record: Kedro's log handler wraps lines.
    sys.stdout.write("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
