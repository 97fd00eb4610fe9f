"""The parameter reference, docs/parameters.md, is what tools/parameters_doc.py writes."""

from __future__ import annotations

from tools import parameters_doc


def test_parameter_reference_is_up_to_date():
    expected = parameters_doc.render(parameters_doc.base_values())
    committed = parameters_doc.OUTPUT.read_text(encoding="utf-8")
    assert committed == expected, (
        "docs/parameters.md is out of date with the parameter models or conf/base: run "
        "`python tools/parameters_doc.py` and commit the result")


def test_every_parameter_is_in_the_reference():
    page = parameters_doc.OUTPUT.read_text(encoding="utf-8")
    for key in ("training.epochs", "training.loss.name", "training.swa.lr",
                "class_balance.strategy", "tuning.space.policies", "tuning.pruner.name",
                "ingestion.cache.resolution", "export.parity_tolerance"):
        assert f"| `{key}` |" in page, key


def test_a_type_and_its_bounds_read_plainly():
    from visrec.params import TrainingParams

    fields = TrainingParams.model_fields
    assert parameters_doc.type_name(fields["image_size"].annotation) == "int | null"
    assert parameters_doc.accepted(fields["image_size"]) == "≥ 8, ≤ 1024"
    assert parameters_doc.type_name(fields["optimizer"].annotation) == '"sgd" | "adamw" | "adam"'
