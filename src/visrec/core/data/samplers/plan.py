"""The sampler part of a balance plan: which sampler draws the training rows, and its numbers."""

from __future__ import annotations

from visrec.core.records import Record


class SamplerPlan(Record):
    """How the training rows are drawn each epoch.

    Attributes:
        kind: A name of :data:`visrec.core.data.samplers.SAMPLERS`.
        class_probabilities: Class-weighted samplers: the chance of drawing each class
            (sums to 1).
        q: Class-weighted samplers: the class probabilities are proportional to ``n_c**q``.
        class_targets: ``oversample`` / ``undersample``: rows of each class per epoch.
        ratio: ``oversample`` / ``undersample``: smallest over largest class afterwards.
    """

    kind: str
    class_probabilities: tuple[float, ...] | None = None
    q: float | None = None
    class_targets: tuple[int, ...] | None = None
    ratio: float | None = None
