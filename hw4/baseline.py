"""hw4 baseline: NBSVM (Wang & Manning 2012), a logistic regression on naive-Bayes-weighted 1-3-grams,
with train.py's tokenization, vocabulary and movie-held-out validation split; its smoothing and
regularization are chosen on validation, then the test split is read once."""

import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch

from common.atomic_io import staged_folder
from common.cli import (DefaultInt, count, make_parser, number, positive, report_written, run, settings_of,
                        validation_size)
from common.data_dir import resolve_data_dir
from common.device import report_machine
from common.distributed import launch_command
from common.imdb import CLASSES, load_imdb
from common.metrics import classification_report, confusion_matrix
from common.splits import split_groups
from common.text import Vocab, tokenize_corpus
from hw4.ngrams import fit_ngram_bag
from hw4.report import print_test_summary, write_test_results
from hw4.train import RECIPES

ALPHAS = (0.5, 1.0)        # naive-Bayes smoothing of the n-gram counts
CS = (0.03, 0.1, 0.3)      # inverse L2 strength of the logistic regression


def main() -> None:
    began = time.perf_counter()
    parser = make_parser(__doc__, "hw4/results/baseline", device=False)
    parser.add_argument("--order", type=number(int, 1, 3), default=3, help="longest n-gram (1-3)")
    parser.add_argument("--min-df", type=positive(), default=2,
                        help="n-grams seen in fewer training reviews are dropped")
    parser.add_argument("--min-count", type=positive(), default=RECIPES["cnn"].min_count,
                        help="rarest word kept in the vocabulary (train.py's by default); rarer ones are <unk>")
    parser.add_argument("--max-vocab", type=number(int, 3, 52_000), default=RECIPES["cnn"].max_vocab,
                        help="most words kept, the two specials included (train.py's by default; 1-3-gram keys "
                             "of at most 52,000 words fit the bag's 47 bits)")
    parser.add_argument("--val-size", type=count, default=DefaultInt(2500),
                        help="training reviews held out for validation, by whole movies, as in train.py "
                             "(with --limit alone, a tenth of the limit)")
    parser.add_argument("--limit", type=positive(), help="use only this many reviews per split (smoke runs)")
    args = parser.parse_args()
    args.val_size = validation_size(args.val_size, args.limit)
    machine = report_machine(torch.device("cpu"), "fp32", show=False)  # recorded in metrics.json
    data_dir = resolve_data_dir(args.data_dir)
    reviews = load_imdb(data_dir, "train").sample(args.limit)
    test = load_imdb(data_dir, "test").sample(args.limit)
    corpus = tokenize_corpus(reviews.texts, quiet=args.quiet)
    train_idx, val_idx = split_groups(reviews.groups, args.val_size, seed=args.seed, labels=reviews.labels)
    vocab = Vocab.build(corpus, train_idx.numpy(), min_count=args.min_count, max_size=args.max_vocab)
    ids = vocab.encode_corpus(corpus)
    train_ids, val_ids = [ids[i] for i in train_idx.tolist()], [ids[i] for i in val_idx.tolist()]
    options = {"order": args.order, "vocab_size": len(vocab), "min_df": args.min_df}

    grid, bags = [], []
    for alpha, c in itertools.product(ALPHAS, CS):
        fitted = time.perf_counter()
        bags.append(fit_ngram_bag(train_ids, reviews.labels[train_idx], alpha=alpha, c=c, **options))
        acc = ((bags[-1](val_ids) > 0).long() == reviews.labels[val_idx]).float().mean().item()
        grid.append({"alpha": alpha, "c": c, "val_acc": acc, "seconds": time.perf_counter() - fitted})
        print(f"alpha {alpha}, C {c}: validation accuracy {100 * acc:.2f}% ({len(bags[-1].keys):,} n-grams)",
              flush=True)
    chosen = max(range(len(grid)), key=lambda i: grid[i]["val_acc"])  # the first of equals
    bag, best = bags[chosen], grid[chosen]
    test_ids = vocab.encode_corpus(tokenize_corpus(test.texts, quiet=args.quiet))
    predicted = (bag(test_ids) > 0).long()
    cm = confusion_matrix(predicted, test.labels, len(CLASSES))
    report = classification_report(cm, CLASSES)
    report.update(test_reviews=len(test), wall_seconds=time.perf_counter() - began)
    with staged_folder(args.out_dir, announce=report_written) as out:
        write_test_results(report, cm, out, {
            "model": f"NBSVM, 1-{args.order}-grams", "ngrams": len(bag.keys), "chosen": best, "grid": grid,
            "final_val_acc": best["val_acc"], "settings": settings_of(vars(args)),
            "train_reviews": len(train_idx), "val_reviews": len(val_idx), **machine,
            "command": launch_command("hw4/baseline.py")}, mistakes=None)
    print_test_summary(report)


if __name__ == "__main__":
    run(main)
