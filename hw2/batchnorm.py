"""Batch normalization written from the derivation in hw2/README.md, without autograd: the forward
pass, the backward pass (step by step through the graph, and in closed form), running statistics
updated as PyTorch does, and an autograd Function and nn.Module that stand in for nn.BatchNorm1d/2d.

Shapes: x is (N, C), (N, C, L) or (N, C, H, W); every statistic is per channel, reduced over all
dimensions but the channel dimension 1, i.e. over M = N (or N*L, or N*H*W) values."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


@dataclass
class Cache:
    """What the backward pass needs from the forward pass (per-channel tensors broadcast like x)."""

    centered: Tensor  # x - mu
    inv_std: Tensor  # 1 / sqrt(var + eps)
    x_hat: Tensor  # centered * inv_std
    gamma: Tensor
    batch_stats: bool  # mu and var came from this batch (training); else fixed running statistics


def reduced_dims(x: Tensor) -> tuple[int, ...]:
    """The dimensions the statistics reduce over: all but the channel dimension 1."""
    return (0, *range(2, x.ndim))


def per_channel(v: Tensor, x: Tensor) -> Tensor:
    """A (C,) tensor viewed as (1, C, 1, ...) so that it broadcasts against x."""
    return v.view(1, -1, *[1] * (x.ndim - 2))


def check_input(x: Tensor, num_features: int, training: bool, has_running_stats: bool) -> None:
    """A ValueError unless x is (N, C), (N, C, L) or (N, C, H, W) with C = num_features, holds more
    than one value per channel in training (the unbiased variance divides by M - 1), and eval mode
    has running statistics to use."""
    if x.ndim not in (2, 3, 4) or x.shape[1] != num_features:
        raise ValueError(f"BatchNorm({num_features}) expects input of shape (N, {num_features}), "
                         f"(N, {num_features}, L) or (N, {num_features}, H, W), got {tuple(x.shape)}")
    if training and x.numel() // num_features < 2:
        raise ValueError(f"BatchNorm({num_features}) needs more than one value per channel in training "
                         f"mode, got input of shape {tuple(x.shape)}")
    if not training and not has_running_stats:
        raise ValueError(f"BatchNorm({num_features}) in eval mode needs running_mean and running_var")


def batchnorm_forward(x: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor | None = None,
                      running_var: Tensor | None = None, *, training: bool = True,
                      momentum: float = 0.1, eps: float = 1e-5) -> tuple[Tensor, Cache]:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta per channel, with the arguments of
    F.batch_norm. Training: mu and var are the batch's mean and biased variance, and the running
    statistics (if given) move towards them in place. Eval: mu and var are the running statistics."""
    check_input(x, len(gamma), training, running_mean is not None and running_var is not None)
    dims = reduced_dims(x)
    if training:
        mean = x.mean(dim=dims)
        centered = x - per_channel(mean, x)
        var = (centered * centered).mean(dim=dims)  # biased: divides by M
        if running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, x.numel() // len(gamma), momentum)
    else:
        centered = x - per_channel(running_mean, x)
        var = running_var
    inv_std = per_channel(torch.rsqrt(var + eps), x)
    x_hat = centered * inv_std
    y = per_channel(gamma, x) * x_hat + per_channel(beta, x)
    return y, Cache(centered, inv_std, x_hat, per_channel(gamma, x), training)


@torch.no_grad()
def update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor,
                         m: int, momentum: float) -> None:
    """running <- (1 - momentum) * running + momentum * batch statistic, in place; the variance
    entering the running estimate is the unbiased one, var * m / (m - 1), as in PyTorch."""
    running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
    running_var.mul_(1 - momentum).add_(var * (m / (m - 1)), alpha=momentum)


def batchnorm_backward(dy: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dL/dx, dL/dgamma, dL/dbeta) from dL/dy, in closed form:
    dx = gamma * inv_std / M * (M dy - sum(dy) - x_hat * sum(dy * x_hat))."""
    dims = reduced_dims(dy)
    dbeta = dy.sum(dim=dims)
    dgamma = (dy * cache.x_hat).sum(dim=dims)
    scale = cache.gamma * cache.inv_std
    if not cache.batch_stats:  # mu and var are constants: y is affine in x
        return dy * scale, dgamma, dbeta
    m = dy.numel() // dy.shape[1]
    dx = scale / m * (m * dy - per_channel(dbeta, dy) - cache.x_hat * per_channel(dgamma, dy))
    return dx, dgamma, dbeta


def batchnorm_backward_graph(dy: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """The same gradients, one node of the forward graph at a time, in reverse (training mode):
    mu = mean(x), c = x - mu, var = mean(c^2), s = sqrt(var + eps), r = 1/s, x_hat = c r,
    y = gamma x_hat + beta."""
    if not cache.batch_stats:
        raise ValueError("batchnorm_backward_graph follows the training-mode graph; use batchnorm_backward")
    dims = reduced_dims(dy)
    m = dy.numel() // dy.shape[1]
    dbeta = dy.sum(dim=dims)  # y = gamma x_hat + beta
    dgamma = (dy * cache.x_hat).sum(dim=dims)
    dx_hat = dy * cache.gamma
    dr = (dx_hat * cache.centered).sum(dim=dims, keepdim=True)  # x_hat = c r: r is shared by the channel
    dc = dx_hat * cache.inv_std  # ... and c reaches y through x_hat directly
    ds = -dr * cache.inv_std**2  # r = 1 / s
    dvar = ds * cache.inv_std / 2  # s = sqrt(var + eps), 1 / (2 s) = r / 2
    dc = dc + dvar * 2 * cache.centered / m  # var = mean(c^2)
    dmu = -dc.sum(dim=dims, keepdim=True)  # c = x - mu
    dx = dc + dmu / m  # mu = mean(x)
    return dx, dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """autograd's view of the hand-written passes; apply() takes F.batch_norm's arguments:
    (x, weight, bias, running_mean, running_var, training, momentum, eps)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor | None,
                running_var: Tensor | None, training: bool, momentum: float, eps: float) -> Tensor:
        y, ctx.cache = batchnorm_forward(x, weight, bias, running_mean, running_var, training=training,
                                         momentum=momentum, eps=eps)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        dx, dgamma, dbeta = batchnorm_backward(dy, ctx.cache)
        return dx, dgamma, dbeta, None, None, None, None, None


class BatchNorm(nn.Module):
    """A drop-in for nn.BatchNorm1d/2d computed by the hand-written passes: the same parameters
    (weight, bias), buffers (running_mean, running_var, num_batches_tracked) and state_dict keys.
    momentum=None averages all batches seen so far, as in PyTorch."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        like = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(num_features, **like))
        self.bias = nn.Parameter(torch.zeros(num_features, **like))
        self.register_buffer("running_mean", torch.zeros(num_features, **like))
        self.register_buffer("running_var", torch.ones(num_features, **like))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: Tensor) -> Tensor:
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average
                momentum = 1 / self.num_batches_tracked.item()
        return BatchNormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                       self.training, momentum, self.eps)
