"""Properties checked on many random cases (hypothesis), where one hand-made case would be weak: metrics
against brute-force counts, epoch means over unequal batches, splits, atomic writes, the ensemble vote,
tokens and vocabularies, and CIFAR pixels read back from both on-disk formats."""

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from common.atomic_io import atomic_path, write_text
from common.cifar import load_cifar10
from common.ensemble import Ensemble, vote
from common.errors import UserError
from common.metrics import accuracy, classification_report, confusion_matrix
from common.splits import split_groups, split_indices
from common.text import PAD, UNK, UNK_ID, Vocab, tokenize, tokenize_corpus
from common.training import evaluate

unicode = st.characters(blacklist_categories=("Cs",))  # any character UTF-8 can encode (no lone surrogates)
FEW = settings(max_examples=40, deadline=None, derandomize=True)  # the same cases on every run: CI never flakes


@st.composite
def labelled(draw, max_classes: int = 5) -> tuple[torch.Tensor, torch.Tensor, int]:
    classes = draw(st.integers(2, max_classes))
    n = draw(st.integers(1, 60))
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    predictions = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    return torch.tensor(predictions), torch.tensor(targets), classes


@FEW
@given(labelled())
def test_metrics_equal_a_brute_force_count(case):
    predictions, targets, classes = case
    cm = confusion_matrix(predictions, targets, classes)
    pairs = list(zip(targets.tolist(), predictions.tolist()))
    assert cm.tolist() == [[pairs.count((t, p)) for p in range(classes)] for t in range(classes)]
    report = classification_report(cm, [f"c{k}" for k in range(classes)])
    f1s = []
    for k in range(classes):
        tp = pairs.count((k, k))
        predicted, actual = predictions.tolist().count(k), targets.tolist().count(k)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1s.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
        scores = report["per_class"][f"c{k}"]
        assert (scores["precision"], scores["recall"], scores["support"]) == (
            pytest.approx(precision), pytest.approx(recall), actual)
        assert scores["f1"] == pytest.approx(f1s[-1])
    assert report["accuracy"] == pytest.approx(sum(t == p for t, p in pairs) / len(pairs))
    assert report["macro_f1"] == pytest.approx(sum(f1s) / classes)


@FEW
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2**16))
def test_epoch_loss_and_accuracy_are_per_sample_means_whatever_the_batch_sizes(sizes, seed):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(3, 4)
    x, y = torch.randn(sum(sizes), 3, generator=generator), torch.randint(0, 4, (sum(sizes),), generator=generator)
    cuts = np.cumsum([0, *sizes])
    batches = [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    result = evaluate(model, batches, nn.CrossEntropyLoss(), device=torch.device("cpu"), metrics={"acc": accuracy})
    with torch.no_grad():
        logits = model(x)
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), abs=1e-5)
    assert result["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-6)


@FEW
@given(st.integers(2, 300), st.data())
def test_a_split_is_disjoint_covering_and_the_same_for_the_same_seed(n, data):
    val_size, seed = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, 1000))
    train, val = split_indices(n, val_size, seed)
    assert len(val) == val_size and sorted(torch.cat([train, val]).tolist()) == list(range(n))
    again = split_indices(n, val_size, seed)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    with pytest.raises(UserError, match=f"--val-size must be between 0 and {n - 1}, got {n}"):
        split_indices(n, n, seed)


@FEW
@given(st.lists(st.integers(0, 7), min_size=4, max_size=120), st.data())
def test_a_group_split_holds_out_whole_groups_but_the_last_one_taken(group_list, data):
    groups = torch.tensor(group_list)
    val_size, seed = data.draw(st.integers(0, len(groups) - 1)), data.draw(st.integers(0, 1000))
    train, val = split_groups(groups, val_size, seed)
    assert len(val) == val_size and sorted(torch.cat([train, val]).tolist()) == list(range(len(groups)))
    shared = set(groups[train].tolist()) & set(groups[val].tolist())
    assert len(shared) <= 1  # only the last group taken may be cut, and then its first items are held out
    for group in shared:
        members = torch.nonzero(groups == group).ravel()
        held = members[torch.isin(members, val)]
        assert torch.equal(held, members[:len(held)])
    again = split_groups(groups, val_size, seed)
    assert torch.equal(val, again[1])
    with pytest.raises(UserError, match=f"--val-size must be between 0 and {len(groups) - 1}, got {len(groups)}"):
        split_groups(groups, len(groups), seed)


@FEW
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=6, max_size=120), st.data())
def test_a_group_split_by_label_takes_each_labels_share(items, data):
    groups, labels = torch.tensor([g for g, _ in items]), torch.tensor([label for _, label in items])
    val_size, seed = data.draw(st.integers(0, len(items) - 1)), data.draw(st.integers(0, 1000))
    shares = {k: round(val_size * int((labels == k).sum()) / len(labels)) for k in labels.unique().tolist()}
    if any(share >= int((labels == k).sum()) for k, share in shares.items()):
        return  # a label too small to give its share: refused, as split_groups would be on it alone
    train, val = split_groups(groups, val_size, seed, labels=labels)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(len(items)))
    assert {k: int((labels[val] == k).sum()) for k in shares} == shares
    assert torch.equal(val, split_groups(groups, val_size, seed, labels=labels)[1])


@FEW
@given(st.text(unicode, max_size=200), st.text(unicode, max_size=200), st.integers(0, 200))
def test_an_atomic_write_that_fails_part_way_leaves_the_old_file_and_no_temporary(old, new, cut):
    with tempfile.TemporaryDirectory() as folder:  # bytes compared: reading text would turn "\r" into "\n"
        path = Path(folder) / "result.txt"
        write_text(path, old)
        with pytest.raises(RuntimeError, match="interrupted"):
            with atomic_path(path) as tmp:
                tmp.write_text(new[:cut])  # part of the new content, then the run dies
                raise RuntimeError("interrupted")
        assert path.read_bytes() == old.encode() and [p.name for p in Path(folder).iterdir()] == ["result.txt"]
        write_text(path, new)
        assert path.read_bytes() == new.encode()


class Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.logits


@FEW
@given(st.integers(1, 5), st.integers(1, 8), st.integers(2, 6), st.integers(0, 2**16))
def test_the_ensemble_vote_is_the_mean_of_the_members_probabilities(members, rows, classes, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(rows, classes, generator=generator) * 5 for _ in range(members)]
    mean = torch.stack([x.softmax(-1) for x in logits]).mean(0)
    torch.testing.assert_close(vote(logits).exp(), mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(Ensemble([Fixed(x) for x in logits])(torch.zeros(rows)).exp(), mean,
                               atol=1e-6, rtol=1e-5)


words = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8)


@FEW
@given(st.lists(st.lists(words, max_size=12), min_size=1, max_size=8), st.integers(1, 3), st.integers(3, 12))
def test_tokens_and_vocabulary_round_trip(texts, min_count, max_size):
    joined = [" ".join(text) for text in texts]
    assert [tokenize(t) for t in joined] == [[w.lower() for w in text] for text in texts]
    assert [tokenize(" ".join(tokenize(t))) for t in joined] == [tokenize(t) for t in joined]  # idempotent
    with tempfile.TemporaryDirectory() as cache, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CSE849_CACHE", cache)
        corpus = tokenize_corpus(joined, quiet=True)
        vocab = Vocab.build(corpus, min_count=min_count, max_size=max_size)
        encoded = vocab.encode_corpus(corpus)
    assert vocab.words[:2] == [PAD, UNK] and len(vocab) <= max_size and len(set(vocab.words)) == len(vocab)
    counts = {}
    for text in joined:
        for token in tokenize(text):
            counts[token] = counts.get(token, 0) + 1
    assert all(counts[w] >= min_count for w in vocab.words[2:])
    for text, ids in zip(joined, encoded):
        tokens = tokenize(text)
        if tokens:  # each id decodes to its token, or the token is outside the vocabulary
            assert [vocab.words[i] if i != UNK_ID else None for i in ids] == [
                t if t in vocab.ids else None for t in tokens]
        else:
            assert ids.tolist() == [UNK_ID]


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(1, 4), st.integers(0, 2**16))
def test_cifar_pixels_read_back_from_both_formats_equal_the_source(per_class, seed):
    from torchvision.io import encode_png
    generator = torch.Generator().manual_seed(seed)
    classes = ["cat", "dog"]
    images = torch.randint(0, 256, (2 * per_class, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.arange(2 * per_class) % 2
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        root = Path(folder)
        patch.setenv("CSE849_CACHE", str(root / "cache"))
        batches = root / "batches" / "cifar-10-batches-py"
        batches.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"data": images.reshape(len(images), -1).numpy(), "labels": labels.tolist()}
            (batches / name).write_bytes(pickle.dumps(batch))
        (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
        for i, (image, label) in enumerate(zip(images, labels)):  # lossless PNGs in the image-folder layout
            target = root / "folder" / "cifar10-jpeg" / "test" / classes[label] / f"{i:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encode_png(image).numpy().tobytes())
        pickled = load_cifar10(root / "batches", "test", download=False)
        from_files = load_cifar10(root / "folder", "test", download=False)
    assert torch.equal(pickled.images, images) and torch.equal(pickled.labels, labels)
    order = torch.cat([torch.nonzero(labels == k).ravel() for k in range(2)])  # class folders, then file names
    assert torch.equal(from_files.images, images[order]) and torch.equal(from_files.labels, labels[order])
