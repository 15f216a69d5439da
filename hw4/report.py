"""hw4's test report: accuracy, precision, recall and F1 of a model on a test split, written as
metrics.json, a readable metrics.txt, a confusion-matrix plot and mistakes.md, the most confident
mistakes with the words that drove them (by train.py after training, and by eval.py)."""

import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.atomic_io import write_json, write_text
from common.imdb import CLASSES, Reviews
from common.metrics import classification_report, confusion_matrix
from common.plotting import plot_confusion_matrix
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import predict
from hw4.explain import Reading, marked_words, ngram_pushes, read_review, word_attributions
from hw4.model import BaggedClassifier, ModelConfig


def evaluate_test(model: nn.Module, config: ModelConfig, test: Reviews, *, device: torch.device,
                  precision: str, quiet: bool = False) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Test metrics (accuracy, macro F1, and each class's precision, recall and F1), the confusion
    matrix and the class probabilities (in `test`'s order), for reviews tokenized and truncated as in
    training."""
    ids = Vocab(config.vocab).encode_corpus(tokenize_corpus(test.texts, quiet=quiet))
    began = time.perf_counter()
    loader = TextBatches(ids, test.labels, batch_size=256, max_len=config.max_len, head=config.head,
                         train=False, offsets=model.bag(ids).cpu() if isinstance(model, BaggedClassifier) else None)
    logits, labels = predict(model, loader, device=device, precision=precision)
    cm = confusion_matrix(logits.argmax(1), labels, len(config.classes))
    report = classification_report(cm, config.classes)
    report.update(test_reviews=len(test), test_seconds=time.perf_counter() - began)
    probabilities = torch.empty_like(logits)
    probabilities[torch.from_numpy(np.concatenate(loader.batches()))] = logits.softmax(dim=1)  # loader: by length
    return report, cm, probabilities


def write_test_results(report: dict, cm: torch.Tensor, out_dir: Path, extra: dict, mistakes: str | None) -> None:
    """metrics.json, a readable metrics.txt, confusion_matrix.png and (given `mistakes`) mistakes.md in `out_dir`."""
    write_json(out_dir / "metrics.json", {**extra, **report, "confusion_matrix": cm.tolist()})
    (tn, fp), (fn, tp) = cm.tolist()
    positive = report["per_class"][CLASSES[1]]
    lines = [f"accuracy   {report['accuracy']:.4f}",
             f"precision  {positive['precision']:.4f}  (positive class)",
             f"recall     {positive['recall']:.4f}",
             f"f1         {positive['f1']:.4f}",
             f"macro f1   {report['macro_f1']:.4f}",
             f"confusion  true neg {tn}, false pos {fp}, false neg {fn}, true pos {tp}",
             f"reviews    {report['test_reviews']}"]
    if "wall_seconds" in report:
        lines.append(f"wall time  {report['wall_seconds'] / 60:.1f} min (data loading to final metrics)")
    lines.append(f"command    {extra.get('command', '')}")
    write_text(out_dir / "metrics.txt", "\n".join(lines) + "\n")
    plot_confusion_matrix(cm.numpy(), ["negative", "positive"], out_dir / "confusion_matrix.png",
                          title=f"IMDB test, accuracy {100 * report['accuracy']:.2f}%")
    if mistakes is not None:
        write_text(out_dir / "mistakes.md", mistakes)


def mistakes_report(model: nn.Module, config: ModelConfig, test: Reviews, probabilities: torch.Tensor, *,
                    per_kind: int = 5, context: int = 10) -> str:
    """mistakes.md: how often long (cut) reviews are missed, then the `per_kind` most confident mistakes
    of each kind, each with the words that pushed it to the wrong class (integrated gradients) and
    excerpts around the strongest of them."""
    classes, vocab, limit = config.classes, Vocab(config.vocab), config.max_len
    confidence, predicted = probabilities.max(dim=1)
    wrong = predicted != test.labels
    long = torch.from_numpy(np.diff(tokenize_corpus(test.texts, quiet=True).offsets) > limit)
    lines = ["# hw4: the most confident test mistakes", "",
             f"{int(wrong.sum())} of {len(test)} test reviews are misclassified. Reviews over {limit} tokens "
             f"are read as their first {config.head} and last {limit - config.head}: they are "
             f"{100 * long.float().mean():.1f}% of the test reviews and {_error_rate(wrong, long)} of them are "
             f"missed, against {_error_rate(wrong, ~long)} of the rest.", "",
             "Each excerpt is the review as the encoders read it (lowercased tokens). **Bold** words pushed it "
             "toward its wrong answer, _italic_ ones toward the right one (integrated gradients over the "
             "token embeddings, from a blank review; see `hw4/explain.py`)"
             + ("; the n-grams listed pushed it there through the n-gram bag (their weights)."
                if isinstance(model, BaggedClassifier) else ".")]
    for true in range(len(classes)):
        chosen = (wrong & (test.labels == true)).nonzero().ravel()
        chosen = chosen[confidence[chosen].argsort(descending=True)][:per_kind]
        for index in chosen.tolist():
            reading = read_review(test.texts[index], vocab, limit, config.head)
            guess = int(predicted[index])
            scores = word_attributions(model, reading.ids, target=guess)
            drivers = scores.argsort(descending=True)[:6].tolist()
            sign = 1 if guess == 1 else -1  # n-gram pushes are toward classes[1]
            grams = [(gram, sign * push) for gram, push in ngram_pushes(model, reading, vocab) if sign * push > 0][:6]
            lines += ["", f"## {classes[true]} review #{index}, read as {classes[guess]} "
                          f"({confidence[index]:.3f})", "",
                      "Toward " + classes[guess] + ": " + ", ".join(
                          f"{_escape(reading.words[i])} {scores[i]:+.2f}" for i in drivers if scores[i] > 0), "",
                      *([f"N-grams toward {classes[guess]}: " + ", ".join(
                          f"{_escape(gram)} {push:+.2f}" for gram, push in grams), ""] if grams else []),
                      "> " + _excerpts(reading, scores, drivers[:3], context)]
    return "\n".join(lines) + "\n"


def _error_rate(wrong: torch.Tensor, among: torch.Tensor) -> str:
    """The share of `among` that is `wrong`, as a percentage."""
    return f"{100 * wrong[among].float().mean():.1f}%" if among.any() else "none"


def _escape(word: str) -> str:
    """`word` with Markdown's special characters escaped."""
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", word)


def _excerpts(reading: Reading, scores: torch.Tensor, centres: list[int], context: int) -> str:
    """The words within `context` of each centre, bold/italic by their push, runs joined by '...'."""
    pieces = marked_words(reading, scores)
    shift = [1 if reading.dropped and i >= reading.head else 0 for i in range(len(reading.words))]
    spans = sorted((max(0, c + shift[c] - context), c + shift[c] + context + 1) for c in centres)
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    def shown(word: str, step: int) -> str:
        mark = "**" if step >= 2 else "_" if step <= -2 else ""
        return f"{mark}{_escape(word)}{mark}"

    runs = [" ".join(shown(word, step) for word, step in pieces[start:end]) for start, end in merged]
    return ("... " if merged[0][0] > 0 else "") + " ... ".join(runs) + (" ..." if merged[-1][1] < len(pieces) else "")


def print_test_summary(report: dict) -> None:
    """The test figures in one line."""
    print(f"test accuracy {100 * report['accuracy']:.2f}%, F1 {report['per_class'][CLASSES[1]]['f1']:.4f} "
          f"({report['test_reviews']} reviews)")
