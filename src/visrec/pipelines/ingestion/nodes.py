"""Nodes of the ingestion pipeline."""

import logging
import time

import pandas as pd

from visrec.core.data import (
    COMMIT_SECONDS,
    ImageCache,
    IngestionReport,
    curate,
    files_to_check,
    ingestion_report,
    list_source,
    resolve_root,
    source_name,
    stamp_manifest,
    summary_lines,
    update_cache,
)
from visrec.core.images import InspectSettings, worker_count
from visrec.core.models import cache_resolution
from visrec.params import IngestionParams

logger = logging.getLogger(__name__)


def list_images(params: IngestionParams) -> tuple[pd.DataFrame, list[str]]:
    """List the candidate images of ``ingestion.root`` or ``ingestion.labels_file``.

    Args:
        params: The ``ingestion`` block.

    Returns:
        ``(listing, class_names)``: one row per file with label, given split, size,
        modification time and, for files refused without opening, a reason; and every
        class name seen (empty class folders too).
    """
    return list_source(resolve_root(params.root), params.labels_file, params.max_bytes)


def check_images(listing: pd.DataFrame, previous: ImageCache, params: IngestionParams,
                 image_size: int | None, model: str) -> ImageCache:
    """Open every new or changed file once, in parallel: check it and pack it for training.

    Args:
        listing: From :func:`list_images`.
        previous: The cache as the last run left it (``image_cache_state``).
        params: The ``ingestion`` block.
        image_size: ``training.image_size``: the cache resolution is a little above it.
        model: ``training.model``: its default size when ``image_size`` is None.

    Returns:
        The updated cache (committed by its dataset).
    """
    files = files_to_check(listing)
    resolution = 0
    if params.cache.enabled:
        resolution = params.cache.resolution or cache_resolution(image_size, model)
        needed = len(files) * resolution**2 * params.channels / 1e9
        if needed > params.cache.max_disk_gb:
            logger.warning("packed cache off: %d images at %dpx need %.1f GB, above "
                           "ingestion.cache.max_disk_gb = %.1f; training will read the files",
                           len(files), resolution, needed, params.cache.max_disk_gb)
            resolution = 0
    settings = InspectSettings(params.max_pixels, resolution, params.channels,
                               params.max_bytes)
    workers = worker_count(params.num_workers)
    start = time.perf_counter()
    cache, stats = update_cache(previous, resolve_root(params.root), files, settings,
                                 workers, commit_seconds=COMMIT_SECONDS)
    seconds = time.perf_counter() - start
    logger.info("checked %d of %d files in %.1f s (%.0f files/s, %d processes): %d unchanged, "
                "%d decoded, %d removed%s", stats.checked, len(files), seconds,
                len(files) / max(seconds, 1e-9), workers, stats.unchanged, stats.decoded,
                stats.removed, ", pool compacted" if stats.compacted else "")
    return cache


def curate_images(listing: pd.DataFrame, class_names: list[str], cache: ImageCache,
                  params: IngestionParams, seed: int
                  ) -> tuple[pd.DataFrame, pd.DataFrame, IngestionReport]:
    """Drop conflicts, duplicates and leakage, carve missing splits, and report.

    Args:
        listing: From :func:`list_images`.
        class_names: Every class name seen.
        cache: The checked files and their cache slots.
        params: The ``ingestion`` block.
        seed: Seeds the carving of val and test.

    Returns:
        ``(manifest, quarantine, report)``.
    """
    manifest, quarantine, facts = curate(listing, cache.index, class_names,
                                         params.val_fraction, params.test_fraction, seed,
                                         source_name(params.root, params.labels_file))
    report = ingestion_report(facts, manifest, quarantine, cache, root=params.root,
                              labels_file=params.labels_file, channels=params.channels)
    for line in summary_lines(report, quarantine):
        logger.info("%s", line)
    return stamp_manifest(manifest, cache), quarantine, report
