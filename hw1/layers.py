"""Layers with hand-written forward and backward passes (no autograd): Linear, ReLU and MSELoss, and
the update rules a Linear applies to itself: SGD and Adam, written out.

Gradients flow per sample: `backward(grad)` takes, for every row of the batch, the gradient of that
sample's loss with respect to the layer's output, and returns the same for its input. `Linear` averages
its parameter gradients over the batch, so a step follows the gradient of the mean loss.
"""

import torch
from torch import Tensor


class Layer:
    """Train/eval switch: a layer keeps what its backward needs only in training mode."""

    training = True

    def train(self) -> "Layer":
        self.training = True
        return self

    def eval(self) -> "Layer":
        self.training = False
        return self

    def _keep(self, value: Tensor) -> Tensor | None:
        """`value` in training mode, None in eval mode (so backward cannot use a stale forward)."""
        return value if self.training else None

    def _kept(self, value: Tensor | None) -> Tensor:
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward pass in training mode first")
        return value


def check_shape(what: str, tensor: Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise a ValueError naming `what` unless `tensor` has `expected` shape (None matches any size)."""
    if tensor.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, tensor.shape)):
        shown = ", ".join("N" if e is None else str(e) for e in expected)
        raise ValueError(f"{what} should have shape ({shown}), got {tuple(tensor.shape)}")


class SGD:
    """Plain gradient descent: p <- p - lr g. `lr` may be changed between steps (a schedule)."""

    def __init__(self, lr: float):
        self.lr = lr

    def update(self, key: object, param: Tensor, grad: Tensor) -> Tensor:
        return param - self.lr * grad


class Adam:
    """Adam (Kingma & Ba, 2015): for each parameter (named by `key`), running means of the gradient (m)
    and of its square (v), bias-corrected for their zero start; p <- p - lr m^ / (sqrt(v^) + eps).
    `lr` may be changed between steps (a schedule)."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.moments: dict[object, tuple[Tensor, Tensor, int]] = {}

    def update(self, key: object, param: Tensor, grad: Tensor) -> Tensor:
        beta1, beta2 = self.betas
        m, v, t = self.moments.get(key, (torch.zeros_like(param), torch.zeros_like(param), 0))
        m, v, t = beta1 * m + (1 - beta1) * grad, beta2 * v + (1 - beta2) * grad * grad, t + 1
        self.moments[key] = (m, v, t)
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        return param - self.lr * m_hat / (v_hat.sqrt() + self.eps)


class Linear(Layer):
    """out = x W + b with W of shape (d_in, d_out); backward updates W and b with `optimizer`'s rule."""

    def __init__(self, d_in: int, d_out: int, optimizer: SGD | Adam, generator: torch.Generator | None = None):
        self.d_in, self.d_out, self.optimizer = d_in, d_out, optimizer
        self.W = torch.randn(d_in, d_out, generator=generator) * (2 / d_in) ** 0.5  # He init for ReLU
        self.b = torch.zeros(d_out)
        self.x: Tensor | None = None
        self.grad_W: Tensor | None = None
        self.grad_b: Tensor | None = None

    def __repr__(self) -> str:
        return f"Linear({self.d_in}, {self.d_out})"

    def to(self, device: torch.device | str) -> "Linear":
        self.W, self.b = self.W.to(device), self.b.to(device)
        return self

    def forward(self, x: Tensor) -> Tensor:
        check_shape(f"{self!r} input", x, (None, self.d_in))
        self.x = self._keep(x)
        return x @ self.W + self.b

    def backward(self, grad: Tensor) -> Tensor:
        """Batch-mean gradients of W and b, one optimizer step on them, and the gradient for the input."""
        x = self._kept(self.x)
        check_shape(f"{self!r} output gradient", grad, (len(x), self.d_out))
        # Sum over the batch of the per-sample outer products x_i^T grad_i, then the batch mean.
        self.grad_W = x.T @ grad / len(x)
        self.grad_b = grad.mean(dim=0)
        grad_input = grad @ self.W.T  # with W before the update
        self.W = self.optimizer.update((self, "W"), self.W, self.grad_W)
        self.b = self.optimizer.update((self, "b"), self.b, self.grad_b)
        return grad_input


class ReLU(Layer):
    """max(x, 0), elementwise; the gradient passes where the input was positive."""

    def __init__(self):
        self.positive: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.positive = self._keep(x > 0)
        return x.clamp(min=0)

    def backward(self, grad: Tensor) -> Tensor:
        positive = self._kept(self.positive)
        check_shape("ReLU output gradient", grad, tuple(positive.shape))
        return grad * positive


class MSELoss(Layer):
    """Mean squared error over all elements; `backward()` starts the chain (per-sample gradients)."""

    def __init__(self):
        self.error: Tensor | None = None

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"MSELoss: prediction shape {tuple(pred.shape)} and target shape "
                             f"{tuple(target.shape)} differ")
        error = pred - target
        self.error = self._keep(error)
        return (error**2).mean()

    def backward(self) -> Tensor:
        """Per sample, the gradient of its own loss (its mean squared error) w.r.t. its prediction."""
        error = self._kept(self.error)
        return 2 * error / error[0].numel()
