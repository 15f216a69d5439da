"""Which words decided a review: integrated gradients over the encoders' token embeddings (a CNN's: each
word's table rows), and the review shown with each word marked by how far it pushed the decision (ANSI
colour, plain markers, Markdown, PNG)."""

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from torch import Tensor, nn

from common.attribution import integrated_gradients
from common.ensemble import members_of, vote
from common.plotting import new_figure, save_figure
from common.text import Vocab, tokenize
from common.text_batches import truncate
from hw4.model import BaggedClassifier
from hw4.ngrams import ngram_words

EMPTY = "[no words]"  # an empty review as shown; not a token the tokenizer makes, so encoded as <unk>
LEVELS = (0.1, 0.3, 0.6)  # |attribution| / the review's largest, where a word's mark gets one step stronger


@dataclass
class Reading:
    """A review as the model reads it: the tokens the encoders keep (head and tail of a long review), their
    ids, how many tokens were dropped after the first `head`, and every token's id (what a bag reads)."""

    words: list[str]
    ids: Tensor  # (T,) int64
    head: int
    dropped: int
    whole: np.ndarray | None = None  # int64, T + dropped of them


def read_review(text: str, vocab: Vocab, max_len: int, head: int) -> Reading:
    """`text` tokenized, encoded and cut to `max_len` tokens exactly as in training and evaluation."""
    tokens = tokenize(text) or [EMPTY]  # the model reads it as one <unk>
    whole = vocab.encode(tokens).astype(np.int64)
    kept = truncate(np.arange(len(tokens)), max_len, head)
    return Reading([tokens[i] for i in kept], torch.from_numpy(whole[kept]), head, len(tokens) - len(kept), whole)


def bag_log_odds(model: nn.Module, readings: list[Reading]) -> Tensor | None:
    """The log-odds (B,) that a model's n-gram bag gives the whole reviews; None for a model without one."""
    return model.bag([r.whole for r in readings]) if isinstance(model, BaggedClassifier) else None


def word_attributions(model: nn.Module, ids: Tensor, target: int, steps: int = 32) -> Tensor:
    """How much each token (ids (T,)) moved the log-odds of class `target` through the encoders, in fp32:
    integrated gradients over every member's token embeddings at once (`embedded`), from all-zero ones (each
    token as `<pad>`, the padding mask unchanged); they add up to the log-odds' change along that path.
    (A model's n-gram bag adds to those log-odds; `ngram_pushes` gives its part.)"""
    bagged = isinstance(model, BaggedClassifier)
    members = members_of(model.encoders if bagged else model)
    model.eval()
    batch = ids[None].to(next(model.parameters()).device)
    embedded = torch.stack([member.embedded(batch)[0] for member in members]).detach()  # (members, T, dim)

    def log_odds(points: Tensor) -> Tensor:  # (N, members, T, dim) -> (N,)
        rows = batch.expand(len(points), -1)
        if bagged:  # the bag's log-odds add to the encoders' part: 0 leaves that part alone
            log_p = model(rows, torch.zeros(len(points), device=rows.device), points)
        else:
            log_p = vote([member(rows, points[:, m]) for m, member in enumerate(members)])
        others = torch.cat([log_p[:, :target], log_p[:, target + 1:]], dim=1)
        return log_p[:, target] - others.logsumexp(dim=1)

    return integrated_gradients(log_odds, embedded[None], steps=steps)[0].sum(dim=(0, 2)).cpu()


def ngram_pushes(model: nn.Module, reading: Reading, vocab: Vocab) -> list[tuple[str, float]]:
    """The known n-grams of a whole review and how far each moved its log-odds toward the positive class
    (their weights in the model's n-gram bag), strongest first; none for a model without a bag."""
    if not isinstance(model, BaggedClassifier):
        return []
    bag = model.bag
    keys, weights = bag.contributions(reading.whole)
    pushes = [(" ".join(vocab.words[i] for i in ngram_words(key, bag.order, bag.vocab_size)), weight)
              for key, weight in zip(keys.tolist(), weights.tolist())]
    return sorted(pushes, key=lambda pair: -abs(pair[1]))


def strengths(scores: Tensor) -> list[int]:
    """Each score as a signed step -3..3 of its size against the review's largest |score| (LEVELS)."""
    top = float(scores.abs().max()) or 1.0
    return [int(math.copysign(sum(abs(s) / top >= cut for cut in LEVELS), s)) for s in scores.tolist()]


def with_cut(reading: Reading, values: list) -> list[tuple[str, float]]:
    """(word, value) in reading order, with a (note, 0) where a long review was cut."""
    pairs = list(zip(reading.words, values))
    if reading.dropped:
        pairs.insert(reading.head, (f"[... {reading.dropped} words not read ...]", 0))
    return pairs


def marked_words(reading: Reading, scores: Tensor) -> list[tuple[str, int]]:
    """(word, its step from `strengths`) in reading order, with the cut's note at step 0."""
    return with_cut(reading, strengths(scores))


_BACKGROUND = {1: 194, 2: 120, 3: 46, -1: 224, -2: 210, -3: 196}  # xterm-256 greens and reds, pale to strong


def as_ansi(reading: Reading, scores: Tensor) -> str:
    """The review with each word on a green (toward the positive class) or red background, stronger
    for a larger push."""
    return " ".join(f"\033[30;48;5;{_BACKGROUND[step]}m{word}\033[0m" if step else word
                    for word, step in marked_words(reading, scores))


def as_markers(reading: Reading, scores: Tensor) -> str:
    """The review in plain text: `+word` to `+++word` pushed toward the positive class, `-word` to `---word`
    toward the negative."""
    return " ".join(("+" if step > 0 else "-") * abs(step) + word for word, step in marked_words(reading, scores))


def plot_words(readings: list[Reading], scores: list[Tensor], titles: list[str], legend: str, path: Path, *,
               width: float = 9.0) -> None:
    """Each review under its title, words wrapped to `width` inches, shaded green to red by their
    attribution (toward the positive or the negative class, against the review's largest); `legend` below."""
    colours = matplotlib.colormaps["RdYlGn"]
    fig, _ = new_figure(1, 1, panel_size=(width, 1.0))
    fig.axes[0].axis("off")
    renderer = fig.canvas.get_renderer()
    dpi, margin, line = fig.dpi, 8.0, 17.0  # in pixels
    blocks = []
    for reading, score, title in zip(readings, scores, titles):
        top = float(score.abs().max()) or 1.0
        x, lines, placed = margin, 0, []
        for word, share in with_cut(reading, (score / top).tolist()):
            probe = fig.text(0, 0, word, fontsize=9)
            w = probe.get_window_extent(renderer).width + 6
            probe.remove()
            if x + w > width * dpi - margin and x > margin:
                x, lines = margin, lines + 1
            placed.append((x, lines, word, share))
            x += w
        blocks.append((title, placed, lines + 1))
    height = sum(line * (n + 2.5) for _, _, n in blocks) + line + margin
    fig.set_size_inches(width, height / dpi)
    y = height - margin
    for title, placed, n in blocks:
        fig.text(margin / (width * dpi), (y - line) / height, title, fontsize=10, weight="bold")
        for x, row, word, share in placed:
            shade = (*colours(0.5 + share / 2)[:3], min(1.0, abs(share) * 1.2))
            fig.text(x / (width * dpi), (y - line * (row + 2.2)) / height, word, fontsize=9,
                     color="white" if abs(share) > 0.6 else "black",
                     bbox={"facecolor": shade, "edgecolor": "none", "pad": 1.2})
        y -= line * (n + 2.5)
    fig.text(margin / (width * dpi), (y - line * 0.6) / height, legend, fontsize=8, color="dimgray")
    save_figure(fig, path)
