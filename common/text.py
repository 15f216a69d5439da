"""Text to token ids: NLTK tokenization (no downloaded data needed), a corpus of interned tokens cached
as NumPy arrays, and a vocabulary built from training texts only."""

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import nltk
import numpy as np
from nltk.tokenize import RegexpTokenizer

from common.atomic_io import atomic_path
from common.data_dir import cache_dir
from common.cli import progress

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary
PAD_ID, UNK_ID = 0, 1
TOKEN_PATTERN = r"\w+(?:['’-]\w+)*|[^\w\s]"  # words (with inner ' or -), numbers, single punctuation
_MARKUP = re.compile(r"<[^>]*>")
_TOKENIZER = RegexpTokenizer(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """Lowercased tokens of `text`, with HTML markup such as `<br />` removed and entities decoded."""
    return _TOKENIZER.tokenize(html.unescape(_MARKUP.sub(" ", text)).lower())


@dataclass
class Corpus:
    """Tokenized texts as interned ids: text i is `words[flat[offsets[i]:offsets[i + 1]]]`."""

    words: list[str]
    flat: np.ndarray  # int32 ids into `words`
    offsets: np.ndarray  # int64, len(texts) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def word_counts(self, docs: np.ndarray | None = None) -> np.ndarray:
        """How often each of `words` occurs in the texts `docs` (all texts if None)."""
        if docs is None:
            return np.bincount(self.flat, minlength=len(self.words))
        pieces = [self.flat[self.offsets[i]:self.offsets[i + 1]] for i in docs]
        return np.bincount(np.concatenate(pieces) if pieces else np.zeros(0, np.int32),
                           minlength=len(self.words))


# Everything that shapes `tokenize`'s output, in the token cache's key (bump the version with its code).
TOKENIZER_SETTINGS = f"v2|{TOKEN_PATTERN}|{_MARKUP.pattern}|lower|html.unescape|nltk {nltk.__version__}"


def tokenize_corpus(texts: Sequence[str], *, desc: str = "tokenizing", quiet: bool = False) -> Corpus:
    """Tokenize `texts`, cached on disk under a key of their content and TOKENIZER_SETTINGS, so a
    second run skips the tokenizer; a cache that does not fit the texts is rebuilt."""
    digest = hashlib.sha256(TOKENIZER_SETTINGS.encode() + b"\0")
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace") + b"\0")
    cache = cache_dir() / f"tokens-{digest.hexdigest()[:24]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                joined = saved["words"].tobytes().decode("utf-8", errors="surrogatepass")
                corpus = Corpus(joined.split("\n") if joined else [], saved["flat"], saved["offsets"])
            if _is_corpus_of(corpus, len(texts)):
                return corpus
        except Exception:
            pass  # a damaged cache is rebuilt below
    index: dict[str, int] = {}
    flat: list[int] = []
    offsets = [0]
    for text in progress(texts, desc=desc, quiet=quiet):
        flat += [index.setdefault(token, len(index)) for token in tokenize(text)]
        offsets.append(len(flat))
    corpus = Corpus(list(index), np.array(flat, dtype=np.int32), np.array(offsets, dtype=np.int64))
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        # tokens hold no whitespace; surrogatepass lets any str round-trip, lone surrogates too
        words = np.frombuffer("\n".join(corpus.words).encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
        np.savez(f, words=words, flat=corpus.flat, offsets=corpus.offsets)
    return corpus


def _is_corpus_of(corpus: Corpus, texts: int) -> bool:
    """Whether a cached corpus is well formed for `texts` texts: int64 offsets from 0 to len(flat), never
    decreasing, one more than the texts; int32 ids that index its words."""
    flat, offsets = corpus.flat, corpus.offsets
    return (offsets.dtype == np.int64 and offsets.shape == (texts + 1,) and flat.dtype == np.int32
            and flat.ndim == 1 and offsets[0] == 0 and offsets[-1] == len(flat)
            and bool(np.all(np.diff(offsets) >= 0))
            and (len(flat) == 0 or (0 <= int(flat.min()) and int(flat.max()) < len(corpus.words))))


class Vocab:
    """Token <-> id, with `<pad>` = 0 and `<unk>` = 1; tokens outside it map to `<unk>`."""

    def __init__(self, words: list[str]):
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {words[:2]}")
        self.words = list(words)
        self.ids = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, corpus: Corpus, docs: np.ndarray | None = None, *, min_count: int = 1,
              max_size: int | None = None) -> "Vocab":
        """The tokens of texts `docs` seen at least `min_count` times, most frequent first (ties in
        order of first appearance), at most `max_size` entries including the two specials."""
        counts = corpus.word_counts(docs)
        order = np.argsort(-counts, kind="stable")
        keep = [corpus.words[i] for i in order if counts[i] >= min_count]
        if max_size is not None:
            keep = keep[:max(0, max_size - 2)]
        return cls([PAD, UNK] + keep)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids (int64) for a list of tokens."""
        return np.array([self.ids.get(token, UNK_ID) for token in tokens], dtype=np.int64)

    def encode_corpus(self, corpus: Corpus) -> list[np.ndarray]:
        """Token ids (int64) of every text in `corpus`; an empty text becomes a single `<unk>`."""
        lookup = self.encode(corpus.words)
        ids = lookup[corpus.flat]
        return [ids[a:b] if b > a else np.array([UNK_ID]) for a, b in
                zip(corpus.offsets[:-1], corpus.offsets[1:])]
