"""Dotted keys over nested mappings: the two directions agree."""

from __future__ import annotations

from visrec.core.trees import leaves, merged, nested


def test_leaves_and_nested_are_inverse():
    tree = {"seed": 1, "training": {"epochs": 3, "swa": {"lr": 0.1, "on": True}},
            "loss": {"options": {}}, "policies": ["a", "b"]}
    flat = dict(leaves(tree))
    assert flat == {"seed": 1, "training.epochs": 3, "training.swa.lr": 0.1,
                    "training.swa.on": True, "loss.options": {}, "policies": ["a", "b"]}
    assert nested(flat) == tree


def test_nested_merges_siblings():
    assert nested({"a.b": 1, "a.c.d": 2, "e": None}) == {"a": {"b": 1, "c": {"d": 2}},
                                                          "e": None}


def test_merged_merges_mappings_replaces_the_rest_and_copies():
    tree = {"a": {"b": 1, "c": [1]}, "d": None}
    changed = merged(tree, {"a": {"c": [2]}, "d": {"e": 3}, "f": 4})
    assert changed == {"a": {"b": 1, "c": [2]}, "d": {"e": 3}, "f": 4}
    changed["a"]["c"].append(5)
    assert tree == {"a": {"b": 1, "c": [1]}, "d": None}
