"""Parameters of the data stages: ``demo_data`` and ``ingestion``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from visrec.params.base import Params


class DemoDataParams(Params):
    """How the demo digits image folder is made (``demo_data``)."""

    key: ClassVar[str] = "demo_data"
    test_per_class: int = Field(ge=1, description="test images per class (balanced)")
    largest_class: int = Field(ge=2, description="training images in the largest class")
    imbalance_ratio: float = Field(ge=1.0, description="largest / smallest train class")
    image_size: int = Field(ge=8, le=512, description="side of the PNGs, pixels")
    seed: int = Field(description="seed of the draw of images per class")


class CacheParams(Params):
    """The packed image cache (``ingestion.cache``)."""

    key: ClassVar[str] = "ingestion.cache"
    enabled: bool = Field(description="decode once at ingestion; training reads arrays")
    resolution: int | None = Field(
        ge=8, le=2048,
        description="side of cached images, pixels; null: training.image_size / 0.875")
    max_disk_gb: float = Field(
        gt=0.0, description="above this, training reads the image files instead")


class IngestionParams(Params):
    """Where the images are, how they are checked, split and cached (``ingestion``)."""

    key: ClassVar[str] = "ingestion"
    root: str = Field(description="image folder: one folder per class, or train/ [val/] "
                                  "[test/] with one folder per class; relative to the "
                                  "project root")
    labels_file: str | None = Field(
        description="CSV or parquet with path, label[, split]; paths under root; null: the "
                    "folder layout")
    val_fraction: float = Field(ge=0.0, lt=0.5, description="of each training class, "
                                                            "when there is no val folder")
    test_fraction: float = Field(ge=0.0, lt=0.5, description="of each training class, "
                                                             "when there is no test folder")
    max_pixels: int = Field(
        ge=1, description="width x height above which a file is refused (decompression "
                          "bombs)")
    max_bytes: int = Field(ge=1, description="file size above which a file is refused "
                                             "before it is read")
    channels: Literal[1, 3] = Field(description="3: RGB; 1: grayscale (the model gets "
                                                "in_chans=1)")
    num_workers: int | None = Field(ge=1, description="processes that check files; null: "
                                                      "one per core")
    cache: CacheParams

    @field_validator("root")
    @classmethod
    def _root_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the path of an image folder")
        return value

    @field_validator("labels_file")
    @classmethod
    def _labels_file_type(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() not in {".csv", ".parquet", ".pq"}:
            raise ValueError("give a .csv or .parquet file with columns path, label[, split]")
        return value
