"""End to end through the real CLI: `kedro run` in a copy of the project (conf + data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.cli import copy_project, kedro
from tests.messy import make_messy_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway project: the repository's pyproject and conf, empty data folders."""
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def demo_run(trained_project: Path) -> Path:
    """`kedro run --pipelines=demo_data`, then the default pipeline, in the test env."""
    return trained_project


def test_default_run_writes_metrics_and_weights(demo_run: Path):
    metrics = json.loads((demo_run / "data/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"final", "swa", "ema"}  # conf/base: SWA and EMA on
    for values in metrics.values():
        assert values["num_test_images"] == 300
        for key in ("top1", "top5", "balanced_accuracy", "macro_f1", "weighted_f1", "ece",
                    "ece_calibrated", "brier", "brier_calibrated"):
            assert 0.0 <= values[key] <= (2.0 if "brier" in key else 1.0)
        assert values["temperature"] > 0 and values["nll"] > 0
        # conf/base asks for flip TTA, but the digits are trained without flips: skipped.
        assert "tta_hflip" not in values
        assert values["balanced_accuracy"] > 0.2  # 10 classes: chance is 0.1
        for group in ("many", "medium", "few"):  # 135 to 14 training images per class
            assert 0.0 <= values[f"{group}_shot_accuracy"] <= 1.0
    balance = json.loads((demo_run / "data/08_reporting/class_balance.json").read_text())
    assert 9 < balance["imbalance_ratio"] < 11  # the demo's ratio 10, after carving val
    plan = json.loads((demo_run / "data/05_model_input/balance_plan.json").read_text())
    assert plan["strategy"] == "logit_adjustment+crt"  # auto, above the ratio of 3
    history = pd.read_csv(demo_run / "data/08_reporting/training_history.csv")
    assert history["phase"].tolist()[-2:] == ["crt_final", "crt_final"]  # conf/test: 2 epochs
    for name in ("final", "swa", "ema"):
        folder = demo_run / "data/06_models/classifier" / name
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == "test_resnet"
        assert config["weights"] == name
    # dvclive: one value per epoch of the main run (cRT epochs are not logged live).
    live = json.loads((demo_run / "data/08_reporting/dvclive/metrics.json").read_text())
    assert live["step"] == 2 and 0.0 <= live["val_balanced_accuracy"] <= 1.0
    tsv = pd.read_csv(demo_run / "data/08_reporting/dvclive/plots/metrics/train_loss.tsv",
                      sep="\t")
    assert tsv["step"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(tsv["train_loss"], history["train_loss"].iloc[:3], rtol=1e-6)
    checkpoint = demo_run / "data/06_models/checkpoints/last.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3
    served = [name for name, values in metrics.items() if values["served"]]
    assert len(served) == 1
    config = json.loads((demo_run / "data/06_models/served/config.json").read_text())
    assert config["served_from"] == served[0]
    assert config["temperature"] == metrics[served[0]]["temperature"]
    export = json.loads((demo_run / "data/08_reporting/export_report.json").read_text())
    assert export["passed"] and export["weights"] == served[0]
    assert export["onnx"]["max_abs_diff_probabilities"] < 1e-4
    assert (demo_run / "data/06_models/exported/model.onnx").stat().st_size > 1000
    for png in ("class_distribution", "augmentation_preview", "learning_curve",
                "confusion_matrix", "confused_pairs", "long_tail", "reliability_diagram",
                "high_loss_gallery"):
        with Image.open(demo_run / f"data/08_reporting/{png}.png") as image:
            assert image.width > 200 and image.height > 200


def test_own_folder_of_class_folders(project: Path, tmp_path: Path):
    """Any folder of >= 2 class folders trains: here 3 colour classes, no split folders."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
    for label, rgb in colours.items():
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(20):
            shade = tuple(max(0, c - 4 * i) for c in rgb)
            Image.new("RGB", (40 + i, 36), shade).save(tmp_path / "images" / label / f"{i}.jpg")
    (tmp_path / "images" / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    kedro(project, "run", "--env", "test", "--pipelines=train",
          "--params", f"ingestion.root={tmp_path / 'images'},training.swa.enabled=false")
    report = json.loads((project / "data/08_reporting/ingestion_report.json").read_text())
    assert report["classes"] == ["blue", "green", "red"]
    quarantine = pd.read_csv(project / "data/08_reporting/quarantine.csv")
    assert quarantine[["path", "reason"]].to_dict("records") == [
        {"path": "red/broken.jpg", "reason": "not_an_image"}]
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"final", "ema"}  # swa off; conf/base keeps EMA on
    assert metrics["final"]["num_test_images"] == 12  # 20% of 20 per class, carved


@pytest.mark.faults
@pytest.mark.parametrize(("override", "expected"), [
    ("training.epochs=0", "training.epochs = 0"),
    ("training.model=resnet999", "training.model = 'resnet999'"),
    ("class_balance.strategy=bogus", "class_balance.strategy = 'bogus'"),
    ("augmentation.policy=autoaug", "augmentation.policy = 'autoaug': unknown component "
                                    "'autoaug'; accepted: ['none', 'flip_crop', 'autoaugment'"),
    ("augmentation.policy=randaugment(m=40)",
     "augmentation.policy = 'randaugment(m=40)': randaugment m = 40: Input should be less "
     "than or equal to 30"),
    ("trainig.epochs=5", "trainig: not a visrec parameter; did you mean 'training'?"),
    ("seed=-1", "seed = -1: give a whole number from 0 to 2**63 - 1"),
    # A block the run does not use is checked too: `train` has no retrieve node.
    ("retrieve.top_k=0", "retrieve.top_k = 0"),
])
def test_bad_parameter_stops_before_running(project: Path, override: str, expected: str):
    result = kedro(project, "run", "--env", "test", "--params", override, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output
    assert "Running node" not in output


def test_unknown_imgaug_augmenter_stops_before_running(tmp_path: Path):
    project = copy_project(tmp_path)  # its own copy: the module's project keeps its conf
    conf = project / "conf" / "test" / "parameters_augmentation.yml"
    conf.write_text(conf.read_text() + "  imgaug:\n    light:\n      - Fliplr: 0.5\n"
                    "      - GaussianBlurr: {sigma: [0, 1]}\n")
    result = kedro(project, "run", "--env", "test", check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert ("augmentation.imgaug.light[1]: unknown imgaug augmenter 'GaussianBlurr'; did you "
            "mean GaussianBlur") in output
    assert "Running node" not in output


@pytest.mark.parametrize(("layout", "expected"), [
    ("missing", "folder does not exist"),
    ("empty", "no image files found"),
    ("one_class", "found 1 class with valid training images (['only'])"),
])
def test_bad_image_folder_names_ingestion_root(project: Path, tmp_path: Path, layout: str,
                                               expected: str):
    root = tmp_path / "images"
    if layout != "missing":
        root.mkdir()
    if layout == "one_class":
        (root / "only").mkdir()
        Image.new("RGB", (16, 16)).save(root / "only" / "a.png")
    result = kedro(project, "run", "--env", "test", "--pipelines=ingestion",
                   "--params", f"ingestion.root={root}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"ingestion.root = '{root}'" in output
    assert expected in output


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its size, modification time and bytes (links: target)."""
    entries = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[relative] = ("link", os.readlink(path))
            elif path.is_file():
                info = path.stat()
                entries[relative] = (info.st_size, info.st_mtime_ns, path.read_bytes())
            else:
                entries[relative] = ("folder",)
    return entries


@pytest.mark.faults
def test_messy_folder_trains_on_what_is_left(project: Path, tmp_path: Path):
    """Every kind of bad and odd file: no traceback, each bad file quarantined with its
    reason, each odd-but-valid one in the manifest, training on the rest, and the user's
    folder left exactly as it was."""
    messy = make_messy_folder(tmp_path / "messy")
    before = _snapshot(messy.root)
    result = kedro(project, "run", "--env", "test", "--pipelines=train",
                   "--params", f"ingestion.root={messy.root}")
    assert "Traceback" not in result.stdout + result.stderr
    quarantine = pd.read_csv(project / "data/08_reporting/quarantine.csv", dtype=str,
                             keep_default_na=False)
    assert dict(zip(quarantine["path"], quarantine["reason"], strict=True)) == messy.bad
    manifest = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    assert set(manifest["path"]) == messy.valid
    assert (manifest["cache_index"] >= 0).all()
    report = json.loads((project / "data/08_reporting/ingestion_report.json").read_text())
    assert set(report["dropped_classes"]) == messy.dropped_classes
    assert report["quarantine"]["total"] == len(messy.bad)
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    test_images = sum(path.startswith("test/") for path in messy.valid)
    assert metrics["swa"]["num_test_images"] == test_images
    assert metrics["swa"]["balanced_accuracy"] > 0.34  # 3 colour classes: chance is 1/3
    assert _snapshot(messy.root) == before  # nothing moved, modified or deleted
