"""Mini-batches of in-memory tensors by slicing, for data small enough to index whole: a DataLoader
over a TensorDataset collates sample by sample, which costs a tiny model more than its own step."""

from collections.abc import Iterator

import torch
from torch import Tensor


class TensorBatches:
    """Batches `(x[i], y[i])` of `batch_size` rows (the last may be smaller): in order, or reshuffled
    every pass with `generator` (the same seed gives the same batches in the same order)."""

    def __init__(self, x: Tensor, y: Tensor, *, batch_size: int, generator: torch.Generator | None = None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} targets")
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.generator is None:
            for start in range(0, len(self.x), self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            return
        order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        for index in order.split(self.batch_size):
            yield self.x[index], self.y[index]
