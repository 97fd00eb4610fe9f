"""Tests of the k-NN search of embeddings (visrec.core.retrieval.knn): the torch backend
against a brute-force NumPy ranking, faiss against torch, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from visrec.core.retrieval import KnnSearch, knn

ROWS, DIMS = 60, 16


def _unit(rows: int, seed: int, dims: int = DIMS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return functional.normalize(torch.randn(rows, dims, generator=generator), dim=1)


def _brute_force(query: torch.Tensor, reference: torch.Tensor, k: int,
                 exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """The full similarity matrix in float64, each row ranked by argsort."""
    scores = query.double().numpy() @ reference.double().numpy().T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("k", [1, 5, 17, ROWS - 1])
@pytest.mark.parametrize("batch_size", [7, 1024])  # 7: nine batches, the last one short
def test_torch_knn_equals_brute_force(exclude_self, k, batch_size):
    embeddings = _unit(ROWS, seed=k)
    similarities, indices = knn(embeddings, embeddings, k, exclude_self=exclude_self,
                                batch_size=batch_size)
    expected_similarities, expected_indices = _brute_force(embeddings, embeddings, k,
                                                           exclude_self)
    assert indices.shape == similarities.shape == (ROWS, k)
    assert indices.dtype == torch.int64
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(similarities.numpy(), expected_similarities, atol=1e-5)
    if not exclude_self:  # a unit vector is its own nearest neighbour
        np.testing.assert_array_equal(indices[:, 0].numpy(), np.arange(ROWS))


def test_torch_knn_of_other_queries_equals_brute_force():
    queries, references = _unit(25, seed=1), _unit(ROWS, seed=2)
    similarities, indices = knn(queries, references, 9, batch_size=4)
    expected_similarities, expected_indices = _brute_force(queries, references, 9, False)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(similarities.numpy(), expected_similarities, atol=1e-5)


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("k", [1, 6, ROWS - 1])
def test_faiss_and_torch_find_the_same_neighbours(exclude_self, k):
    pytest.importorskip("faiss")
    embeddings = _unit(ROWS, seed=3)
    by_torch = knn(embeddings, embeddings, k, exclude_self=exclude_self, batch_size=8)
    by_faiss = knn(embeddings, embeddings, k, exclude_self=exclude_self, backend="faiss")
    np.testing.assert_array_equal(by_faiss[1].numpy(), by_torch[1].numpy())
    np.testing.assert_allclose(by_faiss[0].numpy(), by_torch[0].numpy(), atol=1e-5)
    assert by_faiss[1].dtype == torch.int64


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_a_query_is_never_its_own_neighbour(backend):
    """Even when other rows are exact copies of it (ties with itself)."""
    if backend == "faiss":
        pytest.importorskip("faiss")
    embeddings = _unit(12, seed=4).repeat(3, 1)  # every row three times
    rows = len(embeddings)
    for k in (1, 2, 5, rows - 1):
        similarities, indices = knn(embeddings, embeddings, k, exclude_self=True,
                                    backend=backend, batch_size=5)
        assert not (indices == torch.arange(rows)[:, None]).any(), k
        if k >= 2:  # its two copies come first, at similarity 1
            for i, row in enumerate(indices.tolist()):
                assert set(row[:2]) == {i % 12 + 12 * j for j in range(3)} - {i}, (k, i)
            np.testing.assert_allclose(similarities[:, :2].numpy(), 1.0, atol=1e-5)
    _, everything = knn(embeddings, embeddings, rows - 1, exclude_self=True, backend=backend)
    for i, row in enumerate(everything.tolist()):  # all the other rows, once each
        assert sorted(row) == [j for j in range(rows) if j != i]


def test_knn_search_excludes_the_query_when_references_include_it():
    embeddings = _unit(20, seed=5)
    search = KnnSearch("torch", batch_size=3)
    _, with_self = search(embeddings, 4, embeddings, ref_includes_query=False)
    _, without_self = search(embeddings, 4, embeddings, ref_includes_query=True)
    np.testing.assert_array_equal(with_self[:, 0].numpy(), np.arange(20))
    np.testing.assert_array_equal(without_self.numpy(),
                                  _brute_force(embeddings, embeddings, 4, True)[1])


@pytest.mark.parametrize(("k", "exclude_self", "limit"),
                         [(0, False, 10), (11, False, 10), (-1, True, 9), (10, True, 9)])
def test_k_out_of_range_is_refused(k, exclude_self, limit):
    embeddings = _unit(10, seed=6)
    with pytest.raises(ValueError, match=rf"k = {k}: need 1 <= k <= {limit}\b"):
        knn(embeddings, embeddings, k, exclude_self=exclude_self)


def test_unknown_backend_is_refused():
    embeddings = _unit(10, seed=7)
    with pytest.raises(ValueError, match=r"k-NN backend 'annoy': accepted \['torch', 'faiss'\]"):
        knn(embeddings, embeddings, 3, backend="annoy")
