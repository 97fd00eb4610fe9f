"""From an image folder or a labels file to a clean manifest and a quarantine table.

Ingestion runs in three steps, each a function here:

1. :func:`list_folder` / :func:`list_labels_file`: every candidate file with its label,
   given split, size and modification time; problems visible without opening a file
   (wrong extension, path outside the root, unknown split, ...) are already reasons.
2. :mod:`visrec.core.cache` opens each remaining file once, in parallel.
3. :func:`curate`: label conflicts, duplicates and leakage by content hash, classes
   without images, carving of missing splits, and the report.

Nothing in the user's folder is ever moved, modified or deleted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from visrec.core.cache import ImageCache, update_cache
from visrec.core.images import InspectSettings

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Folder names (and labels-file values) accepted for each split, compared case-insensitively.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}
SPLITS = ("train", "val", "test")
SPLIT_RANK = {"train": 0, "val": 1, "test": 2}  # leakage keeps the copy on the training side
# Every reason a file can be left out for; the report counts each, zeros included.
REASONS = (
    "empty_file",            # 0 bytes
    "not_an_image",          # wrong extension, or content no decoder recognises
    "truncated",             # the file ends before its image does
    "too_many_pixels",       # width x height above ingestion.max_pixels (decompression bomb)
    "unreadable",            # corrupt data, broken symbolic link, permission denied
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
LISTING_DTYPES = {"path": "str", "label": "str", "split": "str", "bytes": "int64",
                  "mtime_ns": "int64", "reason": "str", "detail": "str"}  # split NaN: carve
LISTING_COLUMNS = list(LISTING_DTYPES)
QUARANTINE_COLUMNS = ["path", "label", "split", "reason", "detail"]
MANIFEST_COLUMNS = ["path", "label", "class_index", "split", "width", "height", "bytes",
                    "format", "mode", "hash", "cache_index"]
EXAMPLES = 20  # leakage and duplicate pairs listed in the report


class IngestionError(ValueError):
    """The image source cannot be turned into a usable manifest."""


# --- listing an image folder -------------------------------------------------------------


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(root: Path) -> dict[str, Path | None]:
    """Find the split folders of ``root``.

    Args:
        root: The image folder.

    Returns:
        ``{"train": Path, "val": Path | None, "test": Path | None}``; for a folder of
        class folders, ``train`` is ``root`` itself and the other two are ``None``.

    Raises:
        IngestionError: If split folders exist without a ``train`` folder, or twice.
    """
    splits: dict[str, Path | None] = dict.fromkeys(SPLITS)
    for folder in _visible_dirs(root):
        split = SPLIT_ALIASES.get(folder.name.lower())
        if split is None:
            continue
        if splits[split] is not None:
            raise IngestionError(
                f"ingestion.root = '{root}': both '{splits[split].name}' and '{folder.name}' "
                f"name the {split} split; keep one"
            )
        splits[split] = folder
    if not any(splits.values()):
        return {"train": root, "val": None, "test": None}
    if splits["train"] is None:
        raise IngestionError(
            f"ingestion.root = '{root}': found split folders "
            f"{sorted(p.name for p in splits.values() if p)} but no 'train' folder; "
            "accepted layouts: one folder per class, or train/ [val/] [test/] each "
            "with one folder per class"
        )
    others = [p.name for p in _visible_dirs(root) if p.name.lower() not in SPLIT_ALIASES]
    if others:
        logger.warning("ingestion.root: ignoring folders that are not splits: %s", others)
    return splits


class _Walker:
    """Walks folders with ``os.scandir``, following symbolic links to folders once.

    A folder already visited (by device and inode) is not entered again: a link back to
    an ancestor cannot loop, and a folder linked twice is listed once.
    """

    def __init__(self, root: Path, progress: tqdm) -> None:
        self.root = root
        self.progress = progress
        self.seen: set[tuple[int, int]] = set()
        self.skipped_links: list[str] = []
        self.prefix = len(str(root)) + 1  # entry.path[prefix:] is the path under the root

    def enter(self, folder: Path) -> bool:
        """Whether ``folder`` is new (and now marked as seen)."""
        info = folder.stat()
        key = (info.st_dev, info.st_ino)
        if key in self.seen:
            self.skipped_links.append(folder.relative_to(self.root).as_posix())
            return False
        self.seen.add(key)
        return True

    def files(self, folder: str) -> Iterator[tuple[str, os.DirEntry]]:
        """``(path relative to the root, entry)`` of every visible file under ``folder``."""
        with os.scandir(folder) as scan:
            entries = sorted((e for e in scan if not e.name.startswith(".")),
                             key=lambda e: e.name)
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a symbolic link
            except OSError:
                is_dir = False
            if is_dir:
                if self.enter(Path(entry.path)):
                    yield from self.files(entry.path)
            else:
                self.progress.update()
                yield entry.path[self.prefix:], entry


def _stat_row(relative: str, entry: os.DirEntry, label: str, split: str | None) -> tuple:
    suffix = PurePosixPath(relative).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return (relative, label, split, 0, 0, "not_an_image",
                f"extension '{suffix}' is not one of {sorted(IMAGE_EXTENSIONS)}")
    try:
        info = entry.stat()  # follows a symbolic link
    except OSError as error:
        detail = ("broken symbolic link" if entry.is_symlink()
                  else f"{type(error).__name__}: {error}")
        return relative, label, split, 0, 0, "unreadable", detail
    return relative, label, split, info.st_size, info.st_mtime_ns, "", ""


def list_folder(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """Every visible file of an image folder in either layout, with label and split.

    Args:
        root: The image folder (resolved).

    Returns:
        ``(listing, class_folders)``: the listing has :data:`LISTING_COLUMNS` (``split``
        None where it must be carved; ``reason`` empty for a file to open); class_folders
        names every class folder seen, empty ones included.
    """
    rows, class_folders = _Rows(), set()
    with tqdm(desc="scanning", unit=" files", disable=None, mininterval=1.0) as progress:
        walker = _Walker(root, progress)
        walker.enter(root)
        for split, split_dir in detect_layout(root).items():
            if split_dir is None:
                continue
            given = None if split_dir == root else split  # None: carved later
            if split_dir != root:
                walker.enter(split_dir)
            with os.scandir(split_dir) as scan:
                entries = sorted((e for e in scan if not e.name.startswith(".")),
                                 key=lambda e: e.name)
            for entry in entries:
                relative = Path(entry.path).relative_to(root).as_posix()
                if not entry.is_dir():
                    rows.add((relative, "", given, 0, 0, "not_in_a_class_folder",
                                 "files must be inside a class folder"))
                    continue
                class_folders.add(entry.name)
                if not walker.enter(Path(entry.path)):
                    continue
                for path, item in walker.files(entry.path):
                    rows.add(_stat_row(path, item, entry.name, given))
        if walker.skipped_links:
            logger.warning("ingestion.root: %d folders reached twice through symbolic links "
                           "were listed once: %s", len(walker.skipped_links),
                           walker.skipped_links[:5])
    return _listing(rows, f"ingestion.root = '{root}'"), sorted(class_folders)


class _Rows:
    """Listing rows gathered into typed frames every ``BATCH_ROWS`` rows: a million files
    cost compact columns, not a million Python tuples."""

    BATCH_ROWS = 50_000

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.batch: list[tuple] = []

    def add(self, row: tuple) -> None:
        """Add one row in :data:`LISTING_COLUMNS` order."""
        self.batch.append(row)
        if len(self.batch) >= self.BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Turn the rows gathered so far into a typed frame."""
        if self.batch:
            frame = pd.DataFrame(self.batch, columns=LISTING_COLUMNS)
            self.frames.append(frame.astype(LISTING_DTYPES))
            self.batch = []

    def table(self) -> pd.DataFrame:
        """Every row, as one frame."""
        self.flush()
        if not self.frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in LISTING_DTYPES.items()})
        return pd.concat(self.frames, ignore_index=True)


def _listing(rows: _Rows, source: str) -> pd.DataFrame:
    """The listing table; an error when it has no file to open.

    Args:
        rows: The gathered rows.
        source: The parameter and value the files came from, for the error.
    """
    listing = rows.table()
    if not (listing["reason"] == "").any():
        found = listing["reason"].value_counts().to_dict()
        raise IngestionError(
            f"{source}: no image files found ({found or 'nothing at all'}); expected one "
            "folder per class, or train/ [val/] [test/] with one folder per class, or a "
            f"labels file, holding {', '.join(sorted(IMAGE_EXTENSIONS))} files")
    return listing


# --- listing a labels file ---------------------------------------------------------------


def read_labels_file(path: Path) -> pd.DataFrame:
    """The ``path``, ``label`` and ``split`` columns of a CSV or parquet labels file.

    Raises:
        IngestionError: If the file is missing, of another type, or lacks a column.
    """
    key = f"ingestion.labels_file = '{path}'"
    if not path.is_file():
        raise IngestionError(f"{key}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix in {".parquet", ".pq"}:
        table = pd.read_parquet(path)
    else:
        raise IngestionError(f"{key}: unsupported type '{suffix}'; give a .csv or .parquet "
                             "file with columns path, label and optionally split")
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise IngestionError(f"{key}: missing columns {sorted(missing)}; found "
                             f"{list(table.columns)}; need path, label and optionally split")
    if "split" not in table:
        table["split"] = ""
    table = table[["path", "label", "split"]].fillna("").astype(str)
    table["label"] = table["label"].str.strip()  # " cat" and "cat" are one class
    return table


def _labels_file_row(root: Path, path: str, label: str, split: str) -> tuple:
    """A listing row for one labels-file row; problems found without opening the file."""
    text = path.strip().replace("\\", "/")
    normal = PurePosixPath(os.path.normpath(text)).as_posix() if text else ""
    split_name = split.strip().lower()
    given = SPLIT_ALIASES.get(split_name) if split_name else None
    suffix = PurePosixPath(normal).suffix.lower()
    checks = (
        (not text or os.path.isabs(text) or normal == ".." or normal.startswith("../"),
         "path_outside_root", "paths must be relative to ingestion.root and stay inside it"),
        (bool(split_name) and given is None, "unknown_split",
         f"split '{split}': accepted {sorted(SPLIT_ALIASES)} or empty (carved)"),
        (not label.strip(), "missing_label", "empty label"),
        (suffix not in IMAGE_EXTENSIONS, "not_an_image",
         f"extension '{suffix}' is not one of {sorted(IMAGE_EXTENSIONS)}"),
    )
    for failed, reason, detail in checks:
        if failed:
            return (text if reason == "path_outside_root" else normal, label, given, 0, 0,
                    reason, detail)
    try:
        info = (root / normal).stat()
    except FileNotFoundError:
        return normal, label, given, 0, 0, "missing_file", "no such file under the root"
    except OSError as error:
        return normal, label, given, 0, 0, "unreadable", f"{type(error).__name__}: {error}"
    return normal, label, given, info.st_size, info.st_mtime_ns, "", ""


def list_labels_file(root: Path, labels_file: Path) -> tuple[pd.DataFrame, list[str]]:
    """The files a labels file names, with label and split, checked without opening them.

    Args:
        root: Folder the file's paths are relative to (resolved).
        labels_file: CSV or parquet with columns path, label and optionally split.

    Returns:
        ``(listing, labels)`` as :func:`list_folder` returns them.
    """
    table = read_labels_file(labels_file)
    rows = _Rows()
    for row in tqdm(table.itertuples(index=False, name=None), total=len(table),
                    desc="scanning", unit=" files", disable=None, mininterval=1.0):
        rows.add(_labels_file_row(root, *row))
    labels = sorted({label for label in table["label"] if label.strip()})
    return _listing(rows, f"ingestion.labels_file = '{labels_file}'"), labels


def resolve_root(root: str | Path) -> Path:
    """``ingestion.root`` made absolute.

    Raises:
        IngestionError: If it is not a folder.
    """
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise IngestionError(f"ingestion.root = '{root}': folder does not exist "
                             f"(resolved to {folder})")
    return folder


def list_source(root: Path, labels_file: str | Path | None) -> tuple[pd.DataFrame, list[str]]:
    """:func:`list_labels_file` when a labels file is given, else :func:`list_folder`."""
    if labels_file is None:
        return list_folder(root)
    return list_labels_file(root, Path(labels_file).expanduser())


def source_name(root: str | Path, labels_file: str | Path | None) -> str:
    """The parameter and value the images come from, for messages."""
    if labels_file is None:
        return f"ingestion.root = '{root}'"
    return f"ingestion.labels_file = '{labels_file}'"


def files_to_check(listing: pd.DataFrame) -> pd.DataFrame:
    """Unique ``path``, ``bytes``, ``mtime_ns`` of the listed files left to open."""
    files = listing.loc[listing["reason"] == "", ["path", "bytes", "mtime_ns"]]
    return files.drop_duplicates("path").reset_index(drop=True)


# --- curation ----------------------------------------------------------------------------


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
    for label in sorted(groups):
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
    conflict = copies["hash"].map(labels.str.len()) > 1
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


def _examples(quarantine: pd.DataFrame, reason: str) -> list[dict[str, str]]:
    rows = quarantine[quarantine["reason"] == reason].head(EXAMPLES)
    return [{"path": p, "split": None if pd.isna(s) else s, "detail": d}  # JSON has no NaN
            for p, s, d in zip(rows["path"], rows["split"], rows["detail"], strict=True)]


def curate(listing: pd.DataFrame, checked: pd.DataFrame, class_folders: list[str],
           val_fraction: float, test_fraction: float, seed: int,
           source: str = "ingestion.root") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
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
    facts = {"classes": classes, "dropped_classes": dropped,
             "counts": {s: manifest.loc[manifest["split"] == s, "label"].value_counts()
                        .reindex(classes, fill_value=0).astype(int).to_dict() for s in SPLITS},
             "duplicates": _examples(quarantine, "duplicate"),
             "leakage": _examples(quarantine, "leakage")}
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


def quarantine_counts(quarantine: pd.DataFrame) -> dict:
    """Quarantined files by reason (every reason, zeros included), by class and by split."""
    by_reason = quarantine["reason"].value_counts()
    return {
        "total": len(quarantine),
        "by_reason": {reason: int(by_reason.get(reason, 0)) for reason in REASONS},
        "by_class": {label: {r: int(n) for r, n in group.value_counts().items()}
                     for label, group in quarantine.groupby("label")["reason"] if label},
        "by_split": {split: {r: int(n) for r, n in group.value_counts().items()}
                     for split, group in quarantine.assign(
                         split=quarantine["split"].fillna("train")).groupby("split")["reason"]},
    }


def summary_lines(report: dict, quarantine: pd.DataFrame, shown: int = 5) -> list[str]:
    """A one-screen summary of an ingestion report, for the log."""
    counts = report["counts"]
    sizes = " / ".join(f"{s} {sum(counts[s].values())}" for s in SPLITS)
    lines = [f"ingested {report['num_images']} images of {len(report['classes'])} classes "
             f"from {report['root']} ({sizes})"]
    reasons = {r: n for r, n in report["quarantine"]["by_reason"].items() if n}
    lines.append(f"quarantined {report['quarantine']['total']} files"
                 + (": " + ", ".join(f"{r} {n}" for r, n in reasons.items()) if reasons else ""))
    for record in quarantine.head(shown).itertuples():
        lines.append(f"  {record.reason}: {record.path} ({record.detail})")
    if len(quarantine) > shown:
        lines.append(f"  ... {len(quarantine) - shown} more in the quarantine table")
    if report["dropped_classes"]:
        lines.append(f"classes left out (no valid training image): "
                     f"{report['dropped_classes'][:10]}")
    cache = report["cache"]
    lines.append(f"packed cache: {cache['images']} images at {cache['resolution']}px, "
                 f"{cache['bytes'] / 2**20:.1f} MiB" if cache["enabled"] else
                 "packed cache: off; training reads the image files")
    return lines


def build_manifest(root: str | Path, val_fraction: float, test_fraction: float, seed: int,
                   labels_file: str | Path | None = None, max_pixels: int = 100_000_000,
                   channels: int = 3, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 dict]:
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

    Returns:
        ``(manifest, quarantine, facts)`` as :func:`curate` returns them.

    Raises:
        IngestionError: If the folder is missing or holds fewer than 2 usable classes.
    """
    folder = resolve_root(root)
    listing, names = list_source(folder, labels_file)
    settings = InspectSettings(max_pixels, 0, channels)
    checked, _ = update_cache(ImageCache(folder / ".unused", settings), folder,
                              files_to_check(listing), settings, workers)
    return curate(listing, checked.index, names, val_fraction, test_fraction, seed,
                  source_name(root, labels_file))
