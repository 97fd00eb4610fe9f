"""Curation: from the listing and the per-file checks to the manifest and the quarantine.

Label conflicts, duplicates and train/val/test leakage are found by content hash;
classes without a training image are dropped; missing val and test splits are carved
per class. Every file left out keeps one reason from :data:`REASONS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visrec.core.data.cache import ImageCache
from visrec.core.data.cache_update import update_cache
from visrec.core.data.listing import (
    SPLIT_RANK,
    SPLITS,
    IngestionError,
    files_to_check,
    list_source,
    resolve_root,
    source_name,
)
from visrec.core.data.report import (
    CacheSummary,
    CopyExample,
    IngestionReport,
    QuarantineCounts,
)
from visrec.core.images import InspectSettings

logger = logging.getLogger(__name__)

# Every reason a file can be left out for; the report counts each, zeros included.
REASONS = (
    "empty_file",            # 0 bytes
    "not_an_image",          # wrong extension, or content no decoder recognises
    "truncated",             # the file ends before its image does
    "too_many_pixels",       # width x height above ingestion.max_pixels (decompression bomb)
    "too_large",             # more bytes than ingestion.max_bytes: refused before reading
    "not_a_regular_file",    # a named pipe, device or socket behind an image name
    "unsupported_format",    # PostScript, EPS, PDF, ...: only raster formats are opened
    "bad_file_name",         # a name that is not UTF-8 (listed with \x escapes)
    "unreadable",            # corrupt data, broken link, permission denied, unreadable folder
    "path_outside_root",     # labels file: absolute or ../ path
    "unknown_split",         # labels file: split not train/val/valid/validation/test
    "missing_file",          # labels file: no such file under the root
    "missing_label",         # labels file: empty label
    "not_in_a_class_folder", # folder layout: a file beside the class folders
    "label_conflict",        # the same content under two labels: every copy left out
    "duplicate",             # the same content twice in one class and split: one kept
    "leakage",               # the same content in two splits: kept on the training side
    "class_not_in_train",    # val/test images of a class with no training image
)
QUARANTINE_COLUMNS = ["path", "label", "split", "reason", "detail"]
MANIFEST_COLUMNS = ["path", "label", "class_index", "split", "width", "height", "bytes",
                    "format", "mode", "hash", "cache_index"]
EXAMPLES = 20  # leakage and duplicate pairs listed in the report


def _carve_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of a class's ``n`` training images go to val and test; one stays in train."""
    n_val = int(np.floor(n * val_fraction + 0.5))
    n_test = int(np.floor(n * test_fraction + 0.5))
    while n_val + n_test >= n and n_val + n_test > 0:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def carve_splits(images: pd.DataFrame, val_fraction: float, test_fraction: float,
                 seed: int) -> pd.DataFrame:
    """Assign rows without a split to train, val or test, stratified by label.

    Val is carved only when no row has split ``val``; test only when none has ``test``.

    Args:
        images: Rows with columns label and split (``None`` means train or to carve).
        val_fraction: Share of each class's training images moved to val.
        test_fraction: Share of each class's training images moved to test.
        seed: Seed of the draw.

    Returns:
        A copy of ``images`` with every split set.
    """
    out = images.copy()
    given = set(out["split"].dropna())
    val_fraction = 0.0 if "val" in given else val_fraction
    test_fraction = 0.0 if "test" in given else test_fraction
    split = np.array(out["split"].fillna("train"), dtype=object)  # a writable copy
    rng = np.random.default_rng(seed)
    positions = np.flatnonzero(split == "train")
    groups = pd.Series(positions).groupby(out["label"].to_numpy()[positions]).indices
    for label in sorted(groups, key=str):  # labels are strings
        index = positions[groups[label]]
        n_val, n_test = _carve_counts(len(index), val_fraction, test_fraction)
        drawn = rng.permutation(index)
        split[drawn[:n_val]] = "val"
        split[drawn[n_val:n_val + n_test]] = "test"
    out["split"] = split
    return out


def _mark_copies(valid: pd.DataFrame) -> pd.DataFrame:
    """Reason and detail for label conflicts, duplicates and leakage among valid rows.

    Returns:
        Columns reason and detail, indexed like ``valid``; empty reason for a kept row.
    """
    marks = pd.DataFrame({"reason": "", "detail": ""}, index=valid.index)
    copies = valid[valid.duplicated("hash", keep=False)]
    if copies.empty:
        return marks
    labels = copies.groupby("hash")["label"].agg(lambda s: sorted(set(s)))
    conflict = copies["hash"].map(labels.map(len)) > 1
    marks.loc[copies.index[conflict], "reason"] = "label_conflict"
    marks.loc[copies.index[conflict], "detail"] = (
        "same content under labels " + copies.loc[conflict, "hash"].map(labels).astype(str))
    same_label = copies[~conflict].assign(
        split_name=lambda f: f["split"].fillna("train"),
        rank=lambda f: f["split_name"].map(SPLIT_RANK)).sort_values(["hash", "rank", "path"])
    keeper = same_label.groupby("hash")[["path", "rank", "split_name"]].transform("first")
    extra = same_label.groupby("hash").cumcount() > 0  # a path listed twice is a copy too
    leak = extra & (same_label["rank"] > keeper["rank"])
    marks.loc[same_label.index[leak], "reason"] = "leakage"
    marks.loc[same_label.index[extra & ~leak], "reason"] = "duplicate"
    marks.loc[same_label.index[extra], "detail"] = (
        "same content as " + keeper["path"][extra] + " (" + keeper["split_name"][extra] + ")")
    return marks


def _examples(quarantine: pd.DataFrame, reason: str) -> tuple[CopyExample, ...]:
    rows = quarantine[quarantine["reason"] == reason].head(EXAMPLES)
    return tuple(CopyExample(path=p, split=None if pd.isna(s) else s, detail=d)
                 for p, s, d in zip(rows["path"], rows["split"], rows["detail"], strict=True))


@dataclass(frozen=True)
class CurationFacts:
    """What curation learnt, for the ingestion report.

    Attributes:
        classes: Classes with a valid training image, sorted: the class indices.
        dropped_classes: Classes seen without a valid training image.
        counts: Manifest images per split, then per class.
        duplicates: The first duplicates left out.
        leakage: The first copies across splits left out.
        carved: The splits carved from train (``val``, ``test``), not given by the source.
    """

    classes: tuple[str, ...]
    dropped_classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    duplicates: tuple[CopyExample, ...]
    leakage: tuple[CopyExample, ...]
    carved: tuple[str, ...] = ()


def curate(listing: pd.DataFrame, checked: pd.DataFrame, class_folders: list[str],
           val_fraction: float, test_fraction: float, seed: int,
           source: str = "ingestion.root"
           ) -> tuple[pd.DataFrame, pd.DataFrame, CurationFacts]:
    """Turn the listing and the per-file checks into the manifest and the quarantine table.

    Args:
        listing: From :func:`list_folder` or :func:`list_labels_file`.
        checked: The image cache's index: one row per opened file.
        class_folders: Class names seen (empty folders too), to report dropped classes.
        val_fraction: Share of train carved into val when no val split is given.
        test_fraction: Share of train carved into test when no test split is given.
        seed: Seed of the carving.
        source: The parameter and value the images came from, for the error.

    Returns:
        ``(manifest, quarantine, facts)``: manifest with :data:`MANIFEST_COLUMNS`, sorted
        by split, class and path; quarantine with :data:`QUARANTINE_COLUMNS`; facts for
        the report (classes, counts, duplicates, leakage, dropped classes).

    Raises:
        IngestionError: If fewer than 2 classes have a valid training image.
    """
    files = checked.drop(columns=["bytes", "mtime_ns"]).rename(
        columns={"reason": "file_reason", "detail": "file_detail"})
    rows = listing.merge(files, on="path", how="left")
    unchecked = (rows["reason"] == "") & rows["hash"].isna()
    rows.loc[unchecked, ["file_reason", "file_detail"]] = ["unreadable", "not checked"]
    from_file = rows["reason"] == ""
    rows.loc[from_file, "reason"] = rows.loc[from_file, "file_reason"].fillna("")
    rows.loc[from_file, "detail"] = rows.loc[from_file, "file_detail"].fillna("")
    valid = rows["reason"] == ""
    rows.loc[valid, ["reason", "detail"]] = _mark_copies(rows[valid]).to_numpy()
    valid = rows["reason"] == ""
    in_train = valid & rows["split"].fillna("train").eq("train")
    classes = sorted(rows.loc[in_train, "label"].unique())
    orphan = valid & ~rows["label"].isin(classes)
    rows.loc[orphan, ["reason", "detail"]] = ["class_not_in_train",
                                              "its class has no valid training image"]
    valid = rows["reason"] == ""
    dropped = sorted((set(class_folders) | set(rows["label"])) - {""} - set(classes))
    if len(classes) < 2:
        found = rows.loc[~valid, "reason"].value_counts().to_dict()
        raise IngestionError(
            f"{source}: found {len(classes)} class with valid training images ({classes}); a "
            f"classifier needs at least 2. Left out: {found or 'nothing'}; classes without "
            f"a valid training image: {dropped[:10]}")
    quarantine = rows.loc[~valid, QUARANTINE_COLUMNS].sort_values(["reason", "path"])
    quarantine = quarantine.reset_index(drop=True)
    manifest = _manifest(rows[valid], classes, val_fraction, test_fraction, seed)
    given = set(rows.loc[valid, "split"].dropna())
    carved = tuple(split for split in ("val", "test") if split not in given
                   and (manifest["split"] == split).any())
    counts = {s: {str(label): int(n) for label, n in manifest.loc[manifest["split"] == s, "label"]
                  .value_counts().reindex(classes, fill_value=0).items()} for s in SPLITS}
    facts = CurationFacts(classes=tuple(classes), dropped_classes=tuple(dropped), counts=counts,
                          duplicates=_examples(quarantine, "duplicate"),
                          leakage=_examples(quarantine, "leakage"), carved=carved)
    return manifest, quarantine, facts


def _manifest(valid: pd.DataFrame, classes: list[str], val_fraction: float,
              test_fraction: float, seed: int) -> pd.DataFrame:
    manifest = carve_splits(valid.reset_index(drop=True), val_fraction, test_fraction, seed)
    manifest["class_index"] = manifest["label"].map({c: i for i, c in enumerate(classes)})
    manifest["cache_index"] = manifest["slot"]
    manifest["split_rank"] = manifest["split"].map(SPLIT_RANK)
    manifest = manifest.sort_values(["split_rank", "class_index", "path"], ignore_index=True)
    return manifest[MANIFEST_COLUMNS].astype(
        {"path": str, "label": str, "class_index": "int64", "split": str, "width": "int64",
         "height": "int64", "bytes": "int64", "format": str, "mode": str, "hash": str,
         "cache_index": "int64"})


def quarantine_counts(quarantine: pd.DataFrame) -> QuarantineCounts:
    """Quarantined files by reason (every reason, zeros included), by class and by split."""
    by_reason = quarantine["reason"].value_counts()
    return QuarantineCounts(
        total=len(quarantine),
        by_reason={reason: int(by_reason.get(reason, 0)) for reason in REASONS},
        by_class={label: {r: int(n) for r, n in group.value_counts().items()}
                  for label, group in quarantine.groupby("label")["reason"] if label},
        by_split={split: {r: int(n) for r, n in group.value_counts().items()}
                  for split, group in quarantine.assign(
                      split=quarantine["split"].fillna("train")).groupby("split")["reason"]},
    )


def ingestion_report(facts: CurationFacts, manifest: pd.DataFrame, quarantine: pd.DataFrame,
                     cache: ImageCache, root: str, labels_file: str | None,
                     channels: int) -> IngestionReport:
    """The report of one ingestion.

    Args:
        facts: What :func:`curate` learnt.
        manifest: The manifest it made.
        quarantine: The files it left out.
        cache: The packed cache the manifest's ``cache_index`` points into.
        root: ``ingestion.root`` as configured.
        labels_file: ``ingestion.labels_file``.
        channels: 3 for RGB, 1 for grayscale.
    """
    cached = int((manifest["cache_index"] >= 0).sum()) if cache.enabled else 0
    return IngestionReport(
        root=root, labels_file=labels_file, channels=channels, classes=facts.classes,
        num_images=len(manifest), counts=facts.counts,
        quarantine=quarantine_counts(quarantine), duplicates=facts.duplicates,
        leakage=facts.leakage, dropped_classes=facts.dropped_classes,
        carved_splits=facts.carved,
        cache=CacheSummary(enabled=cache.enabled, resolution=cache.settings.resolution,
                           channels=cache.settings.channels, images=cached,
                           bytes=cache.slots * cache.slot_bytes if cache.enabled else 0))


def summary_lines(report: IngestionReport, quarantine: pd.DataFrame,
                  shown: int = 5) -> list[str]:
    """A one-screen summary of an ingestion report, for the log."""
    sizes = " / ".join(f"{s} {sum(report.counts[s].values())}" for s in SPLITS)
    lines = [f"ingested {report.num_images} images of {len(report.classes)} classes "
             f"from {report.root} ({sizes})"]
    reasons = {r: n for r, n in report.quarantine.by_reason.items() if n}
    lines.append(f"quarantined {report.quarantine.total} files"
                 + (": " + ", ".join(f"{r} {n}" for r, n in reasons.items()) if reasons else ""))
    for record in quarantine.head(shown).itertuples():
        lines.append(f"  {record.reason}: {record.path} ({record.detail})")
    if len(quarantine) > shown:
        lines.append(f"  ... {len(quarantine) - shown} more in the quarantine table")
    if report.dropped_classes:
        lines.append(f"classes left out (no valid training image): "
                     f"{list(report.dropped_classes[:10])}")
    cache = report.cache
    lines.append(f"packed cache: {cache.images} images at {cache.resolution}px, "
                 f"{cache.bytes / 2**20:.1f} MiB" if cache.enabled else
                 "packed cache: off; training reads the image files")
    return lines


def make_manifest(root: str | Path, val_fraction: float, test_fraction: float, seed: int,
                   labels_file: str | Path | None = None, max_pixels: int = 100_000_000,
                   channels: int = 3, workers: int = 1, max_bytes: int | None = 2**30
                   ) -> tuple[pd.DataFrame, pd.DataFrame, CurationFacts]:
    """List, check and curate in one call, without a packed cache: the library entry point.

    The ingestion pipeline runs the same steps as three nodes, with the cache.

    Args:
        root: The image folder (or the folder a labels file's paths are relative to).
        val_fraction: Share of train carved into val when no val split is given.
        test_fraction: Share of train carved into test when no test split is given.
        seed: Seed of the carving.
        labels_file: CSV or parquet with path, label[, split]; None scans the folder.
        max_pixels: Files with more pixels are quarantined as ``too_many_pixels``.
        channels: 3 for RGB, 1 for grayscale.
        workers: Processes that open the files.
        max_bytes: Larger files are quarantined as ``too_large`` unread; None: no cap.

    Returns:
        ``(manifest, quarantine, facts)`` as :func:`curate` returns them.

    Raises:
        IngestionError: If the folder is missing or holds fewer than 2 usable classes.
    """
    folder = resolve_root(root)
    listing, names = list_source(folder, labels_file, max_bytes)
    settings = InspectSettings(max_pixels, 0, channels, max_bytes)
    checked, _ = update_cache(ImageCache(folder / ".unused", settings), folder,
                              files_to_check(listing), settings, workers)
    return curate(listing, checked.index, names, val_fraction, test_fraction, seed,
                  source_name(root, labels_file))
