"""The ingestion pipeline: a real, messy folder becomes a manifest, a quarantine table, a
report and a packed cache; a re-run only opens what changed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.messy import make_messy_folder
from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.data import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    REASONS,
    long_tail_counts,
    read_cache,
    write_cache,
)
from visrec.core.images import fit_square, load_image
from visrec.params import IngestionParams
from visrec.pipelines.ingestion import create_pipeline


def _params(**overrides: object) -> IngestionParams:
    """The ``ingestion`` block of conf/base with ``overrides``."""
    return base_params(IngestionParams, **overrides)


def _ingest(params: IngestionParams, cache_folder: Path, image_size: int = 32) -> dict:
    """Run the pipeline with the cache committed in ``cache_folder``, as the catalog does."""
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, {
        "params:ingestion": params, "params:seed": 0, "params:training.image_size": image_size,
        "params:training.model": "test_resnet",
        "image_cache_state": read_cache(cache_folder)})
    outputs = {name: catalog[name].load() for name in pipeline.all_outputs()}
    write_cache(outputs["image_cache"])
    return outputs


def test_demo_folder_manifest_report_and_cache(tiny_params, digits_folder):
    pipeline = create_pipeline()
    (digits_folder / "train" / "3" / "notes.txt").write_text("not an image")
    try:
        catalog = run_pipeline(pipeline, only(tiny_params, pipeline))
    finally:
        (digits_folder / "train" / "3" / "notes.txt").unlink()
    manifest = catalog["image_manifest"].load()
    report = catalog["ingestion_report"].load()
    quarantine = catalog["quarantine"].load()
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(report.classes) == [str(d) for d in range(10)]
    sizes = manifest["split"].value_counts().to_dict()
    assert sizes["test"] == 60  # the given test/ folder, untouched
    assert sizes["val"] > 0
    assert sizes["train"] + sizes["val"] == sum(long_tail_counts(10, 24, 4))
    assert (manifest["class_index"] == manifest["label"].astype(int)).all()
    assert quarantine[["path", "reason"]].to_dict("records") == [
        {"path": "train/3/notes.txt", "reason": "not_an_image"}]
    assert report.quarantine.by_reason == {r: int(r == "not_an_image") for r in REASONS}
    # The cache: 32 / 0.875 -> 37 px, one slot per image, the image as load_image sees it.
    cache = catalog["image_cache"].load()
    n = len(manifest)
    assert n == 60 + sum(long_tail_counts(10, 24, 4))
    assert report.cache.to_json() == {"enabled": True, "resolution": 37, "channels": 3,
                               "images": n, "bytes": n * 37 * 37 * 3}
    assert sorted(manifest["cache_index"]) == list(range(n))
    for row in manifest.sample(5, random_state=0).itertuples():
        expected = fit_square(load_image(digits_folder / row.path), 37)
        np.testing.assert_array_equal(cache.pixels[row.cache_index], expected)


@pytest.mark.faults
def test_messy_folder_quarantines_every_bad_file_with_its_reason(tmp_path):
    messy = make_messy_folder(tmp_path / "messy")
    out = _ingest(_params(root=str(messy.root), num_workers=2), tmp_path / "cache")
    manifest, quarantine, report = (out["image_manifest"], out["quarantine"],
                                    out["ingestion_report"])
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert dict(zip(quarantine["path"], quarantine["reason"], strict=True)) == messy.bad
    assert set(manifest["path"]) == messy.valid
    assert set(quarantine["reason"]) <= set(REASONS)
    assert list(report.classes) == ["cat", "dog", "oiseau bleu é"]
    assert set(report.dropped_classes) == messy.dropped_classes
    leak = {item.path: item.detail for item in report.leakage}
    assert leak == {"test/cat/leaked.png": "same content as train/cat/original.png (train)",
                    "val/cat/leaked too.png": "same content as train/cat/original.png (train)"}
    assert [d.path for d in report.duplicates] == ["train/cat/second copy.png"]
    rows = manifest.set_index("path")
    for path, size in messy.sizes.items():
        assert tuple(rows.loc[path, ["width", "height"]]) == size
    odd = rows.loc[[p for p in messy.valid if "/odd/" in p]]
    assert set(odd["format"]) == {"PNG", "GIF", "JPEG", "TIFF", "BMP", "WEBP"}
    assert {"L", "LA", "P", "RGBA", "CMYK", "I;16", "F"} <= set(odd["mode"])
    pixels = out["image_cache"].pixels
    for slot in odd["cache_index"]:  # every odd mode decoded to a dog-green RGB square
        mean = pixels[slot].reshape(-1, 3).mean(axis=0)
        assert pixels[slot].shape == (37, 37, 3)
        assert mean[1] > mean[0] or np.ptp(mean) < 10, mean  # green, or grey for L modes


def test_rerun_opens_only_new_and_changed_files(tmp_path, png, caplog):
    root = tmp_path / "images"
    for label in ("a", "b"):
        for i in range(6):
            png(root / label / f"{i}.png", size=(12 + i, 10), seed=i + 10 * (label == "b"))
    params = _params(root=str(root), val_fraction=0.0, test_fraction=0.0)
    first = _ingest(params, tmp_path / "cache")
    caplog.set_level("INFO")
    again = _ingest(params, tmp_path / "cache")
    assert "checked 0 of 12 files" in caplog.text
    pd.testing.assert_frame_equal(again["image_manifest"], first["image_manifest"])
    caplog.clear()
    os.utime(root / "a" / "0.png", ns=(1, 1))  # touched, not changed: re-hashed, not decoded
    png(root / "b" / "0.png", size=(30, 30), seed=99)  # changed
    png(root / "b" / "new.png", size=(9, 9), seed=98)  # added
    (root / "a" / "5.png").unlink()  # removed
    third = _ingest(params, tmp_path / "cache")
    assert "checked 3 of 12 files" in caplog.text
    assert "2 decoded, 1 removed" in caplog.text
    rows = third["image_manifest"].set_index("path")
    assert "a/5.png" not in rows.index and "b/new.png" in rows.index
    assert tuple(rows.loc["b/0.png", ["width", "height"]]) == (30, 30)
    np.testing.assert_array_equal(third["image_cache"].pixels[rows.loc["b/0.png", "cache_index"]],
                                  fit_square(load_image(root / "b" / "0.png"), 37))


def test_labels_file_source_quarantines_paths_outside_the_root(tmp_path, png):
    root = tmp_path / "images"
    rows = []
    for label in ("a", "b"):
        for i in range(5):
            png(root / "all" / f"{label}{i}.png", seed=i + 10 * (label == "b"))
            rows.append((f"all/{label}{i}.png", label, "test" if i == 0 else ""))
    png(tmp_path / "outside.png", seed=50)
    rows += [("../outside.png", "a", ""), (str(tmp_path / "outside.png"), "b", ""),
             ("all/b1.png", "b", ""), ("all/missing.png", "b", "")]  # b1 listed twice
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(labels, index=False)
    out = _ingest(_params(root=str(root), labels_file=str(labels), val_fraction=0.0,
                          test_fraction=0.0), tmp_path / "cache")
    reasons = dict(zip(out["quarantine"]["path"], out["quarantine"]["reason"], strict=True))
    assert reasons == {"../outside.png": "path_outside_root",
                       str(tmp_path / "outside.png"): "path_outside_root",
                       "all/b1.png": "duplicate", "all/missing.png": "missing_file"}
    manifest = out["image_manifest"]
    assert sorted(manifest.loc[manifest["split"] == "test", "path"]) == ["all/a0.png",
                                                                        "all/b0.png"]
    assert len(manifest) == 10
    assert out["ingestion_report"].quarantine.by_reason["unknown_split"] == 0


def test_unknown_split_in_labels_file(tmp_path, png):
    root = tmp_path / "images"
    for i in range(3):
        png(root / f"a{i}.png", seed=i)
        png(root / f"b{i}.png", seed=10 + i)
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"path": [f"{c}{i}.png" for c in "ab" for i in range(3)] + ["a0.png"],
                  "label": ["a"] * 3 + ["b"] * 3 + ["a"],
                  "split": [""] * 6 + ["holdout"]}).to_parquet(labels)
    out = _ingest(_params(root=str(root), labels_file=str(labels)), tmp_path / "cache")
    quarantine = out["quarantine"]
    assert quarantine[["path", "reason"]].to_dict("records") == [
        {"path": "a0.png", "reason": "unknown_split"}]
    assert "holdout" in quarantine["detail"].iloc[0]


def test_cache_off_when_over_the_disk_budget(tmp_path, png, caplog):
    root = tmp_path / "images"
    for i in range(4):
        png(root / "a" / f"{i}.png", seed=i)
        png(root / "b" / f"{i}.png", seed=10 + i)
    params = _params(root=str(root), val_fraction=0.0, test_fraction=0.0,
                     cache={"max_disk_gb": 1e-6})
    out = _ingest(params, tmp_path / "cache")
    assert "packed cache off" in caplog.text
    assert out["ingestion_report"].cache.enabled is False
    assert (out["image_manifest"]["cache_index"] == -1).all()
    assert not list((tmp_path / "cache").glob("pixels-*"))


@pytest.mark.parametrize(("resolution", "image_size", "expected"),
                         [(None, 32, 37), (None, 224, 256), (48, 32, 48), (None, None, 183)])
def test_cache_resolution(tmp_path, png, resolution, image_size, expected):
    root = tmp_path / "images"
    for i in range(2):
        png(root / "a" / f"{i}.png", seed=i)
        png(root / "b" / f"{i}.png", seed=10 + i)
    params = _params(root=str(root), val_fraction=0.0, test_fraction=0.0,
                     cache={"resolution": resolution})
    out = _ingest(params, tmp_path / "cache", image_size=image_size)
    assert out["image_cache"].pixels.shape == (4, expected, expected, 3)  # test_resnet: 160


def test_grayscale_channels(tmp_path, png):
    root = tmp_path / "images"
    for i in range(3):
        png(root / "a" / f"{i}.png", seed=i)
        png(root / "b" / f"{i}.png", seed=10 + i)
    out = _ingest(_params(root=str(root), channels=1, val_fraction=0.0, test_fraction=0.0),
                  tmp_path / "cache")
    assert out["image_cache"].pixels.shape == (6, 37, 37, 1)
    assert out["ingestion_report"].channels == 1
