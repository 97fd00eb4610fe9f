"""Nested mappings addressed by dotted keys (``training.swa.lr``), as parameters are."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every value of ``tree`` that is not a non-empty mapping, with its dotted key."""
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"training.swa.lr": 0.1}`` as ``{"training": {"swa": {"lr": 0.1}}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def merged(tree: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``tree`` with the nested ``changes`` applied (mappings merge, other
    values replace)."""
    result = copy.deepcopy(dict(tree))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
