"""hw3: evaluate a saved CIFAR-10 checkpoint on the test split of any data folder (either format),
writing the confusion matrix and metrics."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn

from common.atomic_io import write_json
from common import checkpoint
from common.cifar import FORMATS, CifarBatches, ImageSet, load_cifar10
from common.cli import add_precision_arg, make_parser, report_written, run
from common.data_dir import resolve_data_dir
from common.device import describe_machine, machine_record, select_device
from common.distributed import launch_command
from common.errors import UserError
from common.metrics import classification_report, confusion_matrix
from common.plotting import plot_confusion_matrix
from common.training import predict
from hw3.models import build_model, predict_logits

CHECKPOINT_KIND = "hw3-cifar10"
CONFIG_KEYS = ("model", "widths", "classes", "mean", "std", "tta")


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The model and config stored in a hw3 checkpoint, ready for inference on `device`."""
    model, config = checkpoint.load_model(
        path, kind=CHECKPOINT_KIND, config_keys=CONFIG_KEYS,
        build=lambda config: build_model({**config, "num_classes": len(config["classes"])}))
    return model.to(device).to(memory_format=torch.channels_last).eval(), config


def evaluate_test(model: nn.Module, config: dict, test: ImageSet, *, device: torch.device,
                  precision: str, batch_size: int = 500) -> tuple[dict, torch.Tensor]:
    """Test metrics (accuracy, macro F1, per-class scores) and the confusion matrix."""
    if test.classes != config["classes"]:
        raise UserError(f"test classes {test.classes} differ from the checkpoint's {config['classes']}")
    loader = CifarBatches(test, batch_size=batch_size, mean=config["mean"], std=config["std"],
                          train=False, device=device)
    began = time.perf_counter()
    logits, labels = predict(model, loader, device=device, precision=precision,
                             forward=lambda x: predict_logits(model, x, config["tta"]))
    seconds = time.perf_counter() - began
    cm = confusion_matrix(logits.argmax(1), labels, len(test.classes))
    report = classification_report(cm, test.classes)
    report["per_class_accuracy"] = {name: scores["recall"] for name, scores in report["per_class"].items()}
    report.update(test_images=len(test), test_seconds=seconds)
    return report, cm


def write_test_results(report: dict, cm: torch.Tensor, classes: list[str], out_dir: Path,
                       extra: dict) -> None:
    """metrics.json and confusion_matrix.png in `out_dir`."""
    write_json(out_dir / "metrics.json", {**extra, **report, "confusion_matrix": cm.tolist()})
    report_written(out_dir / "metrics.json")
    plot_confusion_matrix(cm.numpy(), classes, out_dir / "confusion_matrix.png",
                          title=f"CIFAR-10 test, accuracy {100 * report['accuracy']:.2f}%")
    report_written(out_dir / "confusion_matrix.png")


def main() -> None:
    parser = make_parser(__doc__, "hw3/results")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw3/results/model.pt"))
    parser.add_argument("--dataset-format", default="auto", choices=FORMATS)
    add_precision_arg(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    machine = machine_record(device, args.precision)
    print(describe_machine(machine), flush=True)
    model, config = load_model(args.checkpoint, device)
    test = load_cifar10(resolve_data_dir(args.data_dir), "test", fmt=args.dataset_format)
    report, cm = evaluate_test(model, config, test, device=device, precision=machine["precision"])
    write_test_results(report, cm, test.classes, args.out_dir, {
        "checkpoint": str(args.checkpoint), "model": config["model"], **machine,
        "command": launch_command("hw3/eval.py")})
    print(f"test accuracy {100 * report['accuracy']:.2f}% on {len(test)} images, "
          f"macro F1 {report['macro_f1']:.4f}")


if __name__ == "__main__":
    run(main)
