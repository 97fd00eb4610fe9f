"""Export of a served model: ONNX (dynamic batch) and TorchScript, checked against PyTorch.

The exported graph takes the images as the evaluation transform gives them (resized,
centre-cropped, normalised with the config's mean and std, ``N x C x H x W`` float32) and
returns ``logits`` and calibrated ``probabilities`` (``softmax(logits / T)`` with the
temperature stored with the model). The ONNX file carries the classes and the input
config as metadata, so that a server needs nothing else.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from visrec.core.models import WeightSetConfig
from visrec.core.progress import progress

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probabilities")
METADATA_KEYS = ("classes", "image_size", "mean", "std", "interpolation", "in_chans",
                 "temperature", "architecture", "served_from")


class ServingModel(nn.Module):
    """A classifier with its temperature: ``(logits, softmax(logits / T))``."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and calibrated probabilities of a batch of normalised images."""
        logits = self.model(images)
        return logits, torch.softmax(logits / self.temperature, dim=1)


def serving_metadata(config: WeightSetConfig) -> dict[str, str]:
    """What a server needs besides the graph, as JSON strings by key."""
    values = config.to_json()
    return {key: json.dumps(values[key]) for key in METADATA_KEYS
            if values.get(key) is not None}


def _as_tuple(outputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def export_onnx(module: nn.Module, example: torch.Tensor, opset: int,
                metadata: dict[str, str], output_names: Sequence[str] = OUTPUT_NAMES) -> bytes:
    """The ONNX graph of ``module`` with a dynamic batch axis, as bytes.

    Uses torch's ``torch.export``-based exporter (``dynamo=True``, through onnxscript),
    and the TorchScript-based one when an architecture cannot be exported that way; the
    parity check then tells whether either graph computes what PyTorch does.

    Args:
        module: The model to export, in eval mode.
        example: A batch of at least 2 images (a batch of 1 would be specialised).
        opset: The ONNX opset.
        metadata: Stored in the model's ``metadata_props``.
        output_names: Names of the module's outputs (a classifier's logits and
            probabilities; an embedder's ``embeddings``).
    """
    import onnx  # noqa: PLC0415

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' progress notes are warnings
        try:
            program = torch.onnx.export(module.eval(), (example,), dynamo=True,
                                        opset_version=opset, input_names=[INPUT_NAME],
                                        output_names=list(output_names), verbose=False,
                                        dynamic_shapes={"images": {0: batch}}, optimize=True)
            if program is None:  # only with a file to write to, which is not given
                raise RuntimeError("torch.onnx.export returned no program")
            proto = program.model_proto
        except Exception as error:  # any exporter failure: try the other exporter
            # Some architectures trip torch.export; the TorchScript-based exporter traces.
            logger.warning("export: torch.export-based ONNX export failed (%s: %s); using "
                           "the TorchScript-based exporter", type(error).__name__,
                           str(error).splitlines()[0][:200] if str(error) else "")
            buffer = io.BytesIO()
            # A file object works as the destination, though the annotation names paths.
            torch.onnx.export(module.eval(), (example,), buffer,  # type: ignore[arg-type]
                              dynamo=False,
                              opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(output_names),
                              dynamic_axes={INPUT_NAME: {0: "batch"},
                                            **{name: {0: "batch"} for name in output_names}})
            proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_torchscript(module: nn.Module, example: torch.Tensor) -> bytes:
    """``module`` traced to TorchScript, as the bytes of a ``torch.jit.save`` archive."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, but it is what many serving
        # stacks (TorchServe, LibTorch in C++) still load.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(module.eval(), example), buffer)
    return buffer.getvalue()


def onnx_outputs(onnx_bytes: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run an ONNX graph on the CPU with onnxruntime: outputs by name."""
    import onnxruntime  # noqa: PLC0415

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images}), strict=True))


def torchscript_outputs(archive: bytes, images: torch.Tensor,
                        output_names: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
    """Run a TorchScript archive on the CPU: outputs by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(archive), map_location="cpu")
    with torch.no_grad():
        return {name: value.numpy() for name, value in zip(output_names,
                                                           _as_tuple(module(images)),
                                                           strict=True)}


def max_difference(reference: dict[str, np.ndarray],
                   other: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference of each output of ``reference``, ``max_abs_diff_<name>``."""
    return {f"max_abs_diff_{name}": float(np.abs(value - other[name]).max())
            for name, value in reference.items()}


def parity(module: nn.Module, batches: Sequence[torch.Tensor],
           run: Callable[[torch.Tensor], dict[str, np.ndarray]],
           output_names: Sequence[str] = OUTPUT_NAMES) -> dict[str, float]:
    """The largest absolute difference of each output between ``module`` and an export.

    Args:
        module: The PyTorch model the export was made from, in eval mode.
        batches: Images, in the batch sizes the export should handle.
        run: Runs the exported model on a batch: outputs by name.
        output_names: Names of the module's outputs.

    Returns:
        ``max_abs_diff_<name>`` of each output over every batch.
    """
    worst: dict[str, float] = {}
    for images in progress(batches, desc="export: parity with PyTorch", unit="batch"):
        with torch.no_grad():
            reference = {k: v.numpy() for k, v in zip(output_names, _as_tuple(module(images)),
                                                      strict=True)}
        for key, value in max_difference(reference, run(images)).items():
            worst[key] = max(worst.get(key, 0.0), value)
    return worst
