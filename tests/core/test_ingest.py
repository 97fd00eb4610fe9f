"""Tests of visrec.core.ingest: scanning an image folder into the manifest."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visrec.core.ingest import (
    MANIFEST_COLUMNS,
    IngestionError,
    build_manifest,
    carve_splits,
    detect_layout,
    scan_image_folder,
)


def _fill(root: Path, png, counts: dict[str, int], split: str | None = None) -> None:
    """Write ``counts[label]`` PNGs into ``root/[split/]label/``; image i is (10+i) x 8."""
    base = root if split is None else root / split
    for label, n in counts.items():
        for i in range(n):
            png(base / label / f"{i:03d}.png", size=(10 + i, 8))


def _corrupt_png_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    if kind == "garbage":
        return b"this is not a png file"
    if kind == "truncated":
        return data[: len(data) // 2]
    # kind == "bad_crc": one flipped byte inside the IDAT chunk (a bit-rotted file).
    start = data.index(b"IDAT") + 8
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]


# --- layouts ---------------------------------------------------------------------------


def test_class_folder_layout(tmp_path, png):
    _fill(tmp_path, png, {"cat": 10, "dog": 10})
    manifest, report = build_manifest(tmp_path, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert report["classes"] == ["cat", "dog"]
    assert report["num_images"] == 20
    assert report["counts"] == {"train": {"cat": 7, "dog": 7}, "val": {"cat": 1, "dog": 1},
                                "test": {"cat": 2, "dog": 2}}
    assert report["num_skipped"] == 0
    assert set(manifest["path"]) == {f"{c}/{i:03d}.png" for c in ("cat", "dog")
                                     for i in range(10)}
    class_index = dict(zip(manifest["label"], manifest["class_index"], strict=True))
    assert class_index == {"cat": 0, "dog": 1}


def test_detect_layout_class_folders(tmp_path, png):
    _fill(tmp_path, png, {"a": 1, "b": 1})
    assert detect_layout(tmp_path) == {"train": tmp_path, "val": None, "test": None}


@pytest.mark.parametrize(("train_name", "val_name", "test_name"), [
    ("train", "val", "test"),
    ("Train", "valid", "TEST"),
    ("TRAIN", "Validation", "Test"),
    ("train", "VALID", "test"),
])
def test_split_folder_layout_and_aliases(tmp_path, png, train_name, val_name, test_name):
    _fill(tmp_path, png, {"a": 6, "b": 4}, split=train_name)
    _fill(tmp_path, png, {"a": 2, "b": 3}, split=val_name)
    _fill(tmp_path, png, {"a": 1, "b": 2}, split=test_name)
    layout = detect_layout(tmp_path)
    assert layout == {"train": tmp_path / train_name, "val": tmp_path / val_name,
                      "test": tmp_path / test_name}
    manifest, report = build_manifest(tmp_path, val_fraction=0.3, test_fraction=0.3, seed=0)
    # Nothing is carved: the folders give every split.
    assert report["counts"] == {"train": {"a": 6, "b": 4}, "val": {"a": 2, "b": 3},
                                "test": {"a": 1, "b": 2}}
    val_paths = manifest.loc[manifest["split"] == "val", "path"]
    assert all(p.startswith(f"{val_name}/") for p in val_paths)
    assert "a/000.png" not in set(manifest["path"])  # paths keep the split folder


def test_only_missing_splits_are_carved(tmp_path, png):
    _fill(tmp_path, png, {"a": 10, "b": 10}, split="train")
    _fill(tmp_path, png, {"a": 3, "b": 3}, split="valid")
    manifest, report = build_manifest(tmp_path, val_fraction=0.4, test_fraction=0.2, seed=0)
    # val comes from the folder (val_fraction ignored), test is carved from train.
    assert report["counts"] == {"train": {"a": 8, "b": 8}, "val": {"a": 3, "b": 3},
                                "test": {"a": 2, "b": 2}}
    test_paths = manifest.loc[manifest["split"] == "test", "path"]
    assert all(p.startswith("train/") for p in test_paths)


def test_two_folders_for_one_split_is_an_error(tmp_path, png):
    _fill(tmp_path, png, {"a": 1, "b": 1}, split="train")
    _fill(tmp_path, png, {"a": 1}, split="val")
    _fill(tmp_path, png, {"a": 1}, split="validation")
    with pytest.raises(IngestionError, match=r"ingestion\.root.*keep one"):
        build_manifest(tmp_path, 0.1, 0.1, seed=0)


def test_non_split_folders_beside_splits_are_ignored(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2}, split="train")
    _fill(tmp_path, png, {"a": 2}, split="extras")
    manifest, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert not any(p.startswith("extras/") for p in manifest["path"])
    assert len(manifest) == 4


def test_nested_subfolders_belong_to_their_class(tmp_path, png):
    png(tmp_path / "a" / "top.png")
    png(tmp_path / "a" / "sub" / "deeper" / "nested.png")
    png(tmp_path / "a" / "sub" / "mid.png")
    png(tmp_path / "b" / "one.png")
    manifest, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    labels = dict(zip(manifest["path"], manifest["label"], strict=True))
    assert labels == {"a/top.png": "a", "a/sub/deeper/nested.png": "a", "a/sub/mid.png": "a",
                      "b/one.png": "b"}


def test_hidden_files_and_folders_are_ignored(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    png(tmp_path / "a" / ".hidden.png")
    png(tmp_path / "a" / ".thumbs" / "x.png")
    png(tmp_path / ".git" / "y.png")  # a hidden would-be class
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    manifest, report = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert report["classes"] == ["a", "b"]
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]
    assert report["skipped"] == []


def test_non_images_are_skipped_with_a_reason(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / "README.md").write_text("stray")
    manifest, report = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert len(manifest) == 4
    reasons = {r["path"]: r["reason"] for r in report["skipped"]}
    assert reasons == {"a/notes.txt": "not_an_image_extension",
                       "README.md": "not_in_a_class_folder"}
    assert report["num_skipped"] == 2


@pytest.mark.parametrize("kind", [
    "garbage",
    "truncated",
    "bad_crc",
])
def test_corrupt_png_is_skipped_not_fatal(tmp_path, png, kind):
    _fill(tmp_path, png, {"a": 3, "b": 3})
    (tmp_path / "a" / "broken.png").write_bytes(_corrupt_png_bytes(kind))
    manifest, report = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert "a/broken.png" not in set(manifest["path"])
    assert len(manifest) == 6
    assert [r["path"] for r in report["skipped"]] == ["a/broken.png"]
    assert report["skipped"][0]["reason"].startswith("unreadable: ")


def test_scan_reports_image_sizes_and_bytes(tmp_path, png):
    png(tmp_path / "a" / "wide.png", size=(40, 10))
    png(tmp_path / "b" / "tall.png", size=(7, 30))
    images, skipped = scan_image_folder(tmp_path)
    assert skipped.empty
    assert list(skipped.columns) == ["path", "reason"]
    rows = images.set_index("path")
    assert rows.loc["a/wide.png", ["width", "height"]].tolist() == [40, 10]
    assert rows.loc["b/tall.png", ["width", "height"]].tolist() == [7, 30]
    assert rows.loc["a/wide.png", "bytes"] == (tmp_path / "a" / "wide.png").stat().st_size
    assert images["split"].isna().all()  # class-folder layout: every split must be carved


# --- carving -----------------------------------------------------------------------------


def _unsplit(counts: dict[str, int], split: str | None = None) -> pd.DataFrame:
    rows = [(f"{label}/{i}.png", label, split) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def _split_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    table = frame.groupby(["label", "split"]).size().unstack(fill_value=0)
    table = table.reindex(columns=["train", "val", "test"], fill_value=0)
    return {label: {s: int(n) for s, n in row.items()} for label, row in table.iterrows()}


@pytest.mark.parametrize(("val_fraction", "test_fraction", "expected"), [
    # floor(n * f + 0.5) per class, then at least one image stays in train.
    (0.1, 0.2, {"a": {"train": 14, "val": 2, "test": 4}, "b": {"train": 5, "val": 1, "test": 1},
                "c": {"train": 2, "val": 0, "test": 0}, "d": {"train": 1, "val": 0, "test": 0}}),
    (0.4, 0.4, {"a": {"train": 4, "val": 8, "test": 8}, "b": {"train": 1, "val": 3, "test": 3},
                "c": {"train": 1, "val": 1, "test": 0}, "d": {"train": 1, "val": 0, "test": 0}}),
    (0.0, 0.25, {"a": {"train": 15, "val": 0, "test": 5}, "b": {"train": 5, "val": 0, "test": 2},
                 "c": {"train": 1, "val": 0, "test": 1}, "d": {"train": 1, "val": 0, "test": 0}}),
])
def test_carve_splits_is_stratified(val_fraction, test_fraction, expected):
    images = _unsplit({"a": 20, "b": 7, "c": 2, "d": 1})
    carved = carve_splits(images, val_fraction, test_fraction, seed=0)
    assert _split_counts(carved) == expected
    assert images["split"].isna().all()  # the input is not modified
    assert carved["path"].tolist() == images["path"].tolist()


@pytest.mark.parametrize("n", range(1, 30))
@pytest.mark.parametrize(("val_fraction", "test_fraction"), [(0.1, 0.2), (0.45, 0.45)])
def test_carve_keeps_one_training_image(n, val_fraction, test_fraction):
    counts = _split_counts(carve_splits(_unsplit({"a": n}), val_fraction, test_fraction, 0))["a"]
    assert counts["train"] >= 1
    assert sum(counts.values()) == n
    if n * (val_fraction + test_fraction) + 1 < n:  # room for both: the plain rounding rule
        assert counts["val"] == int(np.floor(n * val_fraction + 0.5))
        assert counts["test"] == int(np.floor(n * test_fraction + 0.5))


def test_carve_splits_is_seed_deterministic():
    images = _unsplit({"a": 30, "b": 30})
    first = carve_splits(images, 0.2, 0.2, seed=3)
    pd.testing.assert_frame_equal(first, carve_splits(images, 0.2, 0.2, seed=3))
    other = carve_splits(images, 0.2, 0.2, seed=4)
    assert _split_counts(other) == _split_counts(first)
    assert not first["split"].equals(other["split"])


def test_carve_splits_leaves_given_splits_alone():
    images = pd.concat([_unsplit({"a": 10, "b": 10}, split="train"),
                        _unsplit({"a": 2, "b": 2}, split="val")], ignore_index=True)
    images["path"] = [f"{i}.png" for i in range(len(images))]
    carved = carve_splits(images, 0.3, 0.2, seed=0)
    # val given: none carved; test not given: 2 of 10 per class.
    assert _split_counts(carved) == {"a": {"train": 8, "val": 2, "test": 2},
                                     "b": {"train": 8, "val": 2, "test": 2}}
    assert (carved.loc[images["split"] == "val", "split"] == "val").all()


# --- errors ------------------------------------------------------------------------------


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*does not exist"):
        build_manifest(tmp_path / "nope", 0.1, 0.1, seed=0)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*no images found") as info:
        build_manifest(tmp_path, 0.1, 0.1, seed=0)
    assert ".png" in str(info.value)  # names the accepted extensions


def test_single_class_is_an_error(tmp_path, png):
    _fill(tmp_path, png, {"only": 5})
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*found 1 class.*at least 2"):
        build_manifest(tmp_path, 0.1, 0.1, seed=0)


def test_split_folders_without_train_is_an_error(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2}, split="val")
    _fill(tmp_path, png, {"a": 2, "b": 2}, split="test")
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*no 'train' folder") as info:
        build_manifest(tmp_path, 0.1, 0.1, seed=0)
    assert "['test', 'val']" in str(info.value)


def test_classes_only_in_test_are_dropped(tmp_path, png):
    _fill(tmp_path, png, {"a": 4, "b": 4}, split="train")
    _fill(tmp_path, png, {"a": 2, "b": 2, "c": 3}, split="test")
    manifest, report = build_manifest(tmp_path, 0.0, 0.5, seed=0)
    assert report["classes"] == ["a", "b"]
    assert "c" not in set(manifest["label"])
    assert report["counts"]["test"] == {"a": 2, "b": 2}
    dropped = {r["path"]: r["reason"] for r in report["skipped"]}
    assert dropped == {f"test/c/{i:03d}.png": "class_not_in_train" for i in range(3)}
    assert report["num_skipped"] == 3


# --- the manifest table ------------------------------------------------------------------


def test_manifest_columns_dtypes_and_order(tmp_path, png):
    _fill(tmp_path, png, {"b": 6, "a": 5}, split="train")
    _fill(tmp_path, png, {"a": 2, "b": 1}, split="val")
    png(tmp_path / "train" / "a" / "sub" / "x.png", size=(9, 9))
    manifest, _ = build_manifest(tmp_path, 0.0, 0.3, seed=1)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    for column in ("path", "label", "split"):
        assert pd.api.types.is_string_dtype(manifest[column]), column
        assert all(isinstance(v, str) for v in manifest[column]), column
    for column in ("class_index", "width", "height", "bytes"):
        assert manifest[column].dtype == np.int64, column
    # Sorted by split (train, val, test), class index, path.
    order = {"train": 0, "val": 1, "test": 2}
    keys = list(zip(manifest["split"].map(order), manifest["class_index"], manifest["path"],
                    strict=True))
    assert keys == sorted(keys)
    assert manifest.index.tolist() == list(range(len(manifest)))
    assert set(manifest["split"]) == {"train", "val", "test"}
    # Paths are relative POSIX paths of files under the root.
    for path in manifest["path"]:
        assert "\\" not in path
        assert not PurePosixPath(path).is_absolute()
        assert (tmp_path / path).is_file()
    row = manifest.set_index("path").loc["train/a/sub/x.png"]
    assert (row["width"], row["height"], row["label"], row["class_index"]) == (9, 9, "a", 0)


def test_build_manifest_is_seed_deterministic(tmp_path, png):
    _fill(tmp_path, png, {"a": 12, "b": 9})
    first, _ = build_manifest(tmp_path, 0.2, 0.2, seed=5)
    pd.testing.assert_frame_equal(first, build_manifest(tmp_path, 0.2, 0.2, seed=5)[0])
    other, _ = build_manifest(tmp_path, 0.2, 0.2, seed=6)
    assert set(first.loc[first["split"] == "test", "path"]) != set(
        other.loc[other["split"] == "test", "path"])


def test_truncated_jpeg_is_skipped_at_ingestion(tmp_path, png):
    """PIL's verify() passes a JPEG cut in half; decoding it at ingestion does not."""
    _fill(tmp_path, png, {"a": 3, "b": 3})
    rng = np.random.default_rng(0)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    full.unlink()
    (tmp_path / "a" / "half.jpg").write_bytes(data[: len(data) // 2])
    manifest, report = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert "a/half.jpg" not in set(manifest["path"])
    reasons = {r["path"]: r["reason"] for r in report["skipped"]}
    assert reasons["a/half.jpg"].startswith("unreadable: ")


def test_report_keeps_a_relative_root_relative(tmp_path, png, monkeypatch):
    _fill(tmp_path / "images", png, {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    _, report = build_manifest("images", 0.0, 0.0, seed=0)
    assert report["root"] == "images"  # portable: the manifest's paths are relative to it
