"""hw4: train a Transformer encoder from scratch for IMDB sentiment, select on a validation split
carved from train, and report accuracy, precision, recall and F1 on the test split."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import nn

from common.atomic_io import write_json
from common.checkpoint import save_checkpoint
from common.cli import add_precision_arg, add_training_args, make_parser, positive, report_written, run
from common.data_dir import resolve_data_dir
from common.device import describe_machine, machine_record
from common.distributed import (is_main, launch_command, per_rank_batch_size, setup, teardown, unwrap,
                                world_size, wrap)
from common.ensemble import ensemble, join_histories, member_checkpointing, validation_record
from common.errors import UserError
from common.imdb import CLASSES, load_imdb
from common.metrics import accuracy
from common.plotting import plot_member_histories
from common.schedules import warmup_linear_decay
from common.seeding import seed_everything
from common.splits import split_groups
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import fit
from hw4.eval import CHECKPOINT_KIND, build_classifier, evaluate_test, write_test_results

MODEL_KEYS = ("dim", "layers", "heads", "ff_mult", "dropout", "token_dropout", "max_len", "head")


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw4/results")
    add_training_args(parser, epochs=2, batch_size=32, lr=1e-3)
    add_precision_arg(parser)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps spent warming up")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--max-len", type=positive(), default=512, help="tokens kept per review")
    parser.add_argument("--head", type=int, default=128,
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
                        help="training reviews held out for validation, by whole movies (0: train on all)")
    parser.add_argument("--members", type=positive(), default=3,
                        help="encoders trained in turn (seeds seed, seed+1, ...) whose probabilities are averaged")
    parser.add_argument("--limit", type=positive(), help="use only this many reviews per split (smoke runs)")
    args = parser.parse_args()
    if not 0 <= args.head <= args.max_len:
        raise UserError(f"--head {args.head} must be between 0 and --max-len {args.max_len}")

    seed_everything(args.seed)
    device = setup(args.device)  # under torchrun: join the process group, one device per process
    machine = machine_record(device, args.precision)
    args.precision = machine["precision"]  # auto, resolved for this device
    if is_main():
        print(describe_machine(machine), flush=True)
    per_rank_batch_size(args.batch_size)  # --batch-size is global; it must split evenly
    data_dir = resolve_data_dir(args.data_dir)
    reviews = load_imdb(data_dir, "train").sample(args.limit)
    corpus = tokenize_corpus(reviews.texts, quiet=args.quiet or not is_main())
    # Hold out whole movies, as the test set does (it shares none with train): a random split
    # would score memorised titles and names, overrating validation accuracy by about 2 points.
    train_idx, val_idx = split_groups(reviews.groups, args.val_size, seed=args.seed, labels=reviews.labels)
    vocab = Vocab.build(corpus, train_idx.numpy(), min_count=args.min_count, max_size=args.max_vocab)
    ids = vocab.encode_corpus(corpus)

    def batches(index: torch.Tensor, train: bool, seed: int = args.seed) -> TextBatches:
        return TextBatches([ids[i] for i in index.tolist()], reviews.labels[index], train=train, shard=True,
                           batch_size=args.batch_size if train else 256, max_len=args.max_len,
                           head=args.head, seed=seed)
    val_loader = batches(val_idx, False) if len(val_idx) else None

    config = {"vocab": vocab.words, "classes": CLASSES, "members": args.members,
              **{k: getattr(args, k) for k in MODEL_KEYS}}
    members, histories = [], []
    for member in range(args.members):  # each from its own seed: initial weights, order, dropout
        model, member_history = train_member(args, member, config, batches(train_idx, True, args.seed + member),
                                             val_loader, device)
        members.append(model)
        histories.append(member_history)
    history = join_histories(histories)
    model = ensemble(members)
    validation = validation_record(model, histories, val_loader, device=device, precision=args.precision)
    out = args.out_dir
    if is_main():  # one process writes the results
        write_json(out / "history.json", history)
        save_checkpoint(out / "model.pt", kind=CHECKPOINT_KIND, model=model, config=config)
        report_written(out / "model.pt")
        plot_member_histories(histories, ["loss", "acc"], out / "training_curves.png",
                              title=f"IMDB Transformer ({args.layers} layers, width {args.dim}"
                                    + (f"; {args.members} members trained in turn" if args.members > 1 else "")
                                    + "): train and validation")
        report_written(out / "training_curves.png")
        test = load_imdb(data_dir, "test").sample(args.limit)
        report, cm = evaluate_test(model, config, test, device=device, precision=args.precision,
                                   quiet=args.quiet)
        report["wall_seconds"] = time.perf_counter() - began
        write_test_results(report, cm, out, {
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(vocab),
            "epochs": args.epochs, "settings": settings_of(args), "train_reviews": len(train_idx),
            "val_reviews": len(val_idx), "members": args.members, **validation, "processes": world_size(),
            "train_reviews_per_second": sum(history["samples_per_second"]) / len(history["epoch"]),
            **machine, "command": launch_command("hw4/train.py"),
        })
    teardown()


def train_member(args, member: int, config: dict, train_loader: TextBatches, val_loader: TextBatches | None,
                 device: torch.device) -> tuple[nn.Module, dict]:
    """Train one encoder (seeded with args.seed + member) through common's loop; returns it and its history."""
    seed_everything(args.seed + member)
    model = build_classifier(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                                  fused=device.type in ("cpu", "cuda"))
    total = args.epochs * len(train_loader)
    scheduler = warmup_linear_decay(optimizer, total, int(args.warmup * total))
    model = wrap(model, device)  # DistributedDataParallel under torchrun
    history = fit(model, optimizer, nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
                  train_loader, val_loader, epochs=args.epochs, device=device, scheduler=scheduler,
                  metrics={"acc": accuracy}, precision=args.precision, grad_clip=1.0, quiet=args.quiet,
                  checkpointing=member_checkpointing(args.out_dir, member, args.members, CHECKPOINT_KIND, config,
                                                     settings_of(args), args.resume),
                  desc=f"member {member + 1}/{args.members}" if args.members > 1 else "")
    return unwrap(model), history


def settings_of(args) -> dict:
    """The hyperparameters a resumed run must share with the run it continues."""
    return {k: getattr(args, k) for k in (*MODEL_KEYS, "epochs", "batch_size", "lr", "weight_decay", "warmup",
                                          "label_smoothing", "min_count", "max_vocab", "val_size", "seed",
                                          "limit", "members")}


if __name__ == "__main__":
    run(main)
