"""The predict pipeline classifies any folder layout or list of paths; bad files are listed."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_png
from tests.params import base_params
from tests.pipelines.helpers import run_pipeline
from tests.pipelines.served import CLASSES, served_artifact
from visrec.core.evaluate import softmax
from visrec.core.images import load_image
from visrec.core.models import WeightSet, model_from_weight_set
from visrec.core.serve import PredictInputError, Predictor, list_inputs
from visrec.params import PredictParams
from visrec.pipelines.predict import create_pipeline


def _folder(root: Path) -> Path:
    """Valid PNGs nested and flat, a corrupt PNG, a text file, an empty file, a hidden file."""
    write_png(root / "flat.png", (40, 30), seed=1)
    write_png(root / "a" / "b" / "deep.png", (20, 50), seed=2)
    write_png(root / "a" / "grey.png", (32, 32), seed=3)
    Image.open(root / "a" / "grey.png").convert("L").save(root / "a" / "grey.png")
    (root / "a" / "corrupt.png").write_bytes((root / "flat.png").read_bytes()[:60])
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / ".hidden.png").write_bytes(b"junk")
    return root


def _params(**overrides: object) -> PredictParams:
    """The ``predict`` block of conf/base with ``overrides``."""
    return base_params(PredictParams, **overrides)


def _predict(params: PredictParams, served: WeightSet) -> tuple:
    catalog = run_pipeline(create_pipeline(), {"served_model": served,
                                               "params:predict": params})
    return catalog["predictions"].load(), catalog["prediction_failures"].load()


@pytest.mark.faults
def test_folder_of_any_layout_with_bad_files(tmp_path):
    root = _folder(tmp_path / "new")
    served = served_artifact(temperature=2.0)
    predictions, failures = _predict(_params(input=str(root), top_k=2, batch_size=2),
                                     served)
    assert predictions["path"].tolist() == ["a/b/deep.png", "a/grey.png", "flat.png"]
    assert list(predictions.columns) == ["path", "label_1", "probability_1", "label_2",
                                         "probability_2"]
    assert failures.set_index("path")["reason"].to_dict() == {
        "a/corrupt.png": "truncated", "empty.jpg": "empty_file", "notes.txt": "not_an_image"}
    assert failures["detail"].str.len().gt(0).all()
    # Calibrated probabilities: softmax(logits / T) of the evaluation transform's input.
    predictor = Predictor(model_from_weight_set(served), served.config)
    transform = predictor.transform()
    for row in predictions.itertuples(index=False):
        with torch.no_grad():
            logits = predictor.model(transform(load_image(root / row.path))[None]).numpy()
        expected = softmax(logits, 2.0)[0]
        order = np.argsort(-expected)
        assert [row.label_1, row.label_2] == [CLASSES[i] for i in order[:2]]
        assert [row.probability_1, row.probability_2] == pytest.approx(expected[order[:2]],
                                                                       abs=2e-6)
        assert row.probability_1 < 0.99  # T = 2 softens random logits


def test_temperature_changes_probabilities_not_labels(tmp_path):
    root = _folder(tmp_path / "new")
    cold, _ = _predict(_params(input=str(root)), served_artifact(temperature=0.5))
    warm, _ = _predict(_params(input=str(root)), served_artifact(temperature=4.0))
    assert cold["label_1"].tolist() == warm["label_1"].tolist()
    assert (cold["probability_1"] > warm["probability_1"]).all()
    assert list(cold.columns)[-1] == "probability_3"  # top_k 5 capped at the 3 classes


def test_list_file_and_list_of_paths(tmp_path):
    root = _folder(tmp_path / "new")
    listing = tmp_path / "todo.txt"
    listing.write_text(f"# images to check\nnew/flat.png\n\n{root / 'a' / 'grey.png'}\n"
                       "new/missing.png\n")
    predictions, failures = _predict(_params(input=str(listing)), served_artifact())
    assert predictions["path"].tolist() == ["new/flat.png", str(root / "a" / "grey.png")]
    assert failures[["path", "reason"]].values.tolist() == [["new/missing.png", "unreadable"]]
    listed, _ = _predict(_params(input=[str(root / "flat.png")]), served_artifact())
    assert listed["label_1"].tolist() == predictions["label_1"].tolist()[:1]


def test_bad_input_names_the_parameter(tmp_path):
    with pytest.raises(PredictInputError, match=r"predict\.input is not set"):
        list_inputs(None, tmp_path)
    with pytest.raises(PredictInputError, match=r"predict\.input = 'nope': no such file"):
        list_inputs("nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictInputError, match="the folder has no files"):
        list_inputs("empty", tmp_path)
    write_png(tmp_path / "one.png", (8, 8))
    root, paths, unlisted = list_inputs("one.png", tmp_path)
    assert (root, paths, unlisted.empty) == (tmp_path, ["one.png"], True)


def test_batches_of_only_bad_files_and_worker_processes(tmp_path):
    """Batch size 1 makes batches with no good image; 2 workers decode in other processes."""
    root = _folder(tmp_path / "new")
    served = served_artifact()
    alone, alone_failures = _predict(_params(input=str(root), batch_size=1,
                                                   num_workers=0), served)
    pooled, pooled_failures = _predict(_params(input=str(root), batch_size=3,
                                                     num_workers=2), served)
    assert len(alone) == 3 and len(alone_failures) == 3
    assert pooled["path"].tolist() == alone["path"].tolist()
    np.testing.assert_allclose(pooled["probability_1"], alone["probability_1"], atol=1e-6)
    assert sorted(pooled_failures["path"]) == sorted(alone_failures["path"])


def test_linked_folders_are_followed_once(tmp_path):
    root = tmp_path / "in"
    write_png(root / "own.png", (20, 20), seed=5)
    write_png(tmp_path / "elsewhere" / "x.png", (20, 20), seed=6)
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "linked_again").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "back").symlink_to(root)  # a loop
    _, paths, unlisted = list_inputs(str(root), tmp_path)
    assert paths == ["linked/x.png", "own.png"] and unlisted.empty


@pytest.mark.faults
def test_extreme_aspect_ratio_and_unexpected_errors_are_not_fatal(tmp_path, monkeypatch):
    root = tmp_path / "new"
    root.mkdir()
    Image.new("RGB", (60_000, 1), (200, 10, 10)).save(root / "strip.png")
    write_png(root / "ok.png", (20, 20), seed=7)
    predictions, failures = _predict(_params(input=str(root)), served_artifact())
    assert predictions["path"].tolist() == ["ok.png", "strip.png"] and failures.empty

    def explode(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr("visrec.core.serve.predict.read_checked", explode)
    predictions, failures = _predict(_params(input=str(root)), served_artifact())
    assert predictions.empty
    assert failures["reason"].tolist() == ["unreadable", "unreadable"]
    assert failures["detail"].str.startswith("MemoryError: no room").all()


def test_empty_list_and_pixel_limit_name_the_predict_parameters(tmp_path):
    with pytest.raises(PredictInputError, match=r"predict\.input = \[\]: the list is empty"):
        list_inputs([], tmp_path)
    write_png(tmp_path / "big.png", (100, 100), seed=8)
    _, failures = _predict(_params(input=str(tmp_path / "big.png"), max_pixels=5000),
                           served_artifact())
    assert failures["reason"].tolist() == ["too_many_pixels"]
    assert "predict.max_pixels = 5000" in failures["detail"].iloc[0]
