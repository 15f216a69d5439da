"""Device choice (--device auto|cpu|cuda|mps) and the matching autocast context."""

import contextlib

import torch

from common.errors import UserError


def select_device(name: str = "auto") -> torch.device:
    """The requested device; `auto` picks cuda, then mps, then cpu. Asking for an absent one is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if name not in available:
        raise UserError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    if not available[name]:
        raise UserError(f"--device {name}: no {name} device is available here; use --device auto")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on cpu/cuda when precision is 'bf16' (mps keeps fp32); a no-op for 'fp32'."""
    if precision not in ("bf16", "fp32"):
        raise UserError(f"unknown precision {precision!r}; choose bf16 or fp32")
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
