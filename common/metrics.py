"""Classification metrics from predictions and targets: accuracy, confusion matrix, precision/recall/F1."""

import torch
from torch import Tensor


def accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """Fraction of rows whose arg-max logit is the target class (a 0-d tensor)."""
    return (logits.argmax(dim=-1) == targets).float().mean()


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Counts `cm[true, predicted]` as an int64 (num_classes, num_classes) tensor."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets "
                         f"{tuple(targets.shape)} differ in shape")
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def precision_recall_f1(cm: Tensor) -> dict[str, Tensor]:
    """Per-class precision, recall and F1 from a confusion matrix (0 where a class is never predicted)."""
    cm = cm.double()
    true_pos = cm.diag()
    precision = true_pos / cm.sum(dim=0).clamp(min=1)
    recall = true_pos / cm.sum(dim=1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def classification_report(cm: Tensor, class_names: list[str]) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1/accuracy as plain floats, for JSON."""
    scores = precision_recall_f1(cm)
    per_class = {
        name: {"precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
               "f1": float(scores["f1"][i]), "support": int(cm[i].sum())}
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(cm.diag().sum() / cm.sum().clamp(min=1)),
        "macro_f1": float(scores["f1"].mean()),
        "per_class": per_class,
    }
