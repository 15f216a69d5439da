"""Reproducibility: one call seeds python, numpy and torch; loaders get their own seeded generator;
the accelerator's random state, saved and restored with a checkpoint."""

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


def device_rng_state(device: torch.device) -> torch.Tensor | None:
    """The random state of the accelerator `device` draws from (dropout, augmentation on the GPU), or
    None on the CPU, whose state `torch.get_rng_state` holds."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return None


def set_device_rng_state(device: torch.device, state: torch.Tensor) -> None:
    """Restore a state `device_rng_state(device)` returned."""
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
