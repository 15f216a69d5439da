"""hw4: train a Transformer encoder from scratch for IMDB sentiment, select on a validation split
carved from train, and report accuracy, precision, recall and F1 on the test split."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn

from common.checkpoint import save_checkpoint
from common.cli import add_training_args, make_parser, positive, report_written, run
from common.data_dir import resolve_data_dir
from common.distributed import (is_main, launch_command, per_rank_batch_size, setup, teardown, unwrap,
                                world_size, wrap)
from common.errors import UserError
from common.imdb import CLASSES, load_imdb
from common.metrics import accuracy
from common.plotting import plot_history
from common.schedules import warmup_linear_decay
from common.seeding import seed_everything
from common.splits import split_indices
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import Checkpointing, fit
from hw4.eval import CHECKPOINT_KIND, build_model, evaluate_test, write_test_results

MODEL_KEYS = ("dim", "layers", "heads", "ff_mult", "dropout", "token_dropout", "max_len", "head")


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw4/results")
    add_training_args(parser, epochs=2, batch_size=32, lr=1e-3, precision="bf16")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps spent warming up")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--max-len", type=positive(), default=1024, help="tokens kept per review")
    parser.add_argument("--head", type=int, default=256,
                        help="of those, how many from the start of a long review (the rest from its end)")
    parser.add_argument("--min-count", type=positive(), default=5, help="rarest word kept in the vocabulary")
    parser.add_argument("--max-vocab", type=positive(), default=20_000, help="vocabulary size cap")
    parser.add_argument("--dim", type=positive(), default=128, help="model width")
    parser.add_argument("--layers", type=positive(), default=2)
    parser.add_argument("--heads", type=positive(), default=4)
    parser.add_argument("--ff-mult", type=positive(), default=4, help="feed-forward width / model width")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--token-dropout", type=float, default=0.0,
                        help="training only: chance of replacing each token with <unk>")
    parser.add_argument("--val-size", type=int, default=2500,
                        help="training reviews held out for validation (0: train on all)")
    parser.add_argument("--limit", type=positive(), help="use only this many reviews per split (smoke runs)")
    args = parser.parse_args()
    if not 0 <= args.head <= args.max_len:
        raise UserError(f"--head {args.head} must be between 0 and --max-len {args.max_len}")

    seed_everything(args.seed)
    device = setup(args.device)  # under torchrun: join the process group, one device per process
    per_rank_batch_size(args.batch_size)  # --batch-size is global; it must split evenly
    data_dir = resolve_data_dir(args.data_dir)
    reviews = load_imdb(data_dir, "train").sample(args.limit)
    corpus = tokenize_corpus(reviews.texts, quiet=args.quiet or not is_main())
    train_idx, val_idx = split_indices(len(reviews), args.val_size, seed=args.seed)
    vocab = Vocab.build(corpus, train_idx.numpy(), min_count=args.min_count, max_size=args.max_vocab)
    ids = vocab.encode_corpus(corpus)

    def batches(index: torch.Tensor, train: bool) -> TextBatches:
        return TextBatches([ids[i] for i in index.tolist()], reviews.labels[index], train=train, shard=True,
                           batch_size=args.batch_size if train else 256, max_len=args.max_len,
                           head=args.head, seed=args.seed)
    train_loader = batches(train_idx, True)
    val_loader = batches(val_idx, False) if len(val_idx) else None

    config = {"vocab": vocab.words, "classes": CLASSES, **{k: getattr(args, k) for k in MODEL_KEYS}}
    model = build_model(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                                  fused=device.type in ("cpu", "cuda"))
    total = args.epochs * len(train_loader)
    scheduler = warmup_linear_decay(optimizer, total, int(args.warmup * total))
    model = wrap(model, device)  # DistributedDataParallel under torchrun
    out = args.out_dir
    history = fit(model, optimizer, nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
                  train_loader, val_loader, epochs=args.epochs, device=device, scheduler=scheduler,
                  metrics={"acc": accuracy}, precision=args.precision, grad_clip=1.0, quiet=args.quiet,
                  checkpointing=Checkpointing(out / "train_state" / "last.pt", CHECKPOINT_KIND, config,
                                              settings_of(args), resume=args.resume),
                  history_path=out / "history.json")
    if is_main():  # one process writes the results
        model = unwrap(model)
        save_checkpoint(out / "model.pt", kind=CHECKPOINT_KIND, model=model, config=config)
        report_written(out / "model.pt")
        plot_history(history, ["loss", "acc"], out / "training_curves.png",
                     title=f"IMDB Transformer ({args.layers} layers, width {args.dim}): train and validation")
        report_written(out / "training_curves.png")
        test = load_imdb(data_dir, "test").sample(args.limit)
        report, cm = evaluate_test(model, config, test, device=device, precision=args.precision,
                                   quiet=args.quiet)
        report["wall_seconds"] = time.perf_counter() - began
        write_test_results(report, cm, out, {
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(vocab),
            "epochs": args.epochs, "settings": settings_of(args), "train_reviews": len(train_idx),
            "val_reviews": len(val_idx), "final_val_acc": history["val_acc"][-1] if len(val_idx) else None,
            "processes": world_size(),
            "train_reviews_per_second": sum(history["samples_per_second"]) / len(history["epoch"]),
            "device": str(device), "command": launch_command("hw4/train.py"),
        })
    teardown()


def settings_of(args) -> dict:
    """The hyperparameters a resumed run must share with the run it continues."""
    return {k: getattr(args, k) for k in (*MODEL_KEYS, "epochs", "batch_size", "lr", "weight_decay", "warmup",
                                          "label_smoothing", "min_count", "max_vocab", "val_size", "seed",
                                          "limit")}


if __name__ == "__main__":
    run(main)
