"""Progress bars for steps that take more than a few seconds.

One rule for all: tqdm's, drawn on a terminal and silent otherwise (``disable=None``: not a
TTY, as in CI logs, pipes and the test suite), redrawn at most once a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm  # not tqdm.auto: in Jupyter it wants ipywidgets, and a terminal is the rule

Item = TypeVar("Item")


def progress(iterable: Iterable[Item] | None = None, desc: str = "", **options: Any
             ) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``) that shows only on a
    terminal; ``leave=False`` unless given (a finished step's bar makes room). ``options``
    are tqdm's (``disable=True`` silences it, as on the processes but the main one)."""
    settings = {"disable": None, "mininterval": 1.0, "leave": False,
                "dynamic_ncols": True} | options
    return tqdm(iterable, desc=desc, **settings)
