"""Tests of visrec.core.ingest: an image folder or a labels file into the manifest and the
quarantine table."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visrec.core.ingest import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    REASONS,
    IngestionError,
    build_manifest,
    carve_splits,
    detect_layout,
    list_folder,
    quarantine_counts,
    read_labels_file,
    summary_lines,
)


def _fill(root: Path, png, counts: dict[str, int], split: str | None = None) -> None:
    """Write ``counts[label]`` noise PNGs into ``root/[split/]label/``; image i is (10+i) x 8."""
    base = root if split is None else root / split
    for label, n in counts.items():
        for i in range(n):
            png(base / label / f"{i:03d}.png", size=(10 + i, 8))


def _reasons(quarantine: pd.DataFrame) -> dict[str, str]:
    return dict(zip(quarantine["path"], quarantine["reason"], strict=True))


def _details(quarantine: pd.DataFrame) -> dict[str, str]:
    return dict(zip(quarantine["path"], quarantine["detail"], strict=True))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _corrupt_bytes(kind: str) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(noise), "JPEG" if kind == "half_jpeg" else "PNG")
    if kind == "garbage":
        return b"this is not a png file"
    if kind == "empty":
        return b""
    if kind in {"truncated", "half_jpeg"}:
        return data[: len(data) // 2]
    if kind == "header_cut":
        return data[:12]
    # kind == "bad_crc": one flipped byte inside the IDAT chunk (a bit-rotted file).
    start = data.index(b"IDAT") + 8
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]


# --- layouts ---------------------------------------------------------------------------


def test_class_folder_layout(tmp_path, png):
    _fill(tmp_path, png, {"cat": 10, "dog": 10})
    manifest, quarantine, facts = build_manifest(tmp_path, val_fraction=0.1,
                                                 test_fraction=0.2, seed=0)
    assert facts["classes"] == ["cat", "dog"]
    assert len(manifest) == 20
    assert facts["counts"] == {"train": {"cat": 7, "dog": 7}, "val": {"cat": 1, "dog": 1},
                               "test": {"cat": 2, "dog": 2}}
    assert quarantine.empty
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert (facts["dropped_classes"], facts["duplicates"], facts["leakage"]) == ([], [], [])
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
    manifest, quarantine, facts = build_manifest(tmp_path, val_fraction=0.3,
                                                 test_fraction=0.3, seed=0)
    # Nothing is carved: the folders give every split.
    assert facts["counts"] == {"train": {"a": 6, "b": 4}, "val": {"a": 2, "b": 3},
                               "test": {"a": 1, "b": 2}}
    assert quarantine.empty
    val_paths = manifest.loc[manifest["split"] == "val", "path"]
    assert all(p.startswith(f"{val_name}/") for p in val_paths)
    assert "a/000.png" not in set(manifest["path"])  # paths keep the split folder


def test_only_missing_splits_are_carved(tmp_path, png):
    _fill(tmp_path, png, {"a": 10, "b": 10}, split="train")
    _fill(tmp_path, png, {"a": 3, "b": 3}, split="valid")
    manifest, _, facts = build_manifest(tmp_path, val_fraction=0.4, test_fraction=0.2, seed=0)
    # val comes from the folder (val_fraction ignored), test is carved from train.
    assert facts["counts"] == {"train": {"a": 8, "b": 8}, "val": {"a": 3, "b": 3},
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
    manifest, quarantine, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert not any(p.startswith("extras/") for p in manifest["path"])
    assert len(manifest) == 4
    assert quarantine.empty  # ignored, not quarantined


def test_nested_subfolders_belong_to_their_class(tmp_path, png):
    png(tmp_path / "a" / "top.png")
    png(tmp_path / "a" / "sub" / "deeper" / "nested.png")
    png(tmp_path / "a" / "sub" / "mid.png")
    png(tmp_path / "b" / "one.png")
    manifest, _, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    labels = dict(zip(manifest["path"], manifest["label"], strict=True))
    assert labels == {"a/top.png": "a", "a/sub/deeper/nested.png": "a", "a/sub/mid.png": "a",
                      "b/one.png": "b"}


def test_hidden_files_and_folders_are_ignored(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    png(tmp_path / "a" / ".hidden.png")
    png(tmp_path / "a" / ".thumbs" / "x.png")
    png(tmp_path / ".git" / "y.png")  # a hidden would-be class
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "b" / "._002.png").write_bytes(b"\0\5\26\7")  # macOS resource fork
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert facts["classes"] == ["a", "b"]
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]
    assert quarantine.empty
    assert facts["dropped_classes"] == []


def test_non_images_are_quarantined_with_a_reason(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / "README.md").write_text("stray")
    manifest, quarantine, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert len(manifest) == 4
    assert _reasons(quarantine) == {"a/notes.txt": "not_an_image",
                                    "README.md": "not_in_a_class_folder"}
    labels = dict(zip(quarantine["path"], quarantine["label"], strict=True))
    assert labels == {"a/notes.txt": "a", "README.md": ""}
    assert "'.txt'" in _details(quarantine)["a/notes.txt"]


@pytest.mark.parametrize(("kind", "name", "reason"), [
    ("garbage", "broken.png", "not_an_image"),
    ("empty", "broken.png", "empty_file"),
    ("truncated", "broken.png", "truncated"),
    ("header_cut", "broken.png", "truncated"),
    ("half_jpeg", "broken.jpg", "truncated"),  # PIL's verify() passes it; decoding does not
    ("bad_crc", "broken.png", "unreadable"),
])
def test_corrupt_file_is_quarantined_not_fatal(tmp_path, png, kind, name, reason):
    _fill(tmp_path, png, {"a": 3, "b": 3})
    (tmp_path / "a" / name).write_bytes(_corrupt_bytes(kind))
    manifest, quarantine, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert f"a/{name}" not in set(manifest["path"])
    assert len(manifest) == 6
    assert _reasons(quarantine) == {f"a/{name}": reason}
    assert quarantine.loc[0, "detail"]


@pytest.mark.parametrize(("max_pixels", "kept"), [(400, True), (399, False)])
def test_images_above_max_pixels_are_quarantined(tmp_path, png, max_pixels, kept):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    png(tmp_path / "a" / "big.png", size=(40, 10))
    manifest, quarantine, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0, max_pixels=max_pixels)
    assert ("a/big.png" in set(manifest["path"])) == kept
    assert _reasons(quarantine) == ({} if kept else {"a/big.png": "too_many_pixels"})


def test_list_folder_reports_sizes_times_and_classes(tmp_path, png):
    png(tmp_path / "a" / "wide.png", size=(40, 10))
    png(tmp_path / "b" / "tall.png", size=(7, 30))
    (tmp_path / "c").mkdir()
    listing, class_folders = list_folder(tmp_path)
    assert class_folders == ["a", "b", "c"]
    assert listing["path"].tolist() == ["a/wide.png", "b/tall.png"]
    assert listing["label"].tolist() == ["a", "b"]
    assert listing["split"].isna().all()  # class-folder layout: every split must be carved
    assert (listing["reason"] == "").all()
    for row in listing.itertuples():
        info = (tmp_path / row.path).stat()
        assert (row.bytes, row.mtime_ns) == (info.st_size, info.st_mtime_ns)
    manifest, _, _ = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    rows = manifest.set_index("path")
    assert rows.loc["a/wide.png", ["width", "height"]].tolist() == [40, 10]
    assert rows.loc["b/tall.png", ["width", "height"]].tolist() == [7, 30]


# --- labels file -------------------------------------------------------------------------


def _labels_rows(root: Path) -> list[tuple[str, str, str]]:
    return [
        ("a/000.png", "a", "train"),
        ("a/001.png", "a", "train"),
        ("a/002.png", "a", "val"),
        ("a/003.png", "a", "TEST"),
        ("b/000.png", "b", "train"),
        ("./b/001.png", "b", "Train"),
        ("b\\002.png", "b", "validation"),
        ("b/003.png", "b", ""),  # no split given; val and test are given, so: train
        ("../outside.png", "a", "train"),
        ("a/../../outside.png", "a", "train"),
        (str(root / "a" / "004.png"), "a", "train"),
        ("b/004.png", "b", "training"),
        ("a/missing.png", "ghost", "train"),
        ("a/005.png", "", "train"),
        ("b/005.png", "   ", "test"),
        ("a/notes.txt", "a", "train"),
    ]


def _write_labels(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    table = pd.DataFrame(rows, columns=["path", "label", "split"])
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("name", ["labels.csv", "labels.parquet"])
def test_labels_file_source(tmp_path, png, name):
    root = tmp_path / "images"
    _fill(root, png, {"a": 6, "b": 6})
    (root / "a" / "notes.txt").write_text("text")
    png(tmp_path / "outside.png")  # exists, but outside the root
    labels = _write_labels(tmp_path / name, _labels_rows(root))
    manifest, quarantine, facts = build_manifest(root, 0.5, 0.5, seed=0, labels_file=labels)
    assert dict(zip(manifest["path"], manifest["split"], strict=True)) == {
        "a/000.png": "train", "a/001.png": "train", "a/002.png": "val", "a/003.png": "test",
        "b/000.png": "train", "b/001.png": "train", "b/002.png": "val", "b/003.png": "train"}
    assert (manifest["label"] == manifest["path"].str[0]).all()
    assert _reasons(quarantine) == {
        "../outside.png": "path_outside_root",
        "a/../../outside.png": "path_outside_root",
        str(root / "a" / "004.png"): "path_outside_root",
        "b/004.png": "unknown_split",
        "a/missing.png": "missing_file",
        "a/005.png": "missing_label",
        "b/005.png": "missing_label",
        "a/notes.txt": "not_an_image",
    }
    assert "'training'" in _details(quarantine)["b/004.png"]
    assert facts["classes"] == ["a", "b"]
    assert "ghost" in facts["dropped_classes"]  # named only on a row whose file is missing
    # Files in the folder that the labels file does not name are not ingested.
    assert "a/004.png" not in set(manifest["path"])


@pytest.mark.parametrize("blank", ["", " ", "\t "])
def test_blank_labels_are_not_reported_as_dropped_classes(tmp_path, png, blank):
    root = tmp_path / "images"
    _fill(root, png, {"a": 2, "b": 2})
    rows = [(f"{c}/{i:03d}.png", c, "") for c in "ab" for i in range(2)]
    rows += [("a/002.png", blank, ""), ("a/missing.png", "ghost", "")]
    png(root / "a" / "002.png")
    labels = _write_labels(tmp_path / "labels.parquet", rows)
    _, quarantine, facts = build_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert _reasons(quarantine)["a/002.png"] == "missing_label"
    assert facts["dropped_classes"] == ["ghost"]


def test_labels_file_same_path_twice(tmp_path, png):
    root = tmp_path / "images"
    _fill(root, png, {"a": 3, "b": 3})
    rows = [(f"{label}/{i:03d}.png", label, "") for label in "ab" for i in range(3)]
    rows += [("a/000.png", "a", ""), ("b/001.png", "a", "")]
    labels = _write_labels(tmp_path / "labels.csv", rows)
    manifest, quarantine, _ = build_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert manifest["path"].tolist() == ["a/000.png", "a/001.png", "a/002.png", "b/000.png",
                                         "b/002.png"]
    assert sorted(zip(quarantine["path"], quarantine["label"], quarantine["reason"],
                      strict=True)) == [
        ("a/000.png", "a", "duplicate"),
        ("b/001.png", "a", "label_conflict"),
        ("b/001.png", "b", "label_conflict")]


def test_labels_file_keeps_labels_that_look_like_missing_values(tmp_path, png):
    root = tmp_path / "images"
    _fill(root, png, {"a": 2, "b": 2})
    rows = [("a/000.png", "NA", ""), ("a/001.png", "NA", ""), ("b/000.png", "null", ""),
            ("b/001.png", "None", "")]
    labels = _write_labels(tmp_path / "labels.csv", rows)
    manifest, quarantine, facts = build_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert facts["classes"] == ["NA", "None", "null"]
    assert quarantine.empty
    assert len(manifest) == 4


def test_labels_file_without_split_column_carves_every_split(tmp_path, png):
    root = tmp_path / "images"
    _fill(root, png, {"a": 10, "b": 10})
    table = pd.DataFrame({"path": [f"{c}/{i:03d}.png" for c in "ab" for i in range(10)],
                          "label": ["a"] * 10 + ["b"] * 10, "extra": range(20)})
    table.to_parquet(tmp_path / "labels.parquet")
    assert read_labels_file(tmp_path / "labels.parquet")["split"].eq("").all()
    _, _, facts = build_manifest(root, 0.2, 0.1, seed=0, labels_file=tmp_path / "labels.parquet")
    assert facts["counts"] == {"train": {"a": 7, "b": 7}, "val": {"a": 2, "b": 2},
                               "test": {"a": 1, "b": 1}}


@pytest.mark.parametrize(("columns", "missing"), [
    (["file", "label", "split"], "['path']"),
    (["path", "class", "split"], "['label']"),
    (["split"], "['label', 'path']"),
])
def test_labels_file_missing_columns_is_an_error(tmp_path, png, columns, missing):
    _fill(tmp_path / "images", png, {"a": 1, "b": 1})
    labels = tmp_path / "labels.csv"
    pd.DataFrame([["a/000.png", "a", "train"][: len(columns)]], columns=columns).to_csv(
        labels, index=False)
    with pytest.raises(IngestionError) as info:
        build_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)
    message = str(info.value)
    assert message.startswith(f"ingestion.labels_file = '{labels}'")
    assert f"missing columns {missing}" in message
    assert f"found {columns}" in message


@pytest.mark.parametrize(("name", "match"), [
    ("nope.csv", "no such file"),
    ("labels.txt", r"unsupported type '\.txt'.*\.csv or \.parquet"),
])
def test_labels_file_missing_or_of_another_type_is_an_error(tmp_path, png, name, match):
    _fill(tmp_path / "images", png, {"a": 1, "b": 1})
    (tmp_path / "labels.txt").write_text("path,label\na/000.png,a\n")
    with pytest.raises(IngestionError, match=rf"ingestion\.labels_file = .*{match}"):
        build_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=tmp_path / name)


def test_labels_file_with_one_usable_class_is_an_error(tmp_path, png):
    _fill(tmp_path / "images", png, {"a": 2, "b": 1})
    labels = _write_labels(tmp_path / "labels.csv", [("a/000.png", "a", ""),
                                                     ("a/001.png", "a", ""),
                                                     ("b/000.png", "b", "test")])
    with pytest.raises(IngestionError, match=r"^ingestion\.labels_file = .*found 1 class"):
        build_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)


def test_labels_file_with_only_bad_rows_is_an_error(tmp_path, png):
    _fill(tmp_path / "images", png, {"a": 1, "b": 1})
    labels = _write_labels(tmp_path / "labels.csv", [("../x.png", "a", ""),
                                                     ("a/gone.png", "a", "")])
    with pytest.raises(IngestionError, match=r"ingestion\.labels_file = .*no image files "
                                             r"found \(\{'path_outside_root': 1, "
                                             r"'missing_file': 1\}\)"):
        build_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)


# --- copies: duplicates, label conflicts, leakage ---------------------------------------


def test_duplicates_within_a_class_keep_one(tmp_path, png):
    _fill(tmp_path, png, {"a": 4, "b": 4})
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "z copy.png")
    (tmp_path / "a" / "sub").mkdir()
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "sub" / "000.png")
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert "a/000.png" in set(manifest["path"])
    assert len(manifest) == 8
    assert _reasons(quarantine) == {"a/sub/000.png": "duplicate", "a/z copy.png": "duplicate"}
    assert set(_details(quarantine).values()) == {"same content as a/000.png (train)"}
    assert facts["duplicates"] == [
        {"path": "a/sub/000.png", "split": None, "detail": "same content as a/000.png (train)"},
        {"path": "a/z copy.png", "split": None, "detail": "same content as a/000.png (train)"}]
    assert facts["counts"]["train"] == {"a": 4, "b": 4}


def test_same_content_under_two_labels_leaves_every_copy_out(tmp_path, png):
    _fill(tmp_path, png, {"a": 3, "b": 3})
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "b" / "which.png")
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "again.png")
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    conflicts = {"a/000.png", "a/again.png", "b/which.png"}
    assert not conflicts & set(manifest["path"])
    assert _reasons(quarantine) == dict.fromkeys(conflicts, "label_conflict")
    assert set(_details(quarantine).values()) == {"same content under labels ['a', 'b']"}
    assert facts["counts"]["train"] == {"a": 2, "b": 3}
    assert facts["duplicates"] == []


def test_leakage_keeps_the_copy_on_the_training_side(tmp_path, png):
    _fill(tmp_path, png, {"a": 4, "b": 4}, split="train")
    _fill(tmp_path, png, {"a": 2, "b": 2}, split="val")
    _fill(tmp_path, png, {"a": 2, "b": 2}, split="test")
    shutil.copy(tmp_path / "train/a/000.png", tmp_path / "test/a/leak.png")  # train vs test
    shutil.copy(tmp_path / "val/b/000.png", tmp_path / "test/b/seen.png")  # val vs test
    for split in ("val", "test"):  # in all three splits
        shutil.copy(tmp_path / "train/b/001.png", tmp_path / split / "b" / "everywhere.png")
    shutil.copy(tmp_path / "test/a/000.png", tmp_path / "test/a/twice.png")  # within test
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert _reasons(quarantine) == {"test/a/leak.png": "leakage",
                                    "test/b/seen.png": "leakage",
                                    "val/b/everywhere.png": "leakage",
                                    "test/b/everywhere.png": "leakage",
                                    "test/a/twice.png": "duplicate"}
    assert _details(quarantine)["test/a/leak.png"] == "same content as train/a/000.png (train)"
    assert _details(quarantine)["test/b/seen.png"] == "same content as val/b/000.png (val)"
    assert _details(quarantine)["test/b/everywhere.png"] == (
        "same content as train/b/001.png (train)")
    kept = set(manifest["path"])
    assert {"train/a/000.png", "val/b/000.png", "train/b/001.png", "test/a/000.png"} <= kept
    assert manifest["hash"].is_unique
    assert [(r["path"], r["split"]) for r in facts["leakage"]] == [
        ("test/a/leak.png", "test"), ("test/b/everywhere.png", "test"),
        ("test/b/seen.png", "test"), ("val/b/everywhere.png", "val")]
    assert facts["counts"] == {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2},
                               "test": {"a": 2, "b": 2}}


@pytest.mark.parametrize("seed", range(4))
def test_splits_are_carved_after_removing_duplicates(tmp_path, png, seed):
    _fill(tmp_path, png, {"a": 6, "b": 6})
    for i in range(4):
        shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / f"copy {i}.png")
    manifest, quarantine, facts = build_manifest(tmp_path, 0.5, 0.0, seed=seed)
    # 6 distinct images in a (not 10): 3 to val. A copy carved into val would be leakage.
    assert facts["counts"]["val"] == {"a": 3, "b": 3}
    assert facts["counts"]["train"] == {"a": 3, "b": 3}
    assert set(quarantine["reason"]) == {"duplicate"}
    assert len(quarantine) == 4
    assert manifest["hash"].is_unique


# --- classes -----------------------------------------------------------------------------


def test_classes_only_in_test_are_dropped(tmp_path, png):
    _fill(tmp_path, png, {"a": 4, "b": 4}, split="train")
    _fill(tmp_path, png, {"a": 2, "b": 2, "c": 3}, split="test")
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.5, seed=0)
    assert facts["classes"] == ["a", "b"]
    assert "c" not in set(manifest["label"])
    assert facts["counts"]["test"] == {"a": 2, "b": 2}
    assert _reasons(quarantine) == {f"test/c/{i:03d}.png": "class_not_in_train"
                                    for i in range(3)}
    assert facts["dropped_classes"] == ["c"]


def test_empty_and_all_bad_class_folders_are_dropped(tmp_path, png):
    _fill(tmp_path, png, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "only bad").mkdir()
    (tmp_path / "only bad" / "x.png").write_bytes(b"")
    manifest, quarantine, facts = build_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert facts["classes"] == ["a", "b"]
    assert facts["dropped_classes"] == ["empty", "only bad"]
    assert set(manifest["class_index"]) == {0, 1}
    assert _reasons(quarantine) == {"only bad/x.png": "empty_file"}


def test_fewer_than_two_classes_after_quarantine_is_an_error(tmp_path, png):
    _fill(tmp_path, png, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one.png").write_bytes(b"not a png")
    (tmp_path / "b" / "two.png").write_bytes(b"")
    with pytest.raises(IngestionError) as info:
        build_manifest(tmp_path, 0.0, 0.0, seed=0)
    message = str(info.value)
    assert message.startswith(f"ingestion.root = '{tmp_path}': found 1 class")
    assert "found 1 class with valid training images (['a'])" in message
    assert "at least 2" in message
    assert "Left out: {" in message
    assert "'not_an_image': 1" in message
    assert "'empty_file': 1" in message
    assert "classes without a valid training image: ['b']" in message


def test_no_valid_image_at_all_is_an_error(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "x.png").write_bytes(b"zz")
    with pytest.raises(IngestionError, match=r"found 0 class .*Left out: \{'not_an_image': 2\}"
                                             r".*without a valid training image: \['a', 'b'\]"):
        build_manifest(tmp_path, 0.0, 0.0, seed=0)


# --- file-system oddities -------------------------------------------------------------


def test_symlink_loop_does_not_hang_and_lists_files_once(tmp_path, png):
    root = tmp_path / "images"
    _fill(root, png, {"a": 2, "b": 2})
    png(root / "a" / "sub" / "deep.png")
    os.symlink(root, root / "a" / "to root")  # a folder link back to an ancestor
    os.symlink(root / "a", root / "a" / "sub" / "up")
    manifest, quarantine, _ = build_manifest(root, 0.0, 0.0, seed=0)
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "a/sub/deep.png",
                                        "b/000.png", "b/001.png"]
    assert quarantine.empty


def test_symbolic_links_are_followed_and_broken_ones_reported(tmp_path, png):
    root = tmp_path / "images"
    _fill(root, png, {"a": 2})
    elsewhere = tmp_path / "elsewhere"
    _fill(elsewhere, png, {"c": 2})
    png(elsewhere / "picture.png")
    os.symlink(elsewhere / "c", root / "c")  # a linked class folder
    os.symlink(elsewhere / "picture.png", root / "a" / "linked.png")  # a linked file
    os.symlink(tmp_path / "nowhere.png", root / "a" / "dangling.png")
    manifest, quarantine, facts = build_manifest(root, 0.0, 0.0, seed=0)
    assert facts["classes"] == ["a", "c"]
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "a/linked.png",
                                        "c/000.png", "c/001.png"]
    assert _reasons(quarantine) == {"a/dangling.png": "unreadable"}
    assert _details(quarantine)["a/dangling.png"] == "broken symbolic link"


@pytest.mark.parametrize("source", ["folder", "labels file"])
def test_names_with_spaces_and_non_ascii(tmp_path, png, source):
    root = tmp_path / "images"
    names = {"chat noir": ["ça va.png", "deux  espaces.png"],
             "oiseau é ☃": ["日本 1.png", "Ünïcödé.PNG"]}
    for label, files in names.items():
        for name in files:
            png(root / label / name)
    labels = None
    if source == "labels file":
        labels = _write_labels(tmp_path / "labels.csv", [
            (f"{label}/{name}", label, "") for label, files in names.items() for name in files])
    manifest, quarantine, facts = build_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert facts["classes"] == ["chat noir", "oiseau é ☃"]
    assert quarantine.empty
    assert sorted(zip(manifest["path"], manifest["label"], strict=True)) == sorted(
        (f"{label}/{name}", label) for label, files in names.items() for name in files)
    assert all((root / path).is_file() for path in manifest["path"])


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
    with pytest.raises(IngestionError,
                       match=r"ingestion\.root = .*no image files found") as info:
        build_manifest(tmp_path, 0.1, 0.1, seed=0)
    assert ".png" in str(info.value)  # names the accepted extensions
    assert "{'not_an_image': 1}" in str(info.value)  # and what was found instead


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


# --- the manifest table ------------------------------------------------------------------


def test_manifest_columns_dtypes_and_order(tmp_path, png):
    _fill(tmp_path, png, {"b": 6, "a": 5}, split="train")
    _fill(tmp_path, png, {"a": 2, "b": 1}, split="val")
    png(tmp_path / "train" / "a" / "sub" / "x.png", size=(9, 9))
    manifest, _, _ = build_manifest(tmp_path, 0.0, 0.3, seed=1)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    for column in ("path", "label", "split", "format", "mode", "hash"):
        assert pd.api.types.is_string_dtype(manifest[column]), column
        assert all(isinstance(v, str) for v in manifest[column]), column
    for column in ("class_index", "width", "height", "bytes", "cache_index"):
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
    assert (row["format"], row["mode"]) == ("PNG", "RGB")
    assert row["bytes"] == (tmp_path / "train/a/sub/x.png").stat().st_size
    assert (manifest["cache_index"] == -1).all()  # build_manifest caches no pixels
    assert manifest["hash"].str.fullmatch(r"[0-9a-f]{32}").all()


def test_build_manifest_is_seed_deterministic(tmp_path, png):
    _fill(tmp_path, png, {"a": 12, "b": 9})
    first, _, _ = build_manifest(tmp_path, 0.2, 0.2, seed=5)
    pd.testing.assert_frame_equal(first, build_manifest(tmp_path, 0.2, 0.2, seed=5)[0])
    other, _, _ = build_manifest(tmp_path, 0.2, 0.2, seed=6)
    assert set(first.loc[first["split"] == "test", "path"]) != set(
        other.loc[other["split"] == "test", "path"])


def test_relative_root_gives_paths_relative_to_it(tmp_path, png, monkeypatch):
    _fill(tmp_path / "images", png, {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    manifest, _, _ = build_manifest("images", 0.0, 0.0, seed=0)
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]


def test_workers_give_the_same_result(tmp_path, png):
    _fill(tmp_path, png, {"a": 3, "b": 3})
    (tmp_path / "a" / "bad.png").write_bytes(b"nope")
    one = build_manifest(tmp_path, 0.3, 0.0, seed=0, workers=1)
    two = build_manifest(tmp_path, 0.3, 0.0, seed=0, workers=2)
    pd.testing.assert_frame_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[1], two[1])
    assert one[2] == two[2]


# --- the report --------------------------------------------------------------------------


def _quarantine(rows: list[tuple[str, str, str | None, str]]) -> pd.DataFrame:
    return pd.DataFrame([(*row, "why") for row in rows], columns=QUARANTINE_COLUMNS)


def test_quarantine_counts_every_reason_zeros_included():
    quarantine = _quarantine([("a/1.png", "a", None, "duplicate"),
                              ("a/2.png", "a", "test", "leakage"),
                              ("b/x.txt", "b", None, "not_an_image"),
                              ("stray.png", "", None, "not_in_a_class_folder"),
                              ("a/3.png", "a", None, "duplicate")])
    counts = quarantine_counts(quarantine)
    assert counts["total"] == 5
    assert list(counts["by_reason"]) == list(REASONS)
    assert counts["by_reason"] == {reason: {"duplicate": 2, "leakage": 1, "not_an_image": 1,
                                            "not_in_a_class_folder": 1}.get(reason, 0)
                                   for reason in REASONS}
    assert counts["by_class"] == {"a": {"duplicate": 2, "leakage": 1},
                                  "b": {"not_an_image": 1}}  # no class: not listed by class
    assert counts["by_split"] == {"train": {"duplicate": 2, "not_an_image": 1,
                                            "not_in_a_class_folder": 1},
                                  "test": {"leakage": 1}}


def test_quarantine_counts_of_nothing():
    counts = quarantine_counts(pd.DataFrame(columns=QUARANTINE_COLUMNS))
    assert counts == {"total": 0, "by_reason": dict.fromkeys(REASONS, 0), "by_class": {},
                      "by_split": {}}


def test_every_reason_has_a_distinct_name():
    assert len(set(REASONS)) == len(REASONS) == 14
    assert all(reason.isidentifier() and reason.islower() for reason in REASONS)


def _report(quarantine: pd.DataFrame, cache_enabled: bool, dropped: list[str]) -> dict:
    return {"root": "data/images", "num_images": 9, "classes": ["a", "b"],
            "counts": {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1},
                       "test": {"a": 1, "b": 0}},
            "quarantine": quarantine_counts(quarantine), "dropped_classes": dropped,
            "cache": {"enabled": cache_enabled, "resolution": 64, "channels": 3, "images": 9,
                      "bytes": 3 * 2**20}}


def test_summary_lines_name_sizes_reasons_and_cache():
    quarantine = _quarantine([(f"a/{i}.png", "a", None, "duplicate") for i in range(6)]
                             + [("b/x.txt", "b", None, "not_an_image")])
    lines = summary_lines(_report(quarantine, True, ["ghost"]), quarantine, shown=2)
    assert lines == [
        "ingested 9 images of 2 classes from data/images (train 6 / val 2 / test 1)",
        "quarantined 7 files: not_an_image 1, duplicate 6",  # in the order of REASONS
        "  duplicate: a/0.png (why)",
        "  duplicate: a/1.png (why)",
        "  ... 5 more in the quarantine table",
        "classes left out (no valid training image): ['ghost']",
        "packed cache: 9 images at 64px, 3.0 MiB",
    ]


def test_summary_lines_of_a_clean_run_without_cache():
    quarantine = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    lines = summary_lines(_report(quarantine, False, []), quarantine)
    assert lines == [
        "ingested 9 images of 2 classes from data/images (train 6 / val 2 / test 1)",
        "quarantined 0 files",
        "packed cache: off; training reads the image files",
    ]
