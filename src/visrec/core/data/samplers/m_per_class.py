"""P x K batches for metric learning (Hermans et al. 2017): each batch holds ``K`` images of
each of ``P = batch_size / K`` classes, drawn by pytorch-metric-learning's
``MPerClassSampler``, seeded per epoch and split over processes by whole classes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from visrec.core.seeding import epoch_seed


def check_m_per_class(class_sizes: Mapping[Any, int], m_per_class: int, batch_size: int,
                      world_size: int = 1, prefix: str = "metric_learning") -> None:
    """Raise when P x K batches cannot be drawn: K does not divide the batch, the batch
    does not split evenly over the processes, a class has fewer than K images, or a batch
    needs more classes than there are.

    Args:
        class_sizes: Images per training class.
        m_per_class: K, images per class in a batch.
        batch_size: The global batch.
        world_size: Processes the batch is split over.
        prefix: The parameters' key, for messages.

    Raises:
        ValueError: Naming the parameter, the value and what would be accepted.
    """
    if batch_size % m_per_class:
        raise ValueError(f"{prefix}.batch_size = {batch_size} is not a multiple of "
                         f"{prefix}.m_per_class = {m_per_class}: give a batch of P x K images")
    if batch_size % world_size:
        raise ValueError(f"{prefix}.batch_size = {batch_size} over {world_size} process(es) "
                         "does not split evenly: give a multiple of the processes")
    small = {name: size for name, size in class_sizes.items() if size < m_per_class}
    if small:
        listed = ", ".join(f"{name!r} has {size}" for name, size in sorted(small.items())[:10])
        raise ValueError(f"{prefix}.m_per_class = {m_per_class}: training classes with fewer "
                         f"images: {listed}{' ...' if len(small) > 10 else ''}; lower "
                         f"{prefix}.m_per_class to {min(small.values())} or leave those classes "
                         "out")
    classes_per_batch = batch_size // m_per_class
    if classes_per_batch > len(class_sizes):
        raise ValueError(f"{prefix}.batch_size / {prefix}.m_per_class = {batch_size} / "
                         f"{m_per_class} = {classes_per_batch} classes per batch, but there "
                         f"are {len(class_sizes)} training classes: raise m_per_class or "
                         "lower batch_size")


class MPerClassBatches(Sampler[int]):
    """Rows in P x K batches: ``MPerClassSampler`` with an epoch's length, reproducible.

    ``MPerClassSampler`` draws from pytorch-metric-learning's module-level NumPy generator;
    each epoch here draws from its own ``RandomState(epoch_seed(seed, epoch))`` instead, so
    an epoch is the same whether the run resumed or not, and the global generator is left
    alone. With several processes, each takes its ``batch_size / world_size`` share of every
    global batch (the metric-learning task gathers the embeddings of all processes, so the
    loss sees the whole P x K batch).

    Args:
        class_index: Class of each training row.
        m_per_class: K.
        batch_size: The global batch (P x K).
        seed: With the epoch, seeds the draw.
        rank: This process's index.
        world_size: Number of processes.
    """

    def __init__(self, class_index: np.ndarray, m_per_class: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        from pytorch_metric_learning.samplers import MPerClassSampler  # noqa: PLC0415

        labels = np.asarray(class_index)
        sizes = {str(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True),
                                                 strict=True)}
        check_m_per_class(sizes, m_per_class, batch_size, world_size)
        length = max(len(labels) - len(labels) % batch_size, batch_size)
        self.sampler = MPerClassSampler(labels, m_per_class, batch_size=batch_size,
                                        length_before_new_iter=length)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.sampler) // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` next."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        from pytorch_metric_learning.utils import common_functions  # noqa: PLC0415

        shared = common_functions.NUMPY_RANDOM
        common_functions.NUMPY_RANDOM = np.random.RandomState(
            epoch_seed(self.seed, self.epoch) % 2**32)
        # It shuffles its class list in place: start every epoch from the same order.
        self.sampler.labels = sorted(self.sampler.labels_to_indices)
        try:
            rows = np.fromiter(iter(self.sampler), dtype=np.int64)
        finally:
            common_functions.NUMPY_RANDOM = shared
        self.epoch += 1
        share = self.batch_size // self.world_size
        batches = rows.reshape(-1, self.world_size, share)
        return iter(batches[:, self.rank].reshape(-1).tolist())
