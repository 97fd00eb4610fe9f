"""Scan an image folder into a manifest table and carve missing splits."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Folder names accepted for each split, compared case-insensitively.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}
SPLITS = ("train", "val", "test")
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees
MANIFEST_COLUMNS = ["path", "label", "class_index", "split", "width", "height", "bytes"]


class IngestionError(ValueError):
    """The image folder cannot be turned into a usable manifest."""


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


def _walk_images(class_dir: Path) -> list[Path]:
    """Image files under ``class_dir`` (nested folders too), hidden entries skipped."""
    found = []
    for folder, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(folder) / f for f in sorted(filenames) if not f.startswith("."))
    return found


def read_image_size(path: Path) -> tuple[int, int]:
    """Width and height of an image as shown (EXIF orientation applied), after decoding it.

    Decoding every pixel here means a truncated or corrupt file is reported at ingestion,
    not found mid-epoch by a DataLoader worker.

    Raises:
        OSError: If the file is not a readable image.
    """
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
            width, height = height, width
    return width, height


def scan_image_folder(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List the images of ``root`` with their label and (given) split.

    Args:
        root: The image folder, in either accepted layout.

    Returns:
        ``(images, skipped)``: images has columns path (relative, POSIX), label, split
        (``None`` where the split must be carved), width, height, bytes; skipped has
        path and reason for every file left out.
    """
    rows, skipped = [], []
    for split, split_dir in detect_layout(root).items():
        if split_dir is None:
            continue
        given_split = None if split_dir == root else split  # None: carved later
        for stray in sorted(p for p in split_dir.iterdir() if p.is_file()):
            if not stray.name.startswith("."):
                skipped.append((stray.relative_to(root).as_posix(), "not_in_a_class_folder"))
        for class_dir in _visible_dirs(split_dir):
            for path in _walk_images(class_dir):
                relative = path.relative_to(root).as_posix()
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    skipped.append((relative, "not_an_image_extension"))
                    continue
                try:
                    width, height = read_image_size(path)
                # OSError covers UnidentifiedImageError and truncation; PIL raises
                # SyntaxError for broken PNG chunks (a bad CRC, for example).
                except (OSError, ValueError, SyntaxError) as error:
                    skipped.append((relative, f"unreadable: {error}"))
                    continue
                rows.append((relative, class_dir.name, given_split, width, height,
                             path.stat().st_size))
    images = pd.DataFrame(rows, columns=["path", "label", "split", "width", "height", "bytes"])
    return images, pd.DataFrame(skipped, columns=["path", "reason"])


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
    out["split"] = out["split"].fillna("train")
    rng = np.random.default_rng(seed)
    for label in sorted(out.loc[out["split"] == "train", "label"].unique()):
        index = out.index[(out["split"] == "train") & (out["label"] == label)].to_numpy()
        n_val, n_test = _carve_counts(len(index), val_fraction, test_fraction)
        drawn = rng.permutation(index)
        out.loc[drawn[:n_val], "split"] = "val"
        out.loc[drawn[n_val:n_val + n_test], "split"] = "test"
    return out


def build_manifest(root: str | Path, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[pd.DataFrame, dict]:
    """Scan ``root`` into the manifest and a report of what was found and left out.

    Args:
        root: The image folder (``ingestion.root``).
        val_fraction: Share of train carved into val when there is no val folder.
        test_fraction: Share of train carved into test when there is no test folder.
        seed: Seed of the carving.

    Returns:
        ``(manifest, report)``: the manifest has :data:`MANIFEST_COLUMNS`, sorted by split,
        class and path; the report holds the root as configured (a relative root stays
        relative to the project), classes, counts and skipped files.

    Raises:
        IngestionError: If the folder is missing, holds no images, or fewer than 2 classes.
    """
    given = Path(root).expanduser()  # kept as configured: relative paths stay portable
    root = given.resolve()
    if not root.is_dir():
        raise IngestionError(f"ingestion.root = '{root}': folder does not exist")
    images, skipped = scan_image_folder(root)
    if images.empty:
        raise IngestionError(
            f"ingestion.root = '{root}': no images found; expected one folder per class "
            f"(or train/, val/, test/ with one folder per class) holding "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} files"
        )
    in_train = images["split"].fillna("train") == "train"  # unsplit rows are training rows
    classes = sorted(images.loc[in_train, "label"].unique())
    if len(classes) < 2:
        raise IngestionError(
            f"ingestion.root = '{root}': found {len(classes)} class ({classes}); "
            "a classifier needs at least 2 class folders"
        )
    unseen = images["label"].isin(classes)
    if not unseen.all():
        dropped = sorted(images.loc[~unseen, "label"].unique())
        logger.warning("classes %s have no training images and are left out of val/test", dropped)
        skipped = pd.concat([skipped, pd.DataFrame(
            {"path": images.loc[~unseen, "path"], "reason": "class_not_in_train"})])
        images = images[unseen]
    manifest = carve_splits(images.reset_index(drop=True), val_fraction, test_fraction, seed)
    manifest["class_index"] = manifest["label"].map({c: i for i, c in enumerate(classes)})
    manifest["split"] = pd.Categorical(manifest["split"], categories=SPLITS)
    manifest = manifest.sort_values(["split", "class_index", "path"]).reset_index(drop=True)
    manifest = manifest[MANIFEST_COLUMNS].astype(
        {"path": str, "label": str, "class_index": "int64", "width": "int64",
         "height": "int64", "bytes": "int64"})
    manifest["split"] = manifest["split"].astype(str)
    report = {
        "root": str(given),
        "classes": classes,
        "num_images": len(manifest),
        "counts": {s: manifest.loc[manifest["split"] == s, "label"].value_counts()
                   .reindex(classes, fill_value=0).astype(int).to_dict() for s in SPLITS},
        "num_skipped": len(skipped),
        "skipped": skipped.to_dict(orient="records"),
    }
    for record in report["skipped"]:
        logger.warning("skipped %s: %s", record["path"], record["reason"])
    return manifest, report
