"""Images in: ingestion (listing, checking into the packed cache, curation), the
torch datasets and loaders over the manifest, the samplers of training rows, the demo.

Decoding itself is :mod:`visrec.core.images`, which ingestion's worker processes import
alone (NumPy and Pillow only), so that each starts in a fraction of a second.
"""

from visrec.core.data.cache import INDEX_FILE as CACHE_INDEX_FILE
from visrec.core.data.cache import (
    CacheMismatch,
    ImageCache,
    check_manifest_cache,
    read_cache,
    stamp_manifest,
    write_cache,
)
from visrec.core.data.cache_update import (
    COMMIT_SECONDS,
    CacheDiskFull,
    UpdateStats,
    update_cache,
)
from visrec.core.data.curation import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    REASONS,
    CurationFacts,
    carve_splits,
    curate,
    ingestion_report,
    make_manifest,
    quarantine_counts,
    summary_lines,
)
from visrec.core.data.datasets import (
    CachedImageDataset,
    ManifestImageDataset,
    Transform,
    auto_num_workers,
    make_loader,
    manifest_dataset,
)
from visrec.core.data.demo import long_tail_counts, make_demo_digits
from visrec.core.data.listing import (
    IMAGE_EXTENSIONS,
    SPLITS,
    IngestionError,
    detect_layout,
    files_to_check,
    list_folder,
    list_labels_file,
    list_source,
    read_labels_file,
    resolve_root,
    source_name,
)
from visrec.core.data.report import CacheSummary, CopyExample, IngestionReport, QuarantineCounts
from visrec.core.data.samplers import (
    SAMPLERS,
    MPerClassBatches,
    SamplerPlan,
    ShardedSampler,
    check_m_per_class,
    make_sampler,
)

__all__ = [
    "CACHE_INDEX_FILE",
    "COMMIT_SECONDS",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "QUARANTINE_COLUMNS",
    "REASONS",
    "SAMPLERS",
    "SPLITS",
    "CacheDiskFull",
    "CacheMismatch",
    "CacheSummary",
    "CachedImageDataset",
    "CopyExample",
    "CurationFacts",
    "ImageCache",
    "IngestionError",
    "IngestionReport",
    "MPerClassBatches",
    "ManifestImageDataset",
    "QuarantineCounts",
    "SamplerPlan",
    "ShardedSampler",
    "Transform",
    "UpdateStats",
    "auto_num_workers",
    "carve_splits",
    "check_m_per_class",
    "check_manifest_cache",
    "curate",
    "detect_layout",
    "files_to_check",
    "ingestion_report",
    "list_folder",
    "list_labels_file",
    "list_source",
    "long_tail_counts",
    "make_demo_digits",
    "make_loader",
    "make_manifest",
    "make_sampler",
    "manifest_dataset",
    "quarantine_counts",
    "read_cache",
    "read_labels_file",
    "resolve_root",
    "source_name",
    "stamp_manifest",
    "summary_lines",
    "update_cache",
    "write_cache",
]
