"""The export pipeline: ONNX (dynamic batch) and TorchScript, parity-checked on real images."""

import io
import json
import warnings

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch

from tests.conftest import write_png
from tests.params import base_params
from tests.pipelines.helpers import make_report, run_pipeline
from tests.pipelines.served import CLASSES, served_artifact
from visrec.core.evaluate import eval_loader_of, softmax
from visrec.core.models import model_from_weight_set
from visrec.params import ExportParams
from visrec.pipelines.export import create_pipeline


@pytest.fixture
def image_rows(tmp_path):
    """A manifest of 11 real PNG files of different sizes (no packed cache)."""
    paths = []
    for i in range(11):
        write_png(tmp_path / "images" / f"{i}.png", (24 + 3 * i, 40 - i), seed=i)
        paths.append(f"{i}.png")
    manifest = pd.DataFrame({"path": paths, "label": "cat", "class_index": 0,
                             "split": "test", "cache_index": -1})
    return manifest, make_report(str(tmp_path / "images"), CLASSES)


def _params(**overrides: object) -> ExportParams:
    """The ``export`` block of conf/base with ``overrides``."""
    return base_params(ExportParams, **overrides)


def _export(served, manifest, report, params):
    catalog = run_pipeline(create_pipeline(), {
        "served_model": served, "image_manifest": manifest, "ingestion_report": report,
        "params:export": params})
    return (catalog["onnx_model"].load(), catalog["torchscript_model"].load(),
            catalog["export_report"].load())


def test_onnx_and_torchscript_match_pytorch_on_real_images(image_rows):
    manifest, report = image_rows
    served = served_artifact(temperature=1.7)
    onnx_bytes, archive, summary = _export(served, manifest, report,
                                           _params(parity_images=11, batch_size=4))
    assert summary["passed"] and summary["images"] == 11
    assert summary["batch_sizes"] == [3, 4]
    assert summary["onnx"]["max_abs_diff_probabilities"] < 1e-4
    assert summary["torchscript"]["max_abs_diff_probabilities"] < 1e-4
    # Independently of the node: run the ONNX file on batches of 1 and of all 11 images.
    loader = eval_loader_of(served.config.inputs, manifest, report.root, 11,
                            torch.device("cpu"))
    images = next(iter(loader))[0]
    with torch.no_grad():
        logits = model_from_weight_set(served)(images).numpy()
    expected = softmax(logits, 1.7)
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    for batch in (images[:1], images):
        probabilities = session.run(["probabilities"], {"images": batch.numpy()})[0]
        np.testing.assert_allclose(probabilities, expected[:len(batch)], atol=1e-4, rtol=0)
    assert np.abs(probabilities - expected).max() < 1e-4
    metadata = {p.key: json.loads(p.value) for p in onnx.load_from_string(
        onnx_bytes).metadata_props}
    assert metadata["classes"] == CLASSES and metadata["temperature"] == 1.7
    assert metadata["image_size"] == 32 and metadata["mean"] == [0.485, 0.456, 0.406]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(io.BytesIO(archive))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(images[:5])[1].numpy(), expected[:5], atol=1e-5)


def test_parity_beyond_tolerance_stops_the_export(image_rows):
    manifest, report = image_rows
    with pytest.raises(ValueError, match=r"export\.parity_tolerance = 1e-15 on 4 images"):
        _export(served_artifact(), manifest, report,
                _params(parity_images=4, parity_tolerance=1e-15))


def test_falls_back_to_the_torchscript_based_exporter(image_rows, monkeypatch, caplog):
    """An architecture that torch.export cannot take still exports, with a warning."""
    manifest, report = image_rows
    real_export = torch.onnx.export

    def dynamo_fails(*args, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("data-dependent control flow")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    with caplog.at_level("WARNING"):
        onnx_bytes, _, summary = _export(served_artifact(), manifest, report,
                                         _params(parity_images=5, batch_size=2))
    assert "using the TorchScript-based exporter" in caplog.text
    assert summary["passed"] and summary["batch_sizes"] == [1, 2]
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
