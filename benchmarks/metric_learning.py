"""Benchmark: which metric-learning loss retrieves unseen digits best, against the baselines,
and what P x K training costs against the classification loop.

On the demo digits (classes 0-4 train, 5-9 test, class-disjoint), for each seed: the
`embedding` pipeline trains every loss with the same trunk, epochs, batch and recipe
(conf/base's `metric_learning` block, which it takes as it is apart from the loss), and
scores MAP@R, R-Precision and P@1 on the test classes; the first run of each seed also
scores the baselines (the untrained trunk, and a cross-entropy classifier's penultimate
features trained with the same budget). Real Kedro sessions in a throwaway project copy,
so the repository's data/ is untouched.

Then throughput: the embedder's training run (P x K batches, the loss and its miner) and
the classification loop (the same trunk, images and batch size, cross-entropy on shuffled
batches) alternate for `--repeats` rounds in this process; the median images/s of each.

    .venv/bin/python benchmarks/metric_learning.py [--seeds 0 1 2] [--epochs N]
        [--losses NAME ...] [--set '{"embedding_size": 512}'] [--no-baselines]
        [--repeats 3] [--out runs.jsonl] [--report runs.jsonl]

`--set` overrides keys of the `metric_learning` block for every loss (the rows then name
them); `--no-baselines` skips the two baselines (to add a variant to earlier runs).

Prints a Markdown table (mean ± std over the seeds, served weights, and SWA/EMA/final),
and checks the goals: the best loss's MAP@R >= 1.5 x the untrained trunk's and >= the
cross-entropy baseline's; embedder images/s >= 0.9 x the classification loop's.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import add_runs_arguments, append_runs, demo_project, machine, read_runs, run_session

LOSSES = ("normalized_softmax", "contrastive", "triplet(margin=0.1, mining=batch_hard)",
          "multi_similarity", "proxy_anchor")
FIGURES = ("mean_average_precision_at_r", "r_precision", "precision_at_1")
WEIGHTS = ("served", "final", "swa", "ema")
GOAL_UNTRAINED, GOAL_SPEED = 1.5, 0.9


def retrieval_runs(project: Path, seed: int, losses: list[str], epochs: int | None,
                   overrides: dict, baselines: bool) -> list[dict]:
    """Each loss on the demo at ``seed`` (the baselines with the first): test figures."""
    run_session(project, ["ingestion"], {"seed": seed,
                                         "ingestion": {"root": str(project / "data/01_raw/demo")}})
    rows = []
    for index, loss in enumerate(losses):
        block: dict = overrides | {
            "loss": loss, "resume": "never",
            "baselines": ["untrained", "cross_entropy"] if index == 0 and baselines else []}
        if epochs is not None:
            block["epochs"] = epochs
        start = time.perf_counter()
        run_session(project, ["embedding"], {"seed": seed, "metric_learning": block})
        seconds = time.perf_counter() - start
        metrics = json.loads((project / "data/08_reporting/metric_learning_metrics.json")
                             .read_text())
        sets = {name: metrics[name] for name in ("final", "swa", "ema") if name in metrics}
        sets["served"] = metrics[metrics["served"]]
        method = f"{loss} {json.dumps(overrides)}" if overrides else loss
        rows.append({"kind": "loss", "seed": seed, "method": method, "seconds": seconds,
                     **{f"{w}_{f}": sets[w][f] for w in sets for f in FIGURES}})
        for name, figures in metrics["baselines"].items():
            rows.append({"kind": "baseline", "seed": seed, "method": name,
                         **{f"{w}_{f}": figures[f] for w in WEIGHTS for f in FIGURES}})
        logging.info("seed %d %s: served MAP@R %.4f in %.0f s", seed, loss,
                     sets["served"]["mean_average_precision_at_r"], seconds)
    return rows


def throughput(project: Path, repeats: int) -> list[dict]:
    """Training images/s of the embedder and of the classification loop, alternated."""
    import torch  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from visrec.core.models import model_inputs  # noqa: PLC0415
    from visrec.core.retrieval import apply_split, pooled_rows, split_classes  # noqa: PLC0415
    from visrec.core.train import train  # noqa: PLC0415
    from visrec.datasets import ImageCacheDataset, RecordDataset  # noqa: PLC0415
    from visrec.params import MetricLearningParams  # noqa: PLC0415

    conf = yaml.safe_load((project / "conf/base/parameters_metric_learning.yml").read_text())
    params = MetricLearningParams.model_validate(conf["metric_learning"] | {
        "swa": conf["metric_learning"]["swa"] | {"enabled": False},
        "ema": conf["metric_learning"]["ema"] | {"enabled": False}, "resume": "never"})
    data = project / "data"
    cache = ImageCacheDataset(path=str(data / "04_feature/image_cache")).load()
    report = RecordDataset(filepath=str(data / "08_reporting/ingestion_report.json"),
                           record_type="visrec.core.data.IngestionReport").load()
    quarantine = pd.read_csv(data / "08_reporting/quarantine.csv", dtype=str,
                             keep_default_na=False)
    rows = pooled_rows(pd.read_parquet(data / "02_intermediate/manifest.parquet"), quarantine,
                       cache.index)
    split = split_classes(rows, params.split.test_classes, 0)
    table = apply_split(rows, split)
    table = table[table["split"] == "train"]  # the same images for both loops
    inputs = model_inputs(params.model, params.image_size, 1, report.channels)
    device = torch.device("cpu")
    jobs = {"embedder": params.embedder_job(table, cache, report, inputs, len(split.train), 0,
                                            device),
            "classifier": params.baseline_job(table, cache, report, inputs, len(split.train),
                                              0, device)}
    results = []
    for round_index in range(repeats):
        for name, job in jobs.items():
            history = train(job).history  # type: ignore[union-attr]
            speed = float(history["images_per_s"].iloc[1:].median())  # epoch 1 warms up
            results.append({"kind": "speed", "round": round_index, "loop": name,
                            "images_per_s": speed, "model": params.model,
                            "batch_size": params.batch_size, "images": len(table)})
            logging.info("round %d %s: %.0f images/s", round_index, name, speed)
    return results


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {spread:.3f}"


def report(runs: pd.DataFrame) -> list[str]:
    """The Markdown tables and the goal checks."""
    scored = runs[runs["kind"].isin(["loss", "baseline"])]
    lines = [f"demo digits (0-4 train, 5-9 test), {scored['seed'].nunique()} seeds, on "
             f"{machine()}", "",
             "| method | MAP@R | R-Precision | P@1 | MAP@R final / SWA / EMA |",
             "|---|---|---|---|---|"]
    means = {}
    for method, group in scored.groupby("method", sort=False):
        means[method] = group["served_mean_average_precision_at_r"].mean()
        by_set = " / ".join(f"{group[f'{w}_mean_average_precision_at_r'].mean():.3f}"
                            for w in ("final", "swa", "ema")
                            if f"{w}_mean_average_precision_at_r" in group)
        lines.append(f"| {method} | " + " | ".join(_mean_std(group[f"served_{f}"])
                                                    for f in FIGURES) + f" | {by_set} |")
    losses = [m for m in means if m not in ("untrained", "cross_entropy")]
    if losses and "untrained" in means and "cross_entropy" in means:
        best = max(losses, key=lambda m: means[m])
        ratio = means[best] / means["untrained"]
        met = ratio >= GOAL_UNTRAINED and means[best] >= means["cross_entropy"]
        lines += ["", f"best loss {best}: MAP@R {means[best]:.3f} = {ratio:.2f} x untrained "
                      f"(goal >= {GOAL_UNTRAINED}), {means[best] - means['cross_entropy']:+.3f} "
                      f"against cross-entropy (goal >= 0): {'met' if met else 'NOT met'}"]
    speed = runs[runs["kind"] == "speed"]
    if len(speed):
        medians = speed.groupby("loop")["images_per_s"].median()
        ratio = medians["embedder"] / medians["classifier"]
        lines += ["", f"training images/s ({speed['model'].iloc[0]}, batch "
                      f"{int(speed['batch_size'].iloc[0])}, {int(speed['images'].iloc[0])} "
                      f"images, median of {speed['round'].nunique()} rounds): embedder "
                      f"{medians['embedder']:.0f}, classification loop "
                      f"{medians['classifier']:.0f}, ratio {ratio:.2f} (goal >= {GOAL_SPEED}: "
                      f"{'met' if ratio >= GOAL_SPEED else 'NOT met'})"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: conf/base's")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--set", type=json.loads, default={}, dest="overrides",
                        help="JSON object of metric_learning keys for every loss")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds (0: none)")
    add_runs_arguments(parser)
    args = parser.parse_args()
    if args.report is not None:
        sys.stdout.write("\n".join(report(pd.DataFrame(read_runs(args.report)))) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as workdir:
        project = demo_project(Path(workdir))
        for seed in args.seeds:
            rows = retrieval_runs(project, seed, args.losses, args.epochs, args.overrides,
                                  not args.no_baselines)
            append_runs(args.out, rows)
            runs += rows
        if args.repeats:
            rows = throughput(project, args.repeats)
            append_runs(args.out, rows)
            runs += rows
    sys.stdout.write("\n".join(report(pd.DataFrame(runs))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
