"""Benchmark: does the augmentation search pick a policy that is good at full length?

On the demo digits, for each seed: the `augmentation` pipeline runs the search of
`conf/base` (its candidates and default budget, timed), then every candidate is trained
with the full demo recipe (`training` and `evaluation` pipelines, search off, the
candidate as `augmentation.policy`) and scored on the test split. Real Kedro sessions in
a throwaway project copy, so the repository's data/ is untouched.

    .venv/bin/python benchmarks/augmentation_search.py [--seeds 0 1 2] [--epochs 30]
        [--budget '{"epochs": 4}'] [--out runs.jsonl] [--report runs.jsonl]

Prints the search's time and choice per seed, a Markdown table of each candidate's test
balanced accuracy at full length (mean ± std over the seeds, SWA and final weights) next
to its mean place in the search, and checks that the selected policies are within 1
point of the best full-length candidate.
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
    ROOT,
    add_runs_arguments,
    append_runs,
    demo_project,
    machine,
    read_runs,
    run_session,
)

WEIGHTS = ("swa", "final")
GOAL_POINTS = 1.0


def _candidates() -> list[str]:
    conf = yaml.safe_load((ROOT / "conf/base/parameters_augmentation.yml").read_text())
    return conf["augmentation"]["search"]["candidates"]


def search(project: Path, seed: int, budget: dict) -> list[dict]:
    """Ingestion, class balance and the augmentation search for ``seed``: its leaderboard."""
    run_session(project, ["ingestion", "class_balance"],
                {"seed": seed, "ingestion": {"root": str(project / "data/01_raw/demo")}})
    start = time.perf_counter()
    run_session(project, ["augmentation"], {"seed": seed, "augmentation": {"search": budget}})
    seconds = time.perf_counter() - start
    table = pd.read_csv(project / "data/08_reporting/augmentation_leaderboard.csv")
    return [{"kind": "search", "seed": seed, "seconds": seconds, "candidate": int(row.candidate),
             "written": row.written, "place": int(row.place), "selected": bool(row.selected)}
            for row in table.itertuples()]


def full_run(project: Path, seed: int, candidate: int, policy: str, epochs: int) -> dict:
    """The demo recipe with ``policy``: test balanced accuracy of each weight set."""
    start = time.perf_counter()
    run_session(project, ["augmentation", "training", "evaluation"], {
        "seed": seed, "augmentation": {"policy": policy, "search": {"enabled": False}},
        "training": {"epochs": epochs, "resume": "never"}})
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    return {"kind": "full", "seed": seed, "candidate": candidate, "written": policy,
            "seconds": time.perf_counter() - start,
            **{f"{w}_balanced": 100 * metrics[w]["balanced_accuracy"] for w in WEIGHTS
               if w in metrics}}


def report(runs: pd.DataFrame, epochs: int) -> list[str]:
    """The search's choices, the full-length table and the check."""
    searches = runs[runs["kind"] == "search"]
    full = runs[runs["kind"] == "full"]
    lines = [f"demo digits, {full['seed'].nunique()} seeds, full length {epochs} epochs, on "
             f"{machine()}", ""]
    for seed, rows in searches.groupby("seed"):
        chosen = rows.loc[rows["selected"], "written"].iloc[0]
        lines.append(f"- seed {seed}: search {rows['seconds'].iloc[0]:.0f} s, selected "
                     f"`{chosen}`")
    places = searches.groupby("written")["place"].mean()
    grouped = full.groupby("written", sort=False)
    mean, std = grouped.mean(numeric_only=True), grouped.std(numeric_only=True)
    selected_count = searches[searches["selected"]].groupby("written").size()
    lines += ["", "| candidate | mean place in the search | times selected | "
              + " | ".join(f"test balanced, {w.upper() if w == 'swa' else w}" for w in WEIGHTS)
              + " |", "| --- | --- | --- |" + " --- |" * len(WEIGHTS)]
    for written in mean.sort_values("swa_balanced", ascending=False).index:
        cells = [f"{mean.loc[written, f'{w}_balanced']:.1f} ± "
                 f"{std.loc[written, f'{w}_balanced']:.1f}" for w in WEIGHTS]
        lines.append(f"| `{written}` | {places.get(written, float('nan')):.1f} | "
                     f"{int(selected_count.get(written, 0))} | {' | '.join(cells)} |")
    # The selected policy of each seed, scored at full length with that seed.
    chosen = searches[searches["selected"]][["seed", "written"]]
    picked = full.merge(chosen, on=["seed", "written"])
    for weights in WEIGHTS:
        best = mean[f"{weights}_balanced"].max()
        got = picked[f"{weights}_balanced"].mean()
        lines.append(f"\n{weights}: selected policies {got:.1f}, best full-length candidate "
                     f"{best:.1f}: {best - got:.1f} points below (goal <= {GOAL_POINTS:.0f})")
    return lines


def main() -> None:
    """Parse arguments, run the searches and the full-length trainings, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="full-length epochs")
    parser.add_argument("--budget", type=json.loads, default={},
                        help='search budget overrides as JSON, e.g. \'{"epochs": 1}\' '
                             "(default: conf/base's)")
    add_runs_arguments(parser)
    args = parser.parse_args()
    if args.report is not None:
        rows = read_runs(args.report)
        sys.stdout.write("\n".join(report(pd.DataFrame(rows), args.epochs)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows: list[dict] = []

    def keep(new: list[dict]) -> None:
        rows.extend(new)
        append_runs(args.out, new)

    with tempfile.TemporaryDirectory() as tmp:
        project = demo_project(Path(tmp))
        for seed in args.seeds:
            keep(search(project, seed, args.budget))
            for candidate, policy in enumerate(_candidates()):
                keep([full_run(project, seed, candidate, policy, args.epochs)])
    # The table is the program's output, not a log record: Kedro's log handler wraps lines.
    sys.stdout.write("\n".join(report(pd.DataFrame(rows), args.epochs)) + "\n")


if __name__ == "__main__":
    main()
