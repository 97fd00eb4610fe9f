"""The embedding pipeline on real image folders: the class-disjoint split, the embedder's
run with SWA and EMA, its figures against the baselines, the served embedder and its ONNX
export, a proxy loss, and a folder whose train/ and test/ classes are already disjoint."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from matplotlib.figure import Figure

from tests.conftest import write_images
from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.augment import make_eval_transform
from visrec.core.data import make_demo_digits, read_cache
from visrec.core.images import load_image
from visrec.core.models import embedder_from_weight_set
from visrec.core.retrieval import per_query_figures
from visrec.core.train import CheckpointStore, LiveLog
from visrec.params import IngestionParams, MetricLearningParams
from visrec.params.tuning import merged
from visrec.pipelines import ingestion
from visrec.pipelines.embedding import create_pipeline

SEED = 7
UPSTREAM = ["image_manifest", "quarantine", "image_cache", "ingestion_report"]
FIGURES = ["precision_at_1", "r_precision", "mean_average_precision_at_r", "num_query_images",
           "num_classes"]
WEIGHT_SETS = ("final", "swa", "ema")
DIGITS = [str(d) for d in range(10)]
# test_resnet at 32 px on the CPU, two epochs (the second one SWA's), batches of 3 x 8.
TINY = {"model": "test_resnet", "epochs": 2, "batch_size": 24, "m_per_class": 8,
        "image_size": 32, "embedding_size": 16, "num_workers": 0, "device": "cpu",
        "map_method": "pca", "gallery_queries": 4, "gallery_k": 3,
        "schedule": {"warmup_epochs": 0}, "swa": {"start_fraction": 0.5},
        "split": {"val_classes": 0.2}}


def _ingest(root: Path, cache: Path, **ingestion_overrides: object) -> dict:
    """Outputs of the ingestion pipeline for the image folder ``root``."""
    params = {"params:seed": SEED,
              "params:ingestion": base_params(IngestionParams, root=str(root), val_fraction=0.15,
                                              num_workers=1, **ingestion_overrides),
              "image_cache_state": read_cache(cache),
              "params:training.model": "test_resnet", "params:training.image_size": 32}
    pipeline = ingestion.create_pipeline()
    catalog = run_pipeline(pipeline, only(params, pipeline))
    return {name: catalog[name].load() for name in UPSTREAM}


def _params(**overrides: object) -> MetricLearningParams:
    """The ``metric_learning`` block of conf/base, made tiny, with ``overrides``."""
    return base_params(MetricLearningParams, **merged(TINY, overrides))


def _run(upstream: dict, params: MetricLearningParams, folder: Path,
         to_nodes: tuple[str, ...] = ()) -> dict:
    """Run the embedding pipeline (up to ``to_nodes`` when given) with run folders under
    ``folder``; every output, loaded."""
    pipeline = create_pipeline()
    if to_nodes:
        pipeline = pipeline.to_nodes(*to_nodes)
    inputs = upstream | {
        "params:metric_learning": params, "params:metric_learning.model": params.model,
        "params:metric_learning.image_size": params.image_size, "params:seed": SEED,
        "embedding_checkpoints": CheckpointStore(folder / "checkpoints"),
        "baseline_checkpoints": CheckpointStore(folder / "baseline_checkpoints"),
        "embedding_live": LiveLog(folder / "dvclive")}
    catalog = run_pipeline(pipeline, only(inputs, pipeline))
    return {name: catalog[name].load() for name in pipeline.all_outputs()}


@pytest.fixture(scope="module")
def digits_upstream(digits_folder, tmp_path_factory):
    """Ingestion of the digits folder (10 classes in train/ and test/)."""
    return _ingest(digits_folder, tmp_path_factory.mktemp("cache") / "image_cache")


@pytest.fixture(scope="module")
def trained(digits_upstream, tmp_path_factory):
    """The whole pipeline with multi-similarity (a miner), SWA, EMA, both baselines and
    conf/base's split (half the classes test, 2 of the rest val)."""
    return _run(digits_upstream, _params(), tmp_path_factory.mktemp("embedding"))


def _classes(manifest, split: str) -> set[str]:
    """The classes of the rows of ``split``."""
    return set(manifest.loc[manifest["split"] == split, "label"])


def test_classes_are_split_disjoint_and_numbered_within_each_split(trained, digits_upstream):
    manifest, split = trained["metric_learning_manifest"], trained["class_split"]
    assert (split.train, split.val, split.test, split.source) == (
        ("0", "1", "2"), ("3", "4"), ("5", "6", "7", "8", "9"), "classes")
    for name in ("train", "val", "test"):
        assert _classes(manifest, name) == set(getattr(split, name))
        numbered = manifest[manifest["split"] == name].drop_duplicates("label")
        assert dict(zip(numbered["label"], numbered["class_index"], strict=True)) == {
            label: i for i, label in enumerate(getattr(split, name))}
    assert sorted(split.train + split.val + split.test) == DIGITS
    assert list(digits_upstream["ingestion_report"].classes) == DIGITS
    # Every ingested image once, with its class and cache slot; ingestion's own test split
    # (of every class) is replaced by the classes' split.
    ingested = digits_upstream["image_manifest"]
    assert _classes(ingested, "test") == set(DIGITS)
    assert len(manifest) == len(ingested) and manifest["path"].is_unique
    joined = manifest.merge(ingested, on="path", suffixes=("", "_ingested"))
    assert len(joined) == len(manifest)
    assert (joined["label"] == joined["label_ingested"]).all()
    assert (joined["cache_index"] == joined["cache_index_ingested"]).all()
    assert (joined["cache_index"] >= 0).all()


def _assert_figures(figures: dict, manifest) -> None:
    """Test (and val) figures of one model: counts and bounds."""
    for prefix, split, classes in (("", "test", 5), ("val_", "val", 2)):
        assert set(map(prefix.__add__, FIGURES)) <= figures.keys()
        assert figures[f"{prefix}num_query_images"] == (manifest["split"] == split).sum()
        assert figures[f"{prefix}num_classes"] == classes
        for key in FIGURES[:3]:
            assert 0 <= figures[prefix + key] <= 1, (prefix, key)
        assert (figures[f"{prefix}mean_average_precision_at_r"]
                <= figures[f"{prefix}r_precision"] + 1e-12)


def test_metrics_of_every_weight_set_and_baseline(trained):
    metrics, manifest = trained["metric_learning_metrics"], trained["metric_learning_manifest"]
    assert set(metrics) == {*WEIGHT_SETS, "baselines", "served", "classes"}
    assert set(metrics["baselines"]) == {"untrained", "cross_entropy"}
    assert metrics["classes"] == {"train": 3, "val": 2, "test": 5, "source": "classes"}
    entries = {name: metrics[name] for name in WEIGHT_SETS} | metrics["baselines"]
    for name, figures in entries.items():
        assert set(figures) == set(FIGURES) | {f"val_{key}" for key in FIGURES}, name
        _assert_figures(figures, manifest)
    # Served: the best validation MAP@R, final on ties.
    val_map = {name: metrics[name]["val_mean_average_precision_at_r"] for name in WEIGHT_SETS}
    best = [name for name in WEIGHT_SETS if val_map[name] == max(val_map.values())]
    assert metrics["served"] == ("final" if "final" in best else best[0])
    # The figures agree with a second, per-query implementation on the same embeddings.
    embeddings = trained["evaluation_embeddings"]
    assert set(embeddings) == set(entries)
    test_labels = manifest.loc[manifest["split"] == "test", "label"].to_numpy()
    for name, figures in entries.items():
        vectors = embeddings[name]["test"]
        assert vectors.shape[0] == len(test_labels)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        per_query = per_query_figures(torch.from_numpy(vectors), test_labels)
        for key in FIGURES[:3]:
            assert per_query[key].mean() == pytest.approx(figures[key], abs=1e-6), (name, key)


def _test_images(served, manifest, root: str, count: int = 5) -> torch.Tensor:
    """The first ``count`` test images, decoded and transformed as a server would."""
    inputs = served.config.inputs
    transform = make_eval_transform(inputs.image_size, inputs.mean, inputs.std,
                                    inputs.interpolation)
    paths = manifest.loc[manifest["split"] == "test", "path"].head(count)
    return torch.stack([transform(load_image(Path(root) / path)) for path in paths])


def test_served_embedder_and_its_onnx_export(trained, digits_upstream):
    metrics, served = trained["metric_learning_metrics"], trained["served_embedder"]
    models, name = trained["embedding_models"], trained["metric_learning_metrics"]["served"]
    assert set(models) == set(WEIGHT_SETS)
    for weights, weight_set in models.items():
        assert weight_set.config.weights == weights
        assert weight_set.config.val_metrics == {
            key.removeprefix("val_"): value for key, value in metrics[weights].items()
            if key.startswith("val_")}
    config = served.config
    assert config.served_from == name == config.weights
    assert config.loss == "multi_similarity(alpha=2, beta=50, base=0.5, epsilon=0.1)"
    assert config.train_classes == ("0", "1", "2")
    assert (config.architecture, config.embedding_size, config.seed) == ("test_resnet", 16,
                                                                         SEED)
    assert config.scores == metrics[name]
    assert all(torch.equal(served.weights[k], v) for k, v in models[name].weights.items())
    assert not any(key.startswith("criterion.") for key in served.weights)
    model = embedder_from_weight_set(served)
    images = _test_images(served, trained["metric_learning_manifest"],
                          digits_upstream["ingestion_report"].root)
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)
    report = trained["embedder_export_report"]
    assert report["passed"] is True and report["weights"] == name
    session = onnxruntime.InferenceSession(trained["embedder_onnx"],
                                           providers=["CPUExecutionProvider"])
    (found,) = session.run(["embeddings"], {"images": images.numpy()})
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_history_and_figures(trained):
    history = trained["metric_learning_history"]
    assert history["epoch"].tolist() == [1, 2]
    assert history["phase"].tolist() == ["train", "swa"]
    assert {"train_loss", "train_active", "val_mean_average_precision_at_r"} <= set(history)
    assert np.isfinite(history["train_loss"]).all()
    assert history["train_active"].between(0, 1).all()
    assert history["val_mean_average_precision_at_r"].between(0, 1).all()
    # The final weights' validation figures are the last epoch's. Embedded again in other
    # batches, two near-tied distances may swap by float rounding (seen with AVX2 kernels:
    # 4e-5): a rank metric is not continuous, so the tolerance is one such swap.
    final = trained["embedding_models"]["final"].config.val_metrics
    assert final["mean_average_precision_at_r"] == pytest.approx(
        history["val_mean_average_precision_at_r"].iloc[-1], abs=1e-3)
    for name in ("metric_learning_curve", "retrieval_gallery", "embedding_map",
                 "per_class_retrieval_chart"):
        assert isinstance(trained[name], Figure), name
    table = trained["per_class_retrieval"]
    assert sorted(table["label"].astype(str)) == list(trained["class_split"].test)
    assert table["images"].sum() == (trained["metric_learning_manifest"]["split"]
                                     == "test").sum()


def test_the_same_seed_gives_the_same_figures(trained, digits_upstream, tmp_path):
    again = _run(digits_upstream, _params(), tmp_path, to_nodes=("score_embedders",))
    assert again["metric_learning_metrics"] == trained["metric_learning_metrics"]
    first = trained["trained_embedder"].weights
    for name, weights in again["trained_embedder"].weights.items():
        assert all(torch.equal(first[name][key], value) for key, value in weights.items())


def test_a_proxy_loss_trains_its_proxies_at_their_own_rate_without_baselines(
        digits_upstream, tmp_path):
    params = _params(loss="proxy_anchor", baselines=[], split={"val_classes": 0},
                     swa={"enabled": False}, ema={"enabled": False},
                     schedule={"min_lr": 0.05})
    out = _run(digits_upstream, params, tmp_path, to_nodes=("score_embedders",))
    metrics = out["metric_learning_metrics"]
    assert metrics["baselines"] == {} and out["baseline_weights"] == {}
    assert not (tmp_path / "baseline_checkpoints").exists()  # the baseline never trained
    assert set(out["evaluation_embeddings"]) == {"final"}
    assert metrics["served"] == "final"  # no validation classes
    assert metrics["classes"] == {"train": 5, "val": 0, "test": 5, "source": "classes"}
    assert set(metrics["final"]) == set(FIGURES)
    history = out["trained_embedder"].history
    assert np.isfinite(history["train_loss"]).all()
    assert not any(column.startswith("val_") for column in history)
    assert not any(key.startswith("criterion.") for key in out["trained_embedder"]
                   .weights["final"])
    # The checkpoint holds the proxies (one per training class) in their own optimizer
    # group, at proxy_lr / lr times the rate of the others, and they moved.
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["criterion.proxies"].shape == (5, 16)
    groups = state["optimizer"]["param_groups"]
    (proxies,) = [group for group in groups if "lr_scale" in group]
    assert proxies["lr_scale"] == pytest.approx(params.proxy_lr / params.lr)
    assert len(proxies["params"]) == 1
    for group in groups:
        if group is not proxies:
            assert proxies["lr"] == pytest.approx(group["lr"] * proxies["lr_scale"])
            assert group["lr"] > 0
    moved = state["optimizer"]["state"][proxies["params"][0]]["momentum_buffer"]
    assert moved.shape == (5, 16) and moved.abs().sum() > 0


def _disjoint_folder(root: Path) -> Path:
    """Digits with classes 0-4 in train/ only and 5-9 in test/ only."""
    images = make_demo_digits(test_per_class=5, largest_class=16, imbalance_ratio=2,
                              image_size=32, seed=1)
    kept = {key: image for key, image in images.items()
            if (key.split("/")[0] == "train") == (int(key.split("/")[1]) < 5)}
    return write_images(kept, root)


# With test_fraction > 0 ingestion carves a test split from the training classes for the
# classifier (the test/ folder's images are all unseen classes): the report says it was
# carved, so the folders' split is still recognised.
@pytest.mark.parametrize("test_fraction", [0.0, 0.2])
def test_disjoint_train_and_test_folders_are_kept_as_they_are(tmp_path, test_fraction):
    root = _disjoint_folder(tmp_path / "disjoint")
    upstream = _ingest(root, tmp_path / "image_cache", test_fraction=test_fraction)
    on_disk = {str(path.relative_to(root)) for path in (root / "test").rglob("*.png")}
    # Ingestion leaves out the test/ images: their classes have no training image.
    quarantine = upstream["quarantine"]
    assert set(quarantine.loc[quarantine["reason"] == "class_not_in_train", "path"]) == on_disk
    params = _params(epochs=1, batch_size=12, m_per_class=4, baselines=[],
                     swa={"enabled": False}, ema={"enabled": False})
    split_only = _run(upstream, params, tmp_path / "split", to_nodes=("make_class_split",))
    split, manifest = split_only["class_split"], split_only["metric_learning_manifest"]
    assert split.source == "folders"
    assert split.test == ("5", "6", "7", "8", "9")
    assert sorted(split.train + split.val) == DIGITS[:5] and len(split.val) == 2
    # The split brings the test/ images back, with their cache slots, and they are scored.
    test_rows = manifest[manifest["split"] == "test"]
    assert set(test_rows["path"]) == on_disk and (test_rows["cache_index"] >= 0).all()
    out = _run(upstream, params, tmp_path, to_nodes=("score_embedders",))
    figures = out["metric_learning_metrics"]["final"]
    assert (figures["num_query_images"], figures["num_classes"]) == (len(on_disk), 5)
