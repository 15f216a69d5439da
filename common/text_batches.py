"""Length-bucketed batches of token-id sequences, so a batch pads to its own longest text, not the
corpus's; shuffled per (seed, epoch) and, under torchrun, split across processes."""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from common.distributed import shard, world_size
from common.text import PAD_ID


def truncate(ids: np.ndarray, max_len: int, head: int) -> np.ndarray:
    """`ids` cut to `max_len` tokens keeping the first `head` and the last `max_len - head`."""
    if len(ids) <= max_len:
        return ids
    return np.concatenate([ids[:head], ids[len(ids) - (max_len - head):]])


def pad_batch(sequences: Sequence[np.ndarray]) -> Tensor:
    """Sequences of ids as one int64 (B, longest) tensor, padded on the right with PAD_ID."""
    out = torch.full((len(sequences), max(len(s) for s in sequences)), PAD_ID, dtype=torch.int64)
    for row, ids in enumerate(sequences):
        out[row, :len(ids)] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    return out


class TextBatches:
    """Batches `(ids (B, T) int64, labels (B,))` of texts truncated to `max_len` tokens (head + tail);
    given per-text `offsets` (B,) (say, another model's log-odds), `(ids, offsets, labels)`.

    Training: a seeded shuffle, then texts of similar length grouped into batches within pools of
    `pool` batches, batch order shuffled. Evaluation: sorted by length. With `shard`, each torchrun
    process takes its part of every batch, so `batch_size` is the global batch size. With `pin`, batches
    come in pinned memory, so their copy to a CUDA device can overlap the step before."""

    def __init__(self, sequences: Sequence[np.ndarray], labels: Tensor, *, batch_size: int,
                 max_len: int, head: int, train: bool, seed: int = 0, shard: bool = False,
                 pool: int = 50, pin: bool = False, offsets: Tensor | None = None):
        if len(sequences) != len(labels) or (offsets is not None and len(offsets) != len(labels)):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels"
                             + ("" if offsets is None else f" and {len(offsets)} offsets"))
        if not 0 <= head <= max_len:
            raise ValueError(f"head {head} must lie in [0, max_len={max_len}]")
        self.sequences = [truncate(ids, max_len, head) for ids in sequences]
        self.lengths = np.array([len(ids) for ids in self.sequences])
        self.labels, self.offsets = labels, offsets
        self.batch_size, self.train, self.seed, self.shard, self.pool = batch_size, train, seed, shard, pool
        self.pin = pin
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)

    def batches(self) -> list[np.ndarray]:
        """The index arrays of this epoch's batches (the same in every process)."""
        n, size = len(self.sequences), self.batch_size
        if not self.train:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i:i + size] for i in range(0, n, size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, size * self.pool):
            chunk = order[start:start + size * self.pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for index in self.batches():
            if self.shard and world_size() > 1:
                index = shard(torch.from_numpy(index), pad=self.train).numpy()
                if len(index) == 0:
                    continue
            rows = torch.from_numpy(index)
            batch = (pad_batch([self.sequences[i] for i in index]),
                     *(() if self.offsets is None else (self.offsets[rows],)), self.labels[rows])
            yield tuple(t.pin_memory() for t in batch) if self.pin else batch
