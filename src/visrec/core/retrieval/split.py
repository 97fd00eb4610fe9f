"""Class-disjoint splits for metric learning: the classes, not the images, are split, so
that test (and validation) measure retrieval of classes the embedding never saw."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from visrec.core.records import Record

ROW_COLUMNS = ["path", "label", "split", "cache_index"]


class ClassSplitError(ValueError):
    """A class split that cannot be made: classes overlap, are missing or too few."""


class ClassSplit(Record):
    """Which classes train, validate and test an embedding; disjoint sets.

    Attributes:
        train: Classes the embedding is trained on.
        val: Held-out training classes that choose among weight sets (may be empty).
        test: Classes measured at the end, never seen in training.
        source: ``folders`` when the image folder's own train/ and test/ classes were
            disjoint and kept, else ``classes`` (split by ``split.test_classes``).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    source: str

    def of(self, label: str) -> str:
        """The split of class ``label``."""
        for split in ("train", "val", "test"):
            if label in getattr(self, split):
                return split
        raise KeyError(label)


def pooled_rows(manifest: pd.DataFrame, quarantine: pd.DataFrame,
                cache_index: pd.DataFrame, carved: Sequence[str] = ()) -> pd.DataFrame:
    """Every valid image with its class, the split its source gave it and its cache slot:
    the manifest's rows and the images ingestion left out only because their class has no
    training image (for a classifier they are unusable; for metric learning they are the
    unseen classes).

    Args:
        manifest: The ingestion manifest.
        quarantine: The ingestion quarantine table.
        cache_index: The packed cache's index (``path``, ``slot``).
        carved: The splits ingestion carved from the training images (its report's
            ``carved_splits``): their manifest rows are training images of the source.
    """
    unseen = quarantine.loc[quarantine["reason"] == "class_not_in_train", ["path", "label",
                                                                             "split"]]
    unseen = unseen.merge(cache_index[["path", "slot"]], on="path", how="inner")
    unseen = unseen.rename(columns={"slot": "cache_index"})
    given = manifest[ROW_COLUMNS].copy()
    given.loc[given["split"].isin(list(carved)), "split"] = "train"
    rows = pd.concat([given, unseen[ROW_COLUMNS]], ignore_index=True)
    return rows.astype({"path": str, "label": str, "split": str, "cache_index": "int64"})


def _take(option: float | Sequence[str], classes: list[str], key: str, minimum: int
          ) -> list[str]:
    """The last share ``option`` of sorted ``classes``, or the classes it lists."""
    if isinstance(option, int | float):
        if option == 0:
            return []
        count = max(minimum, math.floor(option * len(classes) + 0.5))  # 2.5 -> 3
        return classes[len(classes) - count:] if count < len(classes) else list(classes)
    listed = [str(name) for name in option]
    unknown = sorted(set(listed) - set(classes))
    if unknown:
        raise ClassSplitError(f"{key} = {listed}: {unknown} are not classes of the images; "
                              f"classes: {classes[:20]}{' ...' if len(classes) > 20 else ''}")
    return sorted(set(listed))


def split_classes(rows: pd.DataFrame, test_classes: float | Sequence[str],
                  val_classes: float | Sequence[str], prefix: str = "metric_learning.split"
                  ) -> ClassSplit:
    """Split the classes of ``rows`` into disjoint train, val and test sets.

    When the images came as train/ and test/ folders whose class sets do not overlap,
    those sets are kept. Otherwise ``test_classes`` picks the test classes: a fraction
    takes the last classes in sorted order (as in Musgrave et al. 2020, the second half for
    0.5), a list names them. ``val_classes`` then picks, the same way, among the rest;
    a fraction takes at least 2 (retrieval among one class measures nothing).

    Args:
        rows: From :func:`pooled_rows` (``label`` and the given ``split``).
        test_classes: Fraction of the classes, or their names.
        val_classes: Fraction of the training classes (0: no validation), or their names.
        prefix: The parameters' key, for messages.

    Raises:
        ClassSplitError: If lists overlap or name unknown classes, or too few classes are
            left to train (2) or to measure (2 for test; 0 or at least 2 for val).
    """
    classes = sorted(rows["label"].unique())
    given_train = set(rows.loc[rows["split"] != "test", "label"])
    given_test = set(rows.loc[rows["split"] == "test", "label"])
    if given_test and not given_train & given_test:
        if not isinstance(test_classes, int | float) and set(map(str, test_classes)) != \
                given_test:
            raise ClassSplitError(
                f"{prefix}.test_classes = {list(test_classes)}: the image folder's test/ "
                f"classes {sorted(given_test)} are disjoint from its train/ classes and are "
                "the test classes; give a fraction or exactly those")
        test, source = sorted(given_test), "folders"
    else:
        test, source = _take(test_classes, classes, f"{prefix}.test_classes", 2), "classes"
    remaining = [name for name in classes if name not in set(test)]
    if not isinstance(val_classes, int | float):
        overlap = sorted(set(map(str, val_classes)) & set(test))
        if overlap:
            raise ClassSplitError(f"{prefix}.val_classes = {list(val_classes)} and the test "
                                  f"classes overlap in {overlap}: train, val and test classes "
                                  "must be disjoint for metric learning")
    val = _take(val_classes, remaining, f"{prefix}.val_classes", 2)
    train = [name for name in remaining if name not in set(val)]
    for split, names, need in (("test", test, 2), ("train", train, 2)):
        if len(names) < need:
            raise ClassSplitError(
                f"{prefix}: {len(names)} {split} classes ({names}) of {len(classes)}; need at "
                f"least {need}: lower {prefix}.test_classes or {prefix}.val_classes")
    if len(val) == 1:
        raise ClassSplitError(f"{prefix}.val_classes = {val_classes!r}: one validation class "
                              f"({val}); retrieval among one class measures nothing: give 0 "
                              "or at least 2")
    return ClassSplit(train=tuple(train), val=tuple(val), test=tuple(test), source=source)


def apply_split(rows: pd.DataFrame, split: ClassSplit) -> pd.DataFrame:
    """``rows`` with ``split`` set by class and ``class_index`` numbered within each split
    (sorted class names), sorted by split, class and path."""
    table = rows.copy()
    table["split"] = table["label"].map(split.of)
    indices = {name: i for names in (split.train, split.val, split.test)
               for i, name in enumerate(names)}
    table["class_index"] = table["label"].map(indices).astype("int64")
    order = {"train": 0, "val": 1, "test": 2}
    table = table.sort_values(by=["split", "class_index", "path"],
                              key=lambda column: column.map(order) if column.name == "split"
                              else column, ignore_index=True)
    return table[["path", "label", "class_index", "split", "cache_index"]]
