"""hw4: IMDB loading (folder and archive), tokenization, vocabulary, bucketed batches, the Transformer
(attention against PyTorch's, padding invariance), the region CNN (against a one-hot convolution), word
attributions and their display, and the train/eval/predict scripts on a tiny fixture."""

import argparse
import json
import re
import sys
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import common.text as text
from common.ensemble import Ensemble, vote
from common.errors import DataNotFoundError, UserError
import common.imdb as imdb
from common.imdb import load_imdb
from common.splits import split_groups, split_indices
from common.text import PAD_ID, UNK_ID, Vocab, tokenize, tokenize_corpus
from common.text_batches import TextBatches, pad_batch, truncate
from hw4.explain import (Reading, as_ansi, as_markers, bag_log_odds, ngram_pushes, plot_words, read_review,
                         word_attributions)
import hw4.explain
import hw4.model
import hw4.predict
from hw4.train import ENCODER_WEIGHTS, RECIPES, Recipe
from common.checkpoint import save_checkpoint
from hw4.model import (CHECKPOINT_KIND, MAX_BAG_FEATURES, BaggedClassifier, MultiHeadSelfAttention, RegionCNN,
                       TransformerClassifier, ModelConfig, compact_copy, load_model,
                       sinusoidal_positions)
from hw4.ngrams import NgramBag, fit_ngram_bag, keys_fit, ngram_keys, ngram_words
from hw4.report import evaluate_test, mistakes_report
from tests.conftest import (assert_drawn, assert_help, capture_figures, check_ensemble_run,
                            check_resume_after_interruption, full_batch_losses, no_network, run_main, run_script)




def built(config: dict) -> nn.Module:
    """The model a checkpoint's config dict describes."""
    return ModelConfig(**config).build()


def problem_of(config: dict) -> str | None:
    """What loading refuses in a checkpoint's config dict, or None."""
    return ModelConfig(**config).problem()

# --- data ------------------------------------------------------------------------------------------
def test_folder_loads_labelled_reviews_and_ignores_unsup_and_feat(imdb_dir):
    train = load_imdb(imdb_dir, "train", download=False)
    assert len(train) == 60 and train.labels.dtype == torch.int64
    assert train.labels.tolist() == [0] * 30 + [1] * 30
    assert "unlabelled" not in train.texts and "<br />" in train.texts[0]
    sample = train.sample(10)
    assert len(sample) == 10 and sample.texts == train.sample(10).texts and train.sample(None) is train
    assert len(load_imdb(imdb_dir, "test", download=False)) == 20


def test_archive_is_extracted_once_into_the_cache(imdb_dir, imdb_archive_dir, monkeypatch):
    from_archive = load_imdb(imdb_archive_dir, "train", download=False)
    assert from_archive.texts == load_imdb(imdb_dir, "train", download=False).texts
    assert not (imdb_archive_dir / "aclImdb").exists()  # the data folder is left untouched
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("archive extracted twice"))
    assert load_imdb(imdb_archive_dir, "test", download=False).labels.sum() == 10


def test_missing_and_malformed_layouts_are_clear_errors(imdb_dir, tmp_path):
    with pytest.raises(DataNotFoundError, match=r"IMDB train split not found: looked for .*aclImdb/train"):
        load_imdb(tmp_path / "empty", "train", download=False)
    for review in (imdb_dir / "aclImdb" / "test" / "pos").iterdir():
        review.unlink()
    with pytest.raises(UserError, match=r"test/pos: holds no .txt reviews"):
        load_imdb(imdb_dir, "test", download=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "aclImdb_v1.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"aclImdb_v1.tar.gz: not a readable .tar.gz archive"):
        load_imdb(tmp_path / "bad", "train", download=False)


def test_the_aclimdb_folder_itself_is_a_data_folder_too(imdb_dir):
    inside = load_imdb(imdb_dir / "aclImdb", "test", download=False)
    assert inside.texts == load_imdb(imdb_dir, "test", download=False).texts and len(inside) == 20


def test_a_failed_download_says_why_and_how_to_place_the_files_leaving_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(imdb.urllib.request, "urlopen", no_network)
    with pytest.raises(DataNotFoundError, match=r"the download from https://\S+aclImdb_v1.tar.gz failed \(no "
                       r"network\)\. Download aclImdb_v1.tar.gz by hand and put it \(or the aclImdb folder it holds\)"):
        load_imdb(tmp_path / "data", "train")  # the default data/, absent: made for the download, then removed
    assert not (tmp_path / "data").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made stays, emptied of the partial download
    with pytest.raises(DataNotFoundError, match="failed"):
        load_imdb(tmp_path / "mine", "train")
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_unreadable_bytes_are_replaced_not_fatal(imdb_dir):
    review = next((imdb_dir / "aclImdb" / "train" / "pos").iterdir())
    review.write_bytes(b"great \xff\xfe film")
    texts = load_imdb(imdb_dir, "train", download=False).texts
    assert "great \ufffd\ufffd film" in texts


def test_split_is_seeded_disjoint_and_complete():
    train, val = split_indices(100, 20, seed=1)
    assert len(val) == 20 and sorted(torch.cat([train, val]).tolist()) == list(range(100))
    assert torch.equal(val, split_indices(100, 20, seed=1)[1])
    assert not torch.equal(val, split_indices(100, 20, seed=2)[1])
    with pytest.raises(UserError, match="--val-size must be between 0 and 99"):
        split_indices(100, 100, seed=0)


def test_group_split_holds_out_whole_groups_with_each_labels_share():
    groups, labels = torch.arange(200) // 10, (torch.arange(200) >= 100).long()
    train, val = split_groups(groups, 40, seed=3, labels=labels)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(200))
    assert set(groups[val].tolist()).isdisjoint(groups[train].tolist()) and len(set(groups[val].tolist())) == 4
    assert labels[val].sum() == 20
    assert torch.equal(val, split_groups(groups, 40, seed=3, labels=labels)[1])
    assert not torch.equal(val, split_groups(groups, 40, seed=4, labels=labels)[1])
    cut_train, cut_val = split_groups(groups, 15, seed=0)  # only the last group taken is cut
    assert len(cut_val) == 15 and len(set(groups[cut_val].tolist()) & set(groups[cut_train].tolist())) == 1


def test_reviews_are_grouped_by_blocks_of_review_ids(imdb_dir, monkeypatch):
    monkeypatch.setattr(imdb, "MOVIE_BLOCK", 10)
    train = load_imdb(imdb_dir, "train", download=False)
    ids = [int(p.stem.split("_")[0]) for label in ("neg", "pos")
           for p in sorted((imdb_dir / "aclImdb" / "train" / label).glob("*.txt"))]
    assert train.groups.tolist() == [label * 10**9 + i // 10 for label, i in zip(train.labels.tolist(), ids)]
    assert len(train.groups.unique()) == 6 and len(train.subset(torch.arange(5)).groups) == 5


# --- tokens and vocabulary -------------------------------------------------------------------------
def test_tokenizer_lowercases_strips_markup_and_splits_punctuation():
    assert tokenize("Great film!<br /><br />I LOVED it, didn't you? Tom &amp; Jerry") == [
        "great", "film", "!", "i", "loved", "it", ",", "didn't", "you", "?", "tom", "&", "jerry"]
    assert tokenize("<i>so-so</i>...") == ["so-so", ".", ".", "."]
    assert tokenize("") == []


def test_corpus_is_cached_so_a_second_run_skips_the_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    texts = ["A good film.", "", "A bad, bad film!"]
    first = tokenize_corpus(texts, quiet=True)
    assert [first.words[i] for i in first.flat[first.offsets[2]:first.offsets[3]]] == \
        ["a", "bad", ",", "bad", "film", "!"]
    assert np.diff(first.offsets).tolist() == [4, 0, 6]
    monkeypatch.setattr(text, "tokenize", lambda _: pytest.fail("tokenized again"))
    again = tokenize_corpus(texts, quiet=True)
    assert again.words == first.words and np.array_equal(again.flat, first.flat)
    with pytest.raises(pytest.fail.Exception, match="tokenized again"):
        tokenize_corpus(["another text"], quiet=True)  # other texts are not served from the cache


def test_vocabulary_respects_min_count_max_size_and_training_texts_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    corpus = tokenize_corpus(["good good good bad", "good bad plot", "unseen words here"], quiet=True)
    vocab = Vocab.build(corpus, np.array([0, 1]), min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "good", "bad"]
    assert Vocab.build(corpus, np.array([0, 1]), min_count=1, max_size=3).words == ["<pad>", "<unk>", "good"]
    assert vocab.encode(["good", "plot", "unseen"]).tolist() == [2, UNK_ID, UNK_ID]
    encoded = vocab.encode_corpus(tokenize_corpus(["bad good", "", "zzz"], quiet=True))
    assert [ids.tolist() for ids in encoded] == [[3, 2], [UNK_ID], [UNK_ID]]  # never an empty sequence
    with pytest.raises(ValueError, match=r"^a vocabulary starts with '<pad>', '<unk>'; got \['good', 'bad'\]$"):
        Vocab(["good", "bad", "plot"])
    assert Vocab.build(corpus, np.array([0, 1])).words == ["<pad>", "<unk>", "good", "bad", "plot"]  # min_count 1
    assert Vocab.build(corpus, np.array([0, 1]), max_size=2).words == ["<pad>", "<unk>"]
    assert vocab.encode([]).dtype == np.int64


def test_vocabulary_ties_keep_the_order_of_first_appearance(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    words = [f"w{i}" for i in range(300)]
    corpus = tokenize_corpus([" ".join(words), "w299 w7"], quiet=True)
    assert Vocab.build(corpus).words == ["<pad>", "<unk>", "w7", "w299", *[w for w in words if w not in ("w7", "w299")]]
    assert Vocab.build(corpus, np.array([0])).words[2:] == words  # all seen once: in order


def test_word_counts_cover_every_word_for_any_choice_of_texts():
    corpus = text.Corpus(["a", "b", "c"], np.array([0, 1, 1, 0], dtype=np.int32), np.array([0, 2, 2, 4]))
    assert len(corpus) == 3
    assert corpus.word_counts().tolist() == [2, 2, 0]
    assert corpus.word_counts(np.array([2])).tolist() == [1, 1, 0]
    assert corpus.word_counts(np.array([1])).tolist() == [0, 0, 0]
    assert corpus.word_counts(np.array([], dtype=np.int64)).tolist() == [0, 0, 0]


def test_a_cached_corpus_is_used_only_when_it_is_well_formed():
    def corpus(words=("a", "b"), flat=(0, 1, 1), offsets=(0, 1, 3), flat_dtype=np.int32, offsets_dtype=np.int64):
        return text.Corpus(list(words), np.array(flat, dtype=flat_dtype), np.array(offsets, dtype=offsets_dtype))
    assert text._is_corpus_of(corpus(), 2)
    assert text._is_corpus_of(corpus(flat=(), offsets=(0, 0, 0)), 2)  # no tokens at all
    assert not text._is_corpus_of(corpus(), 3)
    assert not text._is_corpus_of(corpus(offsets_dtype=np.int32), 2)
    assert not text._is_corpus_of(corpus(flat_dtype=np.int64), 2)
    assert not text._is_corpus_of(text.Corpus(["a", "b"], np.zeros((1, 3), np.int32), np.array([0, 1, 3])), 2)
    assert not text._is_corpus_of(corpus(offsets=(1, 1, 3)), 2)
    assert not text._is_corpus_of(corpus(offsets=(0, 1, 2)), 2)
    assert not text._is_corpus_of(corpus(offsets=(0, 2, 1, 3)), 3)  # the ends right, a text of length -1
    assert text._is_corpus_of(corpus(offsets=(0, 3, 3)), 2)
    assert not text._is_corpus_of(corpus(flat=(0, -1, 1)), 2)
    assert not text._is_corpus_of(corpus(flat=(0, 2, 1)), 2)  # id 2 of 2 words
    assert not text._is_corpus_of(corpus(flat=(2,), offsets=(0, 0, 1)), 2)


def test_tokenizing_shows_progress_and_survives_unencodable_text(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(text, "progress", lambda texts, **kwargs: seen.append(kwargs) or texts)
    corpus = tokenize_corpus(["half a surrogate \ud800 here", "", ""])
    assert seen == [{"desc": "tokenizing", "quiet": False}]
    assert corpus.words == ["half", "a", "surrogate", "\ud800", "here"] and len(corpus) == 3
    monkeypatch.setattr(text, "tokenize", lambda _: pytest.fail("tokenized again"))
    assert tokenize_corpus(["half a surrogate \ud800 here", "", ""]).words == corpus.words  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    empty = tokenize_corpus(["", "<br />"])
    assert (empty.words, len(empty)) == ([], 2)
    assert tokenize_corpus(["", "<br />"]).words == []  # from the cache, still no words


UNPICKLED = []


def trip(mark: str) -> None:
    UNPICKLED.append(mark)


class Tripwire:
    """An object whose unpickling runs `trip` (as a hostile cache's code would run)."""

    def __reduce__(self):
        return trip, ("unpickled",)


def test_a_cache_holding_pickled_objects_is_rebuilt_not_unpickled(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    texts = ["a good film"]
    tokenize_corpus(texts, quiet=True)
    (cache,) = tmp_path.glob("tokens-*.npz")
    np.savez(cache, words=np.array([Tripwire()], dtype=object), flat=np.zeros(3, np.int32),
             offsets=np.array([0, 3]))
    assert tokenize_corpus(texts, quiet=True).words == ["a", "good", "film"] and UNPICKLED == []


# --- batches ---------------------------------------------------------------------------------------
def test_truncation_keeps_head_and_tail_and_padding_is_on_the_right():
    ids = np.arange(10)
    assert truncate(ids, 6, 2).tolist() == [0, 1, 6, 7, 8, 9]
    assert truncate(ids, 20, 2).tolist() == list(range(10))
    assert pad_batch([np.array([5, 6, 7]), np.array([8])]).tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]


def test_bucketed_batches_cover_the_data_pad_little_and_reshuffle():
    rng = np.random.default_rng(0)
    sequences = [np.full(int(n), 7) for n in rng.integers(1, 200, 300)]
    loader = TextBatches(sequences, torch.arange(300), batch_size=10, max_len=150, head=50, train=True,
                         pool=10)
    assert len(loader) == 30
    epochs = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        batches = list(loader)
        labels = torch.cat([y for _, y in batches])
        assert sorted(labels.tolist()) == list(range(300))
        padding = sum(int((x == PAD_ID).sum()) for x, _ in batches) / sum(x.numel() for x, _ in batches)
        assert padding < 0.1 and max(x.shape[1] for x, _ in batches) == 150
        epochs.append(labels.tolist())
    assert epochs[0] != epochs[1]
    evaluation = TextBatches(sequences, torch.arange(300), batch_size=64, max_len=150, head=50, train=False)
    assert sorted(torch.cat([y for _, y in evaluation]).tolist()) == list(range(300))


def test_batches_are_seeded_from_epoch_0_with_pools_of_50_and_ties_kept_in_order():
    sequences = [np.full(1 + i % 2, 7) for i in range(2000)]  # two lengths: many ties
    default = TextBatches(sequences, torch.arange(2000), batch_size=4, max_len=8, head=2, train=True)
    explicit = TextBatches(sequences, torch.arange(2000), batch_size=4, max_len=8, head=2, train=True, seed=0, pool=50)
    same = [b.tolist() for b in default.batches()]
    assert same == [b.tolist() for b in explicit.batches()]  # seed 0, pools of 50 batches
    explicit.set_epoch(0)
    assert same == [b.tolist() for b in explicit.batches()]  # before set_epoch: epoch 0
    rng = np.random.default_rng([0, 0])
    order = rng.permutation(2000)
    pools = [order[i:i + 200] for i in range(0, 2000, 200)]
    expected = [p[np.argsort(np.array([1 + j % 2 for j in p]), kind="stable")] for p in pools]
    expected = [b[i:i + 4] for b in expected for i in range(0, 200, 4)]
    assert same == [expected[i].tolist() for i in rng.permutation(len(expected))]
    evaluation = TextBatches(sequences, torch.arange(2000), batch_size=500, max_len=8, head=2, train=False)
    assert torch.cat([y for _, y in evaluation]).tolist() == list(range(0, 2000, 2)) + list(range(1, 2000, 2))


def test_batches_come_through_pin_memory_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: tensor + 100)  # pinning needs CUDA: a stand-in
    sequences = [np.arange(n) for n in (3, 5, 2)]
    plain = [x.tolist() for x, _ in TextBatches(sequences, torch.tensor([0, 1, 0]), batch_size=2, max_len=4, head=2,
                                                train=False)]
    pinned = TextBatches(sequences, torch.tensor([0, 1, 0]), batch_size=2, max_len=4, head=2, train=False, pin=True)
    assert [x.tolist() for x, _ in pinned] == [[[v + 100 for v in row] for row in batch] for batch in plain]
    assert [y.tolist() for _, y in pinned] == [[100, 100], [101]]


@pytest.mark.parametrize("head", [0, 4])
def test_head_may_be_anything_from_0_to_max_len(head):
    loader = TextBatches([np.arange(10)], torch.tensor([1]), batch_size=1, max_len=4, head=head, train=False)
    assert next(iter(loader))[0].tolist() == [list(range(head)) + list(range(10 - 4 + head, 10))]


def test_batches_carry_each_text_s_offset_beside_its_label():
    sequences = [np.arange(2, 2 + n) for n in (5, 2, 9, 4, 7)]
    labels, offsets = torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0.5, -1.0, 2.0, 3.0, -4.0])
    for train in (True, False):
        loader = TextBatches(sequences, labels, offsets=offsets, batch_size=2, max_len=6, head=2, train=train)
        seen = []
        for (ids, batch_offsets, batch_labels), index in zip(loader, loader.batches()):
            assert torch.equal(batch_offsets, offsets[index]) and torch.equal(batch_labels, labels[index])
            assert ids.shape[0] == len(index)
            seen += index.tolist()
        assert sorted(seen) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="5 sequences but 5 labels and 4 offsets"):
        TextBatches(sequences, labels, offsets=offsets[:4], batch_size=2, max_len=6, head=2, train=False)


def test_batches_refuse_mismatched_labels_and_a_head_beyond_max_len():
    with pytest.raises(ValueError, match=r"^2 sequences but 1 labels$"):
        TextBatches([np.arange(3)] * 2, torch.tensor([1]), batch_size=1, max_len=4, head=2, train=False)
    for head in (-1, 5):
        with pytest.raises(ValueError, match=rf"^head {head} must lie in \[0, max_len=4\]$"):
            TextBatches([np.arange(3)], torch.tensor([1]), batch_size=1, max_len=4, head=head, train=False)


@pytest.mark.parametrize("shard, world, split", [(True, 2, True), (False, 2, False), (None, 2, False), (True, 1, False)])
def test_batches_are_split_across_processes_only_when_sharded_under_torchrun(monkeypatch, shard, world, split):
    import common.text_batches
    calls = []

    def first_half(order, *, pad):  # this process's share; the batch holding text 0 goes to the other one
        calls.append(pad)
        return order[:0] if 0 in order.tolist() else order[:len(order) // 2]
    monkeypatch.setattr(common.text_batches, "world_size", lambda: world)
    monkeypatch.setattr(common.text_batches, "shard", first_half)
    sequences = [np.arange(1 + i) for i in range(8)]
    for train in (True, False):
        calls.clear()
        sharding = {} if shard is None else {"shard": shard}  # None: not asked for
        loader = TextBatches(sequences, torch.arange(8), batch_size=4, max_len=16, head=2, train=train, **sharding)
        got = [y.tolist() for _, y in loader]
        whole = [b.tolist() for b in loader.batches()]
        if split:
            assert calls == [train] * 2
            assert got == [b[:2] for b in whole if 0 not in b]  # the empty share is skipped, the rest still come
        else:
            assert calls == [] and got == whole


# --- model -----------------------------------------------------------------------------------------
def test_attention_matches_pytorch_multihead_attention_with_copied_weights():
    torch.manual_seed(0)
    ours, theirs = MultiHeadSelfAttention(32, 4), nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(3, 7, 32)
    keep = torch.ones(3, 7, dtype=torch.bool)
    keep[1, 5:] = keep[2, 2:] = False
    expected, _ = theirs(x, x, x, key_padding_mask=~keep, need_weights=False)
    torch.testing.assert_close(ours(x, keep), expected, rtol=1e-5, atol=1e-5)


def test_positions_are_the_sinusoids_of_the_paper():
    table = sinusoidal_positions(50, 16)
    assert table.shape == (50, 16)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 8))
    assert table[7, 0] == pytest.approx(np.sin(7)) and table[7, 3] == pytest.approx(np.cos(7 / 10_000 ** (2 / 16)))
    position, column = np.arange(50)[:, None], np.arange(16)
    angle = position / 10_000 ** (2 * (column // 2) / 16)
    expected = np.where(column % 2 == 0, np.sin(angle), np.cos(angle))
    torch.testing.assert_close(table, torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)


def test_the_classifier_is_the_documented_sequence_of_steps():
    """Embeddings scaled by sqrt(dim) plus positions, pre-norm residual blocks, a final norm, the mean over
    kept tokens (a lone known word, an all-unknown row keeping its <unk>s, padding dropped) and the head."""
    torch.manual_seed(0)
    model = TransformerClassifier(30, dim=8, layers=2, heads=2, max_len=6, dropout=0.0).eval()
    ids = torch.tensor([[5, PAD_ID, PAD_ID, PAD_ID], [UNK_ID, UNK_ID, PAD_ID, PAD_ID], [7, 9, UNK_ID, 4]])
    keeps = [[True, False, False, False], [True, True, False, False], [True, True, False, True]]
    with torch.no_grad():
        logits = model(ids)
        for row, keep in zip(range(3), keeps):
            keep = torch.tensor(keep)
            x = model.embed(ids[row:row + 1]) * 8 ** 0.5 + model.positions[:4]
            for block in model.blocks:
                x = x + block.attention(block.norm1(x), keep[None])
                x = x + block.feed_forward[2](nn.functional.gelu(block.feed_forward[0](block.norm2(x))))
            pooled = model.norm(x)[0, keep].mean(0)
            torch.testing.assert_close(logits[row], model.head(pooled), atol=1e-5, rtol=0)


def test_the_classifier_has_the_documented_defaults_and_sizes_from_its_config():
    model = TransformerClassifier(10)
    block = model.blocks[0]
    assert (model.dim, len(model.blocks), block.attention.heads, block.feed_forward[0].out_features) == (128, 2, 4, 512)
    assert (model.drop.p, block.drop.p, len(model.positions), model.head.out_features) == (0.1, 0.1, 512, 2)
    assert isinstance(block.feed_forward[1], nn.GELU) and model.embed.padding_idx == PAD_ID
    assert "positions" not in model.state_dict()  # rebuilt, not stored
    with pytest.raises(TypeError):
        TransformerClassifier(10, 8)  # sizes are keywords only
    config = {"vocab": ["<pad>", "<unk>", "a", "b"], "classes": ["neg", "pos"], "dim": 8, "layers": 3, "heads": 2,
              "ff_mult": 3, "dropout": 0.25, "max_len": 7, "head": 2}
    single = built(config)
    assert not isinstance(single, Ensemble) and single.embed.num_embeddings == 4
    assert (single.dim, len(single.blocks), single.blocks[0].attention.heads) == (8, 3, 2)
    assert (single.blocks[0].feed_forward[0].out_features, single.drop.p, len(single.positions)) == (24, 0.25, 7)
    pair = built({**config, "members": 2})
    assert isinstance(pair, Ensemble) and len(pair.members) == 2


def test_embeddings_start_small_with_a_zero_padding_row():
    torch.manual_seed(0)
    model = TransformerClassifier(4000, dim=64)
    assert torch.equal(model.embed.weight[PAD_ID], torch.zeros(64))
    assert model.embed.weight[2:].std().item() == pytest.approx(64 ** -0.5, rel=0.05)
    model(torch.tensor([[5, 6, PAD_ID]])).sum().backward()
    assert torch.equal(model.embed.weight.grad[PAD_ID], torch.zeros(64))  # padding never learns


def test_checkpoint_configs_are_checked_at_each_limit():
    good = {"vocab": ["<pad>", "<unk>", "a"], "classes": ["neg", "pos"], "dim": 8, "layers": 1, "heads": 2,
            "ff_mult": 2, "dropout": 0.0, "max_len": 6, "head": 2}
    vocab = "vocab must be a list of 2 to 1,000,000 words starting with <pad>, <unk>"
    sizes = "dim 1-4096, heads dividing it, layers 1-64, ff_mult 1-16 and members 1-16 are required"
    lengths = "max_len 1-65536, head 0-max_len and dropout in [0, 1) are required"
    cases = [({}, None), ({"vocab": ["<pad>", "<unk>"]}, None), ({"vocab": ["<unk>", "<pad>", "a"]}, vocab),
             ({"vocab": ["<pad>"]}, vocab), ({"vocab": ["<pad>", "<unk>", *map(str, range(999_999))]}, vocab),
             ({"classes": ["a", "b", "c"]}, "classes must be a list of 2 names"),
             ({"dim": 1, "heads": 1}, None), ({"dim": 4096, "heads": 1}, None), ({"dim": 0}, sizes),
             ({"dim": 4097, "heads": 1}, sizes), ({"heads": 8}, None), ({"heads": 3}, sizes), ({"heads": 0}, sizes),
             ({"heads": 16}, sizes), ({"layers": 64}, None), ({"layers": 65}, sizes), ({"layers": 0}, sizes),
             ({"ff_mult": 1}, None), ({"ff_mult": 16}, None), ({"ff_mult": 17}, sizes), ({"ff_mult": 0}, sizes),
             ({"members": 1}, None), ({"members": 16}, None), ({"members": 17}, sizes), ({"members": 0}, sizes),
             ({"max_len": 1, "head": 0}, None), ({"max_len": 65536}, None), ({"max_len": 0, "head": 0}, lengths),
             ({"max_len": 65537}, lengths), ({"head": 6}, None), ({"head": 7}, lengths), ({"head": -1}, lengths),
             ({"dropout": 0.99}, None), ({"dropout": 1.0}, lengths), ({"dropout": -0.1}, lengths),
             ({"dropout": 0}, lengths), ({"dropout": 1.5}, lengths)]
    for change, problem in cases:
        assert problem_of({**good, **change}) == problem, change
    # the parameter count: members x (vocab x dim + layers x (4 + 2 ff_mult) x dim^2), at most 200 million
    at_limit = {**good, "vocab": ["<pad>", "<unk>", *map(str, range(163_998))], "dim": 1000, "heads": 1,
                "ff_mult": 16}  # 164,000 x 1000 + 36 x 1000^2 = 200,000,000
    assert problem_of(at_limit) is None
    assert problem_of({**at_limit, "vocab": [*at_limit["vocab"], "one more"]}) == (
        "it implies 200,001,000 parameters, over the 200,000,000 a hw4 model may have")
    halves = {**at_limit, "vocab": at_limit["vocab"][:64_000], "members": 2}  # 2 x (64,000,000 + 36,000,000)
    assert problem_of(halves) is None
    assert problem_of({**halves, "layers": 2}).startswith("it implies 272,000,000 parameters")


def test_padded_batch_gives_the_same_logits_as_each_sequence_alone():
    torch.manual_seed(0)
    model = TransformerClassifier(50, dim=32, layers=2, heads=4, max_len=64).eval()
    sequences = [np.array([5, 9, 3, 7, 2, 8, 4]), np.array([11, 12]), np.array([6, 6, 6, 30])]
    batched = model(pad_batch(sequences))
    alone = torch.cat([model(torch.from_numpy(s)[None]) for s in sequences])
    assert batched.shape == (3, 2)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_model_rejects_bad_shapes_and_learns_a_toy_task():
    torch.manual_seed(0)
    model = TransformerClassifier(20, dim=32, layers=1, heads=4, max_len=16, dropout=0.0)
    with pytest.raises(ValueError, match="length <= 16"):
        model(torch.ones(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="model width 30 is not divisible by 4 heads"):
        MultiHeadSelfAttention(30, 4)
    ids = torch.randint(2, 20, (64, 10))
    labels = (ids == 3).any(1).long()  # positive when token 3 occurs anywhere
    losses = full_batch_losses(model, ids, labels, torch.optim.AdamW(model.parameters(), lr=3e-3), steps=40)
    assert losses[-1] < 0.5 * losses[0]


def test_unknown_words_are_ignored_like_padding_at_inference_only():
    torch.manual_seed(0)
    model = TransformerClassifier(30, dim=16, layers=2, heads=2, max_len=12, dropout=0.0).eval()
    ids = torch.randint(2, 30, (4, 8))
    with_unknown = torch.cat([ids, torch.full((4, 4), UNK_ID)], dim=1)
    with_unknown[1, 8:] = PAD_ID
    with torch.no_grad():
        torch.testing.assert_close(model(with_unknown), model(ids), rtol=1e-5, atol=1e-5)
        assert torch.isfinite(model(torch.tensor([[UNK_ID, UNK_ID, PAD_ID]]))).all()
        model.train()  # in training <unk> is a token like any other
        assert not torch.allclose(model(with_unknown), model(ids), atol=1e-3)


def test_ensemble_averages_its_members_probabilities():
    torch.manual_seed(0)
    members = [TransformerClassifier(30, dim=16, layers=1, heads=2, max_len=12).eval() for _ in range(3)]
    ids = torch.randint(2, 30, (5, 12))
    with torch.no_grad():
        expected = torch.stack([m(ids).softmax(-1) for m in members]).mean(0)
        assert torch.allclose(Ensemble(members)(ids).exp(), expected, atol=1e-6)
        assert torch.allclose(Ensemble(members[:1])(ids), members[0](ids).log_softmax(-1), atol=1e-6)


# --- the region CNN ----------------------------------------------------------------------------------
def test_cnn_checkpoint_configs_are_checked_at_each_limit():
    good = {"vocab": ["<pad>", "<unk>", "a", "b"], "classes": ["neg", "pos"], "dim": 8, "layers": 1, "heads": 2,
            "ff_mult": 2, "dropout": 0.25, "max_len": 6, "head": 2, "encoder": "cnn", "width": 4, "region": 2}
    cnn = "a cnn needs width 1-8192, region 1-16 and cnn_words 2-len(vocab)"
    cases = [({}, None), ({"encoder": "transformer"}, None), ({"encoder": "lstm"}, "encoder must be transformer or cnn"),
             ({"width": 1}, None), ({"width": 8192}, None), ({"width": 0}, cnn), ({"width": 8193}, cnn),
             ({"width": 4.0}, cnn), ({"width": None}, cnn), ({"region": 1}, None), ({"region": 16}, None),
             ({"region": 0}, cnn), ({"region": 17}, cnn), ({"region": None}, cnn), ({"cnn_words": 2}, None),
             ({"cnn_words": 4}, None), ({"cnn_words": 1}, cnn), ({"cnn_words": 5}, cnn)]
    for change, problem in cases:
        assert problem_of({**good, **change}) == problem, change
    model = built(good)
    assert isinstance(model, RegionCNN) and (model.width, model.region, model.drop.p) == (4, 2, 0.25)
    assert model.embed.weight.shape == (4, 8) and built({**good, "cnn_words": 3}).embed.weight.shape == (3, 8)
    transformer = {key: value for key, value in good.items() if key not in ("encoder", "width", "region")}
    assert problem_of(transformer) is None and isinstance(built(transformer), TransformerClassifier)
    # the parameter count: members x vocab x region x width, at most 200 million
    at_limit = {**good, "vocab": ["<pad>", "<unk>", *map(str, range(99_998))], "width": 1000, "region": 2}
    assert problem_of(at_limit) is None
    assert problem_of({**at_limit, "members": 2}).startswith("it implies 400,000,000 parameters")


def test_the_region_cnn_has_the_documented_defaults_and_starts_small():
    torch.manual_seed(0)
    model = RegionCNN(2000)
    assert (model.width, model.region, model.drop.p, model.head.out_features) == (500, 3, 0.5, 2)
    assert model.embed.weight.shape == (2000, 1500) and model.bias.abs().sum() == 0
    assert float(model.embed.weight[2:].detach().std()) == pytest.approx(0.1 / 3 ** 0.5, rel=0.01)
    assert float(RegionCNN(2000, width=10, region=4).embed.weight[2:].detach().std()) == pytest.approx(0.05, rel=0.05)


def one_hot_cnn(model: RegionCNN, ids: Tensor) -> Tensor:
    """The CNN's logits computed as its docstring says: a convolution over one-hot words (<unk> and padding
    as all-zero columns), ReLU, the max over the regions starting at each real word, the linear head."""
    vocab, (width, region) = len(model.embed.weight), (model.width, model.region)
    hot = F.one_hot(ids, vocab).float()
    hot[..., [PAD_ID, UNK_ID]] = 0
    filters = model.embed.weight.view(vocab, region, width).permute(2, 0, 1)  # (width, vocab, region)
    conv = F.conv1d(F.pad(hot.transpose(1, 2), (0, region - 1)), filters, model.bias)  # (B, width, T)
    pooled = torch.stack([F.relu(conv[b, :, ids[b] != PAD_ID]).amax(1) for b in range(len(ids))])
    return model.head(pooled)


def test_region_cnn_is_a_convolution_over_one_hot_words_max_pooled_over_the_review():
    torch.manual_seed(0)
    model = RegionCNN(30, width=16, region=3).eval()
    with torch.no_grad():
        model.bias.normal_()  # so that padding would show if it leaked into the max
        model.embed.weight[2:].normal_()
    ids = torch.tensor([[5, UNK_ID, 7, 9, 3, PAD_ID, PAD_ID], [4, 4, 2, 8, 9, 11, 12], [6, PAD_ID, PAD_ID, PAD_ID,
                                                                                       PAD_ID, PAD_ID, PAD_ID]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), one_hot_cnn(model, ids))
        torch.testing.assert_close(model(ids, model.embedded(ids)), model(ids))  # the attribution path
        alone = torch.cat([model(row[row != PAD_ID][None]) for row in ids])  # padding changes nothing
        torch.testing.assert_close(model(ids), alone)
    with pytest.raises(ValueError, match="expected token ids"):
        model(torch.ones(7, dtype=torch.long))


def test_region_cnn_never_trains_padding_or_unknown_words_and_learns_a_toy_task():
    torch.manual_seed(0)
    model = RegionCNN(20, width=32, region=2, dropout=0.0)
    assert model.embed.weight.shape == (20, 64) and model.embed.weight[[PAD_ID, UNK_ID]].abs().sum() == 0
    ids = torch.randint(1, 20, (64, 10))
    ids[::3, 7:] = PAD_ID
    labels = (ids[:, :-1] == 3).logical_and(ids[:, 1:] == 4).any(1).long()  # the bigram "3 4" decides
    ids[::2, 4:6] = torch.tensor([3, 4])
    labels[::2] = 1
    losses = full_batch_losses(model, ids, labels, torch.optim.AdamW(model.parameters(), lr=1e-2), steps=40)
    assert losses[-1] < 0.3 * losses[0] and model.embed.weight[[PAD_ID, UNK_ID]].abs().sum() == 0


def test_each_encoder_is_a_choice_of_the_encoder_option_and_names_its_own_recipe():
    import dataclasses
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(Recipe)}["encoder"]
    assert sorted(choices) == sorted(RECIPES) and all(recipe.encoder == name for name, recipe in RECIPES.items())


def test_each_encoder_trains_on_label_smoothed_cross_entropy_clipped_and_keeps_its_own_training_state(
        tmp_path, monkeypatch):
    import hw4.train
    calls = []
    monkeypatch.setattr(hw4.train, "fit", lambda *args, **kwargs: calls.append((args, kwargs)) or {"epoch": [1]})
    recipe = replace(hw4.train.RECIPES["cnn"], weight_decay=0.1, lr=0.01, epochs=2, warmup=0.25, label_smoothing=0.1,
                     members=2)
    args = argparse.Namespace(seed=4, out_dir=tmp_path, resume=True, precision="bf16", quiet=False, warmup=0.25)
    config = ModelConfig(vocab=["<pad>", "<unk>", "a", "b"], classes=["neg", "pos"], dim=8, layers=1, heads=2,
                         ff_mult=2, dropout=0.5, max_len=6, head=2, encoder="cnn", width=4, region=2)
    model, history = hw4.train.train_member(recipe, args, 0, config, [None] * 5, None, torch.device("cpu"))
    (trained, loss_fn, optimization, loader, val), kwargs = calls[0]
    assert trained is model and isinstance(model, RegionCNN) and history == {"epoch": [1]} and val is None
    assert isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.label_smoothing == 0.1
    assert optimization.grad_clip == 1.0
    decay, no_decay = optimization.optimizer.param_groups  # weight decay on the head's matrix only
    assert [p.shape for p in decay["params"]] == [(2, 4)] and decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0 and len(no_decay["params"]) == 3
    lrs = []
    for _ in range(10):
        lrs.append(optimization.optimizer.param_groups[0]["lr"])
        optimization.optimizer.step()
        optimization.scheduler.step()
    # 2 epochs of 5 steps: a quarter (2 steps) warming up, then down to 0 after the last
    assert lrs == pytest.approx([0.01 * f for f in (1 / 2, 1, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8)])
    assert kwargs["epochs"] == 2 and kwargs["precision"] == "bf16" and kwargs["desc"] == "member 1/2"
    assert kwargs["metrics"]["acc"](torch.tensor([[0.0, 1.0]]), torch.tensor([0])) == 0
    state = kwargs["checkpointing"]
    assert state.path == tmp_path / "train_state" / "member1.pt" and state.resume  # member 1 resumes
    assert state.kind == CHECKPOINT_KIND and state.config is config and state.settings["warmup"] == 0.25
    args.quiet = True
    hw4.train.train_member(replace(recipe, members=1), args, 0, config, [None] * 5, None, torch.device("cpu"))
    assert calls[1][1]["desc"] is None and calls[1][1]["checkpointing"].path.name == "last.pt"


def test_a_cnn_knowing_the_first_words_reads_the_others_as_unknown():
    torch.manual_seed(0)
    model = RegionCNN(30, width=8, region=2, dropout=0.25, num_classes=3).eval()
    with torch.no_grad():
        model.embed.weight[2:].normal_()
    small = model.first_words(12).eval()
    assert small.embed.weight.shape == (12, 16) and torch.equal(small.embed.weight, model.embed.weight[:12])
    assert (small.region, small.drop.p, small.head.out_features) == (2, 0.25, 3)
    ids = torch.tensor([[5, 11, 12, 29, 3], [2, 3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(small(ids), model(torch.where(ids >= 12, UNK_ID, ids)))
        assert not torch.allclose(small(ids)[0], model(ids)[0])
        assert small.embedded(ids)[0, 2:4].abs().sum() == 0  # nothing to attribute to words it does not know


# --- the n-gram bag (hw4/baseline.py) -------------------------------------------------------------
def toy_bag(vocab_size: int, seed: int = 0) -> NgramBag:
    """A 1-2-gram bag fitted on random texts whose label is whether word 3 follows word 2."""
    texts, labels = toy_ngram_task(vocab_size, seed)
    return fit_ngram_bag(texts, labels, order=2, vocab_size=vocab_size, min_df=1)


def toy_ngram_task(vocab_size: int, seed: int = 0) -> tuple[list[np.ndarray], torch.Tensor]:
    """200 random texts of 12 words; every other one has the bigram "2 3", which alone makes it positive."""
    generator = np.random.default_rng(seed)
    texts = [generator.integers(2, vocab_size, 12) for _ in range(200)]
    for text in texts[::2]:
        text[5:7] = [2, 3]
    labels = torch.tensor([int(any(a == 2 and b == 3 for a, b in zip(t, t[1:]))) for t in texts])
    return texts, labels


def test_ngram_keys_give_each_length_its_own_range_and_decode_back():
    keys = ngram_keys(np.array([2, 3, 2, 3]), order=3, vocab_size=10)
    # unigrams 2, 3; bigrams 23, 32 after the 10 unigram keys; trigrams 232, 323 after the 100 bigram keys
    assert keys.tolist() == [2, 3, 10 + 23, 10 + 32, 110 + 232, 110 + 323]
    assert [ngram_words(k, 3, 10) for k in keys.tolist()] == [[2], [3], [2, 3], [3, 2], [2, 3, 2], [3, 2, 3]]
    assert ngram_keys(np.array([7]), order=3, vocab_size=10).tolist() == [7]


def test_ngram_bag_is_the_same_on_every_fit_and_survives_a_save():
    a, b = toy_bag(30), toy_bag(30)
    assert torch.equal(a.keys, b.keys) and torch.equal(a.weights, b.weights) and float(a.bias) == float(b.bias)
    loaded = NgramBag.empty(len(a.keys), order=2, vocab_size=30)
    loaded.load_state_dict(a.state_dict())  # keys are stored as two halves and joined on loading
    texts, _ = toy_ngram_task(30, seed=1)
    assert torch.equal(loaded.keys, a.keys) and torch.equal(loaded(texts), a(texts))
    with pytest.raises(ValueError, match="do not fit in 47-bit keys"):
        NgramBag.empty(0, order=4, vocab_size=5000)


def test_ngram_bag_learns_the_deciding_bigram_and_weighs_it_by_its_class():
    bag = toy_bag(30)
    texts, labels = toy_ngram_task(30, seed=1)  # unseen texts of the same task
    assert ((bag(texts) > 0).long() == labels).float().mean() == 1.0
    z = bag([np.array([5, 2, 3, 9]), np.array([5, 3, 2, 9])])
    assert z[0] > 0 > z[1] and len(bag([])) == 0  # "2 3" is positive; "3 2" is not
    weight = {tuple(ngram_words(int(k), 2, 30)): float(w) for k, w in zip(bag.keys, bag.weights)}
    assert weight[(2, 3)] == max(weight.values()) > 1  # the deciding bigram outweighs every other n-gram
    # flipping every label flips the sign of the log-count ratios and so of every weight
    flipped = fit_ngram_bag(*(lambda t, y: (t, 1 - y))(*toy_ngram_task(30)), order=2, vocab_size=30, min_df=1)
    torch.testing.assert_close(flipped.weights.float(), -bag.weights.float(), atol=2e-3, rtol=0)


def test_ngram_bag_s_parts_add_up_to_its_log_odds():
    bag = toy_bag(30)
    for text in (np.array([5, 2, 3, 9]), np.array([2, 3, 2, 3, 2, 3])):
        keys, weights = bag.contributions(text)
        assert float(weights.sum() + bag.bias) == pytest.approx(float(bag([text])[0]), abs=1e-5)
        assert float(bag.token_shares(text).sum()) == pytest.approx(float(weights.sum()), abs=1e-5)
    w2, w3, w23 = bag.contributions(np.array([2, 3]))[1].tolist()  # a bigram's weight: half to each word
    assert bag.token_shares(np.array([2, 3])).tolist() == pytest.approx([w2 + w23 / 2, w3 + w23 / 2])
    strongest = bag.strongest(3)
    assert len(strongest.keys) == 3 and (2, 3) in [tuple(ngram_words(int(k), 2, 30)) for k in strongest.keys]


def test_encoders_beside_a_bag_add_their_weighted_log_odds_to_the_bag_s():
    torch.manual_seed(0)
    members = [TransformerClassifier(30, dim=16, layers=1, heads=2, max_len=12).eval() for _ in range(2)]
    ids, z = torch.randint(2, 30, (3, 7)), torch.tensor([2.0, -1.0, 0.0])
    one = BaggedClassifier(members[0], NgramBag.empty(0, order=1, vocab_size=30), encoder_weight=0.3)(ids, z)
    plain = members[0](ids)
    torch.testing.assert_close(one[:, 1] - one[:, 0], z + 0.3 * (plain[:, 1] - plain[:, 0]))
    torch.testing.assert_close(one.sum(1), torch.zeros(3))  # the log-odds split evenly between the classes
    both = BaggedClassifier(Ensemble(members), NgramBag.empty(0, order=1, vocab_size=30))(ids, z)  # weight 1
    voted = Ensemble(members)(ids)
    torch.testing.assert_close(both[:, 1] - both[:, 0], z + voted[:, 1] - voted[:, 0])
    half = torch.stack([m.embed(ids) for m in members], dim=1) * 0.5  # given embeddings replace each member's own
    got = BaggedClassifier(Ensemble(members), NgramBag.empty(0, order=1, vocab_size=30))(ids, z, half)
    voted = vote([m(ids, e) for m, e in zip(members, half.unbind(1))])
    torch.testing.assert_close(got[:, 1] - got[:, 0], z + voted[:, 1] - voted[:, 0])
    assert not torch.allclose(got, both)


def toy_config(**more) -> ModelConfig:
    """The config of a small Transformer (or, with `more`, another model) over a vocabulary of 30 words."""
    return ModelConfig(**{"vocab": ["<pad>", "<unk>", *map(str, range(28))], "classes": ["neg", "pos"], "dim": 8,
                          "layers": 1, "heads": 2, "ff_mult": 2, "dropout": 0.0, "max_len": 12, "head": 2, **more})


def test_the_committed_copy_keeps_the_bag_s_strongest_n_grams(monkeypatch):
    monkeypatch.setattr(hw4.model, "COMPACT_BAG", 5)
    bag = toy_bag(30)
    model = BaggedClassifier(TransformerClassifier(30, dim=8, layers=1, heads=2, max_len=12), bag, 0.2)
    config = toy_config(bag_order=2, bag_features=len(bag.keys))
    small, small_config = compact_copy(model, config)
    strongest = bag.weights.float().abs().sort(descending=True).values[:5]
    assert small_config == replace(config, bag_features=5) and len(small.bag.keys) == 5
    assert sorted(small.bag.weights.float().abs().tolist()) == sorted(strongest.tolist())
    assert small.encoders is model.encoders and small.encoder_weight == 0.2 and float(small.bag.bias) == float(bag.bias)
    plain = TransformerClassifier(30, dim=8, layers=1, heads=2, max_len=12)
    assert compact_copy(plain, config) == (plain, config)


@pytest.mark.parametrize("rows, words", [(600, 10), (10_000, 30), (1, 2)])
def test_the_committed_copy_s_cnns_share_a_budget_of_table_rows_among_the_most_frequent_words(monkeypatch, rows,
                                                                                             words):
    monkeypatch.setattr(hw4.model, "COMPACT_CNN_ROWS", rows)
    cnns = Ensemble([RegionCNN(30, width=10, region=3) for _ in range(2)])  # 2 x 30 entries a word
    config = toy_config(encoder="cnn", width=10, region=3, bag_order=2, members=2)
    small, small_config = compact_copy(BaggedClassifier(cnns, toy_bag(30), 0.5), config)
    assert small_config == replace(config, cnn_words=words, bag_features=len(small.bag.keys))
    assert small.encoder_weight == 0.5
    for big, member in zip(cnns.members, small.encoders.members):
        assert torch.equal(member.embed.weight, big.embed.weight[:words]) and torch.equal(member.bias, big.bias)
    alone, alone_config = compact_copy(cnns.members[0], replace(config, members=1))  # without a bag; one CNN
    assert isinstance(alone, RegionCNN) and alone_config.cnn_words == min(30, max(2, rows // 30))


def test_checkpoint_configs_with_a_bag_build_it_and_are_checked():
    config = {"vocab": ["<pad>", "<unk>"] + [f"w{i}" for i in range(28)], "classes": ["neg", "pos"], "dim": 8,
              "layers": 1, "heads": 2, "ff_mult": 2, "dropout": 0.0, "max_len": 6, "head": 2, "members": 2}
    assert isinstance(built(config), Ensemble) and problem_of(config) is None  # no bag: as before
    bagged = built({**config, "bag_order": 3, "bag_features": 7, "encoder_weight": 1.0})
    assert isinstance(bagged, BaggedClassifier) and isinstance(bagged.encoders, Ensemble)
    assert len(bagged.bag.keys) == 7 and bagged.bag.order == 3 and bagged.bag.vocab_size == 30
    assert problem_of({**config, "bag_order": 3, "bag_features": 0}) is None
    assert problem_of({**config, "bag_order": 3, "bag_features": MAX_BAG_FEATURES}) is None
    assert problem_of({**config, "bag_order": 3, "bag_features": 5, "encoder_weight": 0.0}) is None
    assert problem_of({**config, "bag_order": 3, "bag_features": 5, "encoder_weight": 10.0}) is None
    assert built({**config, "bag_order": 1, "bag_features": 0, "encoder_weight": 0.2}).encoder_weight == 0.2
    for bad in ({"bag_order": 4}, {"bag_order": -1}, {"bag_order": 2.0}, {"bag_order": 3, "bag_features": -1},
                {"bag_order": 3, "bag_features": MAX_BAG_FEATURES + 1}, {"encoder_weight": -0.1},
                {"encoder_weight": 10.5}, {"encoder_weight": 1}, {"encoder_weight": "1.0"}):
        assert "bag_order 0-3, bag_features 0-50,000,000 and encoder_weight in [0, 10] are required" == \
            problem_of({**config, "bag_features": 5, **bad})
    big = {**config, "vocab": config["vocab"] + [f"v{i}" for i in range(52_000)], "dim": 2, "heads": 1}
    assert problem_of({**big, "bag_order": 2, "bag_features": 1}) is None
    assert "do not fit the bag's 47-bit keys" in problem_of({**big, "bag_order": 3, "bag_features": 1})
    assert keys_fit(3, 52_000) and not keys_fit(3, 52_030) and keys_fit(2, 10_000_000)


def test_ngram_bag_reaches_the_optimum_autograd_finds_on_dense_features():
    bag = toy_bag(30)
    texts, labels = toy_ngram_task(30)
    x = torch.zeros(len(texts), len(bag.keys), dtype=torch.float64)
    for row, text in enumerate(texts):
        x[row, bag.columns(ngram_keys(text, 2, 30))] = 1.0
    y = labels.double()
    p, q = 1 + x[y == 1].sum(0), 1 + x[y == 0].sum(0)
    features = x * ((p / p.sum()).log() - (q / q.sum()).log())
    w = torch.zeros(len(bag.keys) + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-10)

    def closure():
        optimizer.zero_grad()
        logits = features @ w[:-1] + w[-1]
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") + w[:-1] @ w[:-1] / 0.2
        loss.backward()
        return loss

    optimizer.step(closure)
    torch.testing.assert_close(bag(texts), (features @ w[:-1] + w[-1]).detach().float(), atol=2e-3, rtol=0)


@pytest.mark.script
def test_baseline_beats_chance_and_refuses_bad_options(imdb_dir, tmp_path):
    out = tmp_path / "baseline"
    result = run_script("hw4/baseline.py", "--data-dir", imdb_dir, "--out-dir", out, "--val-size", "10",
                        "--order", "2", "--min-df", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["test_reviews"] == 20 and metrics["train_reviews"] == 50
    assert len(metrics["grid"]) == 6 and metrics["final_val_acc"] == max(g["val_acc"] for g in metrics["grid"])
    assert metrics["chosen"] in metrics["grid"] and metrics["model"] == "NBSVM, 1-2-grams"
    assert not (out / "mistakes.md").exists() and (out / "metrics.txt").read_text().startswith("accuracy ")
    smoke = run_script("hw4/baseline.py", "--data-dir", imdb_dir, "--out-dir", tmp_path / "smoke", "--limit", "40",
                       "--min-df", "1", "--quiet")  # --limit alone: validation shrinks to a tenth of it
    assert smoke.returncode == 0, smoke.stderr
    smoke_metrics = json.loads((tmp_path / "smoke" / "metrics.json").read_text())
    assert (smoke_metrics["val_reviews"], smoke_metrics["settings"]["val_size"]) == (4, 4)
    for option, value, message in (("--order", "0", "--order"), ("--min-df", "-1", "--min-df"),
                                   ("--val-size", "60", "--val-size")):
        bad = run_script("hw4/baseline.py", "--data-dir", imdb_dir, "--out-dir", tmp_path / "bad", "--quiet",
                         "--val-size", "10", option, value)
        last = bad.stderr.splitlines()[-1]  # argparse prints its usage first
        assert bad.returncode == 2 and "error: " in last and message in last, bad.stderr
        assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


# --- explanations ----------------------------------------------------------------------------------
def test_word_attributions_add_up_to_the_log_odds_change_and_skip_unknown_words():
    torch.manual_seed(0)
    model = Ensemble([TransformerClassifier(30, dim=16, layers=2, heads=2, max_len=12) for _ in range(2)]).eval()
    ids = torch.tensor([5, 9, UNK_ID, 12, 3, 27, 8])
    toward_positive = word_attributions(model, ids, target=1, steps=64)
    assert toward_positive.shape == (7,) and toward_positive[2] == 0  # <unk> is masked at inference
    with torch.no_grad():  # blank: every member's embeddings zero, as at the start of the path
        blank = torch.stack([m(ids[None], torch.zeros(1, 7, 16)).softmax(-1) for m in model.members]).mean(0).log()
        full = model(ids[None])
    change = float((full[0, 1] - full[0, 0]) - (blank[0, 1] - blank[0, 0]))
    assert float(toward_positive.sum()) == pytest.approx(change, abs=1e-3) and abs(change) > 0.01
    torch.testing.assert_close(word_attributions(model, ids, target=0, steps=64), -toward_positive, atol=1e-5, rtol=0)
    coarse = word_attributions(model, ids, target=1)  # 32 steps by default: the path's sum is a little less exact
    assert torch.equal(coarse, word_attributions(model, ids, target=1, steps=32))
    assert not torch.equal(coarse, toward_positive)


def test_word_attributions_beside_a_bag_are_the_encoders_part_and_n_gram_pushes_the_bag_s():
    torch.manual_seed(0)
    encoders = Ensemble([TransformerClassifier(30, dim=16, layers=2, heads=2, max_len=12) for _ in range(2)])
    model = BaggedClassifier(encoders, toy_bag(30), encoder_weight=0.5).eval()
    ids = torch.tensor([5, 9, UNK_ID, 12, 3, 27, 8])
    torch.testing.assert_close(word_attributions(model, ids, target=1), 0.5 * word_attributions(encoders, ids, 1))
    vocab = Vocab(["<pad>", "<unk>"] + [f"w{i}" for i in range(2, 30)])
    reading = read_review("w5 w2 w3 w9 w2 w3 nothing", vocab, max_len=4, head=1)  # the bag reads every token
    pushes = ngram_pushes(model, reading, vocab)
    keys, weights = model.bag.contributions(reading.whole)
    assert len(pushes) == len(keys) and [abs(p) for _, p in pushes] == sorted(map(abs, weights.tolist()), reverse=True)
    assert pushes[0][0] == "w2 w3" and pushes[0][1] == pytest.approx(float(weights.max()))  # the deciding bigram
    assert sum(p for _, p in pushes) == pytest.approx(float(model.bag([reading.whole]) - model.bag.bias), abs=1e-5)
    assert ngram_pushes(encoders, reading, vocab) == []


def test_strengths_are_steps_of_each_score_against_the_largest():
    scores = torch.tensor([2.0, -1.2, 0.2, 0.6, 0.19, -0.0], dtype=torch.float64)  # against 2: 1, .6, .1, .3, .095
    assert hw4.explain.strengths(scores) == [3, -3, 1, 2, 0, 0]
    assert hw4.explain.strengths(torch.zeros(3)) == [0, 0, 0]


def test_plot_words_wraps_each_review_under_its_title_and_shades_each_word_by_its_push(tmp_path, monkeypatch):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    figures = capture_figures(monkeypatch, hw4.explain)
    long = Reading([f"word{i}" for i in range(30)], torch.zeros(30, dtype=torch.int64), head=20, dropped=7)
    short = Reading(["fine", "awful", "ok"], torch.zeros(3, dtype=torch.int64), head=3, dropped=0)
    silent = Reading(["meh"], torch.zeros(1, dtype=torch.int64), head=1, dropped=0)
    scores = [torch.linspace(-1, 2, 30), torch.tensor([0.6, -1.0, 0.0], dtype=torch.float64),
              torch.zeros(1)]  # a share of exactly 0.6 is not yet white
    plot_words([long, short, silent], scores, ["first", "second", "third"], "the legend", tmp_path / "w.png", width=4.0)
    fig = figures["w.png"]
    renderer = FigureCanvasAgg(fig).get_renderer()  # saving closed the figure: a canvas to measure words with
    dpi, margin, line, width = fig.dpi, 8.0, 17.0, 4.0 * fig.dpi  # pixels, as plot_words lays out
    height = fig.get_size_inches()[1] * dpi
    assert fig.get_size_inches()[0] == 4.0 and len(fig.axes) == 1 and not fig.axes[0].axison
    assert [t.get_text() for t in fig.texts] == ["first", *long.words[:20], "[... 7 words not read ...]",
                                                 *long.words[20:], "second", "fine", "awful", "ok", "third", "meh",
                                                 "the legend"]
    blocks = [fig.texts[:32], fig.texts[32:36], fig.texts[36:38]]
    top, lines_per_block = height - margin, []
    for block, shares in zip(blocks, [[*(scores[0][:20] / 2).tolist(), 0.0, *(scores[0][20:] / 2).tolist()],
                                      [0.6, -1.0, 0.0], [0.0]]):
        title, words = block[0], block[1:]
        assert title.get_position() == pytest.approx((margin / width, (top - line) / height))
        assert (title.get_fontsize(), title.get_weight()) == (10, "bold")
        x, row = margin, 0
        for word, share in zip(words, shares):
            w = word.get_window_extent(renderer).width + 6
            if x + w > width - margin and x > margin:  # wrapped: the next line starts at the margin
                x, row = margin, row + 1
            assert word.get_position() == pytest.approx((x / width, (top - line * (row + 2.2)) / height))
            assert word.get_position()[0] * width + w <= width - margin or x == margin
            x += w
            box = word.get_bbox_patch()
            colour = matplotlib.colormaps["RdYlGn"](0.5 + share / 2)
            assert tuple(box.get_facecolor()) == pytest.approx((*colour[:3], min(1.0, abs(share) * 1.2)))
            assert tuple(box.get_edgecolor()) == (0, 0, 0, 0)
            assert box.get_boxstyle().pad == 0.13  # 1.2 points around a 9-point word, rounded by matplotlib
            assert word.get_fontsize() == 9
            assert word.get_color() == ("white" if abs(share) > 0.6 else "black")
        lines_per_block.append(row + 1)
        top -= line * (row + 1 + 2.5)
    assert lines_per_block[0] >= 3 and lines_per_block[1:] == [1, 1]  # the long review wraps at 4 inches
    assert height == pytest.approx(sum(line * (n + 2.5) for n in lines_per_block) + line + margin)
    legend = fig.texts[-1]
    assert legend.get_position() == pytest.approx((margin / width, (top - line * 0.6) / height))
    assert (legend.get_fontsize(), legend.get_color()) == (8, "dimgray")
    assert_drawn(tmp_path / "w.png")


def test_plot_words_is_9_inches_wide_and_never_leaves_a_line_empty_for_a_word_too_wide(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch, hw4.explain)
    wide = Reading(["w" * 120, "x" * 120], torch.zeros(2, dtype=torch.int64), head=2, dropped=0)  # each > 9 in
    plot_words([wide], [torch.ones(2)], ["title"], "legend", tmp_path / "w.png")
    fig = figures["w.png"]
    title, first, second, _ = fig.texts
    assert fig.get_size_inches()[0] == 9.0 and first.get_position()[0] == second.get_position()[0]  # each alone
    line = 17.0 / (fig.get_size_inches()[1] * fig.dpi)
    assert first.get_position()[1] == pytest.approx(title.get_position()[1] - 1.2 * line)  # on the first line
    assert second.get_position()[1] == pytest.approx(first.get_position()[1] - line)


def test_plot_words_fills_a_line_to_its_last_pixel_before_wrapping(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    figures = capture_figures(monkeypatch, hw4.explain)
    reading = Reading(["good", "film", "a"], torch.zeros(3, dtype=torch.int64), head=3, dropped=0)
    plot_words([reading], [torch.ones(3)], ["t"], "l", tmp_path / "probe.png")
    fig = figures["probe.png"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    w = [text.get_window_extent(renderer).width + 6 for text in fig.texts[1:4]]
    dpi = fig.dpi
    width = (8 + w[0] + w[1] + 8) / dpi  # "good film" ends exactly at the right margin
    assert w[2] < 16  # "a" would fit within the margin itself
    assert width * dpi - 8 == 8 + w[0] + w[1]  # exact in floating point, so the test is about the boundary
    plot_words([reading], [torch.ones(3)], ["t"], "l", tmp_path / "exact.png", width=width)
    good, film, a = figures["exact.png"].texts[1:4]
    assert good.get_position()[1] == film.get_position()[1] > a.get_position()[1]  # "a" wraps, "film" does not


def test_the_token_that_decides_a_toy_task_gets_the_largest_attribution():
    torch.manual_seed(0)
    model = TransformerClassifier(20, dim=32, layers=1, heads=4, max_len=16, dropout=0.0)
    ids = torch.randint(4, 20, (64, 10))
    ids[::2, 0] = 3
    ids = torch.stack([row[torch.randperm(10)] for row in ids])
    labels = (ids == 3).any(1).long()  # positive when token 3 occurs anywhere
    full_batch_losses(model, ids, labels, torch.optim.AdamW(model.parameters(), lr=3e-3), steps=60)
    generator = torch.Generator().manual_seed(1)
    for position in range(10):
        review = torch.randint(4, 20, (10,), generator=generator)
        review[position] = 3
        assert int(word_attributions(model, review, target=1).argmax()) == position


def test_reviews_are_read_as_the_model_reads_them_and_marked_by_their_push():
    vocab = Vocab(["<pad>", "<unk>", "good", "film", "bad"])
    text = "Good <br />film, so BAD film bad"
    reading = read_review(text, vocab, max_len=4, head=1)  # 7 tokens: the first, then the last 3
    assert reading.words == ["good", "bad", "film", "bad"] and reading.dropped == 3 and reading.head == 1
    assert reading.ids.tolist() == truncate(vocab.encode(tokenize(text)), 4, 1).tolist() == [2, 4, 3, 4]
    scores = torch.tensor([1.0, -0.5, 0.05, 0.2])
    assert as_markers(reading, scores) == "+++good [... 3 words not read ...] --bad film +bad"
    coloured = as_ansi(reading, scores)
    assert "\033[30;48;5;46mgood\033[0m" in coloured and "\033[30;48;5;210mbad\033[0m" in coloured
    assert " film " in coloured  # too small a push: left plain
    short = Reading(["good"], torch.tensor([2]), head=1, dropped=0)
    assert as_markers(short, torch.tensor([0.0])) == "good"


# --- scripts ---------------------------------------------------------------------------------------
# fp32 everywhere: under bf16 (auto on AVX-512 BF16) the tiny model learns another, weaker encoder
TINY = ["--encoder", "cnn", "--width", "32", "--epochs", "4", "--batch-size", "8", "--lr", "3e-2", "--val-size", "10",
        "--max-len", "32", "--head", "8", "--min-count", "1", "--warmup", "0.05", "--members", "1", "--device", "cpu",
        "--precision", "fp32"]
TINY_TRANSFORMER = [*TINY, "--encoder", "transformer", "--dim", "32", "--layers", "1", "--heads", "2", "--lr", "3e-3"]


@pytest.fixture
def trained(imdb_dir, tmp_path):
    """A tiny run of hw4/train.py on the fixture; returns (data dir, output dir)."""
    out = tmp_path / "out"
    result = run_script("hw4/train.py", "--data-dir", imdb_dir, "--out-dir", out, "--quiet", *TINY,
                        env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    return imdb_dir, out


@pytest.mark.script
def test_train_writes_metrics_that_beat_chance(trained):
    _, out = trained
    for name in ("training_curves.png", "confusion_matrix.png"):
        assert_drawn(out / name)
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert history["val_acc"][-1] == metrics["encoders_val_acc"] and len(history["epoch"]) == metrics["epochs"]
    weights = {float(w): acc for w, acc in metrics["encoder_weight_val_acc"].items()}  # 0: the bag alone
    chosen = max(ENCODER_WEIGHTS, key=lambda w: (weights[w], -w))
    assert list(weights) == [0.0, *ENCODER_WEIGHTS] and metrics["final_val_acc"] == weights[chosen]
    for name in ("model.pt", "model_int8.pt"):
        model, config = load_model(out / name, torch.device("cpu"))
        assert isinstance(model, BaggedClassifier) and model.encoder_weight == config.encoder_weight == chosen
        assert config.bag_order == 3 and len(model.bag.keys) == config.bag_features > 100
    assert metrics["test_reviews"] == 20 and metrics["accuracy"] >= 0.75 and metrics["per_class"]["pos"]["f1"] > 0.7
    assert metrics["train_reviews"] == 50 and sum(map(sum, metrics["confusion_matrix"])) == 20
    report = (out / "metrics.txt").read_text()
    assert report.startswith("accuracy ") and "false pos" in report and "command    python hw4/train.py" in report


@pytest.mark.script
def test_eval_and_predict_work_from_the_checkpoint(trained, tmp_path):
    data_dir, out = trained
    result = run_script("hw4/eval.py", "--checkpoint", out / "model.pt", "--data-dir", data_dir,
                        "--out-dir", tmp_path / "eval", "--device", "cpu", env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["accuracy"])
    assert evaluated["precision"] == "fp32"  # the eval default, whatever the machine
    assert (tmp_path / "eval" / "mistakes.md").read_text() == (out / "mistakes.md").read_text()
    review = tmp_path / "review.txt"
    review.write_text("A wonderful, superb and brilliant film. Loved it!")
    for checkpoint in ("model.pt", "model_int8.pt"):  # the compact copy predicts as the full one
        result = run_script("hw4/predict.py", "--top", "2", "awful boring terrible waste", "--file", review,
                            "--checkpoint", out / checkpoint, "--device", "cpu")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[0].startswith('"awful boring terrible waste": neg ') and lines[1].startswith(f"{review}: pos ")
        ranked = [[float(part.split()[-1]) for part in line.rsplit(": ", 1)[1].split(", ")] for line in lines]
        assert all(len(p) == 2 and p[0] > 0.5 > p[1] and sum(p) == pytest.approx(1, abs=2e-3) for p in ranked)
        if checkpoint == "model.pt":
            full = ranked
    assert sum(ranked, []) == pytest.approx(sum(full, []), abs=0.02)
    result = run_script("hw4/predict.py", "dull and boring", "--top", "1", "superb, loved it", "--device", "cpu",
                        "--checkpoint", out / "model.pt")  # options between the reviews
    assert result.returncode == 0 and [line.split(": ")[1].split()[0] for line in result.stdout.splitlines()] == [
        "neg", "pos"], result.stderr


@pytest.mark.script
def test_explain_prints_each_word_with_plain_markers_and_draws_them(trained, tmp_path):
    _, out = trained
    result = run_script("hw4/predict.py", "The plot was AWFUL, and the actor", "--explain", "--explain-png",
                        tmp_path / "words.png", "--checkpoint", out / "model.pt", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    marked = lines[lines.index("wrote " + str(tmp_path / "words.png")) - 2].split()  # plain: not a terminal
    grams = lines[lines.index("wrote " + str(tmp_path / "words.png")) - 1]  # the bag's, strongest first
    pushes = [float(part.rsplit(" ", 1)[1]) for part in grams.split(": ", 1)[1].split(", ")]
    assert re.fullmatch(r"n-grams, [+-]\d+\.\d\d log-odds from \d+: .+", grams) and 1 <= len(pushes) <= 8
    assert pushes == sorted(pushes, key=abs, reverse=True) and grams.count('"') == 2 * len(pushes)
    assert [word.lstrip("+-") for word in marked] == ["the", "plot", "was", "awful", ",", "and", "the", "actor"]
    assert any(word.startswith(("+++", "---")) for word in marked) and "\033" not in result.stdout
    assert "push toward pos: " in result.stdout
    assert_drawn(tmp_path / "words.png")
    model, config = load_model(out / "model.pt", torch.device("cpu"))  # the push printed is toward pos, classes[1]
    vocab = Vocab(config.vocab)
    reading = read_review("The plot was AWFUL, and the actor", vocab, config.max_len, config.head)
    toward_pos = float(word_attributions(model, reading.ids, target=1).sum())
    assert f"push toward pos: {toward_pos:+.2f} log-odds" in result.stdout and abs(toward_pos) >= 0.01


@pytest.mark.script
def test_mistakes_md_lists_the_most_confident_mistakes_of_each_kind(trained):
    data_dir, out = trained
    model, config = load_model(out / "model.pt", torch.device("cpu"))
    test = load_imdb(data_dir, "test", download=False)
    _, cm, probabilities = evaluate_test(model, config, test, device=torch.device("cpu"), precision="fp32",
                                         quiet=True)
    reviews = Vocab(config.vocab).encode_corpus(tokenize_corpus(test.texts, quiet=True))
    with torch.no_grad():  # one review at a time, in the order of `test`
        alone = torch.cat([model(torch.from_numpy(truncate(ids, 32, 8))[None], model.bag([ids])).softmax(-1)
                           for ids in reviews])
    torch.testing.assert_close(probabilities, alone, atol=1e-5, rtol=0)
    mistakes = (out / "mistakes.md").read_text()
    (_, false_pos), (false_neg, _) = cm.tolist()
    assert mistakes.startswith("# hw4: the most confident test mistakes\n")
    assert f"{false_pos + false_neg} of 20 test reviews are misclassified" in mistakes
    assert mistakes.count("\n## neg review #") == min(5, false_pos) and mistakes.count("read as neg") == min(5, false_neg)
    for section in mistakes.split("\n## ")[1:]:
        index = int(section.split("#")[1].split(",")[0])
        assert section.split()[0] == ("neg", "pos")[int(test.labels[index])] and "\n> " in section
    # every review read wrongly and surely: each section lists the n-grams that pushed it the wrong way
    wrong = torch.nn.functional.one_hot(1 - test.labels, 2).float()
    report = mistakes_report(model, config, test, wrong, per_kind=2)
    sections = report.split("\n## ")[1:]
    assert len(sections) == 4 and "the n-grams listed pushed it there through the n-gram bag" in report
    vocab = Vocab(config.vocab)
    for section in sections:
        index = int(section.split("#")[1].split(",")[0])
        guess = 1 - int(test.labels[index])
        sign = 1 if guess == 1 else -1
        expected = [(g, sign * p) for g, p in ngram_pushes(model, read_review(test.texts[index], vocab, 32, 8), vocab)
                    if sign * p > 0][:6]
        line = next(line for line in section.splitlines() if line.startswith("N-grams toward "))
        assert line == f"N-grams toward {('neg', 'pos')[guess]}: " + ", ".join(f"{g} {p:+.2f}" for g, p in expected)


@pytest.mark.script
def test_resume_after_ctrl_c_in_epoch_3_ends_as_the_uninterrupted_run(trained, tmp_path):
    data_dir, out = trained
    check_resume_after_interruption("hw4", ["--data-dir", data_dir, "--quiet", *TINY], out, tmp_path / "resumed",
                                    saves=2, env={"CSE849_CACHE": str(tmp_path / "c")})


@pytest.mark.script
def test_an_ensemble_run_trains_each_member_saves_evaluates_and_resumes(imdb_dir, tmp_path):
    args = ["--data-dir", imdb_dir, *TINY, "--epochs", "2", "--members", "2"]
    check_ensemble_run("hw4", args, imdb_dir, tmp_path / "ensemble", {"CSE849_CACHE": str(tmp_path / "c")})


@pytest.mark.script
def test_without_a_bag_the_encoders_are_the_model(imdb_dir, tmp_path):
    out = tmp_path / "alone"
    result = run_script("hw4/train.py", "--data-dir", imdb_dir, "--out-dir", out, *TINY_TRANSFORMER, "--epochs", "1",
                        "--bag-order", "0", env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    assert "n-gram bag" not in result.stdout and "encoders' weight" not in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert "encoder_weight_val_acc" not in metrics and metrics["settings"]["bag_order"] == 0
    for name in ("model.pt", "model_int8.pt"):
        model, config = load_model(out / name, torch.device("cpu"))
        assert isinstance(model, TransformerClassifier) and config.bag_order == config.bag_features == 0


@pytest.mark.script
def test_missing_layout_and_foreign_checkpoint_are_one_line_errors(trained, tmp_path, monkeypatch):
    (tmp_path / "nothing").mkdir()
    monkeypatch.setattr(imdb.urllib.request, "urlopen", no_network)
    result = run_script("hw4/train.py", "--data-dir", tmp_path / "nothing", "--out-dir", tmp_path / "fresh",
                        "--device", "cpu")
    assert result.returncode == 3 and result.stderr.count("\n") == 1
    assert f"looked for {tmp_path / 'nothing'}/aclImdb/train" in result.stderr
    assert "failed (no network)" in result.stderr
    data_dir, _ = trained
    result = run_script("hw4/eval.py", "--checkpoint", "hw0/results/q2_model.pt", "--data-dir", data_dir,
                        "--out-dir", tmp_path, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds a 'hw0-q2-linear' model, expected 'hw4-imdb-transformer'" in result.stderr
    result = run_script("hw4/train.py", "--data-dir", data_dir, "--max-len", "100", "--head", "300",
                        "--out-dir", tmp_path / "fresh", "--device", "cpu")
    assert result.returncode == 2 and result.stderr == "error: --head 300 must be between 0 and --max-len 100\n"
    result = run_script("hw4/predict.py", "--checkpoint", tmp_path / "absent.pt", "some text", "--device", "cpu")
    assert result.returncode == 2 and "absent.pt: no such checkpoint file" in result.stderr


# --- predict.py in-process, on a tiny checkpoint ------------------------------------------------
def tiny_checkpoint(path) -> tuple[nn.Module, ModelConfig]:
    """A small untrained encoder saved as train.py saves it."""
    torch.manual_seed(0)
    config = ModelConfig(vocab=["<pad>", "<unk>", "good", "bad", "film", "great", "awful"], classes=["neg", "pos"],
                         dim=8, layers=1, heads=2, ff_mult=2, dropout=0.0, max_len=6, head=2)
    model = config.build().eval()
    save_checkpoint(path, kind=CHECKPOINT_KIND, model=model, config=config)
    return model, config


def test_predict_prints_each_reviews_classes_and_warns_when_it_has_no_known_words(tmp_path, monkeypatch, capsys):
    model, config = tiny_checkpoint(tmp_path / "model.pt")
    review = tmp_path / "review.txt"
    review.write_text("An awful film, bad bad bad.")
    long = "good film " * 40
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, "good film", "--file", review, "zzz qqq", "",
                                long, "--top", "2", "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 0, err
    vocab = Vocab(config.vocab)
    texts = ["good film", "zzz qqq", "", long, "An awful film, bad bad bad."]
    readings = [read_review(t, vocab, 6, 2) for t in texts]
    with torch.no_grad():
        probabilities = model(pad_batch([r.ids for r in readings])).softmax(1)
    names = ['"good film"', '"zzz qqq"', '""', '"' + ("good film " * 7)[:70] + '..."', str(review)]
    expected = [f"{name}: " + ", ".join(f"{config.classes[i]} {p:.3f}" for p, i in
                                        zip(*[v.tolist() for v in probabilities[k].topk(2)]))
                for k, name in enumerate(names)]
    assert out.splitlines() == expected
    assert err.splitlines() == [
        'warning: "zzz qqq": none of its words is in the model\'s vocabulary, so the model reads only unknown-word '
        "tokens; its score says nothing about the review",
        'warning: "" holds no words; its score is the model\'s lean on an empty review']


def test_predict_explains_each_review_and_names_unreadable_files(tmp_path, monkeypatch, capsys):
    model, config = tiny_checkpoint(tmp_path / "model.pt")
    folder = tmp_path / "a folder"
    folder.mkdir()
    figures = capture_figures(monkeypatch, hw4.explain)
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, "great film, good", "--file", folder,
                                "--explain", "--explain-png", tmp_path / "why.png", "--checkpoint",
                                tmp_path / "model.pt", "--device", "cpu")
    assert status == 2 and err.strip().splitlines()[-1] == "error: 1 of 1 review files could not be read (see above)"
    reading = read_review("great film, good", Vocab(config.vocab), 6, 2)
    with torch.no_grad():
        p = model(reading.ids[None]).softmax(1)[0]
    label = int(p.argmax())
    score = word_attributions(model, reading.ids, target=1)
    assert out.splitlines()[2:4] == [
        f"{config.classes[label]} {p[label]:.3f}  (the words' push toward pos: {float(score.sum()):+.2f} log-odds)",
        as_markers(reading, score)]
    assert f"{config.classes[label]} {p[label]:.3f}  \"great film, good\"" in [t.get_text() for t in figures["why.png"].texts]


def test_predict_adds_the_bag_s_log_odds_and_lists_its_strongest_n_grams(tmp_path, monkeypatch, capsys):
    encoder, config = tiny_checkpoint(tmp_path / "plain.pt")
    texts = [np.array(t) for t in ([5, 4, 1, 2, 4, 1, 5, 2, 4], [3, 4, 1, 6, 4, 1, 3, 6, 4], [5, 2, 4], [6, 3, 4])]
    bag = fit_ngram_bag(texts * 5, torch.tensor([1, 0, 1, 0] * 5), order=2, vocab_size=7, min_df=1)
    model = BaggedClassifier(encoder, bag, encoder_weight=0.5).eval()
    config = replace(config, bag_order=2, bag_features=len(bag.keys), encoder_weight=0.5)
    save_checkpoint(tmp_path / "model.pt", kind=CHECKPOINT_KIND, model=model, config=config)
    review = "great film, good film and great good film"  # 9 tokens (, and and: <unk>): the bag reads all
    status, out, _ = run_main(monkeypatch, capsys, hw4.predict.main, review, "--explain", "--top", "2",
                              "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    vocab = Vocab(config.vocab)
    reading = read_review(review, vocab, 6, 2)
    assert status == 0 and reading.dropped == 3 and len(reading.whole) == 9
    with torch.no_grad():
        z = bag([reading.whole])
        p = model(reading.ids[None], z).softmax(1)[0]
    assert float(z) > float(bag.bias) + 1  # the bag reads "great" and "good", the dropped words too
    lines = out.splitlines()
    assert lines[0] == f'"{review}": pos {p[1]:.3f}, neg {p[0]:.3f}'
    pushes = ngram_pushes(model, reading, vocab)
    assert len(pushes) > 8 and lines[-1] == (f"n-grams, {sum(q for _, q in pushes):+.2f} log-odds from {len(pushes)}: "
                                             + ", ".join(f'"{g}" {q:+.2f}' for g, q in pushes[:8]))
    assert lines[-2] == as_markers(reading, word_attributions(model, reading.ids, target=1))


def test_bag_log_odds_are_the_bag_s_for_the_whole_reviews_and_none_without_a_bag():
    bag = toy_bag(30)
    encoder = TransformerClassifier(30, dim=8, layers=1, heads=2, max_len=4)
    vocab = Vocab(["<pad>", "<unk>"] + [f"w{i}" for i in range(2, 30)])
    readings = [read_review(t, vocab, max_len=4, head=1) for t in ("w5 w2 w3 w9 w7 w8", "w3 w2 w9")]
    expected = bag([np.array([5, 2, 3, 9, 7, 8]), np.array([3, 2, 9])])
    torch.testing.assert_close(bag_log_odds(BaggedClassifier(encoder, bag), readings), expected)
    assert float(expected[0]) > 0 > float(expected[1])  # "w2 w3", cut from what the encoder reads, still counts
    assert bag_log_odds(encoder, readings) is None


def test_predict_reads_its_default_checkpoint_from_the_repository_and_shows_the_top_class(tmp_path, monkeypatch,
                                                                                          capsys):
    import common.cli
    (tmp_path / "repo" / "hw4" / "results").mkdir(parents=True)
    model, config = tiny_checkpoint(tmp_path / "repo" / "hw4" / "results" / "model_int8.pt")
    monkeypatch.setattr(common.cli, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    exact = "good film " * 6 + "good films"  # 70 characters: shown whole
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, exact, "--device", "cpu")
    assert status == 0, err
    with torch.no_grad():
        p = model(read_review(exact, Vocab(config.vocab), 6, 2).ids[None]).softmax(1)[0]
    assert out == f'"{exact}": {config.classes[int(p.argmax())]} {float(p.max()):.3f}\n'  # one class


def test_predict_explains_in_markers_or_colour_and_draws_with_a_legend(tmp_path, monkeypatch, capsys):
    model, config = tiny_checkpoint(tmp_path / "model.pt")
    reading = read_review("great film, good", Vocab(config.vocab), 6, 2)
    score = word_attributions(model, reading.ids, target=1)
    args = ["great film, good", "--checkpoint", tmp_path / "model.pt", "--device", "cpu"]
    status, out, _ = run_main(monkeypatch, capsys, hw4.predict.main, *args, "--explain")
    assert status == 0 and out.splitlines()[-1] == as_markers(reading, score)  # not a terminal: plain markers
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    status, out, _ = run_main(monkeypatch, capsys, hw4.predict.main, *args, "--explain")
    assert status == 0 and out.splitlines()[-1] == as_ansi(reading, score)
    figures = capture_figures(monkeypatch, hw4.explain)
    status, out, _ = run_main(monkeypatch, capsys, hw4.predict.main, *args, "--explain-png", tmp_path / "why.png")
    assert status == 0 and "+" not in out  # the figure alone: no words printed
    assert figures["why.png"].texts[-1].get_text() == (
        "integrated gradients: green pushed toward pos, red toward neg; the darker, the larger against the "
        "review's strongest word")


def test_predict_refuses_to_draw_over_a_review_file_and_says_when_none_could_be_read(tmp_path, monkeypatch, capsys):
    tiny_checkpoint(tmp_path / "model.pt")
    review = tmp_path / "review.png"  # a review file that happens to end in .png
    review.write_text("a good film")
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, "--file", review, "--explain-png", review,
                                "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 2 and err.strip() == f"error: --explain-png {review}: that is one of the inputs; name a new file"
    assert review.read_text() == "a good film" and out == ""
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, "--file", tmp_path / "x.txt", "--file",
                                tmp_path / "y.txt", "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 2 and err.strip().splitlines()[-1] == "error: none of the 2 review files could be read"


def test_predict_help_names_its_inputs_and_options_with_their_defaults(monkeypatch, capsys):
    assert_help(monkeypatch, capsys, hw4.predict.main,
                "usage: script [-h] [--seed SEED] [--threads THREADS] [--device {auto,cpu,cuda,mps}] [--quiet] "
                "[--file FILE] [--checkpoint CHECKPOINT] [--top TOP] [--explain] [--explain-png OUT.png] [TEXT ...] ",
                ("TEXT review texts (quote each one)",
                 "--file FILE a text file holding one review (repeat for more) --checkpoint",
                 "--checkpoint CHECKPOINT a model.pt or model_int8.pt that hw4/train.py wrote (default: "
                 "hw4/results/model_int8.pt)",
                 "--top TOP how many classes to show, most likely first (default: 1)",
                 "--explain also print each review with its words marked by how far they pushed the decision "
                 "(green/+ toward positive, red/- toward negative; colour only on a terminal) --explain-png",
                 "--explain-png OUT.png also write each review with its words marked as a figure"))


def test_predict_without_a_review_is_one_error_line(tmp_path, monkeypatch, capsys):
    tiny_checkpoint(tmp_path / "model.pt")
    status, out, err = run_main(monkeypatch, capsys, hw4.predict.main, "--checkpoint", tmp_path / "model.pt")
    assert status == 2 and err.strip() == "error: give a review text or --file FILE" and out == ""
