"""Integrated gradients (Sundararajan et al., 2017): how much each input element moved a model's score
for one class away from its score on a baseline input. The attributions add up to that difference
(completeness), which is why this method rather than a raw gradient."""

from collections.abc import Callable

import torch
from torch import Tensor


def integrated_gradients(score: Callable[[Tensor], Tensor], inputs: Tensor, baseline: Tensor | None = None,
                         steps: int = 32) -> Tensor:
    """Attributions of shape `inputs.shape` for `score` (inputs (N, ...) -> one score per row, e.g. a
    class's log-probability): (x - baseline) times the mean gradient on the straight path from the
    baseline (zeros by default) to x, by the midpoint rule over `steps` points."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    baseline = torch.zeros_like(inputs) if baseline is None else baseline.expand_as(inputs)
    total = torch.zeros_like(inputs, dtype=torch.float32)
    for k in range(steps):
        alpha = (k + 0.5) / steps
        point = (baseline + alpha * (inputs - baseline)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(score(point).sum(), point)
        total += grad.float()
    return (inputs - baseline).float() * total / steps
