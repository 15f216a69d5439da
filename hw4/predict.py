"""hw4: print the predicted sentiment and its probability for review texts given as arguments or files;
with --explain (terminal) or --explain-png (figure), also each review with its words marked by how far
they pushed the decision."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch

from common.checkpoint import COMPACT_CHECKPOINT
from common.cli import (RepoPath, make_parser, png_file, positive, read_each, refuse_overwriting_inputs,
                        repo_path, report_written, run)
from common.device import select_device
from common.errors import UserError
from common.imdb import read_review_file
from common.text import UNK_ID, Vocab
from common.text_batches import pad_batch
from hw4.explain import as_ansi, as_markers, bag_log_odds, ngram_pushes, plot_words, read_review, word_attributions
from hw4.model import load_model


def main() -> None:
    parser = make_parser(__doc__, None, data=False)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="review texts (quote each one)")
    parser.add_argument("--file", type=Path, action="append", default=[], metavar="FILE",
                        help="a text file holding one review (repeat for more)")
    parser.add_argument("--checkpoint", type=repo_path, default=RepoPath(f"hw4/results/{COMPACT_CHECKPOINT}"),
                        help="a model.pt or model_int8.pt that hw4/train.py wrote")
    parser.add_argument("--top", type=positive(), default=1, help="how many classes to show, most likely first")
    parser.add_argument("--explain", action="store_true",
                        help="also print each review with its words marked by how far they pushed the decision "
                             "(green/+ toward positive, red/- toward negative; colour only on a terminal)")
    parser.add_argument("--explain-png", type=png_file, metavar="OUT.png",
                        help="also write each review with its words marked as a figure")
    args = parser.parse_intermixed_args()  # options may come between the inputs
    refuse_overwriting_inputs(args.explain_png, args.file, "--explain-png")
    if not args.texts and not args.file:
        raise UserError("give a review text or --file FILE")
    device = select_device(args.device)
    model, config = load_model(args.checkpoint, device)
    inputs = [(f'"{excerpt(text)}"', text) for text in args.texts]  # (how each is shown, its text)
    files, unreadable = read_each(args.file, read_review_file, "review files", others=len(inputs))  # each said
    inputs += [(str(path), text) for path, text in files]
    vocab = Vocab(config.vocab)
    readings = [read_review(text, vocab, config.max_len, config.head) for _, text in inputs]
    for (name, text), reading in zip(inputs, readings):
        if not text.strip():
            print(f"warning: {name} holds no words; its score is the model's lean on an empty review",
                  file=sys.stderr)
        elif bool((reading.ids == UNK_ID).all()):
            print(f"warning: {name}: none of its words is in the model's vocabulary, so the model reads only "
                  "unknown-word tokens; its score says nothing about the review", file=sys.stderr)
    with torch.no_grad():
        bag_z = bag_log_odds(model, readings)
        batch = [pad_batch([r.ids for r in readings]).to(device)] + ([] if bag_z is None else [bag_z])
        probabilities = model(*batch).float().softmax(dim=1).cpu()
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    for (name, _), values, indices in zip(inputs, top.values, top.indices):
        ranked = zip(values.tolist(), indices.tolist())
        print(f"{name}: " + ", ".join(f"{config.classes[i]} {p:.3f}" for p, i in ranked))
    if args.explain or args.explain_png:
        scores = [word_attributions(model, r.ids, target=1) for r in readings]  # toward classes[1], positive
        labels = top.indices[:, 0].tolist()
        titles = [f"{config.classes[label]} {p[label]:.3f}" for p, label in zip(probabilities, labels)]
    if args.explain:
        show = as_ansi if sys.stdout.isatty() else as_markers
        for title, reading, score in zip(titles, readings, scores):
            print(f"\n{title}  (the words' push toward {config.classes[1]}: {float(score.sum()):+.2f} log-odds)\n"
                  f"{show(reading, score)}")
            pushes = ngram_pushes(model, reading, vocab)
            if pushes:
                print(f"n-grams, {sum(p for _, p in pushes):+.2f} log-odds from {len(pushes)}: "
                      + ", ".join(f'"{gram}" {push:+.2f}' for gram, push in pushes[:8]))
    if args.explain_png:
        negative, positive_class = config.classes
        plot_words(readings, scores, [f"{t}  {name}" for t, (name, _) in zip(titles, inputs)],
                   f"integrated gradients: green pushed toward {positive_class}, red toward {negative}; "
                   "the darker, the larger against the review's strongest word", args.explain_png)
        report_written(args.explain_png)
    if unreadable:
        raise UserError(f"{unreadable} of {len(args.file)} review files could not be read (see above)")


def excerpt(text: str, length: int = 70) -> str:
    """The start of `text` on one line."""
    shown = " ".join(text.split())
    return shown[:length] + ("..." if len(shown) > length else "")


if __name__ == "__main__":
    run(main)
