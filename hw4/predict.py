"""hw4: print the predicted sentiment and its probability for review texts given as arguments or files;
with --explain, also each review with its words marked by how far they pushed the decision."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch

from common.cli import make_parser, output_file, report_written, run
from common.device import select_device
from common.errors import UserError
from common.text import Vocab
from common.text_batches import pad_batch
from hw4.explain import as_ansi, as_markers, plot_words, read_review, word_attributions
from hw4.model import load_model


def main() -> None:
    parser = make_parser(__doc__, None, data=False)
    parser.add_argument("texts", nargs="*", help="review texts (quote each one)")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a text file holding one review")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw4/results/model.pt"))
    parser.add_argument("--explain", action="store_true",
                        help="also print each review with its words marked by how far they pushed the decision "
                             "(green/+ toward positive, red/- toward negative; colour only on a terminal)")
    parser.add_argument("--explain-png", type=output_file, metavar="OUT.png",
                        help="write the same as a figure (implies --explain)")
    args = parser.parse_args()
    texts = list(args.texts)
    for path in args.file:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as err:
            raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if not texts:
        raise UserError("give a review text or --file FILE")
    device = select_device(args.device)
    model, config = load_model(args.checkpoint, device)
    vocab = Vocab(config["vocab"])
    readings = [read_review(text, vocab, config["max_len"], config["head"]) for text in texts]
    with torch.no_grad():
        probabilities = model(pad_batch([r.ids for r in readings]).to(device)).float().softmax(dim=1).cpu()
    labels = probabilities.argmax(dim=1).tolist()
    titles = [f"{config['classes'][label]} {p[label]:.3f}" for p, label in zip(probabilities, labels)]
    for title, text in zip(titles, texts):
        print(f"{title}  {excerpt(text)}")
    if args.explain or args.explain_png:
        scores = [word_attributions(model, r.ids, target=1) for r in readings]  # toward classes[1], positive
        show = as_ansi if sys.stdout.isatty() else as_markers
        for title, reading, score in zip(titles, readings, scores):
            print(f"\n{title}  (the words' push toward {config['classes'][1]}: {float(score.sum()):+.2f} log-odds)\n"
                  f"{show(reading, score)}")
        if args.explain_png:
            negative, positive = config["classes"]
            plot_words(readings, scores, [f"{t}  {excerpt(x)}" for t, x in zip(titles, texts)],
                       f"integrated gradients: green pushed toward {positive}, red toward {negative}; "
                       "the darker, the larger against the review's strongest word", args.explain_png)
            report_written(args.explain_png)


def excerpt(text: str, length: int = 70) -> str:
    """The start of `text` on one line."""
    shown = " ".join(text.split())
    return shown[:length] + ("..." if len(shown) > length else "")


if __name__ == "__main__":
    run(main)
