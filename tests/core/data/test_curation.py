"""Tests of visrec.core.data.curation: from the listing and the file checks to the manifest
and the quarantine table (copies, classes, carving), and the ingestion report."""

from __future__ import annotations

import json
import shutil
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest

from tests.core.data.ingest_helpers import details, fill, reasons, write_labels
from visrec.core.data import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    REASONS,
    CacheSummary,
    CopyExample,
    IngestionError,
    IngestionReport,
    QuarantineCounts,
    carve_splits,
    curate,
    files_to_check,
    ingestion_report,
    list_source,
    make_manifest,
    quarantine_counts,
    read_cache,
    summary_lines,
    update_cache,
)
from visrec.core.images import InspectSettings

# --- copies: duplicates, label conflicts, leakage ----------------------------------------


def test_duplicates_within_a_class_keep_one(tmp_path, png):
    fill(tmp_path, png, {"a": 4, "b": 4})
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "z copy.png")
    (tmp_path / "a" / "sub").mkdir()
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "sub" / "000.png")
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert "a/000.png" in set(manifest["path"])
    assert len(manifest) == 8
    assert reasons(quarantine) == {"a/sub/000.png": "duplicate", "a/z copy.png": "duplicate"}
    assert set(details(quarantine).values()) == {"same content as a/000.png (train)"}
    assert facts.duplicates == (
        CopyExample(path="a/sub/000.png", split=None,
                    detail="same content as a/000.png (train)"),
        CopyExample(path="a/z copy.png", split=None,
                    detail="same content as a/000.png (train)"))
    assert facts.counts["train"] == {"a": 4, "b": 4}


def test_same_content_under_two_labels_leaves_every_copy_out(tmp_path, png):
    fill(tmp_path, png, {"a": 3, "b": 3})
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "b" / "which.png")
    shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / "again.png")
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    conflicts = {"a/000.png", "a/again.png", "b/which.png"}
    assert not conflicts & set(manifest["path"])
    assert reasons(quarantine) == dict.fromkeys(conflicts, "label_conflict")
    assert set(details(quarantine).values()) == {"same content under labels ['a', 'b']"}
    assert facts.counts["train"] == {"a": 2, "b": 3}
    assert facts.duplicates == ()


def test_leakage_keeps_the_copy_on_the_training_side(tmp_path, png):
    fill(tmp_path, png, {"a": 4, "b": 4}, split="train")
    fill(tmp_path, png, {"a": 2, "b": 2}, split="val")
    fill(tmp_path, png, {"a": 2, "b": 2}, split="test")
    shutil.copy(tmp_path / "train/a/000.png", tmp_path / "test/a/leak.png")  # train vs test
    shutil.copy(tmp_path / "val/b/000.png", tmp_path / "test/b/seen.png")  # val vs test
    for split in ("val", "test"):  # in all three splits
        shutil.copy(tmp_path / "train/b/001.png", tmp_path / split / "b" / "everywhere.png")
    shutil.copy(tmp_path / "test/a/000.png", tmp_path / "test/a/twice.png")  # within test
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert reasons(quarantine) == {"test/a/leak.png": "leakage",
                                    "test/b/seen.png": "leakage",
                                    "val/b/everywhere.png": "leakage",
                                    "test/b/everywhere.png": "leakage",
                                    "test/a/twice.png": "duplicate"}
    assert details(quarantine)["test/a/leak.png"] == "same content as train/a/000.png (train)"
    assert details(quarantine)["test/b/seen.png"] == "same content as val/b/000.png (val)"
    assert details(quarantine)["test/b/everywhere.png"] == (
        "same content as train/b/001.png (train)")
    kept = set(manifest["path"])
    assert {"train/a/000.png", "val/b/000.png", "train/b/001.png", "test/a/000.png"} <= kept
    assert manifest["hash"].is_unique
    assert [(r.path, r.split) for r in facts.leakage] == [
        ("test/a/leak.png", "test"), ("test/b/everywhere.png", "test"),
        ("test/b/seen.png", "test"), ("val/b/everywhere.png", "val")]
    assert facts.counts == {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2},
                               "test": {"a": 2, "b": 2}}


@pytest.mark.parametrize("seed", range(4))
def test_splits_are_carved_after_removing_duplicates(tmp_path, png, seed):
    fill(tmp_path, png, {"a": 6, "b": 6})
    for i in range(4):
        shutil.copy(tmp_path / "a" / "000.png", tmp_path / "a" / f"copy {i}.png")
    manifest, quarantine, facts = make_manifest(tmp_path, 0.5, 0.0, seed=seed)
    # 6 distinct images in a (not 10): 3 to val. A copy carved into val would be leakage.
    assert facts.counts["val"] == {"a": 3, "b": 3}
    assert facts.counts["train"] == {"a": 3, "b": 3}
    assert set(quarantine["reason"]) == {"duplicate"}
    assert len(quarantine) == 4
    assert manifest["hash"].is_unique


# --- classes -----------------------------------------------------------------------------


def test_classes_only_in_test_are_dropped(tmp_path, png):
    fill(tmp_path, png, {"a": 4, "b": 4}, split="train")
    fill(tmp_path, png, {"a": 2, "b": 2, "c": 3}, split="test")
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.5, seed=0)
    assert facts.classes == ("a", "b")
    assert "c" not in set(manifest["label"])
    assert facts.counts["test"] == {"a": 2, "b": 2}
    assert reasons(quarantine) == {f"test/c/{i:03d}.png": "class_not_in_train"
                                    for i in range(3)}
    assert facts.dropped_classes == ("c",)


def test_empty_and_all_bad_class_folders_are_dropped(tmp_path, png):
    fill(tmp_path, png, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "only bad").mkdir()
    (tmp_path / "only bad" / "x.png").write_bytes(b"")
    manifest, quarantine, facts = make_manifest(tmp_path, 0.0, 0.0, seed=0)
    assert facts.classes == ("a", "b")
    assert facts.dropped_classes == ("empty", "only bad")
    assert set(manifest["class_index"]) == {0, 1}
    assert reasons(quarantine) == {"only bad/x.png": "empty_file"}


def test_single_class_is_an_error(tmp_path, png):
    fill(tmp_path, png, {"only": 5})
    with pytest.raises(IngestionError, match=r"ingestion\.root = .*found 1 class.*at least 2"):
        make_manifest(tmp_path, 0.1, 0.1, seed=0)


def test_fewer_than_two_classes_after_quarantine_is_an_error(tmp_path, png):
    fill(tmp_path, png, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one.png").write_bytes(b"not a png")
    (tmp_path / "b" / "two.png").write_bytes(b"")
    with pytest.raises(IngestionError) as info:
        make_manifest(tmp_path, 0.0, 0.0, seed=0)
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
        make_manifest(tmp_path, 0.0, 0.0, seed=0)


def test_labels_file_with_one_usable_class_is_an_error(tmp_path, png):
    fill(tmp_path / "images", png, {"a": 2, "b": 1})
    labels = write_labels(tmp_path / "labels.csv", [("a/000.png", "a", ""),
                                                     ("a/001.png", "a", ""),
                                                     ("b/000.png", "b", "test")])
    with pytest.raises(IngestionError, match=r"^ingestion\.labels_file = .*found 1 class"):
        make_manifest(tmp_path / "images", 0.0, 0.0, seed=0, labels_file=labels)


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


# --- the manifest table ------------------------------------------------------------------


def test_manifest_columns_dtypes_and_order(tmp_path, png):
    fill(tmp_path, png, {"b": 6, "a": 5}, split="train")
    fill(tmp_path, png, {"a": 2, "b": 1}, split="val")
    png(tmp_path / "train" / "a" / "sub" / "x.png", size=(9, 9))
    manifest, _, _ = make_manifest(tmp_path, 0.0, 0.3, seed=1)
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
    assert (manifest["cache_index"] == -1).all()  # make_manifest caches no pixels
    assert manifest["hash"].str.fullmatch(r"[0-9a-f]{32}").all()


def test_build_manifest_is_seed_deterministic(tmp_path, png):
    fill(tmp_path, png, {"a": 12, "b": 9})
    first, _, _ = make_manifest(tmp_path, 0.2, 0.2, seed=5)
    pd.testing.assert_frame_equal(first, make_manifest(tmp_path, 0.2, 0.2, seed=5)[0])
    other, _, _ = make_manifest(tmp_path, 0.2, 0.2, seed=6)
    assert set(first.loc[first["split"] == "test", "path"]) != set(
        other.loc[other["split"] == "test", "path"])


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
    assert counts.total == 5
    assert list(counts.by_reason) == list(REASONS)
    assert counts.by_reason == {reason: {"duplicate": 2, "leakage": 1, "not_an_image": 1,
                                            "not_in_a_class_folder": 1}.get(reason, 0)
                                   for reason in REASONS}
    assert counts.by_class == {"a": {"duplicate": 2, "leakage": 1},
                                  "b": {"not_an_image": 1}}  # no class: not listed by class
    assert counts.by_split == {"train": {"duplicate": 2, "not_an_image": 1,
                                            "not_in_a_class_folder": 1},
                                  "test": {"leakage": 1}}


def test_quarantine_counts_of_nothing():
    counts = quarantine_counts(pd.DataFrame(columns=QUARANTINE_COLUMNS))
    assert counts == QuarantineCounts(total=0, by_reason=dict.fromkeys(REASONS, 0),
                                      by_class={}, by_split={})


def test_every_reason_has_a_distinct_name():
    assert len(set(REASONS)) == len(REASONS) == 18
    assert all(reason.isidentifier() and reason.islower() for reason in REASONS)


def _report(quarantine: pd.DataFrame, cache_enabled: bool,
            dropped: list[str]) -> IngestionReport:
    return IngestionReport(
        root="data/images", labels_file=None, channels=3, classes=("a", "b"), num_images=9,
        counts={"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1}, "test": {"a": 1, "b": 0}},
        quarantine=quarantine_counts(quarantine), duplicates=(), leakage=(),
        dropped_classes=tuple(dropped),
        cache=CacheSummary(enabled=cache_enabled, resolution=64, channels=3, images=9,
                           bytes=3 * 2**20))


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


@pytest.mark.parametrize("resolution", [8, 0], ids=["cache", "no cache"])
def test_ingestion_report_of_a_curated_folder(tmp_path, png, resolution):
    root = tmp_path / "images"
    fill(root, png, {"a": 3, "b": 2})
    shutil.copy(root / "a" / "000.png", root / "a" / "again.png")
    (root / "b" / "notes.txt").write_text("not an image")
    listing, class_folders = list_source(root, None)
    cache, _ = update_cache(read_cache(tmp_path / "cache"), root, files_to_check(listing),
                            InspectSettings(10**8, resolution, 3))
    manifest, quarantine, facts = curate(listing, cache.index, class_folders, 0.0, 0.0, seed=0)
    report = ingestion_report(facts, manifest, quarantine, cache, root="images",
                              labels_file=None, channels=3)
    copy = CopyExample(path="a/again.png", split=None, detail="same content as a/000.png (train)")
    assert report == IngestionReport(
        root="images", labels_file=None, channels=3, classes=("a", "b"), num_images=5,
        counts={"train": {"a": 3, "b": 2}, "val": {"a": 0, "b": 0}, "test": {"a": 0, "b": 0}},
        quarantine=QuarantineCounts(
            total=2, by_reason={r: int(r in {"duplicate", "not_an_image"}) for r in REASONS},
            by_class={"a": {"duplicate": 1}, "b": {"not_an_image": 1}},
            by_split={"train": {"duplicate": 1, "not_an_image": 1}}),
        duplicates=(copy,), leakage=(), dropped_classes=(),
        # 6 images decoded (the copy too), 5 of them in the manifest.
        cache=CacheSummary(enabled=resolution > 0, resolution=resolution, channels=3,
                           images=5 if resolution else 0,
                           bytes=6 * resolution**2 * 3))
    assert IngestionReport.from_json(json.loads(json.dumps(report.to_json()))) == report
