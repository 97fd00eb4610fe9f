"""The run recipe's device-dependent settings: mixed precision and the memory layout."""

import pytest
import torch

from visrec.core.train import resolve_channels_last, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("requested", "expected"),
                         [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16")])
def test_precision_on_the_cpu(requested, expected, caplog):
    with caplog.at_level("WARNING"):
        assert resolve_precision(requested, CPU) == expected
    assert not caplog.text


def test_fp16_on_the_cpu_falls_back_to_fp32_naming_the_parameter(caplog):
    with caplog.at_level("WARNING"):
        assert resolve_precision("fp16", CPU) == "fp32"
        assert resolve_precision("fp16", CPU, key="augmentation.search.precision") == "fp32"
    assert "training.precision = 'fp16' needs CUDA" in caplog.text
    assert "augmentation.search.precision = 'fp16' needs CUDA" in caplog.text


@pytest.mark.parametrize(("bf16", "requested", "expected"),
                         [(True, "auto", "bf16"), (False, "auto", "fp16"),
                          (True, "fp16", "fp16"), (False, "fp32", "fp32"),
                          (True, "bf16", "bf16")])
def test_precision_on_cuda(monkeypatch, bf16, requested, expected):
    """``auto`` is bf16 where the GPU has it, else fp16; an explicit choice stays."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_precision(requested, CUDA) == expected


@pytest.mark.parametrize(("requested", "expected"),
                         [("auto", True), (True, True), (False, False)])
def test_channels_last(requested, expected):
    assert resolve_channels_last(requested) is expected
