"""hw0 q2: a Dataset/DataLoader/model pipeline that recovers alpha and beta of y = alpha*x + beta + e."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from common.atomic_io import staged_folder, write_text
from common.checkpoint import save_checkpoint
from common.cli import add_training_args, finite, make_parser, non_negative, positive, report_written, run, seed_number
from common.device import select_device
from common.distributed import launch_command
from common.plotting import new_figure, plot_curves, plot_scatter_fit, save_figure
from common.seeding import seed_everything
from common.training import Optimization, evaluate, fit, warmup_linear_decay

SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}


class LinearData(Dataset):
    """`n` pairs (x, y) with x, e ~ N(0, 1) and y = alpha*x + beta + e; each split has its own seed."""

    def __init__(self, n: int, split: str, alpha: float, beta: float):
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
        generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        self.x = torch.randn(n, 1, generator=generator)
        noise = torch.randn(n, 1, generator=generator)
        self.y = alpha * self.x + beta + noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def make_model(seed: int) -> nn.Linear:
    """nn.Linear(1, 1) with xavier-normal weight and zero bias, drawn from its own seed."""
    model = nn.Linear(1, 1)
    generator = torch.Generator().manual_seed(seed)
    nn.init.xavier_normal_(model.weight, generator=generator)
    nn.init.zeros_(model.bias)
    return model


def fit_line(*, n_train: int, n_val: int, alpha: float, beta: float, epochs: int, batch_size: int,
             lr: float, weight_decay: float = 0.01, seed: int = 0, model_seed: int = 1,
             device: torch.device = torch.device("cpu"),
             quiet: bool = True) -> tuple[nn.Linear, dict, dict[str, LinearData]]:
    """Fit nn.Linear(1, 1) to LinearData with MSE + AdamW (step size decaying linearly to zero).
    Returns the model, its history, and the train/val datasets."""
    loader_rng = seed_everything(seed)
    data = {"train": LinearData(n_train, "train", alpha, beta), "val": LinearData(n_val, "val", alpha, beta)}
    train_loader = DataLoader(data["train"], batch_size=batch_size, shuffle=True, generator=loader_rng)
    val_loader = DataLoader(data["val"], batch_size=1024)
    model = make_model(model_seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    # Decay the step size to zero so Adam's noisy last steps do not jitter the estimate.
    steps = epochs * len(train_loader)
    scheduler = warmup_linear_decay(optimizer, steps)
    history = fit(model, nn.MSELoss(), Optimization(optimizer, scheduler), train_loader, val_loader,
                  epochs=epochs, desc=None if quiet else "")
    return model.cpu(), history, data


def main() -> None:
    parser = make_parser(__doc__, "hw0/results", data=False)
    parser.add_argument("--alpha", type=finite, default=2.0, help="true slope")
    parser.add_argument("--beta", type=finite, default=1.0, help="true intercept")
    parser.add_argument("--n-train", type=positive(), default=10_000, help="training points drawn")
    parser.add_argument("--n-val", type=positive(), default=2_000, help="validation points drawn")
    parser.add_argument("--n-test", type=positive(), default=2_000, help="test points drawn")
    parser.add_argument("--model-seed", type=seed_number, default=1, help="seed of the weight initialisation")
    parser.add_argument("--weight-decay", type=non_negative, default=0.01, help="AdamW decoupled weight decay")
    add_training_args(parser, epochs=20, batch_size=64, lr=0.02, resume=False)
    args = parser.parse_args()

    model, history, data = fit_line(
        n_train=args.n_train, n_val=args.n_val, alpha=args.alpha, beta=args.beta, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        model_seed=args.model_seed, device=select_device(args.device),
        quiet=args.quiet)
    alpha_hat, beta_hat = model.weight.item(), model.bias.item()
    x, y = data["train"].x, data["train"].y
    noise_std = (y - (alpha_hat * x + beta_hat)).std().item()
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    alpha_ls, beta_ls = torch.linalg.lstsq(design, y).solution.ravel().tolist()
    test = LinearData(args.n_test, "test", args.alpha, args.beta)
    test_mse = evaluate(model, DataLoader(test, batch_size=1024), nn.MSELoss(),
                        device=torch.device("cpu"))["loss"]
    with staged_folder(args.out_dir, announce=report_written) as out:
        save_checkpoint(out / "q2_model.pt", kind="hw0-q2-linear", model=model,
                        config={"alpha": args.alpha, "beta": args.beta})
        write_text(out / "q2_params.txt", "\n".join([
            f"{'quantity':<12}{'true':>10}{'estimated':>12}{'least squares':>16}",
            f"{'alpha':<12}{args.alpha:>10.4f}{alpha_hat:>12.4f}{alpha_ls:>16.4f}",
            f"{'beta':<12}{args.beta:>10.4f}{beta_hat:>12.4f}{beta_ls:>16.4f}",
            f"{'noise std':<12}{1.0:>10.4f}{noise_std:>12.4f}",
            "",
            "estimated: AdamW on the MSE; least squares: the closed-form optimum on the same training",
            "data, so estimated - least squares is optimisation error and least squares - true is noise.",
            "noise std: std of the training residuals y - (alpha x + beta); under the other reading of",
            "the handout (y = alpha x + beta e) the intercept would come out near 0 and this std near beta.",
            "",
            f"final train MSE   {history['train_loss'][-1]:.4f}",
            f"final val MSE     {history['val_loss'][-1]:.4f}",
            f"test MSE          {test_mse:.4f}",
            "",
            f"command: {launch_command('hw0/q2.py')}",
            "",
        ]))

        fig, ((ax_loss, ax_fit),) = new_figure(2)
        plot_curves(ax_loss, history, "loss")
        ax_loss.set_ylabel("MSE")
        ax_loss.set_title("training and validation loss")
        grid = torch.linspace(x.min().item(), x.max().item(), 100)
        plot_scatter_fit(ax_fit, x.numpy(), y.numpy(), {
            f"fit: y = {alpha_hat:.3f}x + {beta_hat:.3f}": (grid.numpy(), (alpha_hat * grid + beta_hat).numpy()),
            f"truth: y = {args.alpha:g}x + {args.beta:g}": (grid.numpy(), (args.alpha * grid + args.beta).numpy()),
        }, points_label="training data")
        ax_fit.set_title("fitted line over the training data")
        save_figure(fig, out / "q2_plot.png")
        print(f"alpha {alpha_hat:.4f} (true {args.alpha}), beta {beta_hat:.4f} (true {args.beta}), "
              f"noise std {noise_std:.4f}, val MSE {history['val_loss'][-1]:.4f}")


if __name__ == "__main__":
    run(main)
