"""Where the time of hw3's default run goes: loading the data, then per training step making the batch
(normalize, flip, crop), the forward pass, the backward pass and the optimizer step, then evaluation
and the figures. Each phase is timed on a sample of steps with the recipe's own network, optimizer,
loss and precision, and scaled to the whole run; the sum is set beside the run's recorded wall time.
Run it on a quiet machine (one job at a time): every phase is a wall-clock measurement."""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts: huge pages, as hw3/train.py runs

import torch
from torch import nn

from common.atomic_io import write_json
from common.cifar import CifarBatches, channel_stats, load_cifar10, split_train_val
from common.cli import number, recipe_from, report_written, run
from common.data_dir import resolve_data_dir
from common.device import autocast, report_machine
from common.metrics import confusion_matrix
from common.plotting import plot_confusion_matrix, plot_member_histories
from hw3.model import ModelConfig, predict_logits
from hw3.train import RECIPES, Recipe, make_optimizer, parse_args


def timed(phases: dict[str, float], name: str, began: float) -> float:
    """Add the seconds since `began` to `phases[name]`; return now."""
    now = time.perf_counter()
    phases[name] = phases.get(name, 0.0) + now - began
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="as the hw scripts' --data-dir (default: $CSE849_DATA, else data/)")
    parser.add_argument("--steps", type=number(int, 2, 10_000), default=60,
                        help="training steps timed (after 3 unmeasured ones); the rest of the run is scaled")
    parser.add_argument("--limit", type=number(int, 20), help="use only this many images per split (a smoke run)")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file (under runs/, say)")
    options = parser.parse_args()
    command = "python benchmarks/profile_hw3.py " + " ".join(sys.argv[1:])
    sys.argv = ["hw3/train.py", "--device", "cpu"] + (["--limit", str(options.limit)] if options.limit else [])
    args = parse_args()  # the default recipe, exactly as train.py parses it
    recipe = recipe_from(vars(args), Recipe)
    machine = report_machine(torch.device("cpu"), args.precision)
    precision, device = machine["precision"], torch.device("cpu")

    phases: dict[str, float] = {}
    began = time.perf_counter()
    full = load_cifar10(resolve_data_dir(options.data_dir), "train", limit=options.limit)
    test = load_cifar10(resolve_data_dir(options.data_dir), "test", limit=options.limit)
    train, val = split_train_val(full, args.val_size, seed=args.seed)
    mean, std = channel_stats(train.images)
    timed(phases, "load data (warm cache)", began)

    loader = CifarBatches(train, batch_size=recipe.batch_size, train=True, seed=args.seed, mean=mean, std=std,
                          crop_padding=recipe.crop_padding, flip=recipe.flip, device=device)
    config = ModelConfig(model=args.model, widths=recipe.widths, classes=train.classes, mean=mean, std=std,
                         tta=recipe.tta, members=recipe.members)
    model = config.member().to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, recipe, len(loader), precision)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    step_phases: dict[str, float] = {}
    batches = iter(loader)
    model.train()
    for step in range(options.steps + 3):
        sample = step_phases if step >= 3 else {}  # the first steps warm the allocator and kernels up
        now = time.perf_counter()
        images, labels = next(batches, (None, None))
        if images is None:  # a short (--limit) epoch: the next one
            batches = iter(loader)
            images, labels = next(batches)
        now = timed(sample, "make the batch (normalize, flip, crop)", now)
        with autocast(device, precision):
            loss = loss_fn(model(images), labels)
        now = timed(sample, "forward", now)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        now = timed(sample, "backward", now)
        optimizer.step()
        scheduler.step()
        timed(sample, "optimizer and schedule", now)
    steps_in_run = len(loader) * recipe.epochs * recipe.members
    phases.update({name: seconds / options.steps * steps_in_run for name, seconds in step_phases.items()})

    model.eval()
    val_loader = CifarBatches(val, batch_size=1000, train=False, mean=mean, std=std, device=device)
    began = time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        for images, _ in val_loader:
            model(images)
    phases["validation, every epoch"] = (time.perf_counter() - began) * recipe.epochs * recipe.members
    test_loader = CifarBatches(test, batch_size=500, train=False, mean=mean, std=std, device=device)
    began = time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        logits = torch.cat([predict_logits(model, images, recipe.tta).float() for images, _ in test_loader])
    now = timed(phases, f"test (tta {recipe.tta})", began)
    curve = [1.0] * recipe.epochs
    history = {"epoch": list(range(1, recipe.epochs + 1)), "train_loss": curve, "val_loss": curve,
               "train_acc": curve, "val_acc": curve}
    with tempfile.TemporaryDirectory() as scratch:  # the figures are drawn as train.py draws them, then dropped
        plot_member_histories([history], ["loss", "acc"], Path(scratch) / "accuracy_plot.png")
        plot_confusion_matrix(confusion_matrix(logits.argmax(1), test.labels, len(test.classes)).numpy(),
                              test.classes, Path(scratch) / "confusion_matrix.png")
    timed(phases, "figures (curves, confusion matrix)", now)

    total = sum(phases.values())
    print(f"\nhw3 default ({args.model}, {recipe.epochs} epochs of {len(loader)} steps, batch {recipe.batch_size}, "
          f"{precision}), {options.steps} steps timed on {machine['machine_class']}:")
    print(f"{'phase':<40} {'seconds':>8} {'share':>6}")
    for name, seconds in phases.items():
        print(f"{name:<40} {seconds:8.1f} {seconds / total:6.1%}")
    print(f"{'sum, scaled to the whole run':<40} {total:8.1f}  ({total / 60:.1f} min)")
    if options.out:
        write_json(options.out, {"machine": machine, "recipe": asdict(RECIPES[args.model]),
                                 "steps_timed": options.steps, "steps_in_run": steps_in_run, "seconds": phases, "total_seconds": total,
                                 "command": command.strip()})
        report_written(options.out)


if __name__ == "__main__":
    run(main)
