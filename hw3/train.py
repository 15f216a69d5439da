"""hw3: train a CNN on CIFAR-10 (the seed's three-conv net, or an airbench-style net with --model
airbench), select on a validation split carved from train, and report on the test split."""

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script
# Before torch starts: its large CPU tensors on huge pages, as in hw4/train.py. Each step's activations are
# allocated afresh; on 4 KB pages faulting them in cost 10% of a run (results/selection/huge_pages.json).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch
from torch import nn

from common.atomic_io import staged_folder
from common.cifar import (FLIPS, FORMAT_HELP, FORMATS, CifarBatches, ImageSet, channel_stats, load_cifar10,
                          split_train_val)
from common.cli import (DefaultInt, add_force_arg, add_precision_arg, add_recipe_options, check_out_dir, count,
                        forced_facts, fraction, make_parser, non_negative, number, option, positive, recipe_from,
                        report_written, run, settings_of, validation_size)
from common.data_dir import resolve_data_dir
from common.device import report_machine
from common.distributed import (is_main, launch_command, per_rank_batch_size, setup, teardown, unwrap, world_size,
                                wrap)
from common.ensemble import ensemble
from common.errors import UserError
from common.metrics import accuracy
from common.seeding import seed_everything
from common.training import (Optimization, fit, mean_throughput, member_checkpointing, member_label,
                             validation_record, write_training_record)
from hw3.model import CHECKPOINT_KIND, AirbenchNet, ModelConfig
from hw3.muon import Muon
from hw3.report import evaluate_test, write_test_results


@dataclass(frozen=True)
class Recipe:
    """Every default of one model's run; each field is the command-line option of the same name, whose
    help and type its metadata holds."""

    widths: list[int] = field(metadata=option("channels per conv block", type=positive(), nargs="+"))
    optimizer: str = field(metadata=option(
        "adamw (one-cycle), or Muon for the conv filters (airbench94_muon's recipe with --model airbench; with "
        "the cnn, AdamW for the rest and one cycle)", choices=["adamw", "muon"]))
    epochs: int = field(metadata=option("passes over the training images, per member", type=positive()))
    batch_size: int = field(metadata=option("global batch (split over torchrun processes)", type=positive()))
    lr: float = field(metadata=option("peak learning rate (muon: the conv filters')", type=positive(float)))
    weight_decay: float = field(metadata=option("decoupled weight decay (muon: per example)", type=non_negative))
    label_smoothing: float = field(metadata=option("of the cross-entropy targets", type=fraction))
    crop_padding: int = field(metadata=option("random-crop padding in pixels, 0-31 (0: no crops)",
                                              type=number(int, 0, 31)))
    flip: str = field(metadata=option("random: each image with probability 1/2; alternate: a fixed half in odd "
                                      "epochs, the other half in even ones", choices=FLIPS))
    tta: int = field(metadata=option("test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-pixel shifts",
                                     type=int, choices=[0, 1, 2]))
    members: int = field(metadata=option("networks trained in turn (seeds seed, seed+1, ...) whose probabilities "
                                         "are averaged", type=positive()))


# Chosen on the validation split (see hw3/README.md).
RECIPES = {
    "cnn": Recipe(widths=[64, 128, 256], optimizer="muon", epochs=6, batch_size=128, lr=0.07,
                  weight_decay=5e-2, label_smoothing=0.1, crop_padding=2, flip="random", tta=1, members=1),
    "airbench": Recipe(widths=[64, 256, 256], optimizer="muon", epochs=8, batch_size=1024, lr=0.17,
                       weight_decay=2e-6, label_smoothing=0.2, crop_padding=2, flip="alternate", tta=2,
                       members=2),
}
ONE_CYCLE_WARMUP = 0.25  # adamw: fraction of the steps spent raising the lr
# muon, as airbench94_muon: momenta, and step sizes relative to the filters' lr. Its step sizes are per
# example of a summed loss (ours is a batch mean, hence the factor batch_size below). Its head starts
# at std 1 and is scaled by 1/256; ours is PyTorch's default (std ~1/28) scaled by 1/9: (9/256)^2.
MUON_MOMENTUM, SGD_MOMENTUM = 0.6, 0.85
BIAS_LR_RATIO, HEAD_LR_RATIO = 0.053 / 0.24, 0.67 / 0.24 * (9 / 256) ** 2
WHITEN_BIAS_EPOCHS = 3  # the whitening conv's bias learns only in the first epochs
CNN_ADAMW_LR = 4e-3  # muon on the cnn: the AdamW peak lr of its BatchNorm and head (the adamw recipe's lr)


def make_optimizer(model: nn.Module, recipe: Recipe, steps_per_epoch: int, precision: str):
    """The optimizer and per-step schedule named by `recipe.optimizer`: AdamW with a one-cycle schedule, or
    Muon for the conv filters with, for the rest, airbench94_muon's Nesterov SGD and linear decay (the
    airbench net) or AdamW and the one-cycle schedule (the cnn)."""
    total = recipe.epochs * steps_per_epoch
    if recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total,
                                                        pct_start=ONE_CYCLE_WARMUP)
        return optimizer, scheduler
    filters = [p for p in model.parameters() if p.ndim == 4 and p.requires_grad]
    newton_schulz_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if not isinstance(model, AirbenchNet):  # the cnn: Muon for the filters, AdamW for the rest, one cycle
        rest = [p for p in model.parameters() if p.ndim != 4]
        optimizer = Muon([{"params": filters, "momentum": MUON_MOMENTUM},
                          {"params": rest, "lr": CNN_ADAMW_LR, "weight_decay": recipe.weight_decay, "muon": False,
                           "adam": True}], lr=recipe.lr, orthogonalize_dtype=newton_schulz_dtype)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[recipe.lr, CNN_ADAMW_LR], total_steps=total,
                                                        pct_start=ONE_CYCLE_WARMUP, cycle_momentum=False)
        return optimizer, scheduler
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    bias_lr = recipe.lr * BIAS_LR_RATIO * recipe.batch_size
    head_lr = recipe.lr * HEAD_LR_RATIO * recipe.batch_size
    decay = recipe.weight_decay * recipe.batch_size  # fraction of each SGD weight removed per step
    sgd = {"momentum": SGD_MOMENTUM, "muon": False}
    groups = [{"params": filters, "momentum": MUON_MOMENTUM, "muon": True},
              {"params": norm_biases, "lr": bias_lr, "weight_decay": decay / bias_lr, **sgd},
              {"params": [model.head.weight], "lr": head_lr, "weight_decay": decay / head_lr, **sgd},
              {"params": [model.whiten.bias], "lr": bias_lr, "weight_decay": decay / bias_lr, **sgd}]
    optimizer = Muon(groups, lr=recipe.lr, orthogonalize_dtype=newton_schulz_dtype)
    whiten_steps = WHITEN_BIAS_EPOCHS * steps_per_epoch

    def linear(step: int) -> float:  # straight down to zero at the last step
        return 1 - step / total

    def whiten(step: int) -> float:  # to zero after WHITEN_BIAS_EPOCHS, then frozen
        return max(0.0, 1 - step / whiten_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, [linear] * 3 + [whiten])


def parse_args() -> argparse.Namespace:
    """The options, with the defaults of the recipe of `--model` (so `--help` shows them)."""
    parser = make_parser(__doc__, "hw3/results")
    parser.add_argument("--model", default="cnn", choices=sorted(RECIPES),
                        help="cnn: the seed's three-conv net; airbench: the airbench-style net. The recipe "
                             "options below default to this model's recipe (RECIPES in hw3/train.py): the "
                             "defaults shown are those of the --model given, cnn's if none")
    add_recipe_options(parser, Recipe)
    parser.add_argument("--val-size", type=count, default=DefaultInt(5000),
                        help="training images held out for validation (0: train on all; with --limit "
                             "alone, a tenth of the limit)")
    parser.add_argument("--dataset-format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    parser.add_argument("--limit", type=positive(), help="use only this many images per split (smoke runs)")
    add_precision_arg(parser)
    add_force_arg(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last epoch's state in --out-dir/train_state/ (same options)")
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--model", default="cnn")
    model = first.parse_known_args()[0].model
    parser.set_defaults(**asdict(RECIPES.get(model, RECIPES["cnn"])))
    args = parser.parse_args()
    args.val_size = validation_size(args.val_size, args.limit)
    return args


def main() -> None:
    began = time.perf_counter()
    args = parse_args()
    recipe = recipe_from(vars(args), Recipe)  # the options the recipe names; args keeps the run's others
    check_out_dir(args.out_dir, settings=settings_of(vars(args)), force=args.force,
                  facts=forced_facts(vars(args)))  # before any work
    seed_everything(args.seed)
    device = setup(args.device)  # under torchrun: join the process group, one device per process
    machine = report_machine(device, args.precision, show=is_main())
    args.precision = machine["precision"]  # auto, resolved for this device
    data_dir = resolve_data_dir(args.data_dir)
    full_train = load_cifar10(data_dir, "train", fmt=args.dataset_format, limit=args.limit)
    test = load_cifar10(data_dir, "test", fmt=args.dataset_format, limit=args.limit)  # checked before any write
    if test.classes != full_train.classes:
        raise UserError(f"{data_dir}: the test split's classes {test.classes} differ from the training "
                        f"split's {full_train.classes}")
    train, val = split_train_val(full_train, args.val_size, seed=args.seed)
    check_out_dir(args.out_dir, settings=settings_of(vars(args)), force=args.force, facts={  # other data, other run
        "train_images": len(train), "val_images": len(val), "test_images": len(test)})
    mean, std = channel_stats(train.images)
    batches = dict(mean=mean, std=std, device=device)
    val_loader = CifarBatches(val, batch_size=1000, train=False, shard=True, **batches) if len(val) else None
    config = ModelConfig(model=args.model, widths=recipe.widths, classes=train.classes, mean=mean, std=std,
                         tta=recipe.tta, members=recipe.members)
    members, histories = [], []
    for member in range(recipe.members):  # each from its own seed: initial weights and batch order
        model, history = train_member(recipe, args, member, config, train, val_loader, batches, device)
        members.append(model)
        histories.append(history)
    model = ensemble(members)
    validation = validation_record(model, histories, val_loader, device=device, precision=args.precision)
    if is_main():  # one process tests once and writes the results, all together at the end
        report, cm, probabilities = evaluate_test(model, config, test, device=device, precision=args.precision)
        report["wall_seconds"] = time.perf_counter() - began
        images_per_second = mean_throughput(histories)
        with staged_folder(args.out_dir, announce=report_written) as out:
            title = (f"CIFAR-10 {args.model} {recipe.widths}" + (f", {recipe.members} members trained in turn"
                                                                  if recipe.members > 1 else "")
                     + ": train" + (" and validation" if len(val) else ""))
            write_training_record(out, model, histories, kind=CHECKPOINT_KIND, config=config,
                                  plot_name="accuracy_plot.png", title=title,
                                  compact=args.model == "airbench")  # its model.pt is too large for git
            write_test_results(report, cm, test, probabilities, out, {
                "model": args.model, "widths": recipe.widths, "parameters": sum(p.numel() for p in model.parameters()),
                "epochs": recipe.epochs, "settings": settings_of(vars(args)), "tta": recipe.tta,
                "train_images": len(train), "val_images": len(val), "members": recipe.members, **validation,
                "processes": world_size(), "train_images_per_second": images_per_second,
                "train_images_per_second_per_process": images_per_second / world_size(),
                **machine, "command": launch_command("hw3/train.py"),
            })
        print(f"test accuracy {100 * report['accuracy']:.2f}% ({len(test)} images), macro F1 "
              f"{report['macro_f1']:.4f}, wall time {report['wall_seconds'] / 60:.1f} min")
    teardown()


def train_member(recipe: Recipe, args: argparse.Namespace, member: int, config: ModelConfig, train: ImageSet,
                 val_loader: CifarBatches | None, batches: dict, device: torch.device) -> tuple[nn.Module, dict]:
    """Train one network by `recipe` (seeded with args.seed + member) with cross-entropy, checkpointed under
    args.out_dir; returns it and its history."""
    seed = args.seed + member
    seed_everything(seed)
    train_loader = CifarBatches(train, batch_size=per_rank_batch_size(recipe.batch_size), train=True, seed=seed,
                                crop_padding=recipe.crop_padding, flip=recipe.flip, shard=True, **batches)
    model = config.member()
    if isinstance(model, AirbenchNet):
        model.init_whitening(next(iter(CifarBatches(train.subset(torch.arange(min(5000, len(train)))),
                                                    batch_size=5000, train=False, **batches)))[0])
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, recipe, len(train_loader), args.precision)
    model = wrap(model, device)  # DistributedDataParallel under torchrun
    checkpointing = member_checkpointing(args.out_dir, member, recipe.members, CHECKPOINT_KIND, config,
                                         settings_of(vars(args)), args.resume)
    history = fit(model, nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
                  Optimization(optimizer, scheduler), train_loader, val_loader, epochs=recipe.epochs,
                  metrics={"acc": accuracy}, precision=args.precision, checkpointing=checkpointing,
                  desc=None if args.quiet else member_label(member, recipe.members))
    return unwrap(model), history


if __name__ == "__main__":
    run(main)
