"""hw2: check the hand-written batch normalization against PyTorch's in float64 (outputs, running
statistics, the three gradients in both backward forms, eval mode) and by central finite differences,
and time its forward+backward against PyTorch's own. Exits with status 1 if a check fails."""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
import torch.nn.functional as F
from torch import Tensor

from common.atomic_io import staged_folder, write_text
from common.cli import make_parser, positive, report_written, run
from common.device import machine_class
from common.seeding import make_generator
from hw2.batchnorm import BatchNormFunction, batchnorm_backward, batchnorm_backward_graph, batchnorm_forward

SHAPES = [(4, 3), (64, 16), (2, 3, 5, 5), (16, 8, 8, 8), (32, 64, 16, 16)]
TIMING_SHAPE = (32, 64, 16, 16)
MOMENTUM, EPS = 0.1, 1e-5
TOLERANCE = 1e-10  # against PyTorch, float64
FD_STEP, FD_POINTS = 1e-5, 200
FD_TOLERANCE = 1e-6  # central differences err by O(step^2) truncation + O(1e-16 sqrt(size) / step) rounding
COLUMNS = ["y", "run_mean", "run_var", "dx", "dgamma", "dbeta", "graph", "eval", "fin_diff"]


def random_inputs(shape: tuple[int, ...], generator: torch.Generator,
                  dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """x with a per-channel offset and scale, gamma, beta, an upstream gradient dy, running stats."""
    c = shape[1]

    def draw(*size: int) -> Tensor:
        return torch.randn(size, generator=generator, dtype=dtype)
    view = (1, c, *[1] * (len(shape) - 2))
    return {"x": draw(*shape) * (draw(c).exp() * 2).view(view) + (draw(c) * 3).view(view),
            "gamma": draw(c) + 1, "beta": draw(c), "dy": draw(*shape),
            "running_mean": draw(c), "running_var": draw(c).exp()}


def torch_reference(t: dict[str, Tensor], training: bool) -> dict[str, Tensor]:
    """F.batch_norm's output, updated running statistics and autograd's three gradients."""
    x, gamma, beta = (t[k].clone().requires_grad_(True) for k in ("x", "gamma", "beta"))
    running_mean, running_var = t["running_mean"].clone(), t["running_var"].clone()
    y = F.batch_norm(x, running_mean, running_var, gamma, beta, training, MOMENTUM, EPS)
    y.backward(t["dy"])
    return {"y": y.detach(), "run_mean": running_mean, "run_var": running_var,
            "dx": x.grad, "dgamma": gamma.grad, "dbeta": beta.grad}


def hand_written(t: dict[str, Tensor], training: bool) -> tuple[dict[str, Tensor], tuple[Tensor, ...]]:
    """The same quantities from batchnorm_forward/backward, and the graph-form gradients (training)."""
    running_mean, running_var = t["running_mean"].clone(), t["running_var"].clone()
    y, cache = batchnorm_forward(t["x"], t["gamma"], t["beta"], running_mean, running_var,
                                 training=training, momentum=MOMENTUM, eps=EPS)
    dx, dgamma, dbeta = batchnorm_backward(t["dy"], cache)
    graph = batchnorm_backward_graph(t["dy"], cache) if training else ()
    return ({"y": y, "run_mean": running_mean, "run_var": running_var,
             "dx": dx, "dgamma": dgamma, "dbeta": dbeta}, graph)


def max_diff(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


def finite_difference_error(t: dict[str, Tensor], grads: dict[str, Tensor],
                            generator: torch.Generator) -> float:
    """Largest |central difference - hand-written gradient| of L = sum(y * dy), at FD_POINTS random
    entries of x (all if fewer) and every entry of gamma and beta."""
    def loss_change(name: str, index: int) -> float:
        values = []
        for sign in (1, -1):
            moved = dict(t)
            moved[name] = t[name].clone()
            moved[name].view(-1)[index] += sign * FD_STEP
            values.append(batchnorm_forward(moved["x"], moved["gamma"], moved["beta"], eps=EPS)[0])
        return ((values[0] - values[1]) * t["dy"]).sum().item() / (2 * FD_STEP)

    n = t["x"].numel()
    x_points = torch.randperm(n, generator=generator)[:FD_POINTS].tolist()
    worst = 0.0
    for name, points in (("x", x_points), ("gamma", range(len(t["gamma"]))), ("beta", range(len(t["beta"])))):
        grad = grads["d" + name].reshape(-1)
        worst = max(worst, *(abs(loss_change(name, i) - grad[i].item()) for i in points))
    return worst


def check_shape(shape: tuple[int, ...], generator: torch.Generator) -> dict[str, float]:
    """Every column of the table for one shape."""
    t = random_inputs(shape, generator)
    reference = torch_reference(t, training=True)
    hand, graph = hand_written(t, training=True)
    row = {name: max_diff(hand[name], reference[name]) for name in reference}
    row["graph"] = max(max_diff(g, reference[name]) for g, name in zip(graph, ("dx", "dgamma", "dbeta")))
    eval_reference, (eval_hand, _) = torch_reference(t, training=False), hand_written(t, training=False)
    row["eval"] = max(max_diff(eval_hand[name], eval_reference[name]) for name in eval_reference)
    row["fin_diff"] = finite_difference_error(t, hand, generator)
    return row


def time_forward_backward(shape: tuple[int, ...], repeats: int, generator: torch.Generator
                          ) -> list[list[float]]:
    """Seconds of each forward+backward in float32 (training mode): [hand-written runs, PyTorch runs]."""
    t = random_inputs(shape, generator, torch.float32)
    x, gamma, beta = (t[k].requires_grad_(True) for k in ("x", "gamma", "beta"))
    args = (t["running_mean"], t["running_var"], True, MOMENTUM, EPS)
    hand = lambda: BatchNormFunction.apply(x, gamma, beta, *args)  # noqa: E731
    pytorch = lambda: F.batch_norm(x, args[0], args[1], gamma, beta, *args[2:])  # noqa: E731
    seconds: list[list[float]] = [[], []]
    for _ in range(repeats + 3):  # three warm-up rounds; alternating, so both see the same machine load
        for forward, times in zip((hand, pytorch), seconds):
            began = time.perf_counter()
            forward().backward(t["dy"])
            times.append(time.perf_counter() - began)
    return [times[3:] for times in seconds]


def main() -> None:
    parser = make_parser(__doc__, "hw2/results", data=False, device=False)
    parser.add_argument("--quick", action="store_true", help="skip the largest shape (for tests)")
    parser.add_argument("--repeats", type=positive(), default=30,
                        help="timed runs of each; the fastest and the median are reported")
    args = parser.parse_args()
    generator = make_generator(args.seed)
    shapes = SHAPES[:-1] if args.quick else SHAPES

    lines = [f"hand-written batch normalization vs F.batch_norm + autograd, float64, momentum {MOMENTUM}, "
             f"eps {EPS:g}",
             "largest |difference| in training mode of y, running mean and variance, dx, dgamma, dbeta;",
             "graph: the step-by-step backward (its three gradients); eval: eval mode (y and the gradients);",
             f"fin_diff: central differences (step {FD_STEP:g}) of sum(y * dy) against the hand-written "
             f"gradient at {FD_POINTS} entries of x and all of gamma, beta", "",
             f"{'shape':<18}" + "".join(f"{name:>10}" for name in COLUMNS)]
    rows = []
    for shape in shapes:
        rows.append(check_shape(shape, generator))
        lines.append(f"{str(shape):<18}" + "".join(f"{rows[-1][name]:>10.1e}" for name in COLUMNS))
    worst = max(row[name] for row in rows for name in COLUMNS[:-1])
    worst_fd = max(row["fin_diff"] for row in rows)
    passed = worst < TOLERANCE and worst_fd < FD_TOLERANCE
    hand_s, torch_s = time_forward_backward(TIMING_SHAPE, args.repeats, generator)
    ms = lambda times, pick: f"{1e3 * pick(times):.2f} ms"  # noqa: E731
    lines += ["",
              f"largest difference from PyTorch: {worst:.1e} (threshold {TOLERANCE:g}): "
              f"{'PASS' if worst < TOLERANCE else 'FAIL'}",
              f"largest finite-difference error: {worst_fd:.1e} (threshold {FD_TOLERANCE:g}): "
              f"{'PASS' if worst_fd < FD_TOLERANCE else 'FAIL'}",
              f"forward+backward, float32, {TIMING_SHAPE}, {args.repeats} runs each on "
              f"{machine_class(torch.device('cpu'))}: fastest hand-written {ms(hand_s, min)}, PyTorch "
              f"{ms(torch_s, min)}, ratio {min(hand_s) / min(torch_s):.2f}; median hand-written "
              f"{ms(hand_s, statistics.median)}, PyTorch {ms(torch_s, statistics.median)}, ratio "
              f"{statistics.median(hand_s) / statistics.median(torch_s):.2f}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with staged_folder(args.out_dir, announce=report_written) as out:
        write_text(out / "check.txt", text)
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
