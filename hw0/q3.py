"""hw0 q3: an MLP 1->10->10->1 on HW0_data.pt. A coordinate search over batch size, learning rate and
epochs picks the setting on validation MSE and keeps going until no neighbour on any axis beats it,
so the choice is never the edge of what was tried; then the choice is trained with seeds 1-5."""

import csv
import io
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import matplotlib.ticker
import numpy as np
import torch
from torch import nn

from common.atomic_io import staged_folder, write_json, write_text
from common.checkpoint import save_checkpoint
from common.cli import make_parser, probability, progress, report_written, run, seed_number
from common.course_data import load_course_splits
from common.data_dir import require_file, resolve_data_dir
from common.device import machine_class, select_device
from common.distributed import launch_command
from common.errors import UserError
from common.plotting import new_figure, plot_scatter_fit, save_figure
from common.seeding import seed_everything
from common.tensor_batches import TensorBatches
from common.training import Optimization, fit, predict, warmup_linear_decay

# The values each axis of the search may take; it starts at START and moves one rung at a time.
LADDERS = {
    "batch_size": (16, 32, 64, 128, 256, 512, 1024),
    "lr": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
    "epochs": (50, 100, 200, 400, 800, 1600, 3200),
}
START = {"batch_size": 128, "lr": 0.03, "epochs": 400}
# A move must lower validation MSE by more than 2%: smaller gains are well inside the seed-to-seed
# spread (a standard deviation of about 6%) and do not pay for doubling a run.
MARGIN = 0.02


def make_mlp(seed: int, x_range: tuple[float, float], hidden: int = 10) -> nn.Sequential:
    """MLP 1 -> hidden -> hidden -> 1 with ReLU, weights ~ N(0, 1/fan_in). Each first-layer unit's kink
    sits at a point drawn uniformly from `x_range` (the training inputs' span): with zero biases all
    ten would sit at x = 0, and a fit that must move them out lands in a poor basin for many seeds."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(std=layer.in_features ** -0.5, generator=generator)
                layer.bias.zero_()
        low, high = x_range
        knots = low + (high - low) * torch.rand(hidden, generator=generator)
        model[0].bias.copy_(-model[0].weight[:, 0] * knots)  # relu(w x + b) bends where x = -b / w
    return model


def train_mlp(splits: dict, *, seed: int, batch_size: int, lr: float, epochs: int,
              device: torch.device) -> tuple[nn.Module, dict]:
    """Train one MLP with MSE + AdamW, the step size decaying linearly to zero; returns model, history."""
    seed_everything(seed)
    x, y = (t.to(device) for t in splits["train"])
    model = make_mlp(seed, (x.min().item(), x.max().item())).to(device)
    train_batches = TensorBatches(x[:, None], y[:, None], batch_size=batch_size,
                                  generator=torch.Generator().manual_seed(seed))
    x_val, y_val = (t.to(device) for t in splits["val"])
    val_batches = TensorBatches(x_val[:, None], y_val[:, None], batch_size=len(x_val))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    scheduler = warmup_linear_decay(optimizer, epochs * len(train_batches))
    history = fit(model, nn.MSELoss(), Optimization(optimizer, scheduler), train_batches, val_batches,
                  epochs=epochs, desc=None)
    return model, history


def coordinate_search(evaluate, start: dict, margin: float = MARGIN) -> tuple[dict, list[dict]]:
    """Move to the best neighbour (one rung up or down one axis) while one beats the current setting
    by more than the fraction `margin`; returns the final setting and every evaluated row. `evaluate(setting)`
    gives the validation MSE and is called once per setting."""
    rows: dict[tuple, dict] = {}

    def score(setting: dict) -> float:
        key = tuple(setting.values())
        if key not in rows:
            rows[key] = {**setting, **evaluate(setting)}
        return rows[key]["val_mse"]

    current, moved = dict(start), True
    while moved:
        moved = False
        for axis, ladder in LADDERS.items():
            rung = ladder.index(current[axis])
            neighbours = [{**current, axis: ladder[i]} for i in (rung - 1, rung + 1) if 0 <= i < len(ladder)]
            best = min(neighbours, key=score)
            if score(best) < score(current) * (1 - margin):
                current, moved = best, True
    return current, list(rows.values())


def at_ladder_end(setting: dict) -> list[str]:
    """The axes on which `setting` is the first or last rung (so one neighbour was never tried)."""
    return [axis for axis, ladder in LADDERS.items() if setting[axis] in (ladder[0], ladder[-1])]


def plot_search(rows: list[dict], chosen: dict, path: Path) -> None:
    """Heat map of validation MSE over batch size x learning rate at the chosen epochs, and validation
    MSE against epochs at the chosen batch size and learning rate."""
    fig, axes = new_figure(2, panel_size=(5.2, 4.2))
    at_epochs = [r for r in rows if r["epochs"] == chosen["epochs"]]
    sizes = sorted({r["batch_size"] for r in at_epochs})
    lrs = sorted({r["lr"] for r in at_epochs})
    grid = np.full((len(sizes), len(lrs)), np.nan)
    for r in at_epochs:
        grid[sizes.index(r["batch_size"]), lrs.index(r["lr"])] = r["val_mse"]
    image = axes[0, 0].imshow(grid, cmap="viridis_r", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            bold = "bold" if (sizes[i], lrs[j]) == (chosen["batch_size"], chosen["lr"]) else "normal"
            light = value < np.nanmin(grid) + 0.5 * (np.nanmax(grid) - np.nanmin(grid))  # low MSE: pale cells
            axes[0, 0].text(j, i, f"{value:.3f}", ha="center", va="center", color="black" if light else "white",
                            weight=bold)
    axes[0, 0].set(xticks=range(len(lrs)), xticklabels=[f"{lr:g}" for lr in lrs], xlabel="learning rate",
                   yticks=range(len(sizes)), yticklabels=sizes, ylabel="batch size",
                   title=f"validation MSE at {chosen['epochs']} epochs")
    fig.colorbar(image, ax=axes[0, 0])
    line = sorted((r["epochs"], r["val_mse"]) for r in rows
                  if (r["batch_size"], r["lr"]) == (chosen["batch_size"], chosen["lr"]))
    axes[0, 1].plot(*zip(*line), "o-")
    epochs = [e for e, _ in line]
    axes[0, 1].set(xscale="log", xlabel="epochs", ylabel="validation MSE",
                   title=f"batch {chosen['batch_size']}, lr {chosen['lr']:g}")
    axes[0, 1].set_xticks(epochs, [str(e) for e in epochs])  # each run's epochs, written out (not 2x10^2)
    axes[0, 1].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0, 1].grid(alpha=0.3)
    save_figure(fig, path)


def predict_values(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Model outputs for a 1-D tensor of inputs, as a 1-D tensor."""
    return predict(model, TensorBatches(x[:, None], torch.zeros(len(x)), batch_size=4096), device=device)[0].ravel()


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw0/results")
    for axis, ladder in LADDERS.items():
        parser.add_argument(f"--{axis.replace('_', '-')}", type=float if axis == "lr" else int,
                            default=START[axis], choices=ladder, metavar="V",
                            help=f"where the search starts on this axis, one of {' '.join(map(str, ladder))}")
    parser.add_argument("--margin", type=probability, default=MARGIN,
                        help="the search moves only to a setting whose validation MSE is lower by more "
                             "than this fraction (1 tries the start's neighbours and stays)")
    parser.add_argument("--seeds", type=seed_number, nargs="+", default=[1, 2, 3, 4, 5],
                        help="seeds the chosen setting is trained with")
    parser.set_defaults(seed=1)  # --seed: the seed of every search run
    args = parser.parse_args()
    device = select_device(args.device)
    splits = load_course_splits(require_file(resolve_data_dir(args.data_dir), "HW0_data.pt"))
    with staged_folder(args.out_dir, announce=report_written) as out:
        # 1. Coordinate search with --seed, then fill the batch x lr square around the choice for the map.
        bar, run_number = progress(desc="search runs", quiet=args.quiet), itertools.count(1)

        def evaluate(setting: dict) -> dict:
            _, history = train_mlp(splits, seed=args.seed, device=device, **setting)
            if not np.isfinite(history["val_loss"][-1]):
                raise UserError(f"the run {setting} ended with a non-finite validation MSE")
            bar.update(1)
            if not args.quiet:  # a line per run, also where no progress bar shows (a log, a pipe)
                print(f"search run {next(run_number)}: batch size {setting['batch_size']}, lr {setting['lr']:g}, "
                      f"{setting['epochs']} epochs: val MSE {history['val_loss'][-1]:.4f}", flush=True)
            return {"train_mse": history["train_loss"][-1], "val_mse": history["val_loss"][-1]}

        chosen, rows = coordinate_search(evaluate, {axis: getattr(args, axis) for axis in LADDERS}, args.margin)
        sizes, lrs = LADDERS["batch_size"], LADDERS["lr"]
        i, j = sizes.index(chosen["batch_size"]), lrs.index(chosen["lr"])
        for di, dj in ((-1, -1), (-1, 1), (1, -1), (1, 1)):  # the corners the search did not need
            if 0 <= i + di < len(sizes) and 0 <= j + dj < len(lrs):
                setting = {**chosen, "batch_size": sizes[i + di], "lr": lrs[j + dj]}
                if setting not in [{k: r[k] for k in LADDERS} for r in rows]:
                    rows.append({**setting, **evaluate(setting)})
        bar.close()
        edges = at_ladder_end(chosen)
        best = next(r for r in rows if all(r[k] == v for k, v in chosen.items()))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "train_mse": f"{row['train_mse']:.5f}", "val_mse": f"{row['val_mse']:.5f}"}
                         for row in rows)
        write_text(out / "q3_sweep.csv", table.getvalue())
        plot_search(rows, chosen, out / "q3_sweep.png")
        print(f"chosen on validation MSE after {len(rows)} runs: batch size {chosen['batch_size']}, "
              f"lr {chosen['lr']:g}, {chosen['epochs']} epochs (val MSE {best['val_mse']:.4f}, seed {args.seed}); "
              + (f"at the end of the range on {', '.join(edges)}" if edges else "interior on every axis"))

        # 2. Train the chosen setting with every seed; keep the lowest validation MSE.
        x_train, y_train = splits["train"]
        grid_x = torch.linspace(x_train.min().item(), x_train.max().item(), 400)
        curves, results = {}, []
        for seed in progress(args.seeds, desc="seeds", quiet=args.quiet):
            model, history = train_mlp(splits, seed=seed, device=device, **chosen)
            val_mse = history["val_loss"][-1]
            results.append((val_mse, seed, model))
            curves[f"seed {seed} (val MSE {val_mse:.3f})"] = (grid_x.numpy(),
                                                              predict_values(model, grid_x, device).cpu().numpy())
            print(f"seed {seed}: train MSE {history['train_loss'][-1]:.4f}, val MSE {val_mse:.4f}")
        val_mse, seed, model = min(results, key=lambda r: r[0])
        val_all = torch.tensor([r[0] for r in results])
        spread = val_all.std().item() if len(val_all) > 1 else 0.0
        print(f"validation MSE over seeds: mean {val_all.mean():.4f}, std {spread:.4f}; "
              f"best seed {seed} with {val_mse:.4f}")

        fig, axes = new_figure(panel_size=(8, 5))
        plot_scatter_fit(axes[0, 0], x_train.numpy(), y_train.numpy(), curves, points_label="training data")
        axes[0, 0].set_title(f"MLP 1-10-10-1, batch {chosen['batch_size']}, lr {chosen['lr']:g}, "
                             f"{chosen['epochs']} epochs")
        save_figure(fig, out / "q3_plot.png")
        config = {"hidden": 10, "seed": seed, **chosen, "val_mse": val_mse}
        save_checkpoint(out / "q3_model.pt", kind="hw0-q3-mlp", model=model, config=config)
        test_pred = predict_values(model, splits["test"][0], device)
        write_text(out / "q3_test_output.txt", "".join(f"{v:.6f}\n" for v in test_pred.tolist()))
        write_json(out / "q3_metrics.json", {
            "chosen": chosen, "search_runs": len(rows), "search_seed": args.seed,
            "at_end_of_range": edges, "margin": args.margin,
            "val_mse_by_seed": {str(s): v for v, s, _ in results},
            "val_mse_mean": val_all.mean().item(), "val_mse_std": spread,
            "best_seed": seed, "best_val_mse": val_mse,
            "wall_seconds": time.perf_counter() - began, "machine_class": machine_class(device),
            "command": launch_command("hw0/q3.py"),
        })


if __name__ == "__main__":
    run(main)
