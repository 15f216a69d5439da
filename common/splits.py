"""A seeded train/validation split, the same on every run with the same seed."""

import torch
from torch import Tensor

from common.errors import UserError


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, validation) of a seeded random split of `n` items, `val_size` held out."""
    if not 0 <= val_size < n:
        raise UserError(f"--val-size must be between 0 and {n - 1}, got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]
