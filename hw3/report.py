"""hw3's test report: accuracy, macro F1 and per-class scores of a model on a test split, written as
metrics.json and a confusion-matrix plot (by train.py after training, and by eval.py)."""

import time
from pathlib import Path

import torch
from torch import nn

from common.atomic_io import write_json
from common.cifar import CifarBatches, ImageSet
from common.errors import UserError
from common.metrics import classification_report, confusion_matrix
from common.plotting import plot_confusion_matrix
from common.training import predict
from hw3.model import predict_logits


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
    plot_confusion_matrix(cm.numpy(), classes, out_dir / "confusion_matrix.png",
                          title=f"CIFAR-10 test, accuracy {100 * report['accuracy']:.2f}%")
