"""Tests of visrec.core.data.listing: an image folder or a labels file listed (layouts,
labels-file rows, file-system oddities), and the files its listing and checks leave out."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.core.data.ingest_helpers import details, fill, reasons, write_labels
from visrec.core.data import (
    QUARANTINE_COLUMNS,
    IngestionError,
    detect_layout,
    list_folder,
    make_manifest,
    read_labels_file,
)

# --- layouts -----------------------------------------------------------------------------


def test_class_folder_layout(tmp_path, png):
    fill(tmp_path, png, {"cat": 10, "dog": 10})
    manifest, quarantine, facts = make_manifest(tmp_path, val_fraction=0.1,
                                                 test_fraction=0.2, seed=0)
    assert facts.classes == ("cat", "dog")
    assert len(manifest) == 20
    assert facts.counts == {"train": {"cat": 7, "dog": 7}, "val": {"cat": 1, "dog": 1},
                               "test": {"cat": 2, "dog": 2}}
    assert quarantine.empty
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert (facts.dropped_classes, facts.duplicates, facts.leakage) == ((), (), ())
    assert set(manifest["path"]) == {f"{c}/{i:03d}.png" for c in ("cat", "dog")
                                     for i in range(10)}
    class_index = dict(zip(manifest["label"], manifest["class_index"], strict=True))
    assert class_index == {"cat": 0, "dog": 1}


def test_detect_layout_class_folders(tmp_path, png):
    fill(tmp_path, png, {"a": 1, "b": 1})
    assert detect_layout(tmp_path) == {"train": tmp_path, "val": None, "test": None}


@pytest.mark.parametrize(("train_name", "val_name", "test_name"), [
    ("train", "val", "test"),
    ("Train", "valid", "TEST"),
    ("TRAIN", "Validation", "Test"),
    ("train", "VALID", "test"),
])
def test_split_folder_layout_and_aliases(tmp_path, png, train_name, val_name, test_name):
    fill(tmp_path, png, {"a": 6, "b": 4}, split=train_name)
    fill(tmp_path, png, {"a": 2, "b": 3}, split=val_name)
    fill(tmp_path, png, {"a": 1, "b": 2}, split=test_name)
    layout = detect_layout(tmp_path)
    assert layout == {"train": tmp_path / train_name, "val": tmp_path / val_name,
                      "test": tmp_path / test_name}
    manifest, quarantine, facts = make_manifest(tmp_path, val_fraction=0.3,
                                                 test_fraction=0.3, seed=0)
    # Nothing is carved: the folders give every split.
    assert facts.counts == {"train": {"a": 6, "b": 4}, "val": {"a": 2, "b": 3},
                               "test": {"a": 1, "b": 2}}
    assert quarantine.empty
    val_paths = manifest.loc[manifest["split"] == "val", "path"]
    assert all(p.startswith(f"{val_name}/") for p in val_paths)
    assert "a/000.png" not in set(manifest["path"])  # paths keep the split folder


def test_only_missing_splits_are_carved(tmp_path, png):
    fill(tmp_path, png, {"a": 10, "b": 10}, split="train")
    fill(tmp_path, png, {"a": 3, "b": 3}, split="valid")
    manifest, _, facts = make_manifest(tmp_path, val_fraction=0.4, test_fraction=0.2, seed=0)
    # val comes from the folder (val_fraction ignored), test is carved from train.
    assert facts.counts == {"train": {"a": 8, "b": 8}, "val": {"a": 3, "b": 3},
                               "test": {"a": 2, "b": 2}}
    test_paths = manifest.loc[manifest["split"] == "test", "path"]
    assert all(p.startswith("train/") for p in test_paths)


def test_two_folders_for_one_split_is_an_error(tmp_path, png):
    fill(tmp_path, png, {"a": 1, "b": 1}, split="train")
    fill(tmp_path, png, {"a": 1}, split="val")
    fill(tmp_path, png, {"a": 1}, split="validation")
    with pytest.raises(IngestionError, match=r"ingestion\.root.*keep one"):
        make_manifest(tmp_path, 0.1, 0.1, seed=0)


def test_non_split_folders_beside_splits_are_ignored(tmp_path, png):
    fill(tmp_path, png, {"a": 2, "b": 2}, split="train")
    fill(tmp_path, png, {"a": 2}, split="extras")
    manifest, quarantine, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert not any(p.startswith("extras/") for p in manifest["path"])
    assert len(manifest) == 4
    assert quarantine.empty  # ignored, not quarantined


def test_nested_subfolders_belong_to_their_class(tmp_path, png):
    png(tmp_path / "a" / "top.png")
    png(tmp_path / "a" / "sub" / "deeper" / "nested.png")
    png(tmp_path / "a" / "sub" / "mid.png")
    png(tmp_path / "b" / "one.png")
    manifest, _, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    labels = dict(zip(manifest["path"], manifest["label"], strict=True))
    assert labels == {"a/top.png": "a", "a/sub/deeper/nested.png": "a", "a/sub/mid.png": "a",
                      "b/one.png": "b"}


def test_hidden_files_and_folders_are_ignored(tmp_path, png):
    fill(tmp_path, png, {"a": 2, "b": 2})
    png(tmp_path / "a" / ".hidden.png")
    png(tmp_path / "a" / ".thumbs" / "x.png")
    png(tmp_path / ".git" / "y.png")  # a hidden would-be class
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "b" / "._002.png").write_bytes(b"\0\5\26\7")  # macOS resource fork
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert facts.classes == ("a", "b")
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]
    assert quarantine.empty
    assert facts.dropped_classes == ()


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
    manifest, _, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    rows = manifest.set_index("path")
    assert rows.loc["a/wide.png", ["width", "height"]].tolist() == [40, 10]
    assert rows.loc["b/tall.png", ["width", "height"]].tolist() == [7, 30]


def test_relative_root_gives_paths_relative_to_it(tmp_path, png, monkeypatch):
    fill(tmp_path / "images", png, {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    manifest, _, _ = make_manifest("images", 0.0, 0.0, seed=0)
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]


# --- files left out by the listing and the checks ----------------------------------------


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


def test_non_images_are_quarantined_with_a_reason(tmp_path, png):
    fill(tmp_path, png, {"a": 2, "b": 2})
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / "README.md").write_text("stray")
    manifest, quarantine, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert len(manifest) == 4
    assert reasons(quarantine) == {"a/notes.txt": "not_an_image",
                                    "README.md": "not_in_a_class_folder"}
    labels = dict(zip(quarantine["path"], quarantine["label"], strict=True))
    assert labels == {"a/notes.txt": "a", "README.md": ""}
    assert "'.txt'" in details(quarantine)["a/notes.txt"]


@pytest.mark.parametrize(("kind", "name", "reason"), [
    ("garbage", "broken.png", "not_an_image"),
    ("empty", "broken.png", "empty_file"),
    ("truncated", "broken.png", "truncated"),
    ("header_cut", "broken.png", "truncated"),
    ("half_jpeg", "broken.jpg", "truncated"),  # PIL's verify() passes it; decoding does not
    ("bad_crc", "broken.png", "unreadable"),
])
def test_corrupt_file_is_quarantined_not_fatal(tmp_path, png, kind, name, reason):
    fill(tmp_path, png, {"a": 3, "b": 3})
    (tmp_path / "a" / name).write_bytes(_corrupt_bytes(kind))
    manifest, quarantine, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert f"a/{name}" not in set(manifest["path"])
    assert len(manifest) == 6
    assert reasons(quarantine) == {f"a/{name}": reason}
    assert quarantine.loc[0, "detail"]


@pytest.mark.parametrize(("max_pixels", "kept"), [(400, True), (399, False)])
def test_images_above_max_pixels_are_quarantined(tmp_path, png, max_pixels, kept):
    fill(tmp_path, png, {"a": 2, "b": 2})
    png(tmp_path / "a" / "big.png", size=(40, 10))
    manifest, quarantine, _ = make_manifest(tmp_path, 0.0, 0.0, seed=0, max_pixels=max_pixels)
    assert ("a/big.png" in set(manifest["path"])) == kept
    assert reasons(quarantine) == ({} if kept else {"a/big.png": "too_many_pixels"})


def test_workers_give_the_same_result(tmp_path, png):
    fill(tmp_path, png, {"a": 3, "b": 3})
    (tmp_path / "a" / "bad.png").write_bytes(b"nope")
    one = make_manifest(tmp_path, 0.3, 0.0, seed=0, workers=1)
    two = make_manifest(tmp_path, 0.3, 0.0, seed=0, workers=2)
    pd.testing.assert_frame_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[1], two[1])
    assert one[2] == two[2]


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


@pytest.mark.parametrize("name", ["labels.csv", "labels.parquet"])
def test_labels_file_source(tmp_path, png, name):
    root = tmp_path / "images"
    fill(root, png, {"a": 6, "b": 6})
    (root / "a" / "notes.txt").write_text("text")
    png(tmp_path / "outside.png")  # exists, but outside the root
    labels = write_labels(tmp_path / name, _labels_rows(root))
    manifest, quarantine, facts = make_manifest(root, 0.5, 0.5, seed=0, labels_file=labels)
    assert dict(zip(manifest["path"], manifest["split"], strict=True)) == {
        "a/000.png": "train", "a/001.png": "train", "a/002.png": "val", "a/003.png": "test",
        "b/000.png": "train", "b/001.png": "train", "b/002.png": "val", "b/003.png": "train"}
    assert (manifest["label"] == manifest["path"].str[0]).all()
    assert reasons(quarantine) == {
        "../outside.png": "path_outside_root",
        "a/../../outside.png": "path_outside_root",
        str(root / "a" / "004.png"): "path_outside_root",
        "b/004.png": "unknown_split",
        "a/missing.png": "missing_file",
        "a/005.png": "missing_label",
        "b/005.png": "missing_label",
        "a/notes.txt": "not_an_image",
    }
    assert "'training'" in details(quarantine)["b/004.png"]
    assert facts.classes == ("a", "b")
    assert "ghost" in facts.dropped_classes  # named only on a row whose file is missing
    # Files in the folder that the labels file does not name are not ingested.
    assert "a/004.png" not in set(manifest["path"])


@pytest.mark.parametrize("blank", ["", " ", "\t "])
def test_blank_labels_are_not_reported_as_dropped_classes(tmp_path, png, blank):
    root = tmp_path / "images"
    fill(root, png, {"a": 2, "b": 2})
    rows = [(f"{c}/{i:03d}.png", c, "") for c in "ab" for i in range(2)]
    rows += [("a/002.png", blank, ""), ("a/missing.png", "ghost", "")]
    png(root / "a" / "002.png")
    labels = write_labels(tmp_path / "labels.parquet", rows)
    _, quarantine, facts = make_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert reasons(quarantine)["a/002.png"] == "missing_label"
    assert facts.dropped_classes == ("ghost",)


def test_labels_file_same_path_twice(tmp_path, png):
    root = tmp_path / "images"
    fill(root, png, {"a": 3, "b": 3})
    rows = [(f"{label}/{i:03d}.png", label, "") for label in "ab" for i in range(3)]
    rows += [("a/000.png", "a", ""), ("b/001.png", "a", "")]
    labels = write_labels(tmp_path / "labels.csv", rows)
    manifest, quarantine, _ = make_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert manifest["path"].tolist() == ["a/000.png", "a/001.png", "a/002.png", "b/000.png",
                                         "b/002.png"]
    assert sorted(zip(quarantine["path"], quarantine["label"], quarantine["reason"],
                      strict=True)) == [
        ("a/000.png", "a", "duplicate"),
        ("b/001.png", "a", "label_conflict"),
        ("b/001.png", "b", "label_conflict")]


def test_labels_file_keeps_labels_that_look_like_missing_values(tmp_path, png):
    root = tmp_path / "images"
    fill(root, png, {"a": 2, "b": 2})
    rows = [("a/000.png", "NA", ""), ("a/001.png", "NA", ""), ("b/000.png", "null", ""),
            ("b/001.png", "None", "")]
    labels = write_labels(tmp_path / "labels.csv", rows)
    manifest, quarantine, facts = make_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert facts.classes == ("NA", "None", "null")
    assert quarantine.empty
    assert len(manifest) == 4


def test_labels_file_without_split_column_carves_every_split(tmp_path, png):
    root = tmp_path / "images"
    fill(root, png, {"a": 10, "b": 10})
    table = pd.DataFrame({"path": [f"{c}/{i:03d}.png" for c in "ab" for i in range(10)],
                          "label": ["a"] * 10 + ["b"] * 10, "extra": range(20)})
    table.to_parquet(tmp_path / "labels.parquet")
    assert read_labels_file(tmp_path / "labels.parquet")["split"].eq("").all()
    _, _, facts = make_manifest(root, 0.2, 0.1, seed=0, labels_file=tmp_path / "labels.parquet")
    assert facts.counts == {"train": {"a": 7, "b": 7}, "val": {"a": 2, "b": 2},
                               "test": {"a": 1, "b": 1}}


@pytest.mark.parametrize(("columns", "missing"), [
    (["file", "label", "split"], "['path']"),
    (["path", "class", "split"], "['label']"),
    (["split"], "['label', 'path']"),
])
def test_labels_file_missing_columns_is_an_error(tmp_path, png, columns, missing):
    fill(tmp_path / "images", png, {"a": 1, "b": 1})
    labels = tmp_path / "labels.csv"
    pd.DataFrame([["a/000.png", "a", "train"][: len(columns)]], columns=columns).to_csv(
        labels, index=False)
    with pytest.raises(IngestionError) as info:
        make_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)
    message = str(info.value)
    assert message.startswith(f"ingestion.labels_file = '{labels}'")
    assert f"missing columns {missing}" in message
    assert f"found {columns}" in message


@pytest.mark.parametrize(("name", "match"), [
    ("nope.csv", "no such file"),
    ("labels.txt", r"unsupported type '\.txt'.*\.csv or \.parquet"),
])
def test_labels_file_missing_or_of_another_type_is_an_error(tmp_path, png, name, match):
    fill(tmp_path / "images", png, {"a": 1, "b": 1})
    (tmp_path / "labels.txt").write_text("path,label\na/000.png,a\n")
    with pytest.raises(IngestionError, match=rf"ingestion\.labels_file = .*{match}"):
        make_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=tmp_path / name)


def test_labels_file_with_only_bad_rows_is_an_error(tmp_path, png):
    fill(tmp_path / "images", png, {"a": 1, "b": 1})
    labels = write_labels(tmp_path / "labels.csv", [("../x.png", "a", ""),
                                                     ("a/gone.png", "a", "")])
    with pytest.raises(IngestionError, match=r"ingestion\.labels_file = .*no image files "
                                             r"found \(\{'path_outside_root': 1, "
                                             r"'missing_file': 1\}\)"):
        make_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)


# --- file-system oddities ----------------------------------------------------------------


def test_symlink_loop_does_not_hang_and_lists_files_once(tmp_path, png):
    root = tmp_path / "images"
    fill(root, png, {"a": 2, "b": 2})
    png(root / "a" / "sub" / "deep.png")
    os.symlink(root, root / "a" / "to root")  # a folder link back to an ancestor
    os.symlink(root / "a", root / "a" / "sub" / "up")
    manifest, quarantine, _ = make_manifest(root, 0.0, 0.0, seed=0)
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "a/sub/deep.png",
                                        "b/000.png", "b/001.png"]
    assert quarantine.empty


def test_symbolic_links_are_followed_and_broken_ones_reported(tmp_path, png):
    root = tmp_path / "images"
    fill(root, png, {"a": 2})
    elsewhere = tmp_path / "elsewhere"
    fill(elsewhere, png, {"c": 2})
    png(elsewhere / "picture.png")
    os.symlink(elsewhere / "c", root / "c")  # a linked class folder
    os.symlink(elsewhere / "picture.png", root / "a" / "linked.png")  # a linked file
    os.symlink(tmp_path / "nowhere.png", root / "a" / "dangling.png")
    manifest, quarantine, facts = make_manifest(root, 0.0, 0.0, seed=0)
    assert facts.classes == ("a", "c")
    assert sorted(manifest["path"]) == ["a/000.png", "a/001.png", "a/linked.png",
                                        "c/000.png", "c/001.png"]
    assert reasons(quarantine) == {"a/dangling.png": "unreadable"}
    assert details(quarantine)["a/dangling.png"] == "broken symbolic link"


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
        labels = write_labels(tmp_path / "labels.csv", [
            (f"{label}/{name}", label, "") for label, files in names.items() for name in files])
    manifest, quarantine, facts = make_manifest(root, 0.0, 0.0, seed=0, labels_file=labels)
    assert facts.classes == ("chat noir", "oiseau é ☃")
    assert quarantine.empty
    assert sorted(zip(manifest["path"], manifest["label"], strict=True)) == sorted(
        (f"{label}/{name}", label) for label, files in names.items() for name in files)
    assert all((root / path).is_file() for path in manifest["path"])


# --- errors ------------------------------------------------------------------------------


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*does not exist"):
        make_manifest(tmp_path / "nope", 0.1, 0.1, seed=0)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(IngestionError,
                       match=r"ingestion\.root = .*no image files found") as info:
        make_manifest(tmp_path, 0.1, 0.1, seed=0)
    assert ".png" in str(info.value)  # names the accepted extensions
    assert "{'not_an_image': 1}" in str(info.value)  # and what was found instead


def test_split_folders_without_train_is_an_error(tmp_path, png):
    fill(tmp_path, png, {"a": 2, "b": 2}, split="val")
    fill(tmp_path, png, {"a": 2, "b": 2}, split="test")
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*no 'train' folder") as info:
        make_manifest(tmp_path, 0.1, 0.1, seed=0)
    assert "['test', 'val']" in str(info.value)
