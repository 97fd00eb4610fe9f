"""Benchmark: the training recipe's tricks, each removed in turn, against a plain baseline.

On the demo digits, the demo recipe of `conf/base` (warmup, cosine decay, label
smoothing, zero-gamma, no bias decay, SWA, EMA) is trained in full, as a plain baseline
(constant learning rate, none of the tricks), and with each trick removed in turn; equal
epochs, 3 seeds. The real `training` and `evaluation` pipelines run through Kedro
sessions in a throwaway project copy, so the repository's data/ is untouched.
`class_balance.strategy` is `none`, so that classifier re-training does not mask what
the tricks do.

    .venv/bin/python benchmarks/recipe_ablation.py [--seeds 0 1 2] [--epochs 30]
        [--variants full plain ...] [--out runs.jsonl]

Prints a Markdown table of test top-1 and balanced accuracy (mean and standard
deviation over the seeds) of the final, SWA and EMA weights, and checks that the full
recipe beats the plain baseline and that SWA is not worse than the final weights.
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
from common import (
    add_runs_arguments,
    append_runs,
    demo_project,
    machine,
    read_runs,
    run_session,
)

PLAIN = {"schedule": {"name": "constant", "warmup_epochs": 0}, "label_smoothing": 0.0,
         "zero_gamma": False, "no_bias_decay": False, "swa": {"enabled": False},
         "ema": {"enabled": False}}
VARIANTS = {
    "full": {},
    "plain": PLAIN,
    "no warmup": {"schedule": {"warmup_epochs": 0}},
    "no cosine (constant lr)": {"schedule": {"name": "constant"}},
    "no label smoothing": {"label_smoothing": 0.0},
    "no zero-gamma": {"zero_gamma": False},
    "bias/norm decay": {"no_bias_decay": False},
    "no SWA": {"swa": {"enabled": False}},
    "no EMA": {"ema": {"enabled": False}},
}
WEIGHTS = ("final", "swa", "ema")


def one_run(project: Path, variant: str, seed: int, epochs: int) -> dict:
    """Training and evaluation of ``variant``; the test metrics of each weight set."""
    training = VARIANTS[variant] | {"epochs": epochs, "resume": "never"}
    return {"variant": variant} | train_and_score(project, training, seed)


def train_and_score(project: Path, training: dict, seed: int) -> dict:
    """The training and evaluation pipelines with ``training`` overrides, timed.

    Returns:
        ``seed``, ``seconds``, and each weight set's test top-1 and balanced accuracy (in
        percent, ``{weights}_top1`` / ``{weights}_balanced``) and its validation balanced
        accuracy and loss (``val_{weights}_balanced`` / ``val_{weights}_loss``).
    """
    start = time.perf_counter()
    run_session(project, ["training", "evaluation"], {"seed": seed, "training": training})
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    row = {"seed": seed, "seconds": time.perf_counter() - start}
    for weights, values in metrics.items():
        row |= {f"{weights}_top1": 100 * values["top1"],
                f"{weights}_balanced": 100 * values["balanced_accuracy"]}
        config = project / "data/06_models/classifier" / weights / "config.json"
        val = json.loads(config.read_text())["val_metrics"]
        row |= {f"val_{weights}_balanced": 100 * val["balanced_accuracy"],
                f"val_{weights}_loss": val["loss"]}
    return row


def prepare_seed(project: Path, seed: int) -> None:
    """Ingestion, class balance (``none``) and augmentation of the demo for ``seed``.

    The seed carves val from train, so each seed is ingested anew. ``ingestion.root`` is
    resolved from the working directory: the copy's images are named in full. The
    augmentation is ``augmentation.policy`` (flip_crop), with the tuning off, so that every
    variant and seed trains with the same policy and recipe.
    """
    run_session(project, ["ingestion", "class_balance", "augmentation", "tuning"],
                {"seed": seed, "class_balance": {"strategy": "none"},
                 "ingestion": {"root": str(project / "data/01_raw/demo")},
                 "tuning": {"enabled": False}})


def markdown(runs: pd.DataFrame) -> list[str]:
    """One row per variant: mean ± std over the seeds of each weight set's figures."""
    columns = [c for w in WEIGHTS for c in (f"{w}_top1", f"{w}_balanced") if c in runs]
    grouped = runs.groupby("variant", sort=False)[columns]
    mean, std = grouped.mean(), grouped.std()
    header = " | ".join(c.replace("_", " ") for c in columns)
    lines = [f"| variant | {header} |", "| --- |" + " --- |" * len(columns)]
    for variant in mean.index:
        cells = ["–" if pd.isna(mean.loc[variant, c])
                 else f"{mean.loc[variant, c]:.1f} ± {std.loc[variant, c]:.1f}"
                 for c in columns]
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    """Parse arguments, run every variant and seed, print the table and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    add_runs_arguments(parser)
    args = parser.parse_args()
    if args.report is not None:
        rows = read_runs(args.report)
        sys.stdout.write("\n".join(report(pd.DataFrame(rows), args.epochs)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = demo_project(Path(tmp))
        for seed in args.seeds:
            prepare_seed(project, seed)
            for variant in args.variants:
                rows.append(one_run(project, variant, seed, args.epochs))
                append_runs(args.out, rows[-1:])
    # The table is the program's output, not a log record: Kedro's log handler wraps lines.
    sys.stdout.write("\n".join(report(pd.DataFrame(rows), args.epochs)) + "\n")


def report(runs: pd.DataFrame, epochs: int) -> list[str]:
    """The table of ``runs`` and the two checks: full beats plain, SWA not below final."""
    order = {name: index for index, name in enumerate(VARIANTS)}
    runs = runs.sort_values("variant", key=lambda v: v.map(order), kind="stable")
    lines = [f"demo digits, {epochs} epochs, {runs['seed'].nunique()} seeds, "
             f"{runs['seconds'].mean():.0f} s per run on {machine()}", "", *markdown(runs)]
    means = runs.groupby("variant").mean(numeric_only=True)
    if {"full", "plain"} <= set(means.index):
        full, plain = means.loc["full"], means.loc["plain"]
        gain = full["swa_balanced"] - plain["final_balanced"]
        final_gain = full["final_balanced"] - plain["final_balanced"]
        swa_gain = full["swa_balanced"] - full["final_balanced"]
        lines += ["", f"balanced accuracy, full (SWA) - plain: {gain:+.1f} points; full (final) "
                  f"- plain: {final_gain:+.1f}; full SWA - full final: {swa_gain:+.1f}"]
    return lines


if __name__ == "__main__":
    main()
