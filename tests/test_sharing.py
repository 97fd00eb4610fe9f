"""The served model folder as others take it: a timm model folder with a model card."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

pytestmark = pytest.mark.slow

SERVED = "data/06_models/served"


def test_served_folder_loads_in_timm_with_the_served_probabilities(trained_project: Path):
    """``timm.create_model("local-dir:...")`` rebuilds the served model from its own
    config.json, with its labels and input config; timm's own transform and the stored
    temperature give the probabilities evaluation wrote for the test images."""
    import timm
    import timm.data

    folder = trained_project / SERVED
    config = json.loads((folder / "config.json").read_text())
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == config["classes"]
    assert model.num_classes == len(config["classes"])
    data_config = timm.data.resolve_data_config(model=model)
    assert data_config["input_size"] == (config["in_chans"], config["image_size"],
                                         config["image_size"])
    assert list(data_config["mean"]) == config["mean"]
    assert list(data_config["std"]) == config["std"]
    transform = timm.data.create_transform(**data_config)

    served = config["served_from"]
    tested = pd.read_csv(trained_project / "data/08_reporting/test_predictions.csv",
                         dtype=str).groupby("actual").head(2)  # two images per class
    images = torch.stack([
        transform(Image.open(trained_project / "data/01_raw/demo" / path).convert("RGB"))
        for path in tested["path"]])
    with torch.no_grad():
        probabilities = torch.softmax(model(images) / config["temperature"], dim=1)
    confidence, index = probabilities.max(dim=1)
    labels = [config["classes"][i] for i in index.tolist()]
    assert labels == tested[f"predicted_{served}"].tolist()
    assert confidence.tolist() == pytest.approx(
        tested[f"confidence_{served}"].astype(float).tolist(), abs=1e-4)
    # No claim of timm's own ImageNet weights (tag, licence, paper) on weights trained here.
    assert not {"tag", "license", "paper_ids", "hf_hub_id"} & set(config["pretrained_cfg"])


def test_model_card_describes_the_run(trained_project: Path):
    """README.md: Hugging Face metadata, then the data, training, evaluation with
    calibration, use and limits, with this run's figures."""
    folder = trained_project / SERVED
    card = (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    report = json.loads((trained_project / "data/08_reporting/ingestion_report.json")
                        .read_text())
    _, front, body = card.split("---\n", 2)
    assert yaml.safe_load(front) == {"library_name": "timm",
                                     "pipeline_tag": "image-classification",
                                     "tags": ["image-classification", "timm", "visrec"]}
    for section in ("## Data", "## Training", "## Evaluation", "## How to use",
                    "## Intended use and limits"):
        assert f"\n{section}\n" in body, section
    scores = config["scores"]
    assert f"| balanced accuracy | {scores['balanced_accuracy']:.3f} |" in body
    assert (f"| expected calibration error, before → after temperature scaling | "
            f"{scores['ece']:.3f} → {scores['ece_calibrated']:.3f} |") in body
    assert f"T = {config['temperature']:.4f}" in body
    assert f"`{config['architecture']}`" in body and f"`{config['served_from']}`" in body
    assert all(f"`{name}`" in body for name in report["classes"])
    split_sizes = {split: sum(counts.values()) for split, counts in report["counts"].items()}
    assert f"test {split_sizes['test']:,}" in body
    assert f"Source: `{report['root']}`" in body
