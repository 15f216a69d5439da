"""hw4: print the predicted sentiment and its probability for review texts given as arguments or files."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch

from common.cli import make_parser, run
from common.device import select_device
from common.errors import UserError
from common.text import UNK, Vocab, tokenize
from common.text_batches import pad_batch, truncate
from hw4.model import load_model


def main() -> None:
    parser = make_parser(__doc__, None, data=False)
    parser.add_argument("texts", nargs="*", help="review texts (quote each one)")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a text file holding one review")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw4/results/model.pt"))
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
    ids = [truncate(vocab.encode(tokenize(text) or [UNK]), config["max_len"], config["head"]) for text in texts]
    with torch.no_grad():
        probabilities = model(pad_batch(ids).to(device)).float().softmax(dim=1).cpu()
    for text, p in zip(texts, probabilities):
        label = int(p.argmax())
        shown = " ".join(text.split())
        print(f"{config['classes'][label]} {p[label]:.3f}  {shown[:70] + ('...' if len(shown) > 70 else '')}")


if __name__ == "__main__":
    run(main)
