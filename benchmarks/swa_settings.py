"""Benchmark: which SWA settings make the averaged weights worth having, judged on validation.

The demo recipe of `conf/base` is trained with each SWA setting below (learning rate,
start, constant or cyclic rate) on tuning seeds that the recipe ablation does not report
(10-14 by default), and each weight set is scored on the **validation** split, never the
test split: the default of `conf/base/parameters_training.yml` is chosen from this table,
and `recipe_ablation.py` then reports the test figures of that choice.

    .venv/bin/python benchmarks/swa_settings.py [--seeds 10 11 12 13 14] [--epochs 30]
        [--settings current ...] [--out runs.jsonl] [--report runs.jsonl]

Prints a Markdown table per setting: validation balanced accuracy and loss of the final,
SWA and EMA weights (mean ± std over the seeds), and SWA's gain over the final weights.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd
from common import (
    add_runs_arguments,
    append_runs,
    demo_project,
    machine,
    read_runs,
)
from recipe_ablation import prepare_seed, train_and_score

SETTINGS = {
    "lr 0.05 from 75%": {"lr": 0.05, "start_fraction": 0.75},
    "lr 0.1 from 75%": {"lr": 0.1, "start_fraction": 0.75},
    "lr 0.05 from 50%": {"lr": 0.05, "start_fraction": 0.5},
    "lr 0.1 from 50%": {"lr": 0.1, "start_fraction": 0.5},
    "cyclic 0.1-0.005 from 75%": {"lr": 0.1, "min_lr": 0.005, "schedule": "cyclic",
                                  "start_fraction": 0.75},
}
WEIGHTS = ("final", "swa", "ema")


def markdown(runs: pd.DataFrame) -> list[str]:
    """One row per setting: validation balanced accuracy and loss, mean ± std over seeds."""
    columns = [f"val_{w}_{m}" for m in ("balanced", "loss") for w in WEIGHTS]
    runs = runs.assign(gain=runs["val_swa_balanced"] - runs["val_final_balanced"],
                       loss_gain=runs["val_final_loss"] - runs["val_swa_loss"])
    grouped = runs.groupby("setting", sort=False)
    mean, std = grouped[[*columns, "gain", "loss_gain"]].mean(), grouped[columns].std()
    header = " | ".join(c.removeprefix("val_").replace("_", " ") for c in columns)
    lines = [f"| SWA setting | {header} | SWA - final (balanced) | final - SWA (loss) |",
             "| --- |" + " --- |" * (len(columns) + 2)]
    for setting in mean.index:
        cells = [f"{mean.loc[setting, c]:.{3 if 'loss' in c else 1}f} ± "
                 f"{std.loc[setting, c]:.{3 if 'loss' in c else 1}f}" for c in columns]
        cells += [f"{mean.loc[setting, 'gain']:+.2f}", f"{mean.loc[setting, 'loss_gain']:+.3f}"]
        lines.append(f"| {setting} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    """Parse arguments, run every setting and seed, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS),
                        choices=list(SETTINGS))
    add_runs_arguments(parser)
    args = parser.parse_args()
    if args.report is not None:
        rows = read_runs(args.report)
    else:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            project = demo_project(Path(tmp))
            for seed in args.seeds:
                prepare_seed(project, seed)
                for setting in args.settings:
                    training = {"epochs": args.epochs, "resume": "never",
                                "swa": {"enabled": True, **SETTINGS[setting]}}
                    rows.append({"setting": setting}
                                | train_and_score(project, training, seed))
                    append_runs(args.out, rows[-1:])
    runs = pd.DataFrame(rows)
    lines = [f"demo digits, validation split, {args.epochs} epochs, "
             f"{runs['seed'].nunique()} seeds, {runs['seconds'].mean():.0f} s per run on "
             f"{machine()}", "", *markdown(runs)]
    # The table is the program's output, not a log record: Kedro's log handler wraps lines.
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
