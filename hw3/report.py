"""hw3's test report: accuracy, macro F1 and per-class scores of a model on a test split, written as
metrics.json, a confusion-matrix plot and a gallery of its most confident mistakes (by train.py after
training, and by eval.py)."""

import time
from pathlib import Path

import torch
from torch import nn

from common.atomic_io import write_json
from common.cifar import CifarBatches, ImageSet
from common.errors import UserError
from common.metrics import classification_report, confusion_matrix
from common.plotting import new_figure, plot_confusion_matrix, save_figure
from common.training import predict
from hw3.model import ModelConfig, predict_logits


def evaluate_test(model: nn.Module, config: ModelConfig, test: ImageSet, *, device: torch.device,
                  precision: str, batch_size: int = 500) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Test metrics (accuracy, macro F1, per-class scores), the confusion matrix and the class
    probabilities of every test image."""
    if test.classes != config.classes:
        raise UserError(f"test classes {test.classes} differ from the checkpoint's {config.classes}")
    loader = CifarBatches(test, batch_size=batch_size, mean=config.mean, std=config.std,
                          train=False, device=device)
    began = time.perf_counter()
    logits, labels = predict(model, loader, device=device, precision=precision,
                             forward=lambda x: predict_logits(model, x, config.tta))
    seconds = time.perf_counter() - began
    cm = confusion_matrix(logits.argmax(1), labels, len(test.classes))
    report = classification_report(cm, test.classes)
    report["per_class_accuracy"] = {name: scores["recall"] for name, scores in report["per_class"].items()}
    report.update(test_images=len(test), test_seconds=seconds)
    return report, cm, logits.float().softmax(dim=1)


def write_test_results(report: dict, cm: torch.Tensor, test: ImageSet, probabilities: torch.Tensor,
                       out_dir: Path, extra: dict) -> None:
    """metrics.json, confusion_matrix.png and mistakes.png in `out_dir`."""
    write_json(out_dir / "metrics.json", {**extra, **report, "confusion_matrix": cm.tolist()})
    plot_confusion_matrix(cm.numpy(), test.classes, out_dir / "confusion_matrix.png",
                          title=f"CIFAR-10 test, accuracy {100 * report['accuracy']:.2f}%")
    plot_mistakes(test, probabilities, cm, out_dir / "mistakes.png")


def plot_mistakes(test: ImageSet, probabilities: torch.Tensor, cm: torch.Tensor, path: Path, *,
                  pairs: int = 4, per_pair: int = 6) -> None:
    """One row per most confused (true, predicted) class pair: its `per_pair` test images predicted
    wrongly with the highest probability, each titled with that probability."""
    confusions = cm.clone().fill_diagonal_(0)
    ranked = confusions.flatten().argsort(descending=True)[:pairs]
    rows = [(int(i) // len(test.classes), int(i) % len(test.classes)) for i in ranked if confusions.flatten()[i] > 0]
    confidence, predicted = probabilities.max(dim=1)
    fig, axes = new_figure(per_pair, max(1, len(rows)), panel_size=(1.6, 1.9))
    for ax in axes.flat:
        ax.axis("off")
    for row, (true, wrong) in enumerate(rows):
        chosen = ((test.labels == true) & (predicted == wrong)).nonzero().ravel()
        chosen = chosen[confidence[chosen].argsort(descending=True)][:per_pair]
        for col, index in enumerate(chosen.tolist()):
            axes[row, col].imshow(test.images[index].permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[row, col].set_title(f"{test.classes[wrong]} {confidence[index]:.2f}", fontsize=9)
        axes[row, 0].text(-0.15, 0.5, f"true {test.classes[true]}\n({int(confusions[true, wrong])} as\n"
                          f"{test.classes[wrong]})", transform=axes[row, 0].transAxes, ha="right",
                          va="center", fontsize=9)
    fig.suptitle("most confident test mistakes of the most confused pairs (title: predicted, probability)",
                 fontsize=10)
    save_figure(fig, path)
