"""Listing the candidate images of an image folder or a labels file.

Ingestion runs in three steps (see :mod:`visrec.core.data`):

1. here, :func:`list_folder` / :func:`list_labels_file`: every candidate file with its
   label, given split, size and modification time; problems visible without opening a
   file (wrong extension, path outside the root, unknown split, ...) are already reasons;
2. :func:`visrec.core.data.update_cache` opens each remaining file once, in parallel;
3. :func:`visrec.core.data.curate`: label conflicts, duplicates and leakage by content
   hash, classes without images, carving of missing splits.

Nothing in the user's folder is ever moved, modified or deleted.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from visrec.core.files import BAD_NAME, FolderWalk, Rejected, check_regular, is_utf8, shown_path
from visrec.core.progress import progress as progress_bar

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Folder names (and labels-file values) accepted for each split, compared case-insensitively.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}
SPLITS = ("train", "val", "test")
SPLIT_RANK = {"train": 0, "val": 1, "test": 2}  # leakage keeps the copy on the training side
LISTING_DTYPES = {"path": "str", "label": "str", "split": "str", "bytes": "int64",
                  "mtime_ns": "int64", "reason": "str", "detail": "str"}  # split NaN: carve
LISTING_COLUMNS = list(LISTING_DTYPES)


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
        taken = splits[split]
        if taken is not None:
            raise IngestionError(
                f"ingestion.root = '{root}': both '{taken.name}' and '{folder.name}' "
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


def _stat_row(relative: str, entry: os.DirEntry, label: str, split: str | None,
              max_bytes: int | None) -> tuple:
    """A listing row for one file: problems visible from its name and ``stat``."""
    if not is_utf8(relative):
        return (shown_path(relative), shown_path(label), split, 0, 0, "bad_file_name",
                BAD_NAME)
    suffix = PurePosixPath(relative).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return (relative, label, split, 0, 0, "not_an_image",
                f"extension '{suffix}' is not one of {sorted(IMAGE_EXTENSIONS)}")
    try:
        info = entry.stat()  # follows a symbolic link
        check_regular(info, max_bytes, "ingestion.max_bytes")
    except OSError as error:
        detail = ("broken symbolic link" if entry.is_symlink() and error.errno == errno.ENOENT
                  else f"{type(error).__name__}: {error.strerror or error}")
        return relative, label, split, 0, 0, "unreadable", detail
    except Rejected as rejected:
        return relative, label, split, 0, 0, rejected.reason, rejected.detail
    return relative, label, split, info.st_size, info.st_mtime_ns, "", ""


def _folder_row(relative: str, label: str, split: str | None, problem: str) -> tuple:
    """A listing row for a folder that cannot be read: its files are not listed."""
    return (shown_path(relative), shown_path(label), split, 0, 0, "unreadable",
            f"folder: {problem}")


def _split_entries(root: Path, folder: Path) -> list[os.DirEntry]:
    try:
        return FolderWalk.entries(folder)
    except OSError as error:
        raise IngestionError(f"ingestion.root = '{root}': cannot read {folder}: "
                             f"{type(error).__name__}: {error.strerror or error}") from None


def list_folder(root: Path, max_bytes: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every visible file of an image folder in either layout, with label and split.

    Nothing stops the listing: a folder that cannot be read is a row (``unreadable``), a
    name that is not UTF-8 is a row (``bad_file_name``) shown with escapes, a named pipe
    or device file a row (``not_a_regular_file``), a file over ``max_bytes`` a row
    (``too_large``); links that loop are entered once.

    Args:
        root: The image folder (resolved).
        max_bytes: Larger files are listed as ``too_large``, not opened; None: no cap.

    Returns:
        ``(listing, class_folders)``: the listing has :data:`LISTING_COLUMNS` (``split``
        None where it must be carved; ``reason`` empty for a file to open); class_folders
        names every class folder seen, empty ones included.
    """
    rows, class_folders = _Rows(), set()
    with progress_bar(desc="scanning", unit=" files", leave=True) as progress:
        walker = FolderWalk(root)
        walker.enter(root)
        for split, split_dir in detect_layout(root).items():
            if split_dir is None:
                continue
            given = None if split_dir == root else split  # None: carved later
            if split_dir != root:
                walker.enter(split_dir)
            for entry in _split_entries(root, split_dir):
                relative = walker.relative(entry.path)
                try:
                    is_dir = entry.is_dir()  # follows a symbolic link
                except OSError as error:  # a link that loops
                    rows.add((shown_path(relative), "", given, 0, 0, "unreadable",
                              f"{type(error).__name__}: {error.strerror or error}"))
                    continue
                if not is_dir:
                    rows.add((shown_path(relative), "", given, 0, 0, "not_in_a_class_folder",
                              "files must be inside a class folder"))
                    continue
                label = shown_path(entry.name)
                class_folders.add(label)
                problem = walker.enter(entry.path)
                if problem:
                    if problem != "seen":
                        rows.add(_folder_row(relative + "/", label, given, problem))
                    continue
                for item in walker.files(entry.path):
                    progress.update()
                    rows.add(_stat_row(item.path, item.entry, entry.name, given, max_bytes)
                             if item.entry is not None
                             else _folder_row(item.path, label, given, item.problem))
        if walker.skipped_links:
            logger.warning("ingestion.root: %d folders reached twice through symbolic links "
                           "were listed once: %s", len(walker.skipped_links),
                           [shown_path(p) for p in walker.skipped_links[:5]])
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


def _labels_file_row(root: Path, path: str, label: str, split: str,
                     max_bytes: int | None = None) -> tuple:
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
        check_regular(info, max_bytes, "ingestion.max_bytes")
    except FileNotFoundError:
        return normal, label, given, 0, 0, "missing_file", "no such file under the root"
    except OSError as error:
        return normal, label, given, 0, 0, "unreadable", f"{type(error).__name__}: {error}"
    except Rejected as rejected:
        return normal, label, given, 0, 0, rejected.reason, rejected.detail
    return normal, label, given, info.st_size, info.st_mtime_ns, "", ""


def list_labels_file(root: Path, labels_file: Path, max_bytes: int | None = None
                     ) -> tuple[pd.DataFrame, list[str]]:
    """The files a labels file names, with label and split, checked without opening them.

    Args:
        root: Folder the file's paths are relative to (resolved).
        labels_file: CSV or parquet with columns path, label and optionally split.
        max_bytes: Larger files are listed as ``too_large``, not opened; None: no cap.

    Returns:
        ``(listing, labels)`` as :func:`list_folder` returns them.
    """
    table = read_labels_file(labels_file)
    rows = _Rows()
    for path, label, split in progress_bar(table.itertuples(index=False, name=None),
                                           "scanning", total=len(table), unit=" files",
                                           leave=True):
        rows.add(_labels_file_row(root, path, label, split, max_bytes))
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


def list_source(root: Path, labels_file: str | Path | None, max_bytes: int | None = None
                ) -> tuple[pd.DataFrame, list[str]]:
    """:func:`list_labels_file` when a labels file is given, else :func:`list_folder`."""
    if labels_file is None:
        return list_folder(root, max_bytes)
    return list_labels_file(root, Path(labels_file).expanduser(), max_bytes)


def source_name(root: str | Path, labels_file: str | Path | None) -> str:
    """The parameter and value the images come from, for messages."""
    if labels_file is None:
        return f"ingestion.root = '{root}'"
    return f"ingestion.labels_file = '{labels_file}'"


def files_to_check(listing: pd.DataFrame) -> pd.DataFrame:
    """Unique ``path``, ``bytes``, ``mtime_ns`` of the listed files left to open."""
    files = listing.loc[listing["reason"] == "", ["path", "bytes", "mtime_ns"]]
    return files.drop_duplicates("path").reset_index(drop=True)
