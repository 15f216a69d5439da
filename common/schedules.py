"""Learning-rate schedules stepped once per batch."""

import torch


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int,
                        warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Ramp the learning rate linearly from ~0 to its peak over `warmup_steps`, then linearly to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
