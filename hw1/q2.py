"""hw1 q2: an MLP 2->100->100->1 with hand-written backpropagation predicting rainfall from 2-D
coordinates (Project1_data.pt), trained with a hand-written Adam (or plain SGD) whose step size decays
linearly to zero, a learning-rate sweep picked on validation MSE, and an equal torch.nn model trained
the same way (same initial weights, batches, torch.optim rule and schedule) for comparison."""

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from common.atomic_io import staged_folder, write_json, write_text
from common.cli import make_parser, positive, progress, report_written, run
from common.course_data import load_course_splits
from common.data_dir import require_file, resolve_data_dir
from common.device import machine_class, select_device
from common.distributed import launch_command
from common.errors import UserError
from common.plotting import new_figure, plot_curves, save_figure
from common.seeding import make_generator, seed_everything
from common.training import Optimization, fit, warmup_linear_decay
from hw1.layers import SGD, Adam, Linear, MSELoss, ReLU

SIZES = (2, 100, 100, 1)


OPTIMIZERS = {"adam": (Adam, torch.optim.Adam), "sgd": (SGD, torch.optim.SGD)}  # hand-written, torch.optim


class MLP:
    """Linear, ReLU, Linear, ReLU, Linear with hand-written backward, each Linear updating itself with
    the shared `optimizer`; weights drawn from `seed`."""

    def __init__(self, optimizer: SGD | Adam, seed: int):
        generator = make_generator(seed)
        self.optimizer = optimizer
        self.layers: list[Linear | ReLU] = []
        for d_in, d_out in zip(SIZES[:-1], SIZES[1:]):
            self.layers += [Linear(d_in, d_out, optimizer, generator), ReLU()]
        self.layers.pop()  # no ReLU after the output layer
        self.loss = MSELoss()

    def linears(self) -> list[Linear]:
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def to(self, device: torch.device | str) -> "MLP":
        for layer in self.linears():
            layer.to(device)
        return self

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def step(self, x: Tensor, y: Tensor) -> float:
        """One gradient-descent step on the batch (x, y); returns the batch MSE before the step."""
        for layer in (*self.layers, self.loss):
            layer.train()
        loss = self.loss.forward(self.forward(x), y)
        grad = self.loss.backward()
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return loss.item()

    def predict(self, x: Tensor) -> Tensor:
        """Outputs (N, 1) in eval mode: nothing is kept for a backward pass."""
        for layer in self.layers:
            layer.eval()
        return self.forward(x)


def torch_twin(mlp: MLP) -> nn.Sequential:
    """An nn.Sequential computing the same function as `mlp`, with a copy of its current weights."""
    modules: list[nn.Module] = []
    for layer in mlp.layers:
        if isinstance(layer, Linear):
            linear = nn.Linear(layer.d_in, layer.d_out, device=layer.W.device, dtype=layer.W.dtype)
            with torch.no_grad():
                linear.weight.copy_(layer.W.T)  # nn.Linear stores (d_out, d_in)
                linear.bias.copy_(layer.b)
            modules.append(linear)
        else:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def batches(x: Tensor, y: Tensor, batch_size: int, seed: int) -> DataLoader:
    """Shuffled mini-batches (x, y[:, None]); the same seed gives the same batches in the same order."""
    return DataLoader(TensorDataset(x, y[:, None]), batch_size=batch_size, shuffle=True,
                      generator=make_generator(seed))


def train_mlp(mlp: MLP, loader: DataLoader, x_val: Tensor, y_val: Tensor, *, epochs: int,
              quiet: bool = True) -> dict[str, list[float]]:
    """Mini-batch training for `epochs`, the step size decaying linearly from the optimizer's to zero
    (stopping if the loss blows up); returns the history in `common.training.fit`'s form: per epoch,
    the sample-weighted mean batch MSE and the val MSE."""
    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}
    peak, steps, step = mlp.optimizer.lr, epochs * len(loader), 0
    for epoch in progress(range(1, epochs + 1), desc="epochs", quiet=quiet, leave=False):
        total = 0.0
        for xb, yb in loader:
            mlp.optimizer.lr = peak * (steps - step) / steps  # as common.training.warmup_linear_decay
            total += mlp.step(xb, yb) * len(xb)
            step += 1
        history["epoch"].append(epoch)
        history["train_loss"].append(total / len(loader.dataset))
        history["val_loss"].append(((mlp.predict(x_val).ravel() - y_val) ** 2).mean().item())
        if not math.isfinite(history["train_loss"][-1]):
            break
    return history


def finite_or_none(value: float) -> float | None:
    """`value`, or None (JSON null) if it is inf or nan."""
    return value if math.isfinite(value) else None


def draw_map(mlp: MLP, x: Tensor, y: Tensor, path: Path, label: str) -> None:
    """The model's prediction over the square spanned by the inputs, beside the training points."""
    low, high = x.min().item(), x.max().item()
    axis = torch.linspace(low, high, 200)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    device = mlp.linears()[0].W.device
    surface = mlp.predict(grid.to(device)).reshape(len(axis), len(axis)).cpu()
    scale = {"cmap": "coolwarm", "vmin": y.min().item(), "vmax": y.max().item()}
    fig, axes = new_figure(2, panel_size=(4.4, 3.8))
    levels = torch.linspace(scale["vmin"], scale["vmax"], 25).tolist()
    axes[0, 0].contourf(axis.numpy(), axis.numpy(), surface.numpy().clip(levels[0], levels[-1]),
                        levels=levels, cmap=scale["cmap"])
    axes[0, 0].set_title(f"hand-written MLP prediction ({label})")
    points = axes[0, 1].scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=6, linewidths=0, **scale)
    axes[0, 1].set_title(f"training data ({len(x)} points)")
    for ax in axes[0]:
        ax.set(xlim=(low, high), ylim=(low, high), xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
        fig.colorbar(points, ax=ax, fraction=0.046, pad=0.04, label="rainfall")
    save_figure(fig, path)


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw1/results")
    parser.add_argument("--epochs", type=positive(), default=200, help="passes over the training points")
    parser.add_argument("--batch-size", type=positive(), default=32, help="points per step")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                        help="the update rule, written by hand in hw1/layers.py")
    parser.add_argument("--lrs", type=positive(float), nargs="+", default=[0.001, 0.003, 0.01, 0.03],
                        help="peak learning rates tried in the sweep")
    parser.set_defaults(seed=1)  # --seed: the initial weights and the batch order of every run
    args = parser.parse_args()
    torch.set_num_threads(1)  # matrices this small run fastest on one thread (no hand-offs between cores)
    device = select_device(args.device)
    splits = load_course_splits(require_file(resolve_data_dir(args.data_dir), "Project1_data.pt"),
                                feature_shape=(2,))
    x_train, y_train = (t.to(device) for t in splits["train"])
    x_val, y_val = (t.to(device) for t in splits["val"])
    x_test = splits["test"][0].to(device)
    seed_everything(args.seed)  # for completeness: weights and batches have their own generators
    with staged_folder(args.out_dir, announce=report_written) as out:
        # 1. Sweep the learning rate with the same initial weights and batches; pick on validation MSE.
        hand_rule, torch_rule = OPTIMIZERS[args.optimizer]
        sweep, histories, models = [], {}, {}
        for lr in progress(args.lrs, desc="sweep", quiet=args.quiet):
            mlp = MLP(hand_rule(lr), args.seed).to(device)
            history = train_mlp(mlp, batches(x_train, y_train, args.batch_size, args.seed), x_val, y_val,
                                epochs=args.epochs, quiet=args.quiet)
            histories[lr], models[lr] = history, mlp
            sweep.append({"lr": lr, "diverged": not math.isfinite(history["train_loss"][-1]),
                          "train_mse": finite_or_none(history["train_loss"][-1]),
                          "val_mse": finite_or_none(history["val_loss"][-1])})
            print(f"lr {lr:g}: train MSE {history['train_loss'][-1]:.4f}, "
                  f"val MSE {history['val_loss'][-1]:.4f}")
        finished = [row for row in sweep if row["val_mse"] is not None]
        if not finished:
            raise UserError(f"every learning rate in --lrs {' '.join(map(str, args.lrs))} diverged; "
                            "try smaller ones")
        best_lr = min(finished, key=lambda row: row["val_mse"])["lr"]
        mlp, history = models[best_lr], histories[best_lr]

        # 2. The same network in torch.nn: same initial weights, batches, rule and schedule, trained by fit().
        twin = torch_twin(MLP(hand_rule(best_lr), args.seed).to(device))
        val_loader = DataLoader(TensorDataset(x_val, y_val[:, None]), batch_size=1024)
        train_loader = batches(x_train, y_train, args.batch_size, args.seed)
        optimizer = torch_rule(twin.parameters(), lr=best_lr)
        schedule = warmup_linear_decay(optimizer, args.epochs * len(train_loader))
        twin_history = fit(twin, nn.MSELoss(), Optimization(optimizer, schedule), train_loader, val_loader,
                           epochs=args.epochs, desc=None)
        val_mse, twin_val_mse = history["val_loss"][-1], twin_history["val_loss"][-1]
        with torch.no_grad():
            gap = (mlp.predict(x_val) - twin(x_val)).abs().max().item()
        print(f"chosen lr {best_lr:g}: val MSE hand-written {val_mse:.5f}, torch.nn {twin_val_mse:.5f} "
              f"(largest prediction difference {gap:.2e})")

        fig, axes = new_figure(3)
        for ax, hist, title in ((axes[0, 0], history, "hand-written MLP"),
                                (axes[0, 1], twin_history, f"torch.nn twin (same init, batches, {args.optimizer})")):
            plot_curves(ax, hist, "loss", log=True)
            ax.set_ylabel("MSE")
            ax.set_title(f"{title}, lr {best_lr:g}")
        for lr, hist in histories.items():
            diverged = "" if math.isfinite(hist["val_loss"][-1]) else " (diverged)"
            axes[0, 2].plot(hist["epoch"], hist["val_loss"], label=f"lr {lr:g}{diverged}")
        axes[0, 2].set(yscale="log", xlabel="epoch", ylabel="validation MSE",
                       title="learning-rate sweep (hand-written)")
        axes[0, 2].grid(alpha=0.3)
        axes[0, 2].legend()
        save_figure(fig, out / "q2_loss.png")

        write_text(out / "q2_ytest.txt", "".join(f"{v:.6f}\n" for v in mlp.predict(x_test).ravel().tolist()))

        draw_map(mlp, x_train.cpu(), y_train.cpu(), out / "q2_map.png", f"lr {best_lr:g}")

        write_json(out / "q2_metrics.json", {
            "model": "MLP 2-100-100-1 (Linear, ReLU, Linear, ReLU, Linear), He-normal weights, zero biases",
            "optimiser": f"hand-written {args.optimizer}, step size decaying linearly to 0 over the run",
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
            "sweep": sweep, "chosen_lr": best_lr,
            "val_mse": {"hand_written": val_mse, "torch_nn": twin_val_mse,
                        "predicting_the_train_mean": ((y_val - y_train.mean()) ** 2).mean().item()},
            "train_mse_last_epoch": {"hand_written": history["train_loss"][-1],
                                     "torch_nn": twin_history["train_loss"][-1]},
            "val_max_abs_prediction_difference": gap,
            "wall_seconds": time.perf_counter() - began, "machine_class": machine_class(device),
            "command": launch_command("hw1/q2.py"),
        })


if __name__ == "__main__":
    run(main)
