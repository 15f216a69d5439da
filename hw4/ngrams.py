"""An NB-weighted bag of 1-3-grams (NBSVM, Wang & Manning 2012): each n-gram a review contains is a
binary feature scaled by its naive-Bayes log-count ratio, and a logistic regression on those features
gives the review's log-odds of being positive."""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ngrams_at(ids: np.ndarray, order: int, vocab_size: int) -> list[Tensor]:
    """For n = 1..`order`, the int64 key of the n-gram starting at each position of a text's word ids."""
    x = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    keys, gram, base = [x], x, 0
    for n in range(1, order):
        base += vocab_size ** n  # n-grams of each length get their own range of keys
        gram = gram[:-1] * vocab_size + x[n:]
        keys.append(gram + base)
    return keys


def ngram_keys(ids: np.ndarray, order: int, vocab_size: int) -> Tensor:
    """The distinct 1- to `order`-grams of one text's word ids, as sorted int64 keys."""
    return torch.cat(ngrams_at(ids, order, vocab_size)).unique()


def ngram_words(key: int, order: int, vocab_size: int) -> list[int]:
    """The word ids of the n-gram with this key (the inverse of `ngrams_at`)."""
    n, base = 1, 0
    while n < order and key >= base + vocab_size ** n:
        base, n = base + vocab_size ** n, n + 1
    key -= base
    return [(key // vocab_size ** (n - 1 - i)) % vocab_size for i in range(n)]


def keys_fit(order: int, vocab_size: int) -> bool:
    """Whether every 1- to `order`-gram of `vocab_size` words has a key below 2^47 (what a bag stores)."""
    return sum(vocab_size ** n for n in range(1, order + 1)) <= 1 << 47


class NgramBag(nn.Module):
    """A review's n-gram keys (from `ngram_keys`) to its log-odds: the bias plus the weight of each
    known n-gram it contains (the weight folds the log-count ratio and the regression's coefficient).
    It is saved compactly: each key as an int32 and an int16 half (6 bytes), each weight in float16."""

    def __init__(self, keys: Tensor, weights: Tensor, bias: float, *, order: int, vocab_size: int):
        super().__init__()
        if not keys_fit(order, vocab_size):
            raise ValueError(f"1-{order}-grams of {vocab_size:,} words do not fit in 47-bit keys")
        self.order, self.vocab_size = order, vocab_size
        self.register_buffer("keys", keys, persistent=False)  # sorted int64, rebuilt from the halves on loading
        self.register_buffer("key_high", (keys >> 16).int())
        self.register_buffer("key_low", ((keys & 0xFFFF) - 0x8000).short())
        self.register_buffer("weights", weights.half())
        self.register_buffer("bias", torch.tensor(float(bias)))
        self.register_load_state_dict_post_hook(lambda bag, _: bag.join_keys())

    def join_keys(self) -> None:
        """`keys` from their saved halves."""
        self.keys = (self.key_high.long() << 16) | (self.key_low.long() + 0x8000)

    def columns(self, keys: Tensor) -> Tensor:
        """Which of this bag's features the keys are (keys it does not know are dropped)."""
        return bag_columns(self.keys, keys.to(self.keys.device))

    def contributions(self, ids: np.ndarray) -> tuple[Tensor, Tensor]:
        """The known n-grams of one text (their keys) and how much each adds to its log-odds."""
        columns = self.columns(ngram_keys(ids, self.order, self.vocab_size))
        return self.keys[columns], self.weights[columns].float()

    def token_shares(self, ids: np.ndarray) -> Tensor:
        """Each token's share of a text's log-odds less the bias: every known n-gram's weight split evenly
        over the tokens of all its occurrences (float32, len(ids))."""
        shares = torch.zeros(len(ids), device=self.keys.device)
        for n, keys in enumerate(ngrams_at(ids, self.order, self.vocab_size), start=1):
            if len(keys) == 0 or len(self.keys) == 0:
                continue
            keys = keys.to(self.keys.device)
            position = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
            weight = torch.where(self.keys[position] == keys, self.weights[position].float(), 0.0)
            _, which, counts = keys.unique(return_inverse=True, return_counts=True)
            for start in range(n):  # the n-gram at i covers tokens i .. i + n - 1
                shares[start:start + len(keys)] += weight / counts[which] / n
        return shares

    def forward(self, texts: list[np.ndarray]) -> Tensor:
        """The log-odds (float32, one per text) of texts given as word ids."""
        sums = [self.weights[self.columns(ngram_keys(ids, self.order, self.vocab_size))].float().sum() for ids in texts]
        return (torch.stack(sums) if sums else torch.zeros(0, device=self.bias.device)) + self.bias

    def strongest(self, count: int) -> "NgramBag":
        """A copy keeping only the `count` n-grams of largest |weight| (a smaller bag to commit)."""
        kept = self.weights.float().abs().argsort(descending=True, stable=True)[:count].sort().values
        return NgramBag(self.keys[kept], self.weights[kept].float(), float(self.bias), order=self.order,
                        vocab_size=self.vocab_size)

    @classmethod
    def empty(cls, features: int, *, order: int, vocab_size: int) -> "NgramBag":
        """A bag of `features` zero weights, to load a saved bag's state into."""
        return cls(torch.zeros(features, dtype=torch.int64), torch.zeros(features), 0.0, order=order,
                   vocab_size=vocab_size)


def fit_ngram_bag(texts: list[np.ndarray], labels: Tensor, *, order: int = 3, vocab_size: int,
                  min_df: int = 2, alpha: float = 1.0, c: float = 0.1) -> NgramBag:
    """NBSVM on `texts` (word ids) and binary `labels`: n-grams seen in at least `min_df` texts, log-count
    ratios with `alpha` smoothing, then L2 logistic regression (loss sum + |w|^2 / 2c) by L-BFGS."""
    per_text = [ngram_keys(ids, order, vocab_size) for ids in texts]
    keys, df = torch.cat(per_text).unique(return_counts=True)
    keys = keys[df >= min_df]
    rows = [bag_columns(keys, k) for k in per_text]
    lengths = torch.tensor([len(r) for r in rows])
    columns = torch.cat(rows)
    y = labels.double()
    # naive-Bayes log-count ratio of each feature: how much likelier it is in positive texts
    positive = torch.repeat_interleave(labels.bool(), lengths)
    p = alpha + torch.bincount(columns[positive], minlength=len(keys)).double()
    q = alpha + torch.bincount(columns[~positive], minlength=len(keys)).double()
    ratio = (p / p.sum()).log() - (q / q.sum()).log()
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the two products used here are stable
        warnings.simplefilter("ignore", UserWarning)
        x = torch.sparse_csr_tensor(crow, columns, ratio[columns], size=(len(texts), len(keys)))
        xt = x.t().to_sparse_csr()
    w = torch.zeros(len(keys) + 1, dtype=torch.float64, requires_grad=True)  # last: the bias
    optimizer = torch.optim.LBFGS([w], lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:  # the loss and its gradient, by hand: autograd has no sparse CSR matmul backward
        coef, bias = w[:-1].detach(), w[-1].detach()
        z = x @ coef + bias
        residual = torch.sigmoid(z) - y
        w.grad = torch.cat([xt @ residual + coef / c, residual.sum()[None]])
        return F.softplus(z).sum() - y @ z + coef @ coef / (2 * c)

    optimizer.step(closure)
    coef = w.detach()[:-1]
    return NgramBag(keys, (ratio * coef).float(), w.detach()[-1].item(), order=order, vocab_size=vocab_size)


def bag_columns(keys: Tensor, text_keys: Tensor) -> Tensor:
    """The positions in sorted `keys` of those `text_keys` it holds."""
    if len(keys) == 0:
        return torch.zeros(0, dtype=torch.int64)
    position = torch.searchsorted(keys, text_keys).clamp(max=len(keys) - 1)
    return position[keys[position] == text_keys]
