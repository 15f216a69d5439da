"""hw4: train encoders from scratch for IMDB sentiment (region CNNs or Transformers) and join them with an
n-gram bag (NBSVM), select on a validation split carved from train, and report accuracy, precision, recall
and F1 on the test split."""

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script
# Before torch starts: its large CPU tensors on huge pages. A CNN step allocates its 120 MB table gradient
# and its activations afresh, and on 4 KB pages faulting them in took about 40% of the training time.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np
import torch
from torch import nn

from common.atomic_io import staged_folder
from common.checkpoint import COMPACT_CHECKPOINT, save_checkpoint
from common.cli import (DefaultInt, add_force_arg, add_precision_arg, add_recipe_options, check_out_dir, count,
                        forced_facts, fraction, make_parser, non_negative, number, option, positive, recipe_from,
                        report_written, run, settings_of, validation_size)
from common.data_dir import resolve_data_dir
from common.device import report_machine
from common.distributed import (is_main, launch_command, per_rank_batch_size, setup, teardown, unwrap, world_size,
                                wrap)
from common.ensemble import ensemble
from common.errors import UserError
from common.imdb import CLASSES, load_imdb
from common.metrics import accuracy
from common.seeding import seed_everything
from common.splits import split_groups
from common.text import Vocab, tokenize_corpus
from common.text_batches import TextBatches
from common.training import (Optimization, fit, mean_throughput, member_checkpointing, member_label, predict,
                             validation_record, warmup_linear_decay, write_training_record)
from hw4.model import CHECKPOINT_KIND, BaggedClassifier, ModelConfig, compact_copy
from hw4.ngrams import NgramBag, fit_ngram_bag
from hw4.report import evaluate_test, mistakes_report, print_test_summary, write_test_results


@dataclass(frozen=True)
class Recipe:
    """Every default of a run (cnn's here); each field is the command-line option of the same name, whose
    help and type its metadata holds."""

    encoder: str = field(default="cnn", metadata=option(
        "cnn: region CNNs reading whole reviews; transformer: Transformer encoders reading their head and tail. "
        "The options below default to this encoder's recipe (RECIPES in hw4/train.py): the defaults shown are "
        "those of the --encoder given, cnn's if none", choices=["cnn", "transformer"]))
    epochs: int = field(default=8, metadata=option("passes over the training reviews, per member", type=positive()))
    batch_size: int = field(default=100, metadata=option("global batch (split over torchrun processes)",
                                                         type=positive()))
    lr: float = field(default=5e-3, metadata=option("AdamW's peak learning rate", type=positive(float)))
    weight_decay: float = field(default=0.1, metadata=option(
        "AdamW's, on weight matrices only (not embeddings, biases or norms)", type=non_negative))
    warmup: float = field(default=0.1, metadata=option(
        "fraction of steps spent warming up, then linear decay to 0", type=fraction))
    label_smoothing: float = field(default=0.0, metadata=option("of the cross-entropy targets", type=fraction))
    max_len: int = field(default=1024, metadata=option("tokens kept per review", type=number(int, 1, 65536)))
    head: int = field(default=256, metadata=option(
        "of those, how many from the start of a long review (the rest from its end)", type=count))
    min_count: int = field(default=5, metadata=option("rarest word kept in the vocabulary", type=positive()))
    max_vocab: int = field(default=20_000, metadata=option("vocabulary size cap", type=positive()))
    dropout: float = field(default=0.5, metadata=option(
        "on the pooled vector (Transformer: also on embeddings and each block's branches)", type=fraction))
    width: int = field(default=500, metadata=option("CNN: features per region", type=number(int, 1, 8192)))
    region: int = field(default=3, metadata=option("CNN: words per region", type=number(int, 1, 16)))
    dim: int = field(default=128, metadata=option("Transformer: model width", type=positive()))
    layers: int = field(default=2, metadata=option("Transformer blocks", type=positive()))
    heads: int = field(default=4, metadata=option("attention heads per block", type=positive()))
    ff_mult: int = field(default=4, metadata=option("feed-forward width / model width", type=positive()))
    members: int = field(default=3, metadata=option(
        "encoders trained in turn (seeds seed, seed+1, ...) whose probabilities are averaged", type=positive()))
    bag_order: int = field(default=3, metadata=option(
        "an n-gram bag (NBSVM, hw4/ngrams.py) of 1- to this-grams whose log-odds are added to the encoders' "
        "(0: no bag)", type=number(int, 0, 3)))


# Each encoder's defaults, chosen on the movie-held-out validation split (see hw4/README.md).
RECIPES = {"cnn": Recipe(),
           "transformer": Recipe(encoder="transformer", epochs=2, batch_size=32, lr=1e-3, max_len=512, head=128,
                                 dropout=0.2, members=2)}
# Tried on validation as the weight of the encoders' part of the log-odds.
ENCODER_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


def parse_args() -> argparse.Namespace:
    """The options, with the defaults of the recipe of `--encoder` (so `--help` shows them)."""
    parser = make_parser(__doc__, "hw4/results")
    add_recipe_options(parser, Recipe)
    parser.add_argument("--val-size", type=count, default=DefaultInt(2500),
                        help="training reviews held out for validation, by whole movies (0: train on all; "
                             "with --limit alone, a tenth of the limit)")
    parser.add_argument("--limit", type=positive(), help="use only this many reviews per split (smoke runs)")
    add_precision_arg(parser)
    add_force_arg(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last epoch's state in --out-dir/train_state/ (same options)")
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--encoder", default="cnn")
    encoder = first.parse_known_args()[0].encoder
    parser.set_defaults(**asdict(RECIPES.get(encoder, RECIPES["cnn"])))
    args = parser.parse_args()
    args.val_size = validation_size(args.val_size, args.limit)
    return args


def main() -> None:
    began = time.perf_counter()
    args = parse_args()
    recipe = recipe_from(vars(args), Recipe)  # the options the recipe names; args keeps the run's others
    check_out_dir(args.out_dir, settings=settings_of(vars(args)), force=args.force,
                  facts=forced_facts(vars(args)))  # before any work
    if not 0 <= recipe.head <= recipe.max_len:
        raise UserError(f"--head {recipe.head} must be between 0 and --max-len {recipe.max_len}")
    if recipe.encoder == "transformer" and recipe.dim % recipe.heads:
        raise UserError(f"--dim {recipe.dim} must be a multiple of --heads {recipe.heads} (each head gets an equal "
                        "share)")

    seed_everything(args.seed)
    device = setup(args.device)  # under torchrun: join the process group, one device per process
    machine = report_machine(device, args.precision, show=is_main())
    args.precision = machine["precision"]  # auto, resolved for this device
    per_rank_batch_size(recipe.batch_size)  # --batch-size is global; it must split evenly
    data_dir = resolve_data_dir(args.data_dir)
    reviews = load_imdb(data_dir, "train").sample(args.limit)
    test = load_imdb(data_dir, "test").sample(args.limit)  # checked before any write
    corpus = tokenize_corpus(reviews.texts, quiet=args.quiet or not is_main())
    # Hold out whole movies, as the test set does (it shares none with train): a random split
    # would score memorised titles and names, overrating validation accuracy by about 2 points.
    train_idx, val_idx = split_groups(reviews.groups, args.val_size, seed=args.seed, labels=reviews.labels)
    check_out_dir(args.out_dir, settings=settings_of(vars(args)), force=args.force, facts={  # other data, other run
        "train_reviews": len(train_idx), "val_reviews": len(val_idx), "test_reviews": len(test)})
    vocab = Vocab.build(corpus, train_idx.numpy(), min_count=recipe.min_count, max_size=recipe.max_vocab)
    ids = vocab.encode_corpus(corpus)
    bag = fit_bag([ids[i] for i in train_idx.tolist()], reviews.labels[train_idx], recipe.bag_order, len(vocab))

    def batches(index: torch.Tensor, train: bool, seed: int = args.seed, offsets: bool = False) -> TextBatches:
        texts = [ids[i] for i in index.tolist()]  # with the bag's log-odds, every process reads every review
        return TextBatches(texts, reviews.labels[index], train=train, shard=not offsets,
                           batch_size=recipe.batch_size if train else 256, max_len=recipe.max_len,
                           head=recipe.head, seed=seed, pin=device.type == "cuda",
                           offsets=bag(texts).cpu() if offsets else None)
    val_loader = batches(val_idx, False) if len(val_idx) else None

    config = ModelConfig(vocab=vocab.words, classes=CLASSES, dim=recipe.dim, layers=recipe.layers, heads=recipe.heads,
                         ff_mult=recipe.ff_mult, dropout=recipe.dropout, max_len=recipe.max_len, head=recipe.head,
                         encoder=recipe.encoder, width=recipe.width, region=recipe.region, members=recipe.members,
                         bag_order=recipe.bag_order, bag_features=0 if bag is None else len(bag.keys))
    members, histories = [], []
    for member in range(recipe.members):  # each from its own seed: initial weights, order, dropout
        model, member_history = train_member(recipe, args, member, config,
                                             batches(train_idx, True, args.seed + member), val_loader, device)
        members.append(model)
        histories.append(member_history)
    model = ensemble(members)
    validation = validation_record(model, histories, val_loader, device=device, precision=args.precision)
    if bag is not None:  # the encoders join the bag with the weight that fits validation best
        model = BaggedClassifier(model, bag.to(device))
        if val_loader is not None:
            weights = encoder_weight_accuracies(model, batches(val_idx, False, offsets=True), device=device,
                                                precision=args.precision)
            model.encoder_weight = max(ENCODER_WEIGHTS, key=lambda w: (weights[w], -w))
            config = replace(config, encoder_weight=model.encoder_weight)
            validation = {**validation, "final_val_acc": weights[model.encoder_weight], "encoders_val_acc":
                          validation["final_val_acc"], "encoder_weight_val_acc": weights}
    if is_main():  # one process tests once and writes the results, all together at the end
        report, cm, probabilities = evaluate_test(model, config, test, device=device, precision=args.precision,
                                                  quiet=args.quiet)
        mistakes = mistakes_report(model, config, test, probabilities)
        report["wall_seconds"] = time.perf_counter() - began
        with staged_folder(args.out_dir, announce=report_written) as out:
            title = (f"IMDB region CNN ({recipe.width} features, regions of {recipe.region} words"
                     if recipe.encoder == "cnn" else f"IMDB Transformer ({recipe.layers} layers, width {recipe.dim}")
            title += f"; {recipe.members} members trained in turn" if recipe.members > 1 else ""
            title += "): train and validation"
            write_training_record(out, model, histories, kind=CHECKPOINT_KIND, config=config,
                                  plot_name="training_curves.png", title=title)
            small, small_config = compact_copy(model, config)  # model.pt is too large for git; this is not
            save_checkpoint(out / COMPACT_CHECKPOINT, kind=CHECKPOINT_KIND, model=small, config=small_config,
                            compact=True)
            write_test_results(report, cm, out, {
                "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(vocab),
                "epochs": recipe.epochs, "settings": settings_of(vars(args)), "train_reviews": len(train_idx),
                "val_reviews": len(val_idx), "members": recipe.members, **validation, "processes": world_size(),
                "train_reviews_per_second": mean_throughput(histories),
                **machine, "command": launch_command("hw4/train.py"),
            }, mistakes)
        print_test_summary(report)
    teardown()


def fit_bag(texts: list, labels: torch.Tensor, order: int, vocab_size: int) -> NgramBag | None:
    """The n-gram bag fitted on the training reviews; None for order 0."""
    if order == 0:
        return None
    began = time.perf_counter()
    bag = fit_ngram_bag(texts, labels, order=order, vocab_size=vocab_size)
    if is_main():
        print(f"n-gram bag: {len(bag.keys):,} 1-{order}-grams ({time.perf_counter() - began:.0f} s)", flush=True)
    return bag


def encoder_weight_accuracies(model: BaggedClassifier, loader: TextBatches, *, device: torch.device,
                              precision: str) -> dict[float, float]:
    """The validation accuracy of the bag's log-odds plus each weight (0: the bag alone, then ENCODER_WEIGHTS)
    times the encoders'; `loader` brings the bag's log-odds with the batches."""
    model.encoder_weight = 1.0  # then the logits' halves give z + d, and z comes with the batches
    logits, labels = predict(model, loader, device=device, precision=precision)
    order = torch.from_numpy(np.concatenate(loader.batches()))
    both, bag_log_odds = logits[:, 1] * 2, loader.offsets[order]
    accuracy = {w: ((bag_log_odds + w * (both - bag_log_odds) > 0).long() == labels).float().mean().item()
                for w in (0.0, *ENCODER_WEIGHTS)}
    if is_main():
        print("validation accuracy by the encoders' weight (0: the bag alone): "
              + ", ".join(f"{w} {100 * a:.2f}%" for w, a in accuracy.items()), flush=True)
    return accuracy


def train_member(recipe: Recipe, args: argparse.Namespace, member: int, config: ModelConfig,
                 train_loader: TextBatches, val_loader: TextBatches | None, device: torch.device
                 ) -> tuple[nn.Module, dict]:
    """Train one encoder by `recipe` (seeded with args.seed + member) with cross-entropy, checkpointed under
    args.out_dir; returns it and its history."""
    seed_everything(args.seed + member)
    model = config.member().to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr,
                                  fused=device.type in ("cpu", "cuda"))
    total = recipe.epochs * len(train_loader)
    scheduler = warmup_linear_decay(optimizer, total, int(recipe.warmup * total))
    model = wrap(model, device)  # DistributedDataParallel under torchrun
    checkpointing = member_checkpointing(args.out_dir, member, recipe.members, CHECKPOINT_KIND, config,
                                         settings_of(vars(args)), args.resume)
    history = fit(model, nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
                  Optimization(optimizer, scheduler, grad_clip=1.0), train_loader, val_loader, epochs=recipe.epochs,
                  metrics={"acc": accuracy}, precision=args.precision, checkpointing=checkpointing,
                  desc=None if args.quiet else member_label(member, recipe.members))
    return unwrap(model), history


if __name__ == "__main__":
    run(main)
