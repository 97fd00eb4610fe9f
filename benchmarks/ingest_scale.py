"""Benchmark: the ingestion pipeline on N generated 32x32 PNGs, first run and re-run.

    .venv/bin/python benchmarks/ingest_scale.py [--sizes 10000 100000] [--full]

For each N it writes N noise PNGs (each unique) into a folder of 10 class folders, then
runs `kedro run --pipelines=ingestion` twice in a throwaway copy of the project: a first
run (every file opened, checked, hashed and packed into the cache) and a re-run with
nothing changed. It also times one pass of the training transform over up to 10,000 of
the images, read from the packed cache and from the files.

Prints a Markdown table: files/s of each run (N divided by the seconds Kedro reports for
the pipeline, which leave out interpreter start-up and imports), the wall seconds of each
command, and the peak resident memory of the command's whole process tree (the kedro
process and its validation workers, summed). `--full` adds N = 1,000,000.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
import time
from pathlib import Path

from common import machine, make_project, run_kedro, write_noise_pngs

logger = logging.getLogger("benchmarks.ingest_scale")
SIDE = 32
COMPLETED = re.compile(r"Pipeline execution completed successfully in ([0-9.]+) sec")


def ingest(project: Path, folder: Path) -> dict[str, float]:
    """One `kedro run --pipelines=ingestion` on ``folder``; its figures."""
    seconds, peak, output = run_kedro(project, "run", "--pipelines=ingestion",
                                      "--params", f"ingestion.root={folder}")
    match = COMPLETED.search(" ".join(output.split()))
    if match is None:
        raise RuntimeError(f"no pipeline time in kedro's output:\n{output[-2000:]}")
    return {"pipeline_s": float(match.group(1)), "wall_s": seconds, "peak_gib": peak / 2**30}


def loader_speed(project: Path, folder: Path, limit: int = 10_000) -> dict[str, float]:
    """Images/s of one pass of the training transform over the packed cache and over the
    PNG files, in this process (no loader workers, as on a 2-core machine)."""
    import pandas as pd  # noqa: PLC0415 - torch and visrec load only for this figure
    import torch  # noqa: PLC0415

    from visrec.core.augment import make_spec, make_train_transform  # noqa: PLC0415
    from visrec.core.data import manifest_dataset, read_cache  # noqa: PLC0415

    torch.set_num_threads(1)
    rows = pd.read_parquet(project / "data/02_intermediate/manifest.parquet").head(limit)
    cache = read_cache(project / "data/04_feature/image_cache")
    # The loader's half of the training transform; the crop and flip run per batch later.
    transform = make_train_transform(make_spec("flip_crop", scale=(0.35, 1.0), hflip=True),
                                     SIDE).sample
    speeds = {}
    for name, source in (("cache", cache), ("files", None)):
        dataset = manifest_dataset(rows, source, folder, transform)
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        speeds[f"{name}_images_per_s"] = len(dataset) / (time.perf_counter() - start)
    return speeds


def measure(n: int, workdir: Path) -> dict[str, float]:
    """Generate ``n`` images, ingest them twice; the figures of both runs."""
    folder = workdir / f"images_{n}"
    write_noise_pngs(folder, n, side=SIDE)
    (workdir / f"project_{n}").mkdir()
    project = make_project(workdir / f"project_{n}")
    first = ingest(project, folder)
    again = ingest(project, folder)
    return {"n": n, **loader_speed(project, folder),
            "first_files_per_s": n / first["pipeline_s"],
            "rerun_files_per_s": n / again["pipeline_s"],
            "first_s_per_file_us": first["pipeline_s"] / n * 1e6,
            "first_wall_s": first["wall_s"], "rerun_wall_s": again["wall_s"],
            "peak_gib": max(first["peak_gib"], again["peak_gib"])}


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--full", action="store_true", help="add N = 1,000,000")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where images and projects go (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = [*args.sizes, *([1_000_000] if args.full else [])]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = []
        for n in sizes:
            rows.append(measure(n, Path(tmp)))
            logger.info("N=%d: %s", n, {k: round(v, 3) for k, v in rows[-1].items()})
    logger.info("\ningestion of N 32x32 PNGs on %s\n", machine())
    logger.info("| N | first run files/s | re-run files/s | first run µs/file | first run "
                "wall s | re-run wall s | peak memory GiB |\n| --- | --- | --- | --- | --- "
                "| --- | --- |")
    for row in rows:
        logger.info("| %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.2f |", row["n"],
                    row["first_files_per_s"], row["rerun_files_per_s"],
                    row["first_s_per_file_us"], row["first_wall_s"], row["rerun_wall_s"],
                    row["peak_gib"])
    logger.info("\ntraining transform (flip_crop, %d px), one process: %.0f images/s from the "
                "packed cache, %.0f images/s decoding the PNG files", SIDE,
                rows[0]["cache_images_per_s"], rows[0]["files_images_per_s"])
    base = rows[0]
    for row in rows[1:]:
        logger.info("seconds per file at N=%d / at N=%d: %.2f", row["n"], base["n"],
                    row["first_s_per_file_us"] / base["first_s_per_file_us"])


if __name__ == "__main__":
    main()
