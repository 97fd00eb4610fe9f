"""Per-epoch metrics through dvclive, so that ``dvc plots`` and ``dvc exp show`` see them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SKIPPED = ("epoch", "phase")


class LiveLog:
    """Writes a training history to a dvclive folder, one step per epoch.

    The first call starts the folder afresh and writes every epoch it is given (a resumed
    run's earlier epochs included), so a resumed run leaves the same files as an unbroken
    one; later calls add only the new epochs. dvclive is told not to touch ``dvc.yaml``
    (``dvcyaml=False``; the stage declares the folder) and not to make a DVC experiment of
    every ``kedro run`` (``save_dvc_exp=False``).

    Args:
        folder: The dvclive folder (``metrics.json``, ``params.yaml`` and
            ``plots/metrics/*.tsv``).
        params: The run's parameters, written to ``params.yaml`` by the first call.
    """

    def __init__(self, folder: str | Path, params: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.params = params or {}
        self._live: Any = None
        self._written = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a training process) without the open dvclive run."""
        return {"folder": self.folder, "params": self.params, "_live": None, "_written": 0}

    def with_params(self, params: dict[str, Any]) -> LiveLog:
        """A log of the same folder that also records ``params``."""
        return LiveLog(self.folder, params)

    def __call__(self, history: list[dict[str, Any]]) -> None:
        """Write the epochs of ``history`` (one dict each) not written yet."""
        if self._live is None:
            from dvclive import Live  # noqa: PLC0415 - dvclive imports DVC: seconds

            self._live = Live(dir=str(self.folder), resume=False, save_dvc_exp=False,
                              dvcyaml=False, report=None)
            if self.params:
                self._live.log_params(self.params)
        for row in history[self._written:]:
            for name, value in row.items():
                if name not in SKIPPED and isinstance(value, int | float) and math.isfinite(
                        value):
                    self._live.log_metric(name, float(value))
            self._live.next_step()
        self._written = len(history)
