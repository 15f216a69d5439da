"""Seeded train/validation splits, the same on every run with the same seed: of single items, or of
whole groups of related items (so validation never sees a group that training saw)."""

import torch
from torch import Tensor

from common.errors import UserError


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, validation) of a seeded random split of `n` items, `val_size` held out."""
    if not 0 <= val_size < n:
        raise UserError(f"--val-size must be between 0 and {n - 1}, got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def split_groups(groups: Tensor, val_size: int, seed: int,
                 labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Indices (train, validation) holding out whole groups (`groups[i]` is item i's group) in a
    seeded random order until `val_size` items are out; only the last group taken may be cut.
    With `labels`, each label gives its share of the validation items."""
    if not 0 <= val_size < len(groups):
        raise UserError(f"--val-size must be between 0 and {len(groups) - 1}, got {val_size}")
    if labels is not None:  # every label gives its share (rounded) of the validation items
        train, val = [], []
        for label in labels.unique():
            members = (labels == label).nonzero().squeeze(1)
            share = round(val_size * len(members) / len(labels))
            label_train, label_val = split_groups(groups[members], share, seed)
            train.append(members[label_train])
            val.append(members[label_val])
        return torch.cat(train).sort().values, torch.cat(val).sort().values
    names, which = groups.unique(return_inverse=True)
    turn = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))  # each group's turn
    items = torch.argsort(turn[which], stable=True)  # grouped, groups in the order of their turns
    return items[val_size:].sort().values, items[:val_size].sort().values
