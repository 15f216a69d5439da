"""hw2: what batch normalization does: one small CNN trained on a CIFAR-10 subset three ways, without
BN, with the hand-written BN (hw2/batchnorm.py) and with PyTorch's nn.BatchNorm2d, from the same
initial weights on the same batches; loss and accuracy curves of all three on one plot."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn

from common.atomic_io import staged_folder, write_json
from common.cifar import FORMAT_HELP, FORMATS, CifarBatches, channel_stats, load_cifar10, split_train_val
from common.cli import fraction, make_parser, positive, report_written, run
from common.data_dir import resolve_data_dir
from common.device import machine_class, select_device
from common.distributed import launch_command
from common.metrics import accuracy
from common.plotting import new_figure, save_figure
from common.seeding import seed_everything
from common.training import Optimization, fit, warmup_linear_decay
from hw2.batchnorm import BatchNorm

NORMS = {"no BN": lambda width: nn.Identity(), "hand-written BN": BatchNorm,
         "PyTorch BN": nn.BatchNorm2d}


def make_cnn(widths: list[int], norm, num_classes: int) -> nn.Sequential:
    """Blocks of conv3x3 -> norm(width) -> ReLU -> 2x2 max-pool, global average pooling, a linear
    classifier. The convs keep their bias in every variant, so all three start from the same weights."""
    layers, channels = [], 3
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, padding=1), norm(width), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def first_batch_gap(widths: list[int], num_classes: int, seed: int, images: torch.Tensor,
                    labels: torch.Tensor) -> dict[str, float]:
    """Largest differences between the hand-written-BN and PyTorch-BN networks in float64, from the same
    initial weights on one training batch: logits, gradients of every parameter, running statistics."""
    results = []
    for name in ("hand-written BN", "PyTorch BN"):
        seed_everything(seed)
        model = make_cnn(widths, NORMS[name], num_classes).double()
        logits = model(images.double())
        nn.functional.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), {k: p.grad for k, p in model.named_parameters()},
                        {k: b for k, b in model.named_buffers() if "running" in k}))
    (hand_logits, hand_grads, hand_stats), (logits, grads, stats) = results
    gap = lambda a, b: max((a[k] - b[k]).abs().max().item() for k in a)  # noqa: E731
    return {"logits": (hand_logits - logits).abs().max().item(), "gradients": gap(hand_grads, grads),
            "running_stats": gap(hand_stats, stats)}


def plot_effect(histories: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per variant."""
    fig, axes = new_figure(2)
    for ax, metric in zip(axes[0], ("loss", "acc")):
        for (name, history), colour, width in zip(histories.items(), ("C0", "C1", "C2"), (2, 4, 1.5)):
            for split, style in (("train", "-"), ("val", "--")):
                ax.plot(history["epoch"], history[f"{split}_{metric}"], style, color=colour, lw=width,
                        alpha=0.8, label=f"{name}, {split}")
        ax.set(xlabel="epoch", ylabel={"loss": "cross-entropy", "acc": "accuracy"}[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw2/results")
    parser.add_argument("--epochs", type=positive(), default=8, help="passes over the training images")
    parser.add_argument("--batch-size", type=positive(), default=128, help="images per step")
    parser.add_argument("--lr", type=positive(float), default=0.1,
                        help="SGD step size at the start, decaying linearly to 0")
    parser.add_argument("--momentum", type=fraction, default=0.9, help="SGD momentum")
    parser.add_argument("--widths", type=positive(), nargs="+", default=[16, 32, 64],
                        help="channels per conv block")
    parser.add_argument("--limit", type=positive(), default=10_000,
                        help="CIFAR-10 training images used (spread evenly over the classes)")
    parser.add_argument("--val-size", type=positive(), default=2_000,
                        help="of those, held out for validation")
    parser.add_argument("--dataset-format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    args = parser.parse_args()

    device = select_device(args.device)
    data = load_cifar10(resolve_data_dir(args.data_dir), "train", fmt=args.dataset_format, limit=args.limit)
    train, val = split_train_val(data, args.val_size, seed=args.seed)
    mean, std = channel_stats(train.images)
    batches = dict(mean=mean, std=std, device=device)
    train_loader = CifarBatches(train, batch_size=args.batch_size, train=True, seed=args.seed,
                                crop_padding=0, **batches)
    val_loader = CifarBatches(val, batch_size=1000, train=False, **batches)

    images, labels = next(iter(train_loader))
    first_gap = first_batch_gap(args.widths, len(data.classes), args.seed, images.cpu(), labels.cpu())
    print("hand-written vs PyTorch BN, same weights, first batch, float64, largest difference: "
          + ", ".join(f"{key} {value:.1e}" for key, value in first_gap.items()), flush=True)

    histories = {}
    for name, norm in NORMS.items():
        seed_everything(args.seed)  # the same initial weights for all three
        model = make_cnn(args.widths, norm, len(data.classes)).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
        scheduler = warmup_linear_decay(optimizer, args.epochs * len(train_loader))
        histories[name] = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train_loader,
                              val_loader, epochs=args.epochs, metrics={"acc": accuracy},
                              desc=None if args.quiet else name)
        last = histories[name]
        print(f"{name:<16} train loss {last['train_loss'][-1]:.4f} acc {last['train_acc'][-1]:.4f}  "
              f"val loss {last['val_loss'][-1]:.4f} acc {last['val_acc'][-1]:.4f}  "
              f"{sum(last['seconds']):.1f}s", flush=True)

    hand, pytorch = histories["hand-written BN"], histories["PyTorch BN"]
    curve_gap = {key: max(abs(a - b) for a, b in zip(hand[key], pytorch[key]))
                 for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
    print("hand-written vs PyTorch BN, float32, largest difference of the curves: "
          + ", ".join(f"{key} {value:.1e}" for key, value in curve_gap.items()))

    with staged_folder(args.out_dir, announce=report_written) as out:
        plot_effect(histories, out / "bn_effect.png",
                    f"CIFAR-10, {len(train)} training images, CNN {args.widths}, SGD momentum {args.momentum:g}, "
                    f"lr {args.lr:g} decaying to 0")
        write_json(out / "bn_effect.json", {
            "model": f"conv3x3 -> [BN] -> ReLU -> max-pool blocks {args.widths}, global average pool, linear",
            "optimiser": f"SGD momentum {args.momentum:g}, lr {args.lr:g} decaying linearly to 0, no weight decay",
            "batch_size": args.batch_size, "augmentation": "random horizontal flips",
            "train_images": len(train), "val_images": len(val), "epochs": args.epochs, "seed": args.seed,
            "final": {name: {key: h[key][-1] for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
                      for name, h in histories.items()},
            "train_seconds": {name: sum(h["seconds"]) for name, h in histories.items()},
            "hand_vs_pytorch_bn_first_batch_float64_max_difference": first_gap,
            "hand_vs_pytorch_bn_max_curve_difference": curve_gap,
            "histories": histories, "wall_seconds": time.perf_counter() - began,
            "machine_class": machine_class(device), "command": launch_command("hw2/train.py"),
        })


if __name__ == "__main__":
    run(main)
