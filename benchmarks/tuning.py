"""Benchmark: what the tuning costs and what it buys.

``time``: a 10-class folder of generated 32 px shapes (8,000 images by default); the real
``kedro run --pipelines=train`` runs twice in two throwaway project copies, once with
``tuning.enabled=false`` and once with ``tuning.budget`` (1 by default), one after the
other on the same machine; prints both wall times and their ratio (goal: at most 2.2).

``quality``: for each data set and seed, the training with the configured settings
(tuning off) against the training with the settings the tuning chose at each budget; the
served weights' test balanced accuracy (mean ± std over the seeds), and the search's
wall time as a multiple of one training. Real Kedro sessions in a throwaway project copy.
Data sets: ``demo`` (the demo digits), ``long_tail`` (the demo digits with a train
imbalance ratio of 50, 10 epochs; the configured strategy is ``auto``), ``shapes`` (the
generated shapes, 1,500 images, the configured 30 epochs: 10 leave them at chance).

    .venv/bin/python benchmarks/tuning.py time [--images 8000] [--epochs 3] [--budget 1]
    .venv/bin/python benchmarks/tuning.py quality [--data demo long_tail shapes]
        [--budgets 0.5 1 3] [--seeds 0 1 2] [--out runs.jsonl] [--report runs.jsonl]
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
import yaml
from common import (
    add_runs_arguments,
    append_runs,
    demo_project,
    machine,
    make_project,
    read_runs,
    run_kedro,
    run_session,
    write_shape_pngs,
)

logger = logging.getLogger("benchmarks.tuning")
GOAL_RATIO = 2.2
DATA: dict[str, dict] = {
    "demo": {},
    "long_tail": {"demo_data": {"imbalance_ratio": 50, "largest_class": 150,
                                "test_per_class": 30},
                  "training": {"epochs": 10}},
    "shapes": {"training": {"epochs": 30}},
}
SHAPES = 1500


def time_runs(images: int, epochs: int, budget: float) -> dict:
    """``kedro run --pipelines=train`` with tuning off, then on, on ``images`` shapes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shapes"
        write_shape_pngs(folder, images)
        row: dict = {"kind": "time", "images": images, "epochs": epochs, "budget": budget}
        for name, tuning in (("off", "tuning.enabled=false"), ("on", f"tuning.budget={budget}")):
            project = make_project(Path(tmp) / f"project_{name}")
            params = f"ingestion.root={folder},training.epochs={epochs},{tuning}"
            seconds, peak, _ = run_kedro(project, "run", "--pipelines=train",
                                              "--params", params)
            row |= {f"{name}_seconds": seconds, f"{name}_peak_gib": peak / 2**30}
            if name == "on":
                leaderboard = pd.read_csv(project / "data/08_reporting/tuning_leaderboard.csv")
                plan = json.loads((project / "data/08_reporting/tuning_plan.json").read_text())
                row |= {"trials": len(leaderboard),
                        "cut": int((leaderboard["state"] == "pruned").sum()),
                        "spent_trainings": float(leaderboard["cost_trainings"].sum()),
                        "proxy_epochs": plan["proxy_epochs"], "subset": plan["subset"]}
            logger.info("tuning %s: %.0f s", name, seconds)
        row["ratio"] = row["on_seconds"] / row["off_seconds"]
        return row


def _served(project: Path) -> dict:
    """The served weight set's test figures."""
    table = pd.read_csv(project / "data/08_reporting/weight_sets.csv")
    served = table[table["served"]].iloc[0]
    return {"weights": served["weights"], "balanced_accuracy": float(served["balanced_accuracy"]),
            # Balanced data has no few-shot group, and no column for it.
            "few_shot_accuracy": float(served.get("few_shot_accuracy", float("nan")))}


def _project(data: str, workdir: Path) -> tuple[Path, dict]:
    """A project copy with the images of ``data``; the runtime parameters that name them."""
    if data == "shapes":
        project = make_project(workdir)
        from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

        bootstrap_project(project)
        write_shape_pngs(project / "data/01_raw/shapes", SHAPES)
        return project, DATA[data] | {"ingestion": {"root": str(project / "data/01_raw/shapes")}}
    extra = DATA[data]
    project = demo_project(workdir, {k: v for k, v in extra.items() if k == "demo_data"})
    return project, extra | {"ingestion": {"root": str(project / "data/01_raw/demo")}}


def quality_runs(data: str, seeds: list[int], budgets: list[float],
                 out: Path | None) -> list[dict]:
    """Configured against tuned settings at each budget, per seed."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project, base = _project(data, Path(tmp))
        for seed in seeds:
            params = base | {"seed": seed}
            run_session(project, ["ingestion", "class_balance", "augmentation"], params)
            run_session(project, ["tuning"], params | {"tuning": {"enabled": False}})
            start = time.perf_counter()
            run_session(project, ["training", "evaluation"], params)
            training = time.perf_counter() - start
            row = {"kind": "quality", "data": data, "seed": seed, "budget": 0.0,
                   "seconds": training} | _served(project)
            rows.append(row)
            append_runs(out, [row])
            for budget in budgets:
                start = time.perf_counter()
                run_session(project, ["tuning"], params | {"tuning": {
                    "budget": budget, "study_name": f"bench-{data}-{seed}-{budget}"}})
                search = time.perf_counter() - start
                tuned = yaml.safe_load(
                    (project / "data/05_model_input/tuned_parameters.yml").read_text())
                board = pd.read_csv(project / "data/08_reporting/tuning_leaderboard.csv")
                done = board[board["state"] == "complete"]
                run_session(project, ["training", "evaluation"], params)
                row = {"kind": "quality", "data": data, "seed": seed, "budget": budget,
                       "seconds": search, "search_trainings": search / training,
                       "trial": tuned["search"]["trial"],
                       "trials": tuned["search"]["trials"],
                       "cut": int((board["state"] == "pruned").sum()),
                       "tied": int(done["tied"].sum()),
                       "configured_value": float(done.loc[done["configured"], "value"].max()),
                       "best_value": float(done["value"].max()),
                       "chosen": {k: v for k, v in tuned.items() if k != "search"}
                       } | _served(project)
                rows.append(row)
                append_runs(out, [row])
    return rows


def quality_table(runs: pd.DataFrame) -> list[str]:
    """Markdown: per data set and budget, test balanced accuracy and search cost."""
    lines = ["| data | settings | test balanced accuracy (served) | search time, trainings "
             "| trials | configured kept |", "| --- | --- | --- | --- | --- | --- |"]
    for (data, budget), group in runs.groupby(["data", "budget"], sort=False):
        accuracy = 100 * group["balanced_accuracy"]
        settings = "configured (tuning off)" if budget == 0 else f"tuned, budget {budget:g}"
        spent = group.get("search_trainings", pd.Series(dtype=float))
        cost = "" if budget == 0 else f"{spent.mean():.2f} ± {spent.std(ddof=0):.2f}"
        trials = "" if budget == 0 else f"{group['trials'].mean():.1f}"
        # Each search is a new study, whose trial 0 is the configured settings.
        kept = "" if budget == 0 else f"{int((group['trial'] == 0).sum())} of {len(group)}"
        lines.append(f"| {data} | {settings} | {accuracy.mean():.1f} ± "
                     f"{accuracy.std(ddof=0):.1f} | {cost} | {trials} | {kept} |")
    return lines


def main() -> None:
    """Parse arguments, run the chosen benchmark, print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("time", help="train with tuning off and on, side by side")
    timing.add_argument("--images", type=int, default=8000)
    timing.add_argument("--epochs", type=int, default=3)
    timing.add_argument("--budget", type=float, default=1.0)
    add_runs_arguments(timing, report=False)
    quality = commands.add_parser("quality", help="configured against tuned settings")
    quality.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    quality.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0, 3.0])
    quality.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_runs_arguments(quality)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "time":
        row = time_runs(args.images, args.epochs, args.budget)
        append_runs(args.out, [row])
        lines = [f"{args.images} shapes at 32 px, {args.epochs} epochs, on {machine()}",
                 f"train, tuning off: {row['off_seconds']:.0f} s; tuning.budget "
                 f"{args.budget:g}: {row['on_seconds']:.0f} s ({row['trials']} trials, "
                 f"{row['cut']} cut, {row['spent_trainings']:.2f} trainings spent); ratio "
                 f"{row['ratio']:.2f} (goal <= {GOAL_RATIO})"]
    else:
        rows = (read_runs(args.report) if args.report else
                [row for data in args.data
                 for row in quality_runs(data, args.seeds, args.budgets, args.out)])
        lines = [f"{machine()}", "", *quality_table(pd.DataFrame(rows))]
    # The table is the program's output, not a log record: Kedro's log handler wraps lines.
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
