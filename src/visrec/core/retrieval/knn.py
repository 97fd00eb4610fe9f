"""Nearest neighbours by cosine similarity of unit-length embeddings, on torch in batches
of queries (memory bounded by ``batch_size x references``), or on faiss when installed."""

from __future__ import annotations

import numpy as np
import torch

KNN_BACKENDS = ("torch", "faiss")


def _torch_knn(query: torch.Tensor, reference: torch.Tensor, k: int, exclude_self: bool,
               batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    similarities, indices = [], []
    for start in range(0, len(query), batch_size):
        scores = query[start:start + batch_size] @ reference.T
        if exclude_self:
            rows = torch.arange(scores.shape[0], device=scores.device)
            scores[rows, rows + start] = -torch.inf
        top = torch.topk(scores, k, dim=1, largest=True, sorted=True)
        similarities.append(top.values)
        indices.append(top.indices)
    return torch.cat(similarities), torch.cat(indices)


def _faiss_knn(query: torch.Tensor, reference: torch.Tensor, k: int,
               exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss  # noqa: PLC0415 - optional: pip install "visrec[faiss]"
    except ImportError:
        raise ImportError("k-NN backend 'faiss' needs faiss-cpu: pip install 'visrec[faiss]', "
                          "or use the 'torch' backend") from None
    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(np.ascontiguousarray(reference.numpy(), dtype=np.float32))
    found_scores, found = index.search(np.ascontiguousarray(query.numpy(), dtype=np.float32),
                                       k + int(exclude_self))
    if exclude_self:  # drop each query itself (or the last neighbour when a tie hid it)
        own = found == np.arange(len(query))[:, None]
        own[~own.any(axis=1), -1] = True
        keep = ~own
        found = found[keep].reshape(len(query), k)
        found_scores = found_scores[keep].reshape(len(query), k)
    return torch.from_numpy(found_scores), torch.from_numpy(found.astype(np.int64))


def knn(query: torch.Tensor, reference: torch.Tensor, k: int, *, exclude_self: bool = False,
        backend: str = "torch", batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` references most similar to each query.

    Args:
        query: ``Q x D`` unit-length embeddings.
        reference: ``R x D`` unit-length embeddings.
        k: Neighbours per query (at most ``R``, or ``R - 1`` with ``exclude_self``).
        exclude_self: ``query`` is ``reference``: a query is never its own neighbour.
        backend: ``torch`` (batched matrix products) or ``faiss`` (``IndexFlatIP``).
        batch_size: Queries per matrix product (torch).

    Returns:
        ``(similarities, indices)``, each ``Q x k``, most similar first.

    Raises:
        ValueError: If ``backend`` is unknown or ``k`` is out of range.
    """
    if backend not in KNN_BACKENDS:
        raise ValueError(f"k-NN backend {backend!r}: accepted {list(KNN_BACKENDS)}")
    available = len(reference) - int(exclude_self)
    if not 1 <= k <= available:
        raise ValueError(f"k = {k}: need 1 <= k <= {available} (the references"
                         f"{' other than the query' if exclude_self else ''})")
    query, reference = query.detach().float().cpu(), reference.detach().float().cpu()
    if backend == "faiss":
        return _faiss_knn(query, reference, k, exclude_self)
    return _torch_knn(query, reference, k, exclude_self, batch_size)


class KnnSearch:
    """:func:`knn` in the form pytorch-metric-learning's ``AccuracyCalculator`` calls
    (``knn_func(query, k, reference, ref_includes_query)``): with the query among the
    references, each query's own row is excluded exactly, not assumed to come first."""

    def __init__(self, backend: str = "torch", batch_size: int = 1024) -> None:
        self.backend, self.batch_size = backend, batch_size

    def __call__(self, query: torch.Tensor, k: int, reference: torch.Tensor,
                 ref_includes_query: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(similarities, indices)`` of the ``k`` nearest references of each query."""
        return knn(query, reference, k, exclude_self=ref_includes_query,
                   backend=self.backend, batch_size=self.batch_size)
