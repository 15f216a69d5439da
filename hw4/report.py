"""hw4's test report: accuracy, precision, recall and F1 of a model on a test split, written as
metrics.json, a readable metrics.txt and a confusion-matrix plot (by train.py after training, and by
eval.py)."""

import time
from pathlib import Path

import torch
from torch import nn

from common.atomic_io import write_json, write_text
from common.imdb import Reviews
from common.metrics import classification_report, confusion_matrix
from common.plotting import plot_confusion_matrix
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import predict


def evaluate_test(model: nn.Module, config: dict, test: Reviews, *, device: torch.device,
                  precision: str, quiet: bool = False) -> tuple[dict, torch.Tensor]:
    """Test metrics (accuracy; precision, recall and F1 of the positive class; macro F1) and the
    confusion matrix, for reviews tokenized and truncated as in training."""
    ids = Vocab(config["vocab"]).encode_corpus(tokenize_corpus(test.texts, quiet=quiet))
    loader = TextBatches(ids, test.labels, batch_size=256, max_len=config["max_len"], head=config["head"],
                         train=False)
    began = time.perf_counter()
    logits, labels = predict(model, loader, device=device, precision=precision)
    cm = confusion_matrix(logits.argmax(1), labels, len(config["classes"]))
    report = classification_report(cm, config["classes"])
    positive = report["per_class"][config["classes"][1]]
    report.update(precision=positive["precision"], recall=positive["recall"], f1=positive["f1"],
                  test_reviews=len(test), test_seconds=time.perf_counter() - began)
    return report, cm


def write_test_results(report: dict, cm: torch.Tensor, out_dir: Path, extra: dict) -> None:
    """metrics.json, a readable metrics.txt and confusion_matrix.png in `out_dir`."""
    write_json(out_dir / "metrics.json", {**extra, **report, "confusion_matrix": cm.tolist()})
    (tn, fp), (fn, tp) = cm.tolist()
    lines = [f"accuracy   {report['accuracy']:.4f}",
             f"precision  {report['precision']:.4f}  (positive class)",
             f"recall     {report['recall']:.4f}",
             f"f1         {report['f1']:.4f}",
             f"macro f1   {report['macro_f1']:.4f}",
             f"confusion  true neg {tn}, false pos {fp}, false neg {fn}, true pos {tp}",
             f"reviews    {report['test_reviews']}"]
    if "wall_seconds" in report:
        lines.append(f"wall time  {report['wall_seconds'] / 60:.1f} min (data loading to final metrics)")
    lines.append(f"command    {extra.get('command', '')}")
    write_text(out_dir / "metrics.txt", "\n".join(lines) + "\n")
    plot_confusion_matrix(cm.numpy(), ["negative", "positive"], out_dir / "confusion_matrix.png",
                          title=f"IMDB test, accuracy {100 * report['accuracy']:.2f}%")


def print_test_summary(report: dict) -> None:
    """The test figures in one line."""
    print(f"test accuracy {100 * report['accuracy']:.2f}%, F1 {report['f1']:.4f} "
          f"({report['test_reviews']} reviews)")
