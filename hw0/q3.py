"""hw0 q3: an MLP 1->10->10->1 on HW0_data.pt, a batch-size x learning-rate sweep picked on validation
MSE, then the chosen setting trained with seeds 1-5."""

import csv
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.atomic_io import staged_folder, write_json, write_text
from common.checkpoint import save_checkpoint
from common.cli import make_parser, positive, report_written, run
from common.course_data import load_course_splits
from common.data_dir import require_file, resolve_data_dir
from common.device import select_device
from common.plotting import new_figure, plot_scatter_fit, save_figure
from common.progress import progress
from common.schedules import warmup_linear_decay
from common.seeding import seed_everything
from common.training import fit, predict


def make_mlp(seed: int, hidden: int = 10) -> nn.Sequential:
    """MLP 1 -> hidden -> hidden -> 1 with ReLU; weights ~ N(0, 1/fan_in) and zero biases after seeding."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 1))
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
            nn.init.zeros_(layer.bias)
    return model


def train_mlp(splits: dict, *, seed: int, batch_size: int, lr: float, epochs: int,
              device: torch.device) -> tuple[nn.Module, dict]:
    """Train one MLP with MSE + AdamW, the step size decaying linearly to zero; returns model, history."""
    loader_rng = seed_everything(seed)
    model = make_mlp(seed).to(device)
    x, y = splits["train"]
    train_loader = DataLoader(TensorDataset(x[:, None], y[:, None]), batch_size=batch_size,
                              shuffle=True, generator=loader_rng)
    x_val, y_val = splits["val"]
    val_loader = DataLoader(TensorDataset(x_val[:, None], y_val[:, None]), batch_size=1024)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * len(train_loader)
    scheduler = warmup_linear_decay(optimizer, steps)
    history = fit(model, optimizer, nn.MSELoss(), train_loader, val_loader, epochs=epochs,
                  device=device, scheduler=scheduler, quiet=True)
    return model, history


def predict_values(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Model outputs for a 1-D tensor of inputs, as a 1-D tensor."""
    loader = DataLoader(TensorDataset(x[:, None], torch.zeros(len(x))), batch_size=1024)
    return predict(model, loader, device=device)[0].ravel()


def main() -> None:
    parser = make_parser(__doc__, "hw0/results")
    parser.add_argument("--epochs", type=positive(), default=100)
    parser.add_argument("--batch-sizes", type=positive(), nargs="+", default=[16, 64, 256],
                        help="batch sizes tried in the sweep")
    parser.add_argument("--lrs", type=positive(float), nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2],
                        help="AdamW learning rates tried in the sweep")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="seeds the chosen setting is trained with")
    parser.set_defaults(seed=1)  # --seed: the seed of every sweep run
    args = parser.parse_args()
    device = select_device(args.device)
    splits = load_course_splits(require_file(resolve_data_dir(args.data_dir), "HW0_data.pt"))
    with staged_folder(args.out_dir, announce=report_written) as out:
        # 1. Sweep batch size x learning rate with --seed, pick the lowest validation MSE.
        grid = [(b, lr) for b in args.batch_sizes for lr in args.lrs]
        rows = []
        for batch_size, lr in progress(grid, desc="sweep", quiet=args.quiet):
            _, history = train_mlp(splits, seed=args.seed, batch_size=batch_size, lr=lr,
                                   epochs=args.epochs, device=device)
            rows.append({"batch_size": batch_size, "lr": lr, "train_mse": history["train_loss"][-1],
                         "val_mse": history["val_loss"][-1]})
        best = min(rows, key=lambda row: row["val_mse"])
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "train_mse": f"{row['train_mse']:.5f}", "val_mse": f"{row['val_mse']:.5f}"}
                         for row in rows)
        write_text(out / "q3_sweep.csv", table.getvalue())
        print(f"chosen on validation MSE: batch size {best['batch_size']}, lr {best['lr']:g} "
              f"(val MSE {best['val_mse']:.4f}, seed {args.seed})")

        # 2. Train the chosen setting with every seed; keep the lowest validation MSE.
        x_train, y_train = splits["train"]
        grid_x = torch.linspace(x_train.min().item(), x_train.max().item(), 400)
        curves, results = {}, []
        for seed in progress(args.seeds, desc="seeds", quiet=args.quiet):
            model, history = train_mlp(splits, seed=seed, batch_size=best["batch_size"], lr=best["lr"],
                                       epochs=args.epochs, device=device)
            val_mse = history["val_loss"][-1]
            results.append((val_mse, seed, model))
            curves[f"seed {seed} (val MSE {val_mse:.3f})"] = (grid_x.numpy(),
                                                              predict_values(model, grid_x, device).numpy())
            print(f"seed {seed}: train MSE {history['train_loss'][-1]:.4f}, val MSE {val_mse:.4f}")
        val_mse, seed, model = min(results, key=lambda r: r[0])
        val_all = torch.tensor([r[0] for r in results])
        print(f"validation MSE over seeds: mean {val_all.mean():.4f}, std {val_all.std():.4f}; "
              f"best seed {seed} with {val_mse:.4f}")

        fig, axes = new_figure(panel_size=(8, 5))
        plot_scatter_fit(axes[0, 0], x_train.numpy(), y_train.numpy(), curves, points_label="training data")
        axes[0, 0].set_title(f"MLP 1-10-10-1, batch {best['batch_size']}, lr {best['lr']:g}, "
                             f"{args.epochs} epochs")
        save_figure(fig, out / "q3_plot.png")
        config = {"hidden": 10, "seed": seed, "batch_size": best["batch_size"], "lr": best["lr"],
                  "epochs": args.epochs, "val_mse": val_mse}
        save_checkpoint(out / "q3_model.pt", kind="hw0-q3-mlp", model=model, config=config)
        test_pred = predict_values(model, splits["test"][0], device)
        write_text(out / "q3_test_output.txt", "".join(f"{v:.6f}\n" for v in test_pred.tolist()))
        write_json(out / "q3_metrics.json", {
            "chosen": {"batch_size": best["batch_size"], "lr": best["lr"], "epochs": args.epochs},
            "val_mse_by_seed": {str(s): v for v, s, _ in results},
            "val_mse_mean": val_all.mean().item(), "val_mse_std": val_all.std().item(),
            "best_seed": seed, "best_val_mse": val_mse,
            "command": "python hw0/q3.py " + " ".join(sys.argv[1:]),
        })


if __name__ == "__main__":
    run(main)
