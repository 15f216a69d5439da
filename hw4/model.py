"""Encoders for text classification: a Transformer (token embeddings plus sinusoidal positions, pre-norm
blocks of multi-head self-attention and a feed-forward layer, masked mean pooling, a linear classifier)
and a region CNN (Johnson & Zhang's seq-CNN); the encoders joined with an n-gram bag; the config that
rebuilds them from a checkpoint, and its loading."""

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import checkpoint
from common.checkpoint import names, whole
from common.ensemble import ensemble, members_of, vote
from common.text import PAD, PAD_ID, UNK, UNK_ID
from hw4.ngrams import NgramBag, keys_fit

CHECKPOINT_KIND = "hw4-imdb-transformer"


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with `heads` heads; `keep` (B, T) is True at real tokens, False at padding."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # queries, keys and values in one matmul
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :]  # (B, 1, 1, T): every query may look at every real key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # no attention dropout: it would
        # force PyTorch's slow reference kernel on CPU instead of its fused (flash) one
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + feed-forward(norm(x)); dropout
    on each branch's output."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = MultiHeadSelfAttention(dim, heads)
        self.feed_forward = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x), keep))
        return x + self.drop(self.feed_forward(self.norm2(x)))


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The (length, dim) sine/cosine position encodings of "Attention Is All You Need"."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[:dim // 2])
    return table


class TransformerClassifier(nn.Module):
    """Token ids (B, T), padded with PAD_ID, to class logits (B, num_classes).

    In training <unk> (UNK_ID) is a token like any other and soaks up the lean of training's rare words;
    at inference it is masked like padding, so the many unknown names in reviews of unseen movies do
    not carry that lean over (on the movie-held-out validation split this helped the ensemble)."""

    def __init__(self, vocab_size: int, *, dim: int = 128, layers: int = 2, heads: int = 4,
                 ff_mult: int = 4, dropout: float = 0.1, max_len: int = 512, num_classes: int = 2):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.register_buffer("positions", sinusoidal_positions(max_len, dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, ff_mult, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()

    def embedded(self, ids: Tensor) -> Tensor:
        """The token embeddings (B, T, dim) that `forward`'s `embedded` replaces."""
        return self.embed(ids)

    def forward(self, ids: Tensor, embedded: Tensor | None = None) -> Tensor:
        """`embedded` (B, T, dim), if given, replaces `self.embedded(ids)` (for attributions to the embeddings)."""
        if ids.dim() != 2 or ids.shape[1] > len(self.positions):
            raise ValueError(f"expected token ids (batch, length <= {len(self.positions)}), "
                             f"got shape {tuple(ids.shape)}")
        real = ids != PAD_ID
        keep = real
        if not self.training:  # see the class docstring; a text of unknown words only keeps them
            known = real & (ids != UNK_ID)
            keep = known | (real & ~known.any(dim=1, keepdim=True))
        embedded = self.embed(ids) if embedded is None else embedded
        x = self.drop(embedded * math.sqrt(self.dim) + self.positions[:ids.shape[1]])
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)  # mean over real tokens only
        return self.head(self.drop(pooled))


class RegionCNN(nn.Module):
    """Token ids (B, T), padded with PAD_ID, to class logits (B, num_classes): each run of `region`
    consecutive words (a one-hot region, Johnson & Zhang's seq-CNN) gives `width` ReLU features, max-pooled
    over the whole review, then dropout and a linear classifier. <unk>, padding and words past the table
    (ids >= vocab_size: a smaller copy keeps the most frequent words) add nothing.

    The convolution over one-hot words is a lookup: word w at slot i of a region adds row w of slot i's
    table, so `embed` holds each word's `region` rows side by side (vocab_size, region * width)."""

    def __init__(self, vocab_size: int, *, width: int = 500, region: int = 3, dropout: float = 0.5,
                 num_classes: int = 2):
        super().__init__()
        self.width, self.region = width, region
        self.embed = nn.Embedding(vocab_size, region * width)
        self.bias = nn.Parameter(torch.zeros(width))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        nn.init.normal_(self.embed.weight, std=0.1 / math.sqrt(region))
        with torch.no_grad():
            self.embed.weight[[PAD_ID, UNK_ID]] = 0  # <unk> is never trained: it stays as padding

    def known(self, ids: Tensor) -> Tensor:
        """`ids` with <unk> and words past the table as padding: what the regions read."""
        return torch.where((ids == UNK_ID) | (ids >= len(self.embed.weight)), PAD_ID, ids)

    def embedded(self, ids: Tensor) -> Tensor:
        """Each token's `region` table rows side by side (B, T, region * width), zero for what adds nothing:
        what `forward`'s `embedded` replaces."""
        return self.embed(self.known(ids))

    def forward(self, ids: Tensor, embedded: Tensor | None = None) -> Tensor:
        """`embedded` (B, T, region * width), if given, replaces `self.embedded(ids)` (for attributions)."""
        if ids.dim() != 2:
            raise ValueError(f"expected token ids (batch, length), got shape {tuple(ids.shape)}")
        real = ids != PAD_ID  # a region counts where its first word is in the review
        length, region = ids.shape[1], self.region
        ids = F.pad(self.known(ids), (0, region - 1), value=PAD_ID)  # the last regions run past the end
        if embedded is None:  # the fast way: at each position, one bag of `region` table rows
            words = torch.stack([ids[:, i:i + length] for i in range(region)], dim=-1)  # (B, T, region)
            rows = torch.where(words == PAD_ID, 0, words * region + torch.arange(region, device=ids.device))
            summed = F.embedding_bag(rows.view(-1, region), self.embed.weight.view(-1, self.width), mode="sum",
                                     padding_idx=0).view(len(ids), length, self.width)
        else:
            rows = F.pad(embedded, (0, 0, 0, region - 1)).view(len(ids), length + region - 1, region, self.width)
            summed = sum(rows[:, i:i + length, i] for i in range(region))
        features = F.relu(summed + self.bias) * real[..., None]  # ReLU's are >= 0, so 0 leaves the max alone
        return self.head(self.drop(features.amax(dim=1)))

    def first_words(self, count: int) -> "RegionCNN":
        """A copy that knows only the first `count` words of the vocabulary (the most frequent)."""
        small = RegionCNN(count, width=self.width, region=self.region, dropout=self.drop.p,
                          num_classes=self.head.out_features)
        small.load_state_dict({**self.state_dict(), "embed.weight": self.embed.weight[:count]})
        return small


class BaggedClassifier(nn.Module):
    """Encoders beside an n-gram bag: the bag reads the whole review and gives its log-odds z, the encoders
    (one, or an Ensemble voting) read it (a long one cut to its first and last tokens) and give theirs, d;
    the review's log-odds are z + encoder_weight * d."""

    def __init__(self, encoders: nn.Module, bag: NgramBag, encoder_weight: float = 1.0):
        super().__init__()
        self.encoders, self.bag, self.encoder_weight = encoders, bag, encoder_weight

    def forward(self, ids: Tensor, bag_log_odds: Tensor, embedded: Tensor | None = None) -> Tensor:
        """Class logits (B, 2) of reviews given as truncated ids (B, T) and the bag's log-odds (B,);
        `embedded` (B, members, T, dim), if given, replaces each encoder's token embeddings."""
        members = members_of(self.encoders)
        outputs = [member(ids, None if embedded is None else embedded[:, m]) for m, member in enumerate(members)]
        encoded = vote(outputs) if len(members) > 1 else outputs[0].float()
        log_odds = bag_log_odds.float() + self.encoder_weight * (encoded[:, 1] - encoded[:, 0])
        return torch.stack([-log_odds, log_odds], dim=1) / 2


COMPACT_BAG = 400_000  # n-grams the committed int8 copy keeps, those of largest |weight|
COMPACT_CNN_ROWS = 7_500_000  # int8 entries the committed copy's CNN tables hold together (its most frequent words)


def compact_copy(model: nn.Module, config: "ModelConfig") -> tuple[nn.Module, "ModelConfig"]:
    """The model and config of the committed int8 copy: the same Transformers; CNNs that know only the most
    frequent words, as many as COMPACT_CNN_ROWS entries hold; and a bag's COMPACT_BAG strongest n-grams."""
    bagged = isinstance(model, BaggedClassifier)
    encoders = model.encoders if bagged else model
    if config.encoder == "cnn":
        members = members_of(encoders)
        per_word = len(members) * members[0].embed.weight.shape[1]
        words = min(max(2, COMPACT_CNN_ROWS // per_word), len(config.vocab))
        encoders = ensemble([member.first_words(words) for member in members])
        config = replace(config, cnn_words=words)
    if not bagged:
        return encoders, config
    bag = model.bag.strongest(COMPACT_BAG)
    return BaggedClassifier(encoders, bag, model.encoder_weight), replace(config, bag_features=len(bag.keys))


MAX_PARAMETERS = 200_000_000  # a checkpoint asking for more (800 MB of fp32) is refused before allocating
MAX_BAG_FEATURES = 50_000_000  # n-grams (800 MB as the bag holds them)


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds a trained hw4 model and reads reviews as in training; a checkpoint holds it as a dict."""

    vocab: list[str]  # the words, by token id (PAD and UNK first)
    classes: list[str]  # neg, pos
    dim: int  # Transformer: model width
    layers: int  # Transformer blocks
    heads: int  # attention heads per block
    ff_mult: int  # feed-forward width / model width
    dropout: float
    max_len: int  # tokens read per review
    head: int  # of those, how many from the start of a long review (the rest from its end)
    encoder: str = "transformer"  # or "cnn"
    width: int | None = None  # CNN: features per region
    region: int | None = None  # CNN: words per region
    cnn_words: int | None = None  # CNN: the words its tables know, the most frequent (None: all of vocab)
    members: int = 1  # encoders whose probabilities are averaged
    bag_order: int = 0  # the n-gram bag's longest n-grams (0: no bag)
    bag_features: int = 0  # the n-grams it holds
    encoder_weight: float = 1.0  # of the encoders' log-odds beside the bag's

    def member(self) -> nn.Module:
        """One freshly initialised encoder."""
        if self.encoder == "cnn":
            return RegionCNN(self.cnn_words or len(self.vocab), width=self.width, region=self.region,
                             dropout=self.dropout, num_classes=len(self.classes))
        return TransformerClassifier(len(self.vocab), dim=self.dim, layers=self.layers, heads=self.heads,
                                     ff_mult=self.ff_mult, dropout=self.dropout, max_len=self.max_len,
                                     num_classes=len(self.classes))

    def build(self) -> nn.Module:
        """The whole model: one encoder or an Ensemble of `members`, beside an n-gram bag if `bag_order` > 0."""
        encoders = ensemble([self.member() for _ in range(self.members)])
        if not self.bag_order:
            return encoders
        bag = NgramBag.empty(self.bag_features, order=self.bag_order, vocab_size=len(self.vocab))
        return BaggedClassifier(encoders, bag, self.encoder_weight)

    def problem(self) -> str | None:
        """What is wrong with a config read from a checkpoint (types, ranges, the parameter count it implies),
        or None."""
        if not names(self.vocab, 2, 1_000_000) or self.vocab[:2] != [PAD, UNK]:
            return f"vocab must be a list of 2 to 1,000,000 words starting with {PAD}, {UNK}"
        if not names(self.classes, 2, 2):
            return "classes must be a list of 2 names"
        cnn = self.encoder == "cnn"
        if self.encoder not in ("transformer", "cnn"):
            return "encoder must be transformer or cnn"
        words = len(self.vocab) if self.cnn_words is None else self.cnn_words
        if cnn and not (whole(self.width, 1, 8192) and whole(self.region, 1, 16) and whole(words, 2, len(self.vocab))):
            return "a cnn needs width 1-8192, region 1-16 and cnn_words 2-len(vocab)"
        dim, heads, layers, ff_mult = self.dim, self.heads, self.layers, self.ff_mult
        if not (whole(dim, 1, 4096) and whole(heads, 1, dim) and dim % heads == 0 and whole(layers, 1, 64)
                and whole(ff_mult, 1, 16) and whole(self.members, 1, 16)):
            return "dim 1-4096, heads dividing it, layers 1-64, ff_mult 1-16 and members 1-16 are required"
        if not (whole(self.max_len, 1, 65536) and whole(self.head, 0, self.max_len)
                and isinstance(self.dropout, float) and 0 <= self.dropout < 1):
            return "max_len 1-65536, head 0-max_len and dropout in [0, 1) are required"
        order, weight = self.bag_order, self.encoder_weight
        if not (whole(order, 0, 3) and whole(self.bag_features, 0, MAX_BAG_FEATURES)
                and isinstance(weight, float) and 0 <= weight <= 10):
            return f"bag_order 0-3, bag_features 0-{MAX_BAG_FEATURES:,} and encoder_weight in [0, 10] are required"
        if not keys_fit(order, len(self.vocab)):
            return f"1-{order}-grams of {len(self.vocab):,} words do not fit the bag's 47-bit keys"
        per_member = (len(self.vocab) * self.region * self.width if cnn
                      else len(self.vocab) * dim + layers * (4 + 2 * ff_mult) * dim * dim)
        parameters = self.members * per_member
        if parameters > MAX_PARAMETERS:
            return f"it implies {parameters:,} parameters, over the {MAX_PARAMETERS:,} a hw4 model may have"
        return None


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, ModelConfig]:
    """The model and config stored in a hw4 checkpoint, ready for inference on `device`."""
    model, config = checkpoint.load_model(path, kind=CHECKPOINT_KIND, config_type=ModelConfig)
    return model.to(device).eval(), config
