"""Prediction on new images: any folder layout or a list of paths, bad files reported.

Files are decoded the way ingestion checks them (:func:`visrec.core.images.read_checked`),
in the loader's worker processes; a file that fails is returned as a failure row with one
of ingestion's quarantine reasons, and the batch goes on without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visrec.core.augment import make_eval_transform
from visrec.core.data import Transform, auto_num_workers
from visrec.core.evaluate import softmax
from visrec.core.files import FolderWalk, is_utf8, shown_path
from visrec.core.images import Rejected, read_checked
from visrec.core.models import WeightSetConfig

logger = logging.getLogger(__name__)

LIST_SUFFIXES = (".txt", ".lst")  # a file of paths, one per line
FAILURE_COLUMNS = ["path", "reason", "detail"]


class PredictInputError(ValueError):
    """``predict.input`` names nothing visrec can read."""


class InputFiles(NamedTuple):
    """The files to read: ``paths`` relative to ``root`` (absolute ones kept), and what
    could not be listed (``path``, ``reason``, ``detail``: a folder that cannot be read, a
    name that is not UTF-8, shown with escapes)."""

    root: Path
    paths: list[str]
    failures: pd.DataFrame


def _walk(folder: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Every non-hidden file under ``folder``, as sorted paths relative to it, and the
    folders that could not be read.

    Linked folders are followed (a folder of links to image folders is a common layout),
    each real folder once, so a link back up the tree cannot loop.
    """
    walk = FolderWalk(folder)
    walk.enter(folder)
    found, problems = [], []
    for item in walk.files(folder):
        if item.entry is None:
            problems.append((shown_path(item.path), "unreadable", f"folder: {item.problem}"))
        else:
            found.append(item.path)
    return sorted(found), problems


def _readable_names(root: Path, paths: list[str], problems: list[tuple[str, str, str]]
                    ) -> InputFiles:
    """Split off the paths that are not valid UTF-8 (``bad_file_name``)."""
    bad = [(shown_path(path), "bad_file_name",
            "the name is not valid UTF-8 (shown with \\x escapes); rename the file")
           for path in paths if not is_utf8(path)]
    kept = [path for path in paths if is_utf8(path)]
    return InputFiles(root, kept, pd.DataFrame(problems + bad, columns=FAILURE_COLUMNS))


def list_inputs(spec: str | Sequence[str] | None, base: Path,
                key: str = "predict.input") -> InputFiles:
    """The files to classify: a folder (recursively), a ``.txt`` list of paths, a file, or
    a list of paths.

    Args:
        spec: ``predict.input`` (or the parameter ``key`` names).
        base: Folder that relative paths are resolved against (the project root).
        key: The parameter, for messages.

    Returns:
        The paths relative to their root (the folder, the list file's folder, or ``base``
        for a list), in the order given (a folder's files sorted), and what could not be
        listed.

    Raises:
        PredictInputError: Naming the parameter, the value and what is accepted.
    """
    accepted = ("give a folder of images (any layout), a .txt file with one image path per "
                "line, an image file, or a list of paths")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise PredictInputError(f"{key} is not set; {accepted}, for example "
                                f"--params \"{key}=data/new_images\"")
    if not isinstance(spec, str):
        if not spec:
            raise PredictInputError(f"{key} = []: the list is empty; {accepted}")
        return _readable_names(base, [str(p) for p in spec], [])
    path = (base / spec).resolve()
    if path.is_dir():
        files, problems = _walk(path)
        if not files and not problems:
            raise PredictInputError(f"{key} = {spec!r}: the folder has no files")
        return _readable_names(path, files, problems)
    if not path.is_file():
        raise PredictInputError(f"{key} = {spec!r}: no such file or folder "
                                f"({path}); {accepted}")
    if path.suffix.lower() in LIST_SUFFIXES:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        return _readable_names(path.parent, [line.strip() for line in lines if line.strip()
                                             and not line.lstrip().startswith("#")], [])
    return _readable_names(path.parent, [path.name], [])


class PredictionImages(Dataset):
    """Image files decoded and transformed for the model; a bad file gives its reason.

    Items are ``(image or None, index, reason, detail)``.
    """

    def __init__(self, root: Path, paths: Sequence[str], transform: Transform, channels: int,
                 max_pixels: int, max_bytes: int | None = None, key: str = "predict") -> None:
        self.root = root
        self.paths = list(paths)
        self.transform = transform
        self.channels = channels
        self.max_pixels, self.max_bytes, self.key = max_pixels, max_bytes, key

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str, str]:
        try:
            image = read_checked(self.root / self.paths[index], self.channels, self.max_pixels,
                                 self.max_bytes, self.key)
            return self.transform(image), index, "", ""
        except Rejected as rejected:
            return None, index, rejected.reason, rejected.detail
        except Exception as error:  # a file no check foresaw: reported, never fatal
            return None, index, "unreadable", f"{type(error).__name__}: {error}"[:300]


def collate_checked(items: list[tuple]) -> tuple[torch.Tensor | None, list[int], list[tuple]]:
    """Stack the good images of a batch; keep the bad ones as ``(index, reason, detail)``."""
    good = [(image, index) for image, index, _, _ in items if image is not None]
    bad = [(index, reason, detail) for image, index, reason, detail in items if image is None]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, [index for _, index in good], bad


@dataclass(frozen=True)
class Predictor:
    """A served model and what it needs: classes, input config and temperature."""

    model: nn.Module
    config: WeightSetConfig

    @property
    def temperature(self) -> float:
        """The calibration temperature stored with the model (1.0 when none)."""
        return 1.0 if self.config.temperature is None else self.config.temperature

    def transform(self) -> Transform:
        """The evaluation transform the model was trained for."""
        inputs = self.config.inputs
        return make_eval_transform(inputs.image_size, inputs.mean, inputs.std,
                                   inputs.interpolation)


@torch.no_grad()
def outputs_of_files(model: nn.Module, transform: Transform, root: Path, paths: Sequence[str],
                     channels: int, batch_size: int, device: torch.device,
                     num_workers: int | None, max_pixels: int, max_bytes: int | None = None,
                     key: str = "predict") -> tuple[np.ndarray, list[int], pd.DataFrame]:
    """Run ``model`` on image files in batches; unreadable files are listed, not fatal.

    Args:
        model: The model, on ``device`` (put in eval mode).
        transform: The evaluation transform of the model.
        root: Folder ``paths`` are relative to (absolute paths are kept as they are).
        paths: The files.
        channels: Input channels of the model.
        batch_size: Images per batch.
        device: Where the model runs.
        num_workers: Decoding processes; None chooses by device.
        max_pixels: Larger images are refused.
        max_bytes: Larger files are refused before they are read; None: no cap.
        key: The parameter block of the limits (``predict``, ``retrieve``), for reasons.

    Returns:
        ``(outputs, kept, failures)``: float32 outputs of the readable files, one row each;
        their positions in ``paths``; ``path``, ``reason`` and ``detail`` of each other file.
    """
    dataset = PredictionImages(root, paths, transform, channels, max_pixels, max_bytes, key)
    workers = auto_num_workers(device) if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_checked, pin_memory=device.type == "cuda")
    model.eval()
    outputs, kept, failures = [], [], []
    for images, indices, bad in loader:
        failures += [(paths[i], reason, detail) for i, reason, detail in bad]
        if images is not None:
            outputs.append(model(images.to(device, non_blocking=True)).float().cpu().numpy())
            kept += indices
    width = outputs[0].shape[1] if outputs else 0
    return (np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32), kept,
            pd.DataFrame(failures, columns=FAILURE_COLUMNS))


def predict_files(predictor: Predictor, root: Path, paths: Sequence[str], top_k: int,
                  batch_size: int, device: torch.device, num_workers: int | None,
                  max_pixels: int, max_bytes: int | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classify image files in batches; unreadable files are listed, not fatal.

    Args:
        predictor: The model (on ``device``) and its config.
        root: Folder ``paths`` are relative to (absolute paths are kept as they are).
        paths: The files.
        top_k: Labels and probabilities per image (at most the number of classes).
        batch_size: Images per batch.
        device: Where the model runs.
        num_workers: Decoding processes; None chooses by device.
        max_pixels: Larger images are refused.
        max_bytes: Larger files are refused before they are read; None: no cap.

    Returns:
        ``(predictions, failures)``: ``path``, ``label_1``, ``probability_1`` ... up to
        ``top_k`` with calibrated probabilities, in input order; ``path``, ``reason`` and
        ``detail`` of every file that could not be read.
    """
    classes = np.asarray(predictor.config.classes, dtype=object)
    k = min(top_k, len(classes))
    logits, kept, failures = outputs_of_files(
        predictor.model, predictor.transform(), root, paths, predictor.config.in_chans,
        batch_size, device, num_workers, max_pixels, max_bytes)
    probabilities = softmax(logits, predictor.temperature) if len(kept) else logits
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    rows = []
    for index, order, probs in zip(kept, top, probabilities, strict=True):
        row: dict[str, Any] = {"path": paths[index]}
        for rank, chosen in enumerate(order, start=1):
            row[f"label_{rank}"] = classes[chosen]
            row[f"probability_{rank}"] = round(float(probs[chosen]), 6)
        rows.append(row)
    columns = ["path"] + [f"{name}_{r}" for r in range(1, k + 1)
                          for name in ("label", "probability")]
    return pd.DataFrame(rows, columns=columns), failures
