"""Muon (momentum orthogonalized by Newton-Schulz) for conv/matrix weights, with Nesterov SGD or AdamW
for the rest, in one optimizer; after Keller Jordan's Muon and cifar10-airbench's airbench94_muon."""

import torch
from torch import Tensor


@torch.no_grad()
def orthogonalize(matrix: Tensor, steps: int = 3, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """An approximately orthogonal matrix with `matrix`'s singular vectors (singular values near 1,
    roughly in 0.5-1.5), by a quintic Newton-Schulz iteration computed in `dtype`."""
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalize needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix.to(dtype)
    x = x / (x.norm() + eps)  # the top singular value is now at most 1
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Param groups with `muon=True` (weights with ndim >= 2) take orthogonalized Nesterov-momentum
    steps and have their norm held at sqrt(rows); groups with `adam=True` take AdamW steps (`betas`,
    decoupled `weight_decay`); the others Nesterov SGD with `weight_decay`. The orthogonalization runs
    in `orthogonalize_dtype` (bf16 as in airbench; fp32 where bf16 is emulated)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 muon: bool = True, orthogonalize_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, muon=muon, adam=False,
                                      betas=(0.9, 0.999)))
        self.orthogonalize_dtype = orthogonalize_dtype
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups hold weight matrices or conv filters, not vectors")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            if group["adam"]:
                self._adamw_step(group)
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(grad)
                update = grad.add(buffer, alpha=group["momentum"])  # Nesterov
                if group["muon"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                    update = orthogonalize(update.reshape(len(p), -1),
                                           dtype=self.orthogonalize_dtype).view_as(p)
                p.add_(update, alpha=-group["lr"])
        return loss

    def _adamw_step(self, group: dict) -> None:
        """AdamW (Loshchilov & Hutter) on one group, as torch.optim.AdamW computes it (eps 1e-8)."""
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            p.mul_(1 - group["lr"] * group["weight_decay"])
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denominator = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(1e-8)
            p.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / (1 - beta1 ** state["step"]))
