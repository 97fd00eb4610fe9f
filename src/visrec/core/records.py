"""The base of the values one stage hands the next (the ingestion report, the balance plan,
the augmentation spec, the model input config, a weight set's config).

Each is a frozen pydantic model: a reader finds its fields in one place, a type checker
follows them, and :meth:`Record.to_json` / :meth:`Record.from_json` make the round trip
through the JSON files the catalog saves (``visrec.datasets.RecordDataset``).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A typed, immutable hand-off between stages with a JSON round trip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (tuples become lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The record of :meth:`to_json` output, validated."""
        return cls.model_validate(data)
