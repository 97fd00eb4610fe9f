"""Per-epoch metrics through dvclive, so that ``dvc plots`` and ``dvc exp show`` see them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SKIPPED = ("epoch", "phase")


class LiveLog:
    """Writes a training history to a dvclive folder after every epoch.

    Each call rewrites the whole history, so a resumed run leaves the same files as an
    unbroken one. dvclive is told not to touch ``dvc.yaml`` (``dvcyaml=False``; the stage
    declares the folder) and not to make a DVC experiment of every ``kedro run``
    (``save_dvc_exp=False``).

    Args:
        folder: The dvclive folder (``metrics.json`` and ``plots/metrics/*.tsv``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __call__(self, history: list[dict[str, Any]]) -> None:
        """Write ``history`` (one dict per epoch, numbers logged by name)."""
        from dvclive import Live  # noqa: PLC0415 - dvclive imports DVC: seconds

        with Live(dir=str(self.folder), resume=False, save_dvc_exp=False, dvcyaml=False,
                  report=None) as live:
            for row in history:
                for name, value in row.items():
                    if (name not in SKIPPED and isinstance(value, int | float)
                            and math.isfinite(value)):
                        live.log_metric(name, float(value))
                live.next_step()
