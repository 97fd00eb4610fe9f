"""Helpers of the ingestion tests (listing and curation): image folders, labels files and
the quarantine table's reasons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd


def fill(root: Path, png: Callable[..., Path], counts: dict[str, int],
         split: str | None = None) -> None:
    """Write ``counts[label]`` noise PNGs into ``root/[split/]label/``; image i is (10+i) x 8."""
    base = root if split is None else root / split
    for label, n in counts.items():
        for i in range(n):
            png(base / label / f"{i:03d}.png", size=(10 + i, 8))


def reasons(quarantine: pd.DataFrame) -> dict[str, str]:
    """The quarantine table's reason of each path."""
    return dict(zip(quarantine["path"], quarantine["reason"], strict=True))


def details(quarantine: pd.DataFrame) -> dict[str, str]:
    """The quarantine table's detail of each path."""
    return dict(zip(quarantine["path"], quarantine["detail"], strict=True))


def write_labels(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A labels file of ``(path, label, split)`` rows: CSV or parquet by the suffix."""
    table = pd.DataFrame(rows, columns=["path", "label", "split"])
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path
