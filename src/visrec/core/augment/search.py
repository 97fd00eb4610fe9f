"""Choosing an augmentation policy by evidence: successive halving over proxy trainings.

Every candidate policy is trained briefly (the first rung's budget) and scored on the
validation split by balanced accuracy; the best ``1 / eta`` go on to a rung with ``eta``
times the epochs, and so on (successive halving, Jamieson & Talwalkar 2016; the inner
loop of Hyperband, Li et al. 2018). Scores are only compared within a rung. A tie
(within ``tie_tolerance``) goes to the cheaper policy: the one whose transform takes
less time per image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Score:
    """One proxy training of one candidate in one rung."""

    candidate: int  # position in augmentation.search.candidates
    policy: str  # the canonical policy string
    rung: int  # 1-based
    epochs: int
    balanced_accuracy: float  # on the validation split
    val_loss: float
    seconds: float  # the proxy training's wall time
    cost_us: float  # augmentation time per image, microseconds

    def record(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def rung_epochs(first: int, eta: int, rungs: int) -> list[int]:
    """Epochs of each rung: ``first``, ``first * eta``, ``first * eta**2``, ..."""
    return [first * eta**rung for rung in range(rungs)]


def survivors(count: int, eta: int) -> int:
    """How many of ``count`` candidates go on to the next rung: ``ceil(count / eta)``."""
    return max(1, math.ceil(count / eta))


def rank(scores: list[Score], tie_tolerance: float = 0.0) -> list[Score]:
    """``scores`` of one rung, best first.

    Higher balanced accuracy ranks higher; candidates within ``tie_tolerance`` of a
    better one count as tied with it and are ordered by cost (cheaper first), then by
    validation loss, then by their position in the list of candidates.

    Raises:
        ValueError: If the scores come from different rungs.
    """
    if len({score.rung for score in scores}) > 1:
        raise ValueError("scores of different rungs are not comparable")
    remaining = sorted(scores, key=lambda s: (-s.balanced_accuracy, s.candidate))
    ranked: list[Score] = []
    while remaining:
        best = remaining[0].balanced_accuracy
        tied = [s for s in remaining if s.balanced_accuracy >= best - tie_tolerance - 1e-12]
        tied.sort(key=lambda s: (s.cost_us, s.val_loss, s.candidate))
        ranked.append(tied[0])
        remaining.remove(tied[0])
    return ranked


def leaderboard(scores: list[Score], tie_tolerance: float = 0.0) -> pd.DataFrame:
    """One row per candidate, ordered as the search ranked them.

    A candidate's place comes from the last rung it reached (later rungs first), then
    its rank within that rung. Columns: ``place``, ``candidate``, ``policy``, the
    balanced accuracy and epochs of each rung (``rung_1_balanced_accuracy``, ...),
    ``reached_rung``, ``cost_us``, ``seconds`` (all its proxy trainings) and
    ``selected``.
    """
    if not scores:
        raise ValueError("no scores: the search trained no candidate")
    frame = pd.DataFrame([s.record() for s in scores])
    rows = []
    for candidate, own in frame.groupby("candidate", sort=False):
        row = {"candidate": int(str(candidate)), "policy": own["policy"].iloc[0],
               "reached_rung": int(own["rung"].max()), "cost_us": float(own["cost_us"].min()),
               "seconds": float(own["seconds"].sum())}
        for _, score in own.iterrows():
            row[f"rung_{score['rung']}_balanced_accuracy"] = float(score["balanced_accuracy"])
            row[f"rung_{score['rung']}_val_loss"] = float(score["val_loss"])
            row[f"rung_{score['rung']}_epochs"] = int(score["epochs"])
        rows.append(row)
    order = []
    for rung in sorted(frame["rung"].unique(), reverse=True):
        in_rung = [s for s in scores if s.rung == rung and s.candidate not in order]
        order += [s.candidate for s in rank(in_rung, tie_tolerance)]
    table = pd.DataFrame(rows).set_index("candidate").loc[order].reset_index()
    table.insert(0, "place", np.arange(1, len(table) + 1))
    table["selected"] = table["place"] == 1
    return table
