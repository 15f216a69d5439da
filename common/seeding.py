"""Reproducibility: one call seeds python, numpy and torch; loaders get their own seeded generator."""

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch, and return a fresh generator (seeded the same) for a DataLoader."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `seed`, independent of the global RNG."""
    return torch.Generator().manual_seed(seed)
