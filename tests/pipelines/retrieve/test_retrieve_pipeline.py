"""The retrieve pipeline: query images of any folder are searched in an index of reference
images by the served embedder; unreadable files of either side are listed, not fatal."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog

from tests.conftest import PROJECT_ROOT, write_png
from tests.messy import make_messy_folder
from tests.params import base_params
from tests.pipelines.helpers import run_pipeline
from visrec.core.augment import make_spec
from visrec.core.models import (
    EmbedderConfig,
    WeightSet,
    embedder_from_weight_set,
    make_embedder,
)
from visrec.core.serve import PredictInputError
from visrec.params import MetricLearningParams, RetrieveParams
from visrec.pipelines.retrieve import create_pipeline

CLASSES = ("a", "b", "c")
PER_CLASS = 4
# Reasons of files that cannot be decoded; ingestion's other reasons (duplicates, leakage,
# files outside class folders, ...) are about a training set, and retrieval reads those.
DECODE_REASONS = {"empty_file", "not_an_image", "truncated", "unreadable", "too_many_pixels"}
BAD_REFERENCES = {"a/empty.png": "empty_file", "b/notes.txt": "not_an_image",
                  "c/broken.png": "truncated"}


def served_embedder(seed: int = 0, output: str = "embedding") -> WeightSet:
    """A served test_resnet embedder with random weights (16 dimensions, 32 px); its linear
    layer is centred on noise images, so that embeddings spread over the sphere."""
    torch.manual_seed(seed)
    model = make_embedder("test_resnet", 16, False, output=output).eval()
    with torch.no_grad():
        linear = model.embedder[0]
        linear.bias -= linear(model.trunk(torch.rand(64, 3, 32, 32) * 2 - 1)).mean(0)
    config = EmbedderConfig(
        architecture="test_resnet", embedding_size=16, batch_norm=False, output=output,
        loss="multi_similarity", train_classes=("x", "y"), seed=seed, git_commit=None,
        metric_learning=base_params(MetricLearningParams, model="test_resnet").model_dump(),
        augmentation=make_spec("none"), weights="final", val_metrics=None,
        served_from="final", image_size=32, interpolation="bilinear", mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), in_chans=3)
    return WeightSet({k: v.clone() for k, v in model.state_dict().items()}, config)


@pytest.fixture(scope="module")
def served() -> WeightSet:
    """The served embedder of most tests."""
    return served_embedder()


def _references(root: Path, labelled: bool = True) -> Path:
    """Noise PNGs in class folders (or at the top level), and bad files among them."""
    for label in CLASSES:
        for i in range(PER_CLASS):
            write_png(root / (f"{label}/{i}.png" if labelled else f"{label}{i}.png"),
                      (24, 20))
    if labelled:
        (root / "a" / "empty.png").write_bytes(b"")
        (root / "b" / "notes.txt").write_text("not an image\n")
        (root / "c" / "broken.png").write_bytes((root / "c" / "0.png").read_bytes()[:60])
    return root


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    """A labelled reference folder with three bad files."""
    return _references(tmp_path_factory.mktemp("references"))


def _queries(root: Path, count: int = 4) -> Path:
    """``count`` noise PNGs at the top of ``root``."""
    for i in range(count):
        write_png(root / f"q{i}.png", (30, 30), seed=100 + i)
    return root


def _params(query: object, reference: object, **overrides: object) -> RetrieveParams:
    """The ``retrieve`` block of conf/base on the CPU, for ``query`` and ``reference``."""
    return base_params(RetrieveParams, **{
        "query": None if query is None else str(query),
        "reference": None if reference is None else str(reference),
        "device": "cpu", "num_workers": 0, "batch_size": 16} | overrides)


def _retrieve(served: WeightSet, params: RetrieveParams, saved: object = None) -> dict:
    """Every output of the retrieve pipeline, loaded."""
    catalog = run_pipeline(create_pipeline(), {
        "served_embedder": served, "embedding_index_state": saved, "params:retrieve": params})
    return {name: catalog[name].load() for name in create_pipeline().all_outputs()}


def _assert_neighbours(neighbours: pd.DataFrame, queries: set[str], depth: int,
                       reference_root: Path) -> None:
    """``depth`` ranked rows per query, by non-increasing similarity, of real references."""
    assert set(neighbours["query"]) == queries
    for query, rows in neighbours.groupby("query"):
        assert rows["rank"].tolist() == list(range(1, depth + 1)), query
        assert rows["similarity"].is_monotonic_decreasing, query
    assert (neighbours["distance"] - (1 - neighbours["similarity"])).abs().max() < 2e-6
    assert neighbours["similarity"].between(-1 - 1e-5, 1 + 1e-5).all()
    for path, label in zip(neighbours["reference"], neighbours["reference_label"],
                           strict=True):
        assert (reference_root / path).is_file() and Path(path).parent.name == label


@pytest.mark.faults
def test_messy_queries_against_labelled_references(served, references, tmp_path):
    messy = make_messy_folder(tmp_path / "messy")
    bad = {path: reason for path, reason in messy.bad.items() if reason in DECODE_REASONS}
    readable = messy.valid | (messy.bad.keys() - bad.keys())
    out = _retrieve(served, _params(messy.root, references, top_k=5))
    failures = out["retrieval_failures"]
    assert list(failures.columns) == ["role", "path", "reason", "detail"]
    by_role = {role: dict(zip(rows["path"], rows["reason"], strict=True))
               for role, rows in failures.groupby("role")}
    assert by_role == {"query": bad, "reference": BAD_REFERENCES}
    index = out["embedding_index"]
    expected_items = sorted(f"{label}/{i}.png" for label in CLASSES for i in range(PER_CLASS))
    assert sorted(index.items["path"]) == expected_items
    assert index.info.images == len(expected_items) and index.info.labelled
    neighbours = out["retrieval_neighbours"]
    _assert_neighbours(neighbours, readable, 5, references)
    labels = out["retrieval_labels"]
    assert sorted(labels["query"]) == sorted(readable)
    assert labels["label"].isin(CLASSES).all()
    assert ((labels["vote_share"] > 0) & (labels["vote_share"] <= 1)).all()
    # The label is the one most neighbours carry, with their share.
    for row in labels.itertuples(index=False):
        votes = neighbours.loc[neighbours["query"] == row.query, "reference_label"]
        counts = votes.value_counts()
        assert counts[row.label] == counts.max() and row.neighbours == len(votes) == 5
        assert row.vote_share == pytest.approx(counts[row.label] / 5, abs=1e-4)


def test_a_reference_finds_itself_first_and_top_k_is_capped(served, references):
    out = _retrieve(served, _params(references / "b" / "2.png", references, top_k=50))
    neighbours = out["retrieval_neighbours"]
    _assert_neighbours(neighbours, {"2.png"}, len(CLASSES) * PER_CLASS, references)
    first = neighbours.iloc[0]
    assert first["reference"] == "b/2.png"
    assert first["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert first["distance"] == pytest.approx(0.0, abs=1e-5)
    assert neighbours["similarity"].iloc[1] < 0.999  # the others are farther
    labels = out["retrieval_labels"]
    assert labels["query"].tolist() == ["2.png"] and labels["label"].isin(CLASSES).all()
    assert labels["neighbours"].tolist() == [len(CLASSES) * PER_CLASS]


def test_an_embedder_serving_its_trunk_indexes_the_trunks_features(references):
    served = served_embedder(output="trunk")
    out = _retrieve(served, _params(references / "b" / "2.png", references, top_k=3))
    index = out["embedding_index"]
    model = make_embedder("test_resnet", 16, False)
    width = model.trunk.num_features
    assert width != 16 and index.info.embedding_size == width
    assert index.embeddings.shape == (len(CLASSES) * PER_CLASS, width)
    np.testing.assert_allclose(index.embeddings.norm(dim=1).numpy(), 1.0, atol=1e-5)
    first = out["retrieval_neighbours"].iloc[0]
    assert first["reference"] == "b/2.png" and first["similarity"] == pytest.approx(1.0,
                                                                                    abs=1e-5)


def test_a_config_written_before_output_existed_serves_the_embedding(served):
    data = served.config.to_json()
    del data["output"]
    config = EmbedderConfig.from_json(data)
    assert config.output == "embedding"
    model = embedder_from_weight_set(WeightSet(served.weights, config))
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 16)


def test_unlabelled_references_give_no_labels(served, tmp_path):
    root = _references(tmp_path / "flat", labelled=False)
    out = _retrieve(served, _params(_queries(tmp_path / "queries"), root, top_k=3))
    assert not out["embedding_index"].info.labelled
    assert out["retrieval_labels"].empty
    assert list(out["retrieval_labels"].columns) == ["query", "label", "vote_share",
                                                     "neighbours"]
    neighbours = out["retrieval_neighbours"]
    assert len(neighbours) == 4 * 3 and (neighbours["reference_label"] == "").all()
    assert out["retrieval_failures"].empty


def _through_the_catalog(index: object, folder: Path) -> object:
    """``index`` saved and loaded back through the project's ``embedding_index`` entry."""
    entries = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_metric_learning.yml")
                             .read_text())
    entry = entries["embedding_index_state"] | {"path": str(folder)}
    catalog = DataCatalog.from_config({"embedding_index_state": entry})
    assert catalog.load("embedding_index_state") is None  # optional: no index yet
    catalog.save("embedding_index_state", index)
    return catalog.load("embedding_index_state")


def test_the_saved_index_is_searched_only_by_its_embedder(served, tmp_path):
    references = _references(tmp_path / "references")
    queries = _queries(tmp_path / "queries")
    first = _retrieve(served, _params(queries, references))
    saved = _through_the_catalog(first["embedding_index"], tmp_path / "index")
    with pytest.raises(ValueError, match=r"retrieve\.reference is not set"):
        _retrieve(served, _params(queries, None), saved=None)
    with pytest.raises(ValueError, match="another embedder"):
        _retrieve(served_embedder(seed=1), _params(queries, None), saved=saved)
    shutil.rmtree(references)  # the saved index is searched as it is, not made anew
    again = _retrieve(served, _params(queries, None), saved=saved)
    pd.testing.assert_frame_equal(again["retrieval_neighbours"],
                                  first["retrieval_neighbours"])
    pd.testing.assert_frame_equal(again["retrieval_labels"], first["retrieval_labels"])
    assert torch.equal(again["embedding_index"].embeddings, first["embedding_index"].embeddings)
    assert not (again["retrieval_failures"]["role"] == "reference").any()


def test_a_missing_query_names_the_parameter(served, references):
    with pytest.raises(PredictInputError, match=r"retrieve\.query is not set"):
        _retrieve(served, _params(None, references))


def test_torch_and_faiss_find_the_same_neighbours(served, references, tmp_path):
    pytest.importorskip("faiss")
    queries = _queries(tmp_path / "queries", count=6)
    found = {knn: _retrieve(served, _params(queries, references, top_k=7, knn=knn))
             ["retrieval_neighbours"] for knn in ("torch", "faiss")}
    columns = ["query", "rank", "reference", "reference_label"]
    pd.testing.assert_frame_equal(found["faiss"][columns], found["torch"][columns])
    pd.testing.assert_series_equal(found["faiss"]["similarity"], found["torch"]["similarity"],
                                   atol=1e-5)
