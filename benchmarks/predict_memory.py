"""Benchmark: peak memory of `kedro run --pipelines=predict` against the number of images.

    .venv/bin/python benchmarks/predict_memory.py [--sizes 2500 5000 20000]
        [--chunk-size N] [--code CHECKOUT]

Writes as many unique 32x32 noise PNGs as the largest size, serves a `test_resnet` with
random weights over 10 classes (no training: the model is not what is measured), and for
each size N runs `kedro run --pipelines=predict` in a throwaway copy of the project on a
`.txt` list of the first N images. Prints a Markdown table: N, the wall seconds of the
command, images/s (N over the seconds Kedro reports for the pipeline), the peak resident
memory of the command's process tree (sampled every 20 ms) and its growth over the
smallest N, and the rows of `predictions.csv`. Memory flat in N shows that results are
written as they come, not held.

The peak resident memory is mostly the imports (torch, timm, Kedro: about 1.1 GiB), and
memory freed after start-up is reused before the process grows, so a few MiB per
thousand images hide under it. `--heap` also runs the pipeline in a Python process that
traces its allocations (`tracemalloc`, started after the imports; NumPy arrays included,
torch tensors not) and reports the traced peak: what the run itself holds, per N. The
runs set `predict.max_bytes` to 1 MiB: a file is read by asking for `max_bytes + 1`
bytes at once, which reserves (but does not touch) 1 GiB per file at the default, and
tracemalloc would count it.

`--code` runs another checkout's `src/` and `conf/` (for example a `git worktree` of an
earlier commit) to compare; `--chunk-size` sets `predict.chunk_size` (default: conf/base).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, make_project, run_kedro, write_noise_pngs

logger = logging.getLogger("benchmarks.predict_memory")
CLASSES = 10
SIDE = 32
COMPLETED = re.compile(r"Pipeline execution completed successfully in ([0-9.]+) sec")


def serve_random_model(project: Path) -> None:
    """Write a served weight set into ``project``: test_resnet, random weights, 10 classes."""
    import timm  # noqa: PLC0415 - torch, timm and visrec load only here
    import torch  # noqa: PLC0415

    from visrec.core.augment import make_spec  # noqa: PLC0415
    from visrec.core.models import (  # noqa: PLC0415
        BalanceSummary,
        WeightSetConfig,
        make_weight_set,
        write_weight_set,
    )

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=CLASSES).eval()
    config = WeightSetConfig(
        architecture="test_resnet", classes=tuple(f"class_{i:02d}" for i in range(CLASSES)),
        image_size=SIDE, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        interpolation="bicubic", in_chans=3, seed=0, git_commit=None, training={},
        augmentation=make_spec("none"),
        class_balance=BalanceSummary(strategy="none", components=(), reason="benchmark"),
        weights="final", val_metrics=None, temperature=1.5, served_from="final")
    folder = project / "data/06_models/served"
    folder.mkdir(parents=True)
    write_weight_set(folder, make_weight_set(model, config))


TRACED_RUN = """
import json, sys, tracemalloc
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
import timm, torch, visrec.pipelines.predict.nodes  # imported before the tracing starts

bootstrap_project(Path.cwd())
tracemalloc.start()
with KedroSession.create(project_path=Path.cwd(), runtime_params=json.loads(sys.argv[1])) as s:
    s.run(pipeline_names=["predict"])
print(json.dumps({"traced_peak": tracemalloc.get_traced_memory()[1]}))
"""


def _code_env(code: Path) -> dict[str, str]:
    """The environment that imports visrec from ``code``."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(code / "src"),
                                                        os.environ.get("PYTHONPATH")]))}


def traced_peak(project: Path, params: dict, code: Path) -> float:
    """MiB: the peak of the Python allocations of the predict pipeline run in-process."""
    result = subprocess.run([sys.executable, "-c", TRACED_RUN, json.dumps(params)],
                            cwd=project, env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"}
                            | _code_env(code), capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["traced_peak"] / 2**20


def predict(project: Path, listing: Path, n: int, code: Path, chunk_size: int | None,
            heap: bool) -> dict[str, float]:
    """One `kedro run --pipelines=predict` on the first ``n`` files of ``listing`` (and,
    with ``heap``, one traced run)."""
    subset = listing.with_name(f"first_{n}.txt")
    with listing.open() as lines:
        subset.write_text("".join(line for _, line in zip(range(n), lines, strict=False)))
    # A 1 MiB cap (the PNGs have 3 KB): reading a file asks Python for max_bytes + 1 bytes
    # at once, a transient that tracemalloc would count at the default 1 GiB.
    block = {"input": str(subset), "max_bytes": 2**20} | (
        {"chunk_size": chunk_size} if chunk_size else {})
    params = ",".join(f"predict.{key}={value}" for key, value in block.items())
    seconds, peak, output = run_kedro(project, "run", "--pipelines=predict", "--params",
                                      params, env=_code_env(code))
    match = COMPLETED.search(" ".join(output.split()))
    if match is None:
        raise RuntimeError(f"no pipeline time in kedro's output:\n{output[-2000:]}")
    with (project / "data/07_model_output/predictions.csv").open() as table:
        rows = sum(1 for _ in table) - 1
    figures = {"n": n, "wall_s": seconds, "images_per_s": n / float(match.group(1)),
               "peak_mib": peak / 2**20, "rows": rows}
    if heap:
        figures["traced_mib"] = traced_peak(project, {"predict": block}, code)
    return figures


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 20_000])
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="predict.chunk_size (default: conf/base)")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="checkout whose src/ and conf/ run (default: this one)")
    parser.add_argument("--heap", action="store_true",
                        help="also report the traced peak of Python allocations")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where images and the project go (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp) / "images"
        write_noise_pngs(folder, sizes[-1], CLASSES, SIDE)
        listing = Path(tmp) / "all.txt"
        listing.write_text("".join(f"{path}\n" for path in sorted(folder.rglob("*.png"))))
        (Path(tmp) / "project").mkdir()
        project = make_project(Path(tmp) / "project", args.code.resolve())
        serve_random_model(project)
        rows = []
        for n in sizes:
            rows.append(predict(project, listing, n, args.code.resolve(), args.chunk_size,
                                args.heap))
            logger.info("N=%d: %s", n, {k: round(v, 1) for k, v in rows[-1].items()})
    logger.info("\npredict on N 32x32 PNGs (test_resnet, 10 classes), code %s, chunk size %s, "
                "on %s\n", args.code, args.chunk_size or "conf/base", machine())
    logger.info("| N | wall s | images/s | peak memory MiB | over N=%d, MiB | traced peak "
                "MiB | rows |\n| --- | --- | --- | --- | --- | --- | --- |", sizes[0])
    for row in rows:
        traced = f"{row['traced_mib']:.1f}" if "traced_mib" in row else "-"
        logger.info("| %d | %.1f | %.0f | %.0f | %+.0f | %s | %d |", row["n"], row["wall_s"],
                    row["images_per_s"], row["peak_mib"], row["peak_mib"] - rows[0]["peak_mib"],
                    traced, row["rows"])


if __name__ == "__main__":
    main()
