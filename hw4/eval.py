"""hw4: evaluate a saved IMDB Transformer checkpoint on the test split of any aclImdb folder or archive,
writing metrics.txt, metrics.json and the confusion matrix."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn

from common.atomic_io import write_json, write_text
from common import checkpoint
from common.cli import add_precision_arg, make_parser, report_written, run
from common.data_dir import resolve_data_dir
from common.device import describe_machine, machine_record, select_device
from common.distributed import launch_command
from common.ensemble import ensemble
from common.imdb import Reviews, load_imdb
from common.metrics import classification_report, confusion_matrix
from common.plotting import plot_confusion_matrix
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import predict
from hw4.model import TransformerClassifier

CHECKPOINT_KIND = "hw4-imdb-transformer"
CONFIG_KEYS = ("vocab", "classes", "dim", "layers", "heads", "ff_mult", "dropout", "max_len", "head")


def build_model(config: dict) -> nn.Module:
    """The classifier described by a checkpoint config (vocabulary, sizes, maximum length), or an
    Ensemble of `config['members']` of them."""
    return ensemble([build_classifier(config) for _ in range(config.get("members", 1))])


def build_classifier(config: dict) -> TransformerClassifier:
    """One encoder with the vocabulary, sizes and maximum length of `config`."""
    return TransformerClassifier(len(config["vocab"]), dim=config["dim"], layers=config["layers"],
                                 heads=config["heads"], ff_mult=config["ff_mult"], dropout=config["dropout"],
                                 max_len=config["max_len"], num_classes=len(config["classes"]),
                                 token_dropout=config.get("token_dropout", 0.0))


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The model and config stored in a hw4 checkpoint, ready for inference on `device`."""
    model, config = checkpoint.load_model(path, kind=CHECKPOINT_KIND, config_keys=CONFIG_KEYS,
                                          build=build_model)
    return model.to(device).eval(), config


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
    report_written(out_dir / "metrics.json")
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
    report_written(out_dir / "metrics.txt")
    plot_confusion_matrix(cm.numpy(), ["negative", "positive"], out_dir / "confusion_matrix.png",
                          title=f"IMDB test, accuracy {100 * report['accuracy']:.2f}%")
    report_written(out_dir / "confusion_matrix.png")
    print(f"test accuracy {100 * report['accuracy']:.2f}%, F1 {report['f1']:.4f} "
          f"({report['test_reviews']} reviews)")


def main() -> None:
    parser = make_parser(__doc__, "hw4/results")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw4/results/model.pt"))
    add_precision_arg(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    machine = machine_record(device, args.precision)
    print(describe_machine(machine), flush=True)
    model, config = load_model(args.checkpoint, device)
    test = load_imdb(resolve_data_dir(args.data_dir), "test")
    report, cm = evaluate_test(model, config, test, device=device, precision=machine["precision"], quiet=args.quiet)
    write_test_results(report, cm, args.out_dir, {
        "checkpoint": str(args.checkpoint), **machine, "command": launch_command("hw4/eval.py")})


if __name__ == "__main__":
    run(main)
