"""Prediction on new images, chunk by chunk: any folder layout or a list of paths, bad files
reported.

Files are decoded the way ingestion checks them (:func:`visrec.core.images.read_checked`),
in the loader's worker processes; a file that fails is returned as a failure row with one
of ingestion's quarantine reasons, and the batch goes on without it. Results come in
chunks of whole batches (:func:`predict_chunks`), so that a caller can write each as it
comes and memory stays bounded by a chunk whatever the number of images.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
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
from visrec.core.images import Rejected, read_checked
from visrec.core.models import WeightSet, WeightSetConfig, weights_digest
from visrec.core.progress import progress
from visrec.core.serve.inputs import FAILURE_COLUMNS

logger = logging.getLogger(__name__)


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


class Batch(NamedTuple):
    """One loader batch: the model's float32 outputs for its readable files (None when
    it has none), their positions in the file list, and the other files' failure rows."""

    outputs: np.ndarray | None
    kept: list[int]
    failures: list[tuple[str, str, str]]


def output_batches(model: nn.Module, transform: Transform, root: Path, paths: Sequence[str],
                   channels: int, batch_size: int, device: torch.device,
                   num_workers: int | None, max_pixels: int, max_bytes: int | None = None,
                   key: str = "predict") -> Iterator[Batch]:
    """Run ``model`` on image files batch by batch; unreadable files are listed, not fatal.

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

    Yields:
        Each batch's outputs, in the order of ``paths``.
    """
    dataset = PredictionImages(root, paths, transform, channels, max_pixels, max_bytes, key)
    workers = auto_num_workers(device) if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_checked, pin_memory=device.type == "cuda")
    model.eval()
    for images, indices, bad in progress(loader, f"{key}: images", unit="batch"):
        outputs = None
        if images is not None:
            with torch.no_grad():
                outputs = model(images.to(device, non_blocking=True)).float().cpu().numpy()
        yield Batch(outputs, indices, [(paths[i], reason, detail) for i, reason, detail in bad])


def _joined(batches: Sequence[Batch], width: int) -> tuple[np.ndarray, list[int], pd.DataFrame]:
    """The outputs, positions and failures of ``batches`` as one of each."""
    outputs = [batch.outputs for batch in batches if batch.outputs is not None]
    return (np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32),
            [index for batch in batches for index in batch.kept],
            pd.DataFrame([row for batch in batches for row in batch.failures],
                         columns=FAILURE_COLUMNS))


def outputs_of_files(model: nn.Module, transform: Transform, root: Path, paths: Sequence[str],
                     channels: int, batch_size: int, device: torch.device,
                     num_workers: int | None, max_pixels: int, max_bytes: int | None = None,
                     key: str = "predict") -> tuple[np.ndarray, list[int], pd.DataFrame]:
    """The outputs of all readable files at once (retrieval needs the whole ``N x D``
    matrix); the arguments are :func:`output_batches`'.

    Returns:
        ``(outputs, kept, failures)``: float32 outputs of the readable files, one row each;
        their positions in ``paths``; ``path``, ``reason`` and ``detail`` of each other file.
    """
    batches = list(output_batches(model, transform, root, paths, channels, batch_size, device,
                                  num_workers, max_pixels, max_bytes, key))
    widths = [batch.outputs.shape[1] for batch in batches if batch.outputs is not None]
    return _joined(batches, widths[0] if widths else 0)


def prediction_columns(top_k: int) -> list[str]:
    """``path``, ``label_1``, ``probability_1``, ... ``label_k``, ``probability_k``."""
    return ["path"] + [f"{name}_{rank}" for rank in range(1, top_k + 1)
                       for name in ("label", "probability")]


def prediction_table(paths: np.ndarray, logits: np.ndarray, classes: Sequence[str],
                     top_k: int, temperature: float) -> pd.DataFrame:
    """The top-``top_k`` labels and calibrated probabilities of each row of ``logits``.

    Args:
        paths: The files, one per row of ``logits``.
        logits: ``N x C`` model outputs.
        classes: Class names in output order.
        top_k: Labels per file (at most the number of classes).
        temperature: The calibration temperature (probabilities are ``softmax(z / T)``).

    Returns:
        The :func:`prediction_columns` of ``min(top_k, C)``; probabilities rounded to 6
        decimals, ties in the order of the classes.
    """
    k = min(top_k, len(classes))
    probabilities = softmax(logits, temperature) if len(logits) else logits
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(probabilities, top, axis=1).astype(np.float64).round(6)
    labels = np.asarray(classes, dtype=object)[top]
    columns: dict[str, Any] = {"path": paths}
    for rank in range(k):
        columns[f"label_{rank + 1}"] = labels[:, rank]
        columns[f"probability_{rank + 1}"] = chosen[:, rank]
    return pd.DataFrame(columns, columns=prediction_columns(k))


def predict_chunks(predictor: Predictor, root: Path, paths: Sequence[str], top_k: int,
                   batch_size: int, device: torch.device, num_workers: int | None,
                   max_pixels: int, max_bytes: int | None = None, chunk_size: int = 4096
                   ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Classify image files, a chunk of files at a time; unreadable files are listed.

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
        chunk_size: Files per chunk, rounded up to whole batches.

    Yields:
        ``(predictions, failures)`` of each chunk, in input order: the
        :func:`prediction_table` of its readable files; ``path``, ``reason`` and
        ``detail`` of the others.
    """
    names = np.asarray(paths, dtype=object)
    classes = predictor.config.classes
    batches = output_batches(predictor.model, predictor.transform(), root, paths,
                             predictor.config.in_chans, batch_size, device, num_workers,
                             max_pixels, max_bytes)
    per_chunk = -(-chunk_size // batch_size)  # whole batches of at least chunk_size files
    while chunk := list(islice(batches, per_chunk)):
        logits, kept, failures = _joined(chunk, len(classes))
        yield (prediction_table(names[kept], logits, classes, top_k, predictor.temperature),
               failures)


def predict_files(predictor: Predictor, root: Path, paths: Sequence[str], top_k: int,
                  batch_size: int, device: torch.device, num_workers: int | None,
                  max_pixels: int, max_bytes: int | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All of :func:`predict_chunks` at once, as one chunk (for a few files; its arguments).

    Returns:
        ``(predictions, failures)`` of every file, in input order.
    """
    for chunk in predict_chunks(predictor, root, paths, top_k, batch_size, device,
                                num_workers, max_pixels, max_bytes, max(len(paths), 1)):
        return chunk  # a chunk of len(paths) files holds them all
    classes = predictor.config.classes
    return (prediction_table(np.zeros(0, object), np.zeros((0, len(classes))), classes, top_k,
                             predictor.temperature), pd.DataFrame(columns=FAILURE_COLUMNS))


def prediction_run(served: WeightSet, spec: str | Sequence[str], base: Path, top_k: int,
                   max_pixels: int, max_bytes: int | None) -> dict[str, Any]:
    """What makes a prediction's rows: a run stopped half-way is resumed only by a run
    with the same identity.

    Args:
        served: The served weight set.
        spec: ``predict.input`` (see :func:`~visrec.core.serve.list_inputs`).
        base: Folder relative paths are resolved against.
        top_k: Labels per image.
        max_pixels: Larger images are refused.
        max_bytes: Larger files are refused; None: no cap.

    Returns:
        JSON data: the SHA-256 of the weights' tensors (as a retrieval index records its
        embedder's), of what the config adds to them (architecture, classes, temperature,
        input config), the input (the folder or file resolved; a list of paths by its
        SHA-256) and the settings that change rows. Batch size, device and workers change
        how fast, not what, and are left out.
    """
    config = served.config
    model = json.dumps([config.architecture, list(config.classes), config.temperature,
                        config.inputs.to_json()], sort_keys=True)
    if isinstance(spec, str):
        source = str((base / spec).resolve())
    else:
        listed = hashlib.sha256("\n".join(spec).encode("utf-8", "surrogateescape"))
        source = f"{len(spec)} paths, sha256 {listed.hexdigest()}"
    return {"weights_sha256": weights_digest(served.weights),
            "config_sha256": hashlib.sha256(model.encode()).hexdigest(), "input": source,
            "top_k": top_k, "max_pixels": max_pixels, "max_bytes": max_bytes}
