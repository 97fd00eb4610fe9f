"""Crash-safe training checkpoints: one file per run, replaced atomically after every epoch.

A checkpoint holds everything a run needs to continue exactly: model, optimizer,
schedule, gradient scaler, SWA and EMA state, the random generators and the history.
It is written by visrec itself and read back with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers. A *fingerprint* of the
settings, data and code is stored with it, so that ``resume: auto`` never continues
a run made with other settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable ``parts`` (settings, data listing, code digest)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def source_digest(package: Path | None = None) -> str:
    """Hash of the Python sources of ``package`` (default: visrec): code changes invalidate
    checkpoints, as DVC re-runs the stage for them."""
    root = package or Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators, as tensors and lists."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": json.dumps(random.getstate()), "numpy_keys": torch.from_numpy(keys),
             "numpy": [kind, int(position), int(has_gauss), float(gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output."""
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    kind, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, state["numpy_keys"].numpy(), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # The devices this machine has (another node of a run may have had more).
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """``state`` in the checkpoint file's format (``torch.save``), to send to other
    processes: torch cannot unpickle uint16/32/64 tensors such as NumPy's generator keys."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_from_bytes(payload: bytes) -> dict[str, Any]:
    """What :func:`state_to_bytes` wrote, read as a checkpoint file is (tensors and plain
    containers only, on the CPU)."""
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"a training state is a dict, not {type(state).__name__}")
    return state


class CheckpointStore:
    """The checkpoint folder of a training run.

    Args:
        folder: Where ``last.pt`` lives; created on the first save.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return self.folder / CHECKPOINT_FILE

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` to a temporary file, flush it to disk, then rename it into place.

        A crash at any point leaves either the previous checkpoint or the new one, whole.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{CHECKPOINT_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with temporary.open("wb") as stream:
                torch.save(state, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def load(self, expected_fingerprint: str) -> dict[str, Any] | None:
        """The last checkpoint when it was made with ``expected_fingerprint``, else None.

        A checkpoint of other settings, or one that cannot be read, is reported and
        ignored (the next save replaces it).
        """
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable file: start afresh
            logger.warning("checkpoint %s is unreadable (%s: %s): training starts afresh",
                           self.path, type(error).__name__, error)
            return None
        if not isinstance(state, dict):
            logger.warning("checkpoint %s holds no training state: training starts afresh",
                           self.path)
            return None
        if state.get("fingerprint") != expected_fingerprint:
            logger.info("checkpoint %s was made with other settings, data or code: training "
                        "starts afresh", self.path)
            return None
        return state

    def clear(self) -> None:
        """Remove the checkpoint (``resume: never`` starts clean)."""
        self.path.unlink(missing_ok=True)
