"""Nodes of the export pipeline."""

import logging
from typing import Any

import pandas as pd
import torch

from visrec.core.data import IngestionReport
from visrec.core.evaluate import eval_loader_of
from visrec.core.models import WeightSet, model_from_weight_set
from visrec.core.serve import (
    ServingModel,
    export_onnx,
    export_torchscript,
    onnx_outputs,
    parity,
    serving_metadata,
    torchscript_outputs,
)
from visrec.params import ExportParams

logger = logging.getLogger(__name__)


def _parity_rows(manifest: pd.DataFrame, count: int) -> pd.DataFrame:
    """The first ``count`` test images (val, then train, when there is no test split)."""
    for split in ("test", "val", "train"):
        rows = manifest[manifest["split"] == split]
        if not rows.empty:
            return rows.head(count)
    raise ValueError("export: the manifest has no images to check the exported model on")


def export_model(served_model: WeightSet, manifest: pd.DataFrame,
                 ingestion_report: IngestionReport, params: ExportParams
                 ) -> tuple[bytes, bytes, dict]:
    """Export the served model to ONNX and TorchScript; check both against PyTorch.

    The check runs the three on real images (the first ``export.parity_images`` test
    images, through the evaluation transform) in batches of ``export.batch_size``, so the
    ONNX graph's dynamic batch axis is exercised with more than one size.

    Args:
        served_model: The served weight set with its config and temperature.
        manifest: The ingestion manifest (the images of the check).
        ingestion_report: Gives the image root.
        params: The ``export`` block.

    Returns:
        ``(onnx, torchscript, report)``: the two files' bytes, and the report (largest
        absolute differences of logits and probabilities, images, batch sizes, sizes).

    Raises:
        ValueError: If a format's probabilities differ from PyTorch's by more than
            ``export.parity_tolerance``.
    """
    config = served_model.config
    temperature = 1.0 if config.temperature is None else config.temperature
    module = ServingModel(model_from_weight_set(served_model), temperature)
    rows = _parity_rows(manifest, params.parity_images)
    loader = eval_loader_of(config.inputs, rows, ingestion_report.root, params.batch_size,
                            torch.device("cpu"))
    batches = [images for images, _ in loader]
    example = torch.cat(batches)[:2]
    exported = {"onnx": export_onnx(module, example, params.onnx_opset,
                                    serving_metadata(config)),
                "torchscript": export_torchscript(module, example)}
    runners = {"onnx": lambda b: onnx_outputs(exported["onnx"], b.numpy()),
               "torchscript": lambda b: torchscript_outputs(exported["torchscript"], b)}
    report: dict[str, Any] = {"weights": config.served_from,
                              "temperature": float(temperature),
                              "images": len(rows), "batch_sizes": sorted({len(b) for b in
                                                                          batches}),
                              "tolerance": params.parity_tolerance}
    failures = []
    for name, run in runners.items():
        worst = parity(module, batches, run)
        report[name] = worst | {"bytes": len(exported[name])}
        if worst["max_abs_diff_probabilities"] >= params.parity_tolerance:
            failures.append(f"{name}: {worst['max_abs_diff_probabilities']:.3g}")
        logger.info("export %s: %d bytes; largest |difference| from PyTorch on %d images: "
                    "probabilities %.3g, logits %.3g", name, len(exported[name]), len(rows),
                    worst["max_abs_diff_probabilities"], worst["max_abs_diff_logits"])
    report["onnx"]["opset"] = params.onnx_opset
    report["passed"] = not failures
    # The two files are saved one after the other, each atomically: a crash between them
    # leaves a new ONNX file beside the previous TorchScript one until the stage reruns
    # (DVC records neither, since the stage did not finish).
    if failures:
        raise ValueError(f"export: the exported probabilities differ from PyTorch's by more "
                         f"than export.parity_tolerance = {params.parity_tolerance} on "
                         f"{len(rows)} images ({'; '.join(failures)})")
    return exported["onnx"], exported["torchscript"], report
