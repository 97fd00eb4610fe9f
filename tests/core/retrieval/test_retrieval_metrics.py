"""Tests of the retrieval figures (visrec.core.retrieval.metrics): Precision@1,
R-Precision and MAP@R from pytorch-metric-learning's AccuracyCalculator, the per-query
figures computed here, and the per-class table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional

from visrec.core.retrieval import (
    RETRIEVAL_METRICS,
    per_class_table,
    per_query_figures,
    retrieval_metrics,
)


def _unit(rows: int, seed: int, dims: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return functional.normalize(torch.randn(rows, dims, generator=generator), dim=1)


def _clustered(labels: np.ndarray, seed: int, spread: float) -> torch.Tensor:
    """Class centres plus noise of ``spread``: some neighbours right, some wrong."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels.max() + 1, 8))
    points = centres[labels] + spread * rng.normal(size=(len(labels), 8))
    return functional.normalize(torch.from_numpy(points).float(), dim=1)


def _layouts(seed: int) -> list[np.ndarray]:
    """Label layouts: balanced, imbalanced, and with a class of one image."""
    rng = np.random.default_rng(seed)
    return [np.repeat(np.arange(5), 8),
            rng.integers(0, 6, size=70),
            np.concatenate([np.repeat(np.arange(4), rng.integers(2, 15, size=4)), [9]])]


def test_map_at_r_never_exceeds_r_precision():
    for seed in range(8):
        for labels in _layouts(seed):
            for spread in (0.3, 1.0, 5.0):
                embeddings = _clustered(labels, seed, spread)
                figures = retrieval_metrics(embeddings, labels)
                assert figures["mean_average_precision_at_r"] <= figures["r_precision"] + 1e-12
                queries = per_query_figures(embeddings, labels).dropna()
                assert (queries["mean_average_precision_at_r"]
                        <= queries["r_precision"] + 1e-12).all()


def test_the_figures_are_fractions_and_count_the_queries():
    labels = _layouts(0)[1]
    figures = retrieval_metrics(_unit(len(labels), seed=0), labels)
    for name in RETRIEVAL_METRICS:
        assert 0.0 <= figures[name] <= 1.0
    assert figures["num_query_images"] == len(labels)
    assert figures["num_classes"] == len(np.unique(labels))


def test_perfect_clustering_scores_one():
    """Identical embeddings within a class, orthogonal classes."""
    labels = np.array(["c", "a", "b", "a", "c", "b", "a", "c", "a"])
    axes = {"a": 0, "b": 1, "c": 2}
    embeddings = functional.one_hot(torch.tensor([axes[x] for x in labels]), 5).float()
    figures = retrieval_metrics(embeddings, labels)
    for name in RETRIEVAL_METRICS:
        assert figures[name] == pytest.approx(1.0)
    queries = per_query_figures(embeddings, labels)
    assert (queries[list(RETRIEVAL_METRICS)] == 1.0).all().all()
    assert queries["r"].tolist() == [2, 3, 1, 3, 2, 1, 3, 2, 3]


def test_a_hand_ranked_query():
    """Query 0 (class 0; R = 2) ranks a wrong image, then its two classmates: P@1 = 0,
    R-Precision = 1/2, AP@R = (1/2) / 2 = 1/4."""
    embeddings = functional.normalize(torch.tensor([
        [1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.0, 0.866], [0.9, 0.1, 0.4],
        [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    labels = np.array([0, 0, 0, 1, 1, 1])
    first = per_query_figures(embeddings, labels).iloc[0]
    assert first["r"] == 2
    assert first["precision_at_1"] == 0.0
    assert first["r_precision"] == pytest.approx(0.5)
    assert first["mean_average_precision_at_r"] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", range(4))
def test_per_query_means_equal_the_accuracy_calculator(seed):
    for labels in _layouts(seed):  # the last layout has a class of one image (no R)
        embeddings = _clustered(labels, seed, spread=1.0)
        figures = retrieval_metrics(embeddings, labels, batch_size=16)
        queries = per_query_figures(embeddings, labels, batch_size=16)
        assert len(queries) == len(labels)
        np.testing.assert_array_equal(queries["label"], labels)
        for name in RETRIEVAL_METRICS:
            assert queries[name].mean() == pytest.approx(figures[name], abs=1e-6), name


def test_a_class_of_one_image_has_no_figures():
    labels = np.array([0, 0, 0, 1, 1, 2])
    queries = per_query_figures(_unit(6, seed=1), labels)
    assert queries["r"].tolist() == [2, 2, 2, 1, 1, 0]
    assert queries.loc[5, list(RETRIEVAL_METRICS)].isna().all()
    assert queries.loc[:4, list(RETRIEVAL_METRICS)].notna().all().all()


def test_per_class_table_puts_the_worst_class_first():
    figures = pd.DataFrame({
        "label": [0, 0, 1, 1, 1, 2, 2, 2, 2],
        "r": [1, 1, 2, 2, 2, 3, 3, 3, 3],
        "precision_at_1": [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
        "r_precision": [1.0, 0.5, 0.0, 0.5, 0.5, 1.0, 1.0, 1 / 3, 1.0],
        "mean_average_precision_at_r": [1.0, 0.5, 0.0, 0.25, 0.5, 1.0, 1.0, 0.2, 1.0]})
    table = per_class_table(figures, classes=["emu", "dog", "cat"])
    assert table.columns.tolist() == ["label", "images", *RETRIEVAL_METRICS]
    assert table["label"].tolist() == ["dog", "emu", "cat"]
    assert table["images"].tolist() == [3, 2, 4]
    assert table["r_precision"].tolist() == pytest.approx([1 / 3, 0.75, 5 / 6])
    assert table["precision_at_1"].tolist() == pytest.approx([1 / 3, 1.0, 0.75])
    assert table["mean_average_precision_at_r"].tolist() == pytest.approx([0.25, 0.75, 0.8])
    # Without names the labels stay.
    assert per_class_table(figures)["label"].tolist() == [1, 0, 2]


def test_per_class_table_orders_equal_r_precision_by_label():
    figures = pd.DataFrame({"label": ["b", "b", "c", "a", "a"], "r": [1, 1, 0, 1, 1],
                            "precision_at_1": [1.0, 0.0, 1.0, 0.0, 0.0],
                            "r_precision": [1.0, 0.0, 0.5, 0.5, 0.5],
                            "mean_average_precision_at_r": [1.0, 0.0, 0.5, 0.5, 0.5]})
    table = per_class_table(figures)
    assert table["label"].tolist() == ["a", "b", "c"]
    assert table["images"].tolist() == [2, 2, 1]


def test_per_class_table_of_real_figures():
    labels = _layouts(2)[1]
    queries = per_query_figures(_clustered(labels, 2, spread=1.5), labels)
    table = per_class_table(queries)
    assert table["images"].sum() == len(labels)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    assert dict(zip(table["label"], table["images"], strict=True)) == counts
    assert table["r_precision"].is_monotonic_increasing
    for row in table.itertuples():
        mine = queries[queries["label"] == row.label]
        assert row.r_precision == pytest.approx(mine["r_precision"].mean())


@pytest.mark.parametrize("function", [retrieval_metrics, per_query_figures])
def test_bad_input_is_refused(function):
    with pytest.raises(ValueError, match=r"at least 2 classes .*got 1 classes of at most 5"):
        function(_unit(5, seed=0), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"got 4 classes of at most 1 images"):
        function(_unit(4, seed=0), np.arange(4))
    with pytest.raises(ValueError, match=r"6 embeddings but 5 labels"):
        function(_unit(6, seed=0), np.array([0, 0, 1, 1, 1]))
