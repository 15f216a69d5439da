"""hw1 q1: gradient descent with a hand-derived gradient on the spiral y = r^2 (sin^2(6 theta + 2r) + 1),
every step size x seed, each trajectory drawn over the loss landscape."""

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.contour import ContourSet
from torch import Tensor

from common.atomic_io import staged_folder, write_text
from common.cli import make_parser, positive, progress, report_written, run
from common.plotting import new_figure, save_figure
from common.seeding import make_generator

VIEW = 5.0  # starts are uniform in [-VIEW, VIEW]^2, and every plot shows that square
ESCAPE = 1e3  # beyond this distance from the origin a run is no longer followed
CONVERGED = 1e-6  # a gradient norm below this ends a run (|x| is then below 5e-7)


def spiral(x: Tensor) -> Tensor:
    """y = r^2 (sin^2(6 theta + 2r) + 1) for points x of shape (..., 2); theta = atan2, so y(0) = 0."""
    r = x.norm(dim=-1)
    theta = torch.atan2(x[..., 1], x[..., 0])
    return r**2 * (torch.sin(6 * theta + 2 * r) ** 2 + 1)


def spiral_grad(x: Tensor) -> Tensor:
    """dy/dx by the chain rule (derived in hw1/README.md); no division by r, so it is 0 at the origin."""
    x1, x2 = x[..., 0], x[..., 1]
    r = x.norm(dim=-1)
    u = 6 * torch.atan2(x2, x1) + 2 * r
    sin2u = torch.sin(2 * u)
    radial = 2 * (torch.sin(u) ** 2 + 1) + 2 * r * sin2u  # (dy/dr) / r
    return torch.stack([radial * x1 - 6 * sin2u * x2, radial * x2 + 6 * sin2u * x1], dim=-1)


@dataclass
class Trajectory:
    """The points one descent visited, shape (steps + 1, 2), and how it ended."""

    path: Tensor
    status: str  # "converged", "max steps" or "escaped"
    left_view_at: int | None  # the first step that landed outside the view, if any

    @property
    def steps(self) -> int:
        return len(self.path) - 1

    def describe(self) -> str:
        """How the run ended, in a few words."""
        if self.status == "escaped":
            return f"left view at step {self.left_view_at}, |x| > {ESCAPE:g} at step {self.steps}"
        left = "" if self.left_view_at is None else f", left view at step {self.left_view_at}"
        return f"{self.status} after {self.steps} steps{left}"


def start_point(seed: int) -> Tensor:
    """A float64 start drawn uniformly from [-VIEW, VIEW]^2 with its own generator."""
    return (torch.rand(2, generator=make_generator(seed), dtype=torch.float64) * 2 - 1) * VIEW


def descend(x0: Tensor, lr: float, steps: int) -> Trajectory:
    """x_t = x_{t-1} - lr dy/dx for up to `steps` steps; stops early on convergence or escape."""
    points, left_view_at = [x0], None
    x = x0
    for step in range(1, steps + 1):
        grad = spiral_grad(x)
        if grad.norm() < CONVERGED:
            return Trajectory(torch.stack(points), "converged", left_view_at)
        x = x - lr * grad
        if not torch.isfinite(x).all():  # only a huge step size gets here: keep the last finite point
            return Trajectory(torch.stack(points), "escaped", left_view_at or step)
        points.append(x)
        if left_view_at is None and x.abs().max() > VIEW:
            left_view_at = step
        if x.norm() > ESCAPE:
            return Trajectory(torch.stack(points), "escaped", left_view_at)
    return Trajectory(torch.stack(points), "max steps", left_view_at)


def landscape(points: int = 300) -> tuple[np.ndarray, ...]:
    """y on a grid over the view, and contour levels spaced evenly in sqrt(y) to show the centre."""
    axis = torch.linspace(-VIEW, VIEW, points, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(axis, axis, indexing="xy")
    values = spiral(torch.stack([grid_x, grid_y], dim=-1))
    levels = np.linspace(0, values.max().sqrt().item(), 16) ** 2
    return grid_x.numpy(), grid_y.numpy(), values.numpy(), levels


def draw_trajectory(ax: Axes, surface: tuple[np.ndarray, ...], trajectory: Trajectory, title: str, *,
                    labels: bool) -> ContourSet:
    """Contours of y over the view, the steps as arrows, the start (circle) and end (star) marked;
    returns the contours, for a colour bar."""
    grid_x, grid_y, values, levels = surface
    contours = ax.contourf(grid_x, grid_y, values, levels=levels, cmap="viridis")
    path = trajectory.path.numpy()
    step = path[1:] - path[:-1]
    ax.quiver(path[:-1, 0], path[:-1, 1], step[:, 0], step[:, 1], angles="xy", scale_units="xy",
              scale=1, color="red", width=0.006, headwidth=4, headlength=5)
    ax.plot(*path[0], "o", color="white", mec="black", ms=5)
    if abs(path[-1]).max() <= VIEW:
        ax.plot(*path[-1], "*", color="red", mec="black", ms=9)
    ax.set(xlim=(-VIEW, VIEW), ylim=(-VIEW, VIEW), aspect="equal")
    ax.set_title(f"{title}\n{trajectory.describe()}", fontsize=8 if labels else 5.5)
    if labels:
        ax.set(xlabel="$x_1$", ylabel="$x_2$")
    else:
        ax.set(xticks=[], yticks=[])
    return contours


def endpoint_table(runs: dict[tuple[float, int], Trajectory]) -> str:
    """CSV of where each (lr, seed) run started and ended (y, distance to the origin), its steps, how
    many of them went uphill, and how it ended."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["lr", "seed", "start_x1", "start_x2", "start_y", "end_x1", "end_x2", "final_y",
                     "distance_to_origin", "steps", "uphill_steps", "status", "left_view_at_step"])
    for (lr, seed), trajectory in runs.items():
        values = spiral(trajectory.path)
        (x1, x2), (end_x1, end_x2) = trajectory.path[0].tolist(), trajectory.path[-1].tolist()
        writer.writerow([f"{lr:g}", seed, f"{x1:.4f}", f"{x2:.4f}", f"{values[0]:.4g}", f"{end_x1:.4g}",
                         f"{end_x2:.4g}", f"{values[-1]:.4g}", f"{trajectory.path[-1].norm():.4g}",
                         trajectory.steps, int((values[1:] > values[:-1]).sum()), trajectory.status,
                         "" if trajectory.left_view_at is None else trajectory.left_view_at])
    return table.getvalue()


def main() -> None:
    parser = make_parser(__doc__, "hw1/results", data=False, device=False)  # float64 on the CPU
    parser.add_argument("--lrs", type=positive(float), nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1],
                        help="step sizes lambda")
    parser.add_argument("--runs", type=positive(), default=5,
                        help="start points per step size, drawn with seeds --seed, --seed + 1, ...")
    parser.add_argument("--steps", type=positive(), default=1000, help="most descent steps per run")
    parser.set_defaults(seed=1)
    args = parser.parse_args()
    seeds = list(range(args.seed, args.seed + args.runs))
    with staged_folder(args.out_dir, announce=report_written) as out:
        surface = landscape()
        runs = {}
        for lr, seed in progress([(lr, s) for lr in args.lrs for s in seeds], desc="runs", quiet=args.quiet):
            runs[lr, seed] = trajectory = descend(start_point(seed), lr, args.steps)
            fig, axes = new_figure(panel_size=(3.2, 3.3))
            contours = draw_trajectory(axes[0, 0], surface, trajectory, f"λ = {lr:g}, seed {seed}", labels=True)
            fig.colorbar(contours, ax=axes[0, 0], label="y", shrink=0.8)
            path = out / "plots" / f"q1_{lr:g}_{seed}.png"
            save_figure(fig, path)

        fig, axes = new_figure(len(seeds), len(args.lrs), panel_size=(1.9, 2.0))
        for ax, ((lr, seed), trajectory) in zip(axes.ravel(), runs.items()):
            contours = draw_trajectory(ax, surface, trajectory, f"λ = {lr:g}, seed {seed}", labels=False)
        fig.set_layout_engine("constrained")  # room for one colour bar beside all the panels
        fig.colorbar(contours, ax=axes, label="y", shrink=0.6)
        fig.suptitle("gradient descent on y = r²(sin²(6θ + 2r) + 1): step size λ by row, seed by column")
        save_figure(fig, out / "q1_grid.png")
        write_text(out / "q1_endpoints.csv", endpoint_table(runs))
        for (lr, seed), trajectory in runs.items():
            end = trajectory.path[-1]
            print(f"lr {lr:<7g} seed {seed}: y {spiral(end).item():10.4g}, |x| {end.norm().item():8.4g}, "
                  f"{trajectory.describe()}")


if __name__ == "__main__":
    run(main)
