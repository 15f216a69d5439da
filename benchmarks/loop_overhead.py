"""What the shared training loop costs a tiny model: steps per second of hw0 q3's MLP (141 parameters,
batch 32, AdamW, the linear-decay schedule) trained by a bare loop, by `common.training.fit` over
`TensorBatches`, and by `fit` over a DataLoader of a TensorDataset. One run, one machine: the ratios
to the bare loop are the figures to compare across machines."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.atomic_io import write_json
from common.cli import report_written, run
from common.device import report_machine
from common.tensor_batches import TensorBatches
from common.training import Optimization, fit, warmup_linear_decay
from hw0.q3 import make_mlp

N, BATCH = 2000, 32  # HW0_data.pt's training split, and a batch size of the sweep


def bare_loop(model: nn.Module, loader, optimizer, scheduler, epochs: int) -> None:
    """The least a training loop can do: forward, loss, backward, step, schedule."""
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()


def steps_per_second(loop: str, loader, epochs: int) -> float:
    model = make_mlp(seed=1, x_range=(-3.0, 3.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = warmup_linear_decay(optimizer, epochs * len(loader))
    began = time.perf_counter()
    if loop == "bare":
        bare_loop(model, loader, optimizer, scheduler, epochs)
    else:
        fit(model, nn.MSELoss(), Optimization(optimizer, scheduler), loader, None, epochs=epochs, desc=None)
    return epochs * len(loader) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of 63 steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per row; the fastest is kept")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    machine = report_machine(torch.device("cpu"), "fp32")
    x = torch.randn(N, 1, generator=torch.Generator().manual_seed(0))
    y = x**2
    loaders = {
        "bare loop, TensorBatches": ("bare", TensorBatches(x, y, batch_size=BATCH, generator=torch.Generator())),
        "fit, TensorBatches": ("fit", TensorBatches(x, y, batch_size=BATCH, generator=torch.Generator())),
        "fit, DataLoader(TensorDataset)": ("fit", DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)),
    }
    rows = dict.fromkeys(loaders, 0.0)
    for _ in range(args.repeats):  # round robin, so a slow spell of a shared machine hits every row
        for name, (loop, loader) in loaders.items():
            rows[name] = max(rows[name], steps_per_second(loop, loader, args.epochs))
    bare = rows["bare loop, TensorBatches"]
    print(f"{'loop':<32} {'steps/s':>8} {'of bare':>8}")
    for name, rate in rows.items():
        print(f"{name:<32} {rate:>8.0f} {rate / bare:>8.2f}")
    if args.out:
        write_json(args.out, {"machine": machine, "batch_size": BATCH, "steps_per_second": rows,
                              "command": "python benchmarks/loop_overhead.py " + " ".join(sys.argv[1:])})
        report_written(args.out)


if __name__ == "__main__":
    run(main)
