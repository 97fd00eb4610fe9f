"""Nodes of the ingestion pipeline."""

import logging

import pandas as pd

from visrec.core.ingest import build_manifest
from visrec.params import IngestionParams

logger = logging.getLogger(__name__)


def scan_images(params: IngestionParams, seed: int) -> tuple[pd.DataFrame, dict]:
    """Scan ``ingestion.root`` into the manifest and the ingestion report."""
    manifest, report = build_manifest(params.root, val_fraction=params.val_fraction,
                                      test_fraction=params.test_fraction, seed=seed)
    sizes = manifest["split"].value_counts().to_dict()
    logger.info("ingested %d images of %d classes from %s (%s); %d files skipped",
                len(manifest), len(report["classes"]), report["root"], sizes,
                report["num_skipped"])
    return manifest, report
