"""Tests of class-disjoint splits (visrec.core.retrieval.split): which classes train,
validate and test an embedding, the rows that get them, and the images ingestion
quarantined because their class has no training image."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from visrec.core.retrieval import (
    ClassSplit,
    ClassSplitError,
    apply_split,
    pooled_rows,
    split_classes,
)

TEN = [f"c{i}" for i in range(10)]  # c0 ... c9: sorted as written


def _rows(by_split: dict[str, list[str]], per_class: int = 2) -> pd.DataFrame:
    """``per_class`` images of each class in the given split folder."""
    rows = [(f"{split}/{label}/{i}.png", label, split, 0)
            for split, labels in by_split.items() for label in labels for i in range(per_class)]
    table = pd.DataFrame(rows, columns=["path", "label", "split", "cache_index"])
    table["cache_index"] = range(len(table))
    return table


def _mixed(classes: list[str]) -> pd.DataFrame:
    """Every class in both train/ and test/ (the folder's own split is not class-disjoint)."""
    return _rows({"train": classes, "test": classes})


def _assert_partition(split: ClassSplit, classes: list[str]) -> None:
    parts = [set(split.train), set(split.val), set(split.test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert parts[0] | parts[1] | parts[2] == set(classes)
    for names in (split.train, split.val, split.test):
        assert list(names) == sorted(names)


def test_half_the_classes_test_by_default():
    split = split_classes(_mixed(TEN), 0.5, 0)
    assert split.test == ("c5", "c6", "c7", "c8", "c9")  # the last half, sorted
    assert split.train == ("c0", "c1", "c2", "c3", "c4")
    assert split.val == ()
    assert split.source == "classes"
    _assert_partition(split, TEN)


def test_the_order_is_by_name_not_by_row():
    shuffled = _mixed(TEN).sample(frac=1.0, random_state=0)
    assert split_classes(shuffled, 0.5, 0) == split_classes(_mixed(TEN), 0.5, 0)


@pytest.mark.parametrize(("val", "expected"), [
    (0.1, ("c3", "c4")),  # 0.1 of 5 rounds to 0: at least 2
    (0.4, ("c3", "c4")),
    (0.6, ("c2", "c3", "c4")),
])
def test_a_val_fraction_takes_at_least_two_of_the_rest(val, expected):
    split = split_classes(_mixed(TEN), 0.5, val)
    assert split.val == expected
    assert split.test == tuple(TEN[5:])
    assert split.train == tuple(name for name in TEN[:5] if name not in expected)
    _assert_partition(split, TEN)


@pytest.mark.parametrize("test", [0.2, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("val", [0, 0.1, 0.25])
def test_fractions_make_disjoint_sets_of_every_class(test, val):
    classes = [f"class_{i:02d}" for i in range(20)]
    split = split_classes(_mixed(classes), test, val)
    _assert_partition(split, classes)
    assert len(split.test) == max(2, math.floor(test * 20 + 0.5))  # halves round up
    assert split.test == tuple(classes[20 - len(split.test):])
    assert len(split.val) == (0 if val == 0 else
                              max(2, math.floor(val * (20 - len(split.test)) + 0.5)))
    assert len(split.train) >= 2


def test_disjoint_class_folders_are_kept():
    rows = _rows({"train": ["a", "b", "c"], "val": ["b", "d"], "test": ["e", "f"]})
    split = split_classes(rows, 0.5, 0)
    assert split.source == "folders"
    assert split.test == ("e", "f")
    assert split.train == ("a", "b", "c", "d")
    _assert_partition(split, list("abcdef"))
    # A val fraction picks among the classes of train/ and val/.
    with_val = split_classes(rows, 0.5, 0.5)
    assert (with_val.train, with_val.val, with_val.test) == (("a", "b"), ("c", "d"), ("e", "f"))
    # The test list may name exactly the test/ classes, not others.
    assert split_classes(rows, ["f", "e"], 0).test == ("e", "f")
    with pytest.raises(ClassSplitError, match=r"metric_learning\.split\.test_classes = \['a', "):
        split_classes(rows, ["a", "e"], 0)


def test_overlapping_folders_fall_back_to_splitting_classes():
    rows = _rows({"train": ["a", "b", "c", "d"], "test": ["d", "e", "f"]})
    split = split_classes(rows, 0.5, 0)
    assert split.source == "classes"
    assert split.test == ("d", "e", "f")
    assert split.train == ("a", "b", "c")


def test_classes_can_be_listed():
    split = split_classes(_mixed(TEN), ["c7", "c1", "c4"], ["c9", "c0"])
    assert split.test == ("c1", "c4", "c7")
    assert split.val == ("c0", "c9")
    assert split.train == ("c2", "c3", "c5", "c6", "c8")
    assert split.source == "classes"
    _assert_partition(split, TEN)
    mixed = split_classes(_mixed(TEN), ["c0", "c1"], 0.25)  # a list and a fraction
    assert mixed.val == ("c8", "c9")


def test_split_of_a_class():
    split = split_classes(_mixed(TEN), 0.5, 0.4)
    assert [split.of(name) for name in ("c0", "c4", "c9")] == ["train", "val", "test"]
    with pytest.raises(KeyError):
        split.of("nope")


@pytest.mark.parametrize(("test", "val", "pattern"), [
    (["c1", "zebra"], 0, r"metric_learning\.split\.test_classes = .*\['zebra'\] are not "
                         r"classes"),
    (0.5, ["c0", "yak"], r"metric_learning\.split\.val_classes = .*\['yak'\] are not classes"),
    (["c8", "c9"], ["c1", "c9"], r"metric_learning\.split\.val_classes = \['c1', 'c9'\] and "
                                 r"the test classes overlap in \['c9'\]"),
    (0.5, ["c2"], r"metric_learning\.split\.val_classes = \['c2'\]: one validation class"),
    (0.5, 0.8, r"metric_learning\.split: 1 train classes .*lower "
               r"metric_learning\.split\.test_classes or metric_learning\.split\.val_classes"),
    (0.9, 0, r"metric_learning\.split: 1 train classes"),
    (["c1"], 0, r"metric_learning\.split: 1 test classes"),
])
def test_splits_that_cannot_be_made_are_refused(test, val, pattern):
    with pytest.raises(ClassSplitError, match=pattern) as info:
        split_classes(_mixed(TEN), test, val)
    assert isinstance(info.value, ValueError)


def test_too_few_classes_to_train_are_refused():
    with pytest.raises(ClassSplitError, match=r"0 train classes \(\[\]\) of 4"):
        split_classes(_mixed(["a", "b", "c", "d"]), 0.5, 0.5)  # 2 test, then 2 val


def test_the_prefix_names_the_parameters():
    with pytest.raises(ClassSplitError, match=r"^retrieval\.test_classes = "):
        split_classes(_mixed(TEN), ["x"], 0, prefix="retrieval")


def test_apply_split_sets_splits_and_numbers_classes_within_each():
    rows = _mixed(["d", "a", "c", "b", "e", "f"]).sample(frac=1.0, random_state=1)
    split = ClassSplit(train=("a", "c", "e"), val=("b", "f"), test=("d",), source="classes")
    table = apply_split(rows, split)
    assert table.columns.tolist() == ["path", "label", "class_index", "split", "cache_index"]
    assert len(table) == len(rows)
    assert table["split"].tolist() == ["train"] * 12 + ["val"] * 8 + ["test"] * 4
    assert table["label"].tolist() == (["a"] * 4 + ["c"] * 4 + ["e"] * 4 + ["b"] * 4
                                       + ["f"] * 4 + ["d"] * 4)
    assert table["class_index"].tolist() == ([0] * 4 + [1] * 4 + [2] * 4 + [0] * 4 + [1] * 4
                                             + [0] * 4)
    assert table["class_index"].dtype == "int64"
    for _, group in table.groupby("label"):  # paths sorted within a class
        assert group["path"].tolist() == sorted(group["path"])
    # Each row keeps its own path and cache slot.
    merged = table.merge(rows, on="path", suffixes=("", "_given"))
    assert (merged["cache_index"] == merged["cache_index_given"]).all()
    assert (merged["label"] == merged["label_given"]).all()


def test_pooled_rows_bring_back_images_of_classes_without_training_images():
    manifest = pd.DataFrame({
        "path": ["train/a/1.png", "train/a/2.png", "train/b/1.png", "val/a/3.png"],
        "label": ["a", "a", "b", "a"], "class_index": [0, 0, 1, 0],
        "split": ["train", "train", "train", "val"], "cache_index": [0, 1, 2, 3]})
    quarantine = pd.DataFrame({
        "path": ["test/c/1.png", "val/e/2.png", "train/a/bad.png", "test/d/1.png",
                 "test/f/lost.png"],
        "label": ["c", "e", "a", "d", "f"],
        "split": ["test", "val", "train", "test", "test"],
        "reason": ["class_not_in_train", "class_not_in_train", "unreadable",
                   "class_not_in_train", "class_not_in_train"],
        "detail": ["", "", "cannot decode", "", ""]})
    cache_index = pd.DataFrame({  # the cache holds no unreadable or lost image
        "path": ["train/a/1.png", "train/a/2.png", "train/b/1.png", "val/a/3.png",
                 "test/d/1.png", "test/c/1.png", "val/e/2.png"],
        "slot": [0, 1, 2, 3, 4, 5, 6]})
    rows = pooled_rows(manifest, quarantine, cache_index)
    assert rows.columns.tolist() == ["path", "label", "split", "cache_index"]
    assert rows["cache_index"].dtype == "int64"
    by_path = rows.set_index("path")
    assert len(rows) == 7 and by_path.index.is_unique
    assert by_path.loc["test/c/1.png"].tolist() == ["c", "test", 5]
    assert by_path.loc["val/e/2.png"].tolist() == ["e", "val", 6]
    assert by_path.loc["test/d/1.png"].tolist() == ["d", "test", 4]
    assert by_path.loc["val/a/3.png"].tolist() == ["a", "val", 3]
    assert "train/a/bad.png" not in by_path.index  # quarantined for another reason
    assert "test/f/lost.png" not in by_path.index  # not in the cache
    assert rows["path"].tolist()[:4] == manifest["path"].tolist()  # the manifest first
    # test/ holds only classes unseen in train/ and val/: the folders' split is kept.
    split = split_classes(rows, 0.5, 0)
    assert (split.source, split.train, split.test) == ("folders", ("a", "b", "e"), ("c", "d"))


def test_carved_splits_count_as_training_images_of_the_source():
    """Ingestion carved val and test from train/ (the test/ folder held only unseen
    classes): those manifest rows are the source's training images, so the folders'
    disjoint split is still recognised."""
    manifest = pd.DataFrame({
        "path": ["train/a/1.png", "train/a/2.png", "train/b/1.png", "train/b/2.png"],
        "label": ["a", "a", "b", "b"], "class_index": [0, 0, 1, 1],
        "split": ["train", "test", "train", "val"], "cache_index": [0, 1, 2, 3]})
    quarantine = pd.DataFrame({
        "path": ["test/c/1.png", "test/d/1.png"], "label": ["c", "d"],
        "split": ["test", "test"], "reason": ["class_not_in_train"] * 2, "detail": ["", ""]})
    cache_index = pd.DataFrame({"path": [*manifest["path"], *quarantine["path"]],
                                "slot": range(6)})
    carved = pooled_rows(manifest, quarantine, cache_index, carved=("val", "test"))
    assert carved.set_index("path").loc["train/a/2.png", "split"] == "train"
    assert split_classes(carved, 0.5, 0).source == "folders"
    # Unknown to be carved, the test row of class a overlaps: the classes are split.
    assert split_classes(pooled_rows(manifest, quarantine, cache_index), 0.5, 0).source == \
        "classes"
