"""The ingestion report: what ingestion found, kept and left out, handed to later stages."""

from __future__ import annotations

from visrec.core.records import Record


class CopyExample(Record):
    """One file left out as a copy of another (a duplicate, or leakage between splits)."""

    path: str
    split: str | None  # None: the split was to be carved
    detail: str  # "same content as <path> (<split>)"


class QuarantineCounts(Record):
    """Files left out, by reason (every reason, zeros included), by class and by split."""

    total: int
    by_reason: dict[str, int]
    by_class: dict[str, dict[str, int]]
    by_split: dict[str, dict[str, int]]


class CacheSummary(Record):
    """The packed cache as ingestion left it."""

    enabled: bool
    resolution: int  # side of the cached squares, pixels (0: nothing cached)
    channels: int
    images: int  # manifest images found in the cache
    bytes: int  # size of the pool


class IngestionReport(Record):
    """The images ingestion accepted and the files it left out.

    Attributes:
        root: ``ingestion.root`` as configured (a relative root stays portable).
        labels_file: ``ingestion.labels_file``, or None for the folder layout.
        channels: 3 for RGB, 1 for grayscale.
        classes: Class names in class-index order.
        num_images: Images in the manifest.
        counts: Images per split, then per class.
        quarantine: Files left out, counted.
        duplicates: The first duplicates left out.
        leakage: The first copies across splits left out.
        dropped_classes: Classes without a valid training image.
        cache: The packed cache.
        carved_splits: The splits carved from the training images (``val``, ``test``),
            not given by the folder or labels file.
    """

    root: str
    labels_file: str | None
    channels: int
    classes: tuple[str, ...]
    num_images: int
    counts: dict[str, dict[str, int]]
    quarantine: QuarantineCounts
    duplicates: tuple[CopyExample, ...]
    leakage: tuple[CopyExample, ...]
    dropped_classes: tuple[str, ...]
    cache: CacheSummary
    carved_splits: tuple[str, ...] = ()
