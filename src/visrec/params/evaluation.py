"""Parameters of the stages after training: ``evaluation``, ``predict`` and ``export``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from visrec.params.base import Params


class EvaluationParams(Params):
    """Evaluation settings (``evaluation``)."""

    key: ClassVar[str] = "evaluation"
    batch_size: int = Field(ge=1, description="images per batch")
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when a GPU is "
                                                               "visible")
    serve: str = Field(description="weight set to serve: auto (best on validation) or a "
                                   "name (final, swa, ema)")
    serve_metric: Literal["balanced_accuracy", "top1", "loss"] = Field(
        description="validation metric that picks the served weights")
    temperature_scaling: bool = Field(description="fit T on the validation split (Guo et "
                                                  "al. 2017)")
    calibration_bins: int = Field(ge=2, le=100, description="ECE bins (Guo et al.: 15)")
    tta: Literal["none", "hflip"] = Field(
        description="hflip: also score the mean of each image and its mirror image (only "
                    "for models trained with horizontal flips)")
    top_confusions: int = Field(ge=1, le=100, description="confused pairs to report")
    gallery_images: int = Field(ge=0, le=200, description="highest-loss test images shown")

    @field_validator("serve")
    @classmethod
    def _serve_name(cls, value: str) -> str:
        if not value.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError("give 'auto' or the name of a weight set (final, swa, ema)")
        return value


class ImageFilesParams(Params):
    """How a served model reads new image files (the base of ``predict`` and ``retrieve``)."""

    batch_size: int = Field(ge=1, description="images per batch")
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when a GPU is "
                                                               "visible")
    num_workers: int | None = Field(ge=0, description="decoding processes; null: by device "
                                                      "and cores")
    max_pixels: int = Field(ge=1, description="width x height above which an image is "
                                              "refused")
    max_bytes: int = Field(ge=1, description="file size above which a file is refused "
                                             "before it is read")


class PredictParams(ImageFilesParams):
    """Prediction on new images with the served model (``predict``)."""

    key: ClassVar[str] = "predict"
    input: str | list[str] | None = Field(
        description="a folder (searched recursively), a text file with one image path per "
                    "line, an image file, or a list of paths")
    top_k: int = Field(ge=1, le=100, description="labels and probabilities per image")
    chunk_size: int = Field(ge=1, description="images per chunk appended to the partial "
                                              "output; memory is bounded by it, not by the "
                                              "number of images")


class ExportParams(Params):
    """Export of the served model (``export``)."""

    key: ClassVar[str] = "export"
    onnx_opset: int = Field(ge=17, le=23, description="ONNX opset of the exported graph")
    parity_images: int = Field(ge=1, description="test images the parity check runs on")
    parity_tolerance: float = Field(gt=0, description="max |p_onnx - p_torch| allowed")
    batch_size: int = Field(ge=1, description="batch of the parity check")
