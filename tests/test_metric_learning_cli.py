"""Metric learning through the real CLI: bad settings stop the run before any node, a run
killed mid-epoch resumes to the same embedder, and retrieval of new images by the served
embedder, from a reference folder and from the saved index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from tests.cli import (
    assert_same_results,
    copy_project,
    kedro,
    kill_mid_epoch_then_resume,
)

pytestmark = pytest.mark.slow

TIMING = ["seconds", "images_per_s", "data_wait"]
MANIFEST = "data/02_intermediate/manifest.parquet"
CHECKPOINT = "data/06_models/checkpoints_embedder/last.pt"
BASELINE_CHECKPOINT = "data/06_models/checkpoints_baseline/last.pt"
# Epochs of a second or more on 2 cores: long enough to be killed in the middle of one.
RESUMABLE = "metric_learning.model=resnet10t,metric_learning.epochs=5"
# The demo's split by the defaults: test 5-9 (the last half), val 3 and 4 (at least 2 of the
# rest, the last ones), train 0, 1 and 2.
TRAIN_CLASSES = ("0", "1", "2")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the demo images (data/01_raw/demo) and nothing else: do not change."""
    project = copy_project(tmp_path_factory.mktemp("metric_learning_demo"))
    kedro(project, "run", "--env", "test", "--pipelines=demo_data")
    return project


def _fresh(demo: Path, root: Path) -> Path:
    """A new project in ``root`` holding a copy of the demo images only."""
    root.mkdir(parents=True)
    project = copy_project(root)
    shutil.copytree(demo / "data", project / "data")
    return project


def _files(project: Path) -> list[str]:
    return sorted(path.relative_to(project).as_posix() for path in
                  (project / "data").rglob("*"))


def _pooled_sizes(demo: Path) -> dict[str, int]:
    """Images per class of the demo folder, train/ and test/ together (as the split sees
    them: metric learning splits classes, not images)."""
    sizes: dict[str, int] = {}
    for folder in sorted((demo / "data/01_raw/demo").glob("*/*")):
        sizes[folder.name] = sizes.get(folder.name, 0) + len(list(folder.glob("*.png")))
    return sizes


def _assert_stopped_before_any_node(project: Path, before: list[str], result,
                                    fragments: list[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    for fragment in fragments:
        assert fragment in output, (fragment, output[-3000:])
    assert "Running node" not in output, output[-3000:]
    assert not (project / MANIFEST).exists()
    assert _files(project) == before


@pytest.mark.parametrize("setting", ["unknown_loss", "k_not_dividing_batch",
                                     "class_smaller_than_k"])
def test_bad_setting_stops_the_run_before_any_node(demo: Path, tmp_path: Path, setting: str):
    """A bad ``metric_learning`` setting fails the run before ingestion, naming it."""
    sizes = _pooled_sizes(demo)
    if setting == "unknown_loss":
        params = "metric_learning.loss=tripplet"
        fragments = ["metric_learning.loss = 'tripplet'", "unknown loss 'tripplet'"]
    elif setting == "k_not_dividing_batch":  # the default batch of 48
        params = "metric_learning.m_per_class=5"
        fragments = ["metric_learning.batch_size = 48", "metric_learning.m_per_class = 5"]
    else:  # K = 60: P = 2 of the 3 training classes, but some have fewer than 60 images
        params = "metric_learning.m_per_class=60,metric_learning.batch_size=120"
        small = {name: sizes[name] for name in TRAIN_CLASSES if sizes[name] < 60}
        assert small, f"no training class smaller than 60 images: {sizes}"
        fragments = ["metric_learning.m_per_class = 60",
                     *(f"'{name}' has {size}" for name, size in small.items())]
    project = _fresh(demo, tmp_path / "project")
    before = _files(project)
    result = kedro(project, "run", "--env", "test", "--pipelines=metric_learning",
                   "--params", params, check=False)
    _assert_stopped_before_any_node(project, before, result, fragments)


def test_overlapping_class_lists_stop_the_run_before_any_node(demo: Path, tmp_path: Path):
    """Validation classes that are also test classes: the run fails before ingestion."""
    project = _fresh(demo, tmp_path / "project")
    # `--params` cannot pass lists, and `--env test` reads conf/base and conf/test only (not
    # conf/local): the lists go into this copy's conf/test file.
    conf = project / "conf/test/parameters_metric_learning.yml"
    settings = yaml.safe_load(conf.read_text())
    settings["metric_learning"]["split"] = {"test_classes": ["5", "6", "7", "8", "9"],
                                            "val_classes": ["9", "3"]}
    conf.write_text(yaml.safe_dump(settings))
    before = _files(project)
    result = kedro(project, "run", "--env", "test", "--pipelines=metric_learning", check=False)
    _assert_stopped_before_any_node(project, before, result,
                                    ["metric_learning.split.val_classes", "overlap in ['9']"])


def _results(project: Path) -> dict:
    """History (without timings), weights of every set, and test metrics."""
    reports = project / "data/08_reporting"
    models = project / "data/06_models/embedder"
    return {"history": pd.read_csv(reports / "metric_learning_history.csv")
            .drop(columns=TIMING),
            "weights": {folder.name: load_file(folder / "model.safetensors")
                        for folder in sorted(models.iterdir())},
            "metrics": json.loads((reports / "metric_learning_metrics.json").read_text())}


def test_sigkill_mid_epoch_then_resume_auto_gives_the_same_embedder(demo: Path, tmp_path: Path):
    """Killed in the embedder's third epoch (the cross-entropy baseline, trained first, is
    then complete), the rerun resumes both and ends where an unbroken run ends."""
    project = _fresh(demo, tmp_path / "project")
    kedro(project, "run", "--env", "test", "--pipelines=ingestion")
    run = ["run", "--env", "test", "--pipelines=embedding", "--params"]
    kedro(project, *run, f"{RESUMABLE},metric_learning.resume=never")
    reference = _results(project)

    (project / CHECKPOINT).unlink()
    (project / BASELINE_CHECKPOINT).unlink()
    kill_mid_epoch_then_resume(project, run, RESUMABLE, CHECKPOINT, tmp_path / "killed.log")
    assert_same_results(_results(project), reference)


@pytest.fixture(scope="module")
def embedded(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after `kedro run --env test --pipelines=metric_learning` (an embedder
    served)."""
    project = _fresh(demo, tmp_path_factory.mktemp("metric_learning_embedded") / "project")
    kedro(project, "run", "--env", "test", "--pipelines=metric_learning")
    return project


def _query_folder(references: Path, root: Path) -> dict[str, str]:
    """Three copies of reference digits (nested and flat), a corrupt PNG and a text file
    under ``root``; returns each copy's path in ``root`` -> its reference path."""
    chosen = {label: sorted((references / label).glob("*.png"))[0] for label in ("0", "3", "7")}
    copies = {"flat.png": chosen["0"], "batch/three.png": chosen["3"],
              "batch/day 2/seven.png": chosen["7"]}
    for path, source in copies.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / path)
    (root / "batch" / "broken.png").write_bytes(chosen["7"].read_bytes()[:80])
    (root / "readme.txt").write_text("these are new scans\n")
    return {path: source.relative_to(references).as_posix() for path, source in copies.items()}


def test_retrieve_new_images_then_search_the_saved_index(embedded: Path, tmp_path: Path):
    """Neighbours and k-NN labels of the readable images, failures listed, exit code 0;
    without a reference folder the saved index gives the same neighbours."""
    query = tmp_path / "new images"  # a space in the path, as users' folders have
    copies = _query_folder(embedded / "data/01_raw/demo/test", query)
    retrieve = ["run", "--env", "test", "--pipelines=retrieve", "--params"]
    result = kedro(embedded, *retrieve,
                   f"retrieve.query={query},retrieve.reference=data/01_raw/demo/test")
    assert "2 files of retrieve.query could not be read" in result.stdout + result.stderr
    output = embedded / "data/07_model_output"
    neighbours = pd.read_csv(output / "retrieval_neighbours.csv", dtype={"reference_label": str})
    labels = pd.read_csv(output / "retrieval_labels.csv", dtype={"label": str})
    failures = pd.read_csv(output / "retrieval_failures.csv")
    assert (embedded / "data/06_models/embedding_index/embeddings.safetensors").is_file()

    assert failures["role"].tolist() == ["query", "query"]
    assert failures.set_index("path")["reason"].to_dict() == {
        "batch/broken.png": "truncated", "readme.txt": "not_an_image"}
    assert sorted(neighbours["query"].unique()) == sorted(copies)
    for path, rows in neighbours.groupby("query"):
        assert rows["rank"].tolist() == [1, 2, 3, 4, 5], path
        assert rows["similarity"].is_monotonic_decreasing, path
        # Each query is a copy of a reference image: that image comes first, or tied with
        # the first (CI's tiny embedder maps many digits to nearly the same point, and
        # batches of other sizes round differently in the last digits).
        tied = rows.loc[rows["similarity"] >= rows["similarity"].iloc[0] - 1e-5, "reference"]
        assert copies[path] in tied.tolist(), (path, rows)
        assert rows["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-4)
        assert (rows["reference_label"] == rows["reference"].str.split("/").str[0]).all()
        # The k-NN label is the label most of its neighbours carry, with their share.
        row = labels.set_index("query").loc[path]
        shares = rows["reference_label"].value_counts(normalize=True)
        assert shares[row["label"]] == pytest.approx(shares.max())
        assert row["vote_share"] == pytest.approx(shares.max())
    assert sorted(labels["query"]) == sorted(copies)

    again = kedro(embedded, *retrieve, f"retrieve.query={query}")
    assert "retrieve: indexed" not in again.stdout + again.stderr  # the saved index, not a new one
    pd.testing.assert_frame_equal(
        pd.read_csv(output / "retrieval_neighbours.csv", dtype={"reference_label": str}),
        neighbours, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(output / "retrieval_failures.csv"), failures)
