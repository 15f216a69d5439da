"""hw3: CIFAR-10 loading in both formats, caching, the split, batch augmentation, the models,
training, and eval/predict from a saved checkpoint, with clear errors for bad input."""

import copy
import dataclasses
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import common.cifar as cifar
from common.cifar import (CifarBatches, ImageSet, channel_stats, load_cifar10, normalize, random_crop, random_flip,
                          read_image, split_train_val)
from common.ensemble import Ensemble
from common.errors import DataNotFoundError, UserError
import hw3.model
import hw3.predict
from hw3.model import MODELS, ModelConfig, load_model, predict_logits
from hw3.muon import Muon, orthogonalize
import hw3.report
from hw3.report import evaluate_test, plot_mistakes, write_test_results
from hw3.train import RECIPES, make_optimizer
from common.checkpoint import save_checkpoint
from hw3.model import CHECKPOINT_KIND
from tests.conftest import (CIFAR_CLASSES, assert_drawn, assert_help, capture_figures, check_ensemble_run,
                            check_resume_after_interruption, cifar_images, colour_bars, full_batch_losses,
                            no_network, run_main, run_script)



def model_config(model: str = "cnn", widths: tuple = (8, 16, 16), classes: str = "abc", **more) -> ModelConfig:
    """A ModelConfig for one class a letter of `classes`, with no test-time views unless `more` says otherwise."""
    return ModelConfig(**{"model": model, "widths": list(widths), "classes": list(classes), "mean": [0.5] * 3,
                          "std": [0.25] * 3, "tta": 0, **more})

# --- data ------------------------------------------------------------------------------------
def test_imagefolder_loads_as_uint8_with_sorted_class_names(cifar_jpeg_dir):
    data = load_cifar10(cifar_jpeg_dir, "train", download=False)
    assert data.images.shape == (60, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels.bincount().tolist() == [20, 20, 20]
    assert data.classes == CIFAR_CLASSES
    # the fixture's brightness depends on the class, so decoding kept pixels and labels together
    brightness = [data.images[data.labels == k].float().mean().item() for k in range(3)]
    assert brightness == sorted(brightness)


def test_torchvision_batches_load_and_format_can_be_forced(cifar_batches_dir, cifar_jpeg_dir):
    data = load_cifar10(cifar_batches_dir, "train", download=False)
    assert data.images.shape == (60, 3, 32, 32) and data.classes == CIFAR_CLASSES
    written = [cifar_images(12, seed=i) for i in range(5)]  # what the fixture pickled, batch by batch
    assert torch.equal(data.images, torch.cat([images for images, _ in written]))  # every pixel in place (CHW)
    assert torch.equal(data.labels, torch.cat([labels for _, labels in written]))
    assert len(load_cifar10(cifar_batches_dir, "test", download=False)) == 12
    with pytest.raises(DataNotFoundError, match="cifar10-jpeg"):
        load_cifar10(cifar_batches_dir, "train", fmt="imagefolder", download=False)
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(cifar_jpeg_dir, "train", fmt="torchvision", download=False)


def test_decoded_images_are_cached_and_the_cache_follows_the_file_list(cifar_jpeg_dir, monkeypatch):
    first = load_cifar10(cifar_jpeg_dir, "train", download=False)
    monkeypatch.setattr(cifar, "_decode_all", lambda files: pytest.fail("decoded again"))
    second = load_cifar10(cifar_jpeg_dir, "train", download=False)
    assert torch.equal(first.images, second.images)
    extra = cifar_jpeg_dir / "cifar10-jpeg" / "train" / "cat" / "9999.jpg"
    extra.write_bytes((cifar_jpeg_dir / "cifar10-jpeg" / "train" / "cat" / "0000.jpg").read_bytes())
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        load_cifar10(cifar_jpeg_dir, "train", download=False)


def test_limit_keeps_every_class(cifar_jpeg_dir):
    data = load_cifar10(cifar_jpeg_dir, "train", download=False, limit=9)
    assert len(data) == 9 and set(data.labels.tolist()) == {0, 1, 2}


def test_split_is_seeded_disjoint_and_complete(cifar_jpeg_dir):
    data = load_cifar10(cifar_jpeg_dir, "train", download=False)
    data.images[:, 0, 0, 0] = torch.arange(60, dtype=torch.uint8)  # tag each image
    train, val = split_train_val(data, 15, seed=3)
    again, _ = split_train_val(data, 15, seed=3)
    other, _ = split_train_val(data, 15, seed=4)
    tags = lambda d: d.images[:, 0, 0, 0].tolist()  # noqa: E731
    assert len(train) == 45 and len(val) == 15
    assert sorted(tags(train) + tags(val)) == list(range(60))
    assert tags(train) == tags(again) and tags(train) != tags(other)
    with pytest.raises(UserError, match="--val-size"):
        split_train_val(data, 60, seed=0)


def test_flip_mirrors_some_images_and_leaves_the_rest():
    images = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).reshape(8, 3, 4, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    unchanged = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert any(mirrored) and any(unchanged)


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    images = torch.zeros(40, 3, 32, 32, dtype=torch.uint8)
    images[:, :, :, 0] = 255  # a bright left column shows which images came out mirrored
    data = ImageSet(images, torch.arange(40), ["a"])  # the label names the image
    loader = CifarBatches(data, batch_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True, seed=0,
                          crop_padding=0, flip="alternate")
    mirrored = []
    for epoch in (1, 2, 3):
        loader.set_epoch(epoch)
        batches = list(loader)
        order = torch.cat([labels for _, labels in batches]).argsort()
        mirrored.append(torch.cat([x[:, 0, 0, -1] > x[:, 0, 0, 0] for x, _ in batches])[order])
    assert 10 < mirrored[0].sum() < 30
    assert torch.equal(mirrored[0], ~mirrored[1]) and torch.equal(mirrored[0], mirrored[2])
    with pytest.raises(UserError, match="unknown flip 'sometimes'"):
        CifarBatches(data, batch_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True, flip="sometimes")


def test_crop_is_a_shifted_window_of_the_reflect_padded_image():
    images = torch.randn(16, 3, 8, 8)
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)
    crops = random_crop(images, 2, torch.Generator().manual_seed(1))
    padded = nn.functional.pad(images, [2] * 4, mode="reflect")
    assert crops.shape == images.shape
    for crop, pad in zip(crops, padded):
        windows = [pad[:, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(crop, w) for w in windows)
    assert not torch.equal(crops, images)


def test_batches_are_normalised_channels_last_and_reshuffled_each_epoch(cifar_jpeg_dir):
    data = load_cifar10(cifar_jpeg_dir, "train", download=False)
    mean, std = channel_stats(data.images)
    evaluation = CifarBatches(data, batch_size=64, mean=mean, std=std, train=False)
    images, labels = next(iter(evaluation))
    assert images.shape == (60, 3, 32, 32) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert images.mean().abs() < 0.1 and (images.std() - 1).abs() < 0.1
    assert torch.equal(labels, data.labels)
    train = CifarBatches(data, batch_size=16, mean=mean, std=std, train=True, seed=0)
    assert len(train) == 4
    train.set_epoch(1)
    epoch1 = torch.cat([y for _, y in train])
    train.set_epoch(2)
    epoch2 = torch.cat([y for _, y in train])
    assert sorted(epoch1.tolist()) == sorted(data.labels.tolist()) and not torch.equal(epoch1, epoch2)


# --- models and training -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_give_one_logit_per_class_and_learn(name):
    torch.manual_seed(0)
    model = model_config(name).build()
    images = torch.randn(24, 3, 32, 32)
    labels = torch.arange(24) % 3
    images += labels.view(-1, 1, 1, 1).float()  # a learnable signal
    assert model(images).shape == (24, 3)
    assert predict_logits(model.eval(), images, tta=2).shape == (24, 3)
    model.train()
    losses = full_batch_losses(model, images, labels, torch.optim.Adam(model.parameters(), lr=1e-2), steps=15)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_airbench_muon_recipe_lowers_the_loss(precision):
    torch.manual_seed(0)
    model = model_config("airbench").build()
    images = torch.randn(48, 3, 32, 32)
    labels = torch.arange(48) % 3
    images += labels.view(-1, 1, 1, 1).float()
    model.init_whitening(images)
    recipe = replace(RECIPES["airbench"], epochs=1, batch_size=48, lr=0.24, weight_decay=2e-6)
    opt, scheduler = make_optimizer(model, recipe, 30, precision)
    assert opt.orthogonalize_dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    losses = full_batch_losses(model, images, labels, opt, steps=30, scheduler=scheduler)  # one epoch
    assert losses[-1] < 0.5 * losses[0]


def test_each_member_trains_on_label_smoothed_cross_entropy_and_keeps_its_own_training_state(tmp_path, monkeypatch):
    import hw3.train
    calls = []
    monkeypatch.setattr(hw3.train, "fit", lambda *args, **kwargs: calls.append((args, kwargs)) or {"epoch": [1]})
    recipe = replace(RECIPES["cnn"], batch_size=16, crop_padding=2, flip="random", optimizer="adamw", epochs=3,
                     lr=0.01, weight_decay=0.0, label_smoothing=0.2, members=3)
    args = SimpleNamespace(seed=4, precision="bf16", out_dir=tmp_path, resume=True, quiet=False, label_smoothing=0.2)
    config = model_config("cnn", (4, 4, 4), classes="ab")
    train = ImageSet(torch.zeros(32, 3, 32, 32, dtype=torch.uint8), torch.arange(32) % 2, ["a", "b"])
    batches = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"))
    model, history = hw3.train.train_member(recipe, args, 1, config, train, None, batches, torch.device("cpu"))
    (trained, loss_fn, optimization, loader, val), kwargs = calls[0]
    assert trained is model and history == {"epoch": [1]} and len(loader) == 2 and val is None
    assert isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.label_smoothing == 0.2
    assert optimization.grad_clip is None and optimization.scheduler.total_steps == 3 * 2  # one cycle, every step
    assert kwargs["epochs"] == 3 and kwargs["precision"] == "bf16" and kwargs["desc"] == "member 2/3"
    assert kwargs["metrics"]["acc"](torch.tensor([[0.0, 1.0]]), torch.tensor([1])) == 1
    state = kwargs["checkpointing"]
    assert state.path == tmp_path / "train_state" / "member2.pt" and not state.resume  # member 2 never saved one
    assert state.kind == CHECKPOINT_KIND and state.config is config and state.settings["label_smoothing"] == 0.2
    args.quiet = True
    hw3.train.train_member(replace(recipe, members=1), args, 0, config, train, None, batches, torch.device("cpu"))
    assert calls[1][1]["desc"] is None and calls[1][1]["checkpointing"].path.name == "last.pt"


def test_the_cnn_with_muon_steps_its_filters_by_muon_and_the_rest_by_adamw_and_learns():
    torch.manual_seed(0)
    model = model_config("cnn").build()
    images = torch.randn(48, 3, 32, 32)
    labels = torch.arange(48) % 3
    images += labels.view(-1, 1, 1, 1).float()
    recipe = replace(RECIPES["cnn"], optimizer="muon", epochs=1, batch_size=48, lr=0.1, weight_decay=0.05)
    opt, scheduler = make_optimizer(model, recipe, 30, "fp32")
    filters, rest = opt.param_groups
    assert filters["muon"] and [p.shape for p in filters["params"]] == [(8, 3, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3)]
    assert rest["adam"] and not rest["muon"] and len(rest["params"]) == 3 * 2 + 2  # BatchNorm gains and shifts, head
    assert rest["weight_decay"] == 0.05 and opt.orthogonalize_dtype == torch.float32
    losses = full_batch_losses(model, images, labels, opt, steps=30, scheduler=scheduler)  # one epoch
    assert losses[-1] < 0.5 * losses[0]
    peaks, scheduler = [], make_optimizer(model, recipe, 8, "fp32")[1]
    for _ in range(8):
        peaks.append([group["lr"] for group in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    assert peaks[1] == pytest.approx([0.1, 4e-3]) and peaks[0][0] < 0.01 and peaks[-1][0] < 0.01  # one cycle each


def test_airbench_whitening_decorrelates_patches():
    model = model_config("airbench", (8, 8, 8)).build()
    images = torch.randn(64, 3, 32, 32).cumsum(-1)  # strongly correlated neighbouring pixels
    model.init_whitening(images)
    responses = nn.functional.conv2d(images, model.whiten.weight[:12]).permute(1, 0, 2, 3).reshape(12, -1)
    covariance = responses @ responses.T / responses.shape[1]
    off_diagonal = covariance - torch.diag(covariance.diag())
    assert off_diagonal.abs().max() < 0.05 * covariance.diag().max()


def test_evaluate_test_uses_running_statistics_even_after_training_mode():
    torch.manual_seed(0)
    classes = ["a", "b", "c"]
    test = ImageSet(torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8), torch.arange(30) % 3, classes)
    config = model_config("airbench", (8, 8, 8), tta=2)
    model = config.build()
    model.groups[0].norm1.running_mean.normal_()  # stats that differ from any test batch's
    expected, _, _ = evaluate_test(copy.deepcopy(model).eval(), config, test, device=torch.device("cpu"),
                                precision="fp32", batch_size=10)
    stats = model.groups[0].norm1.running_mean.clone()
    report, _, _ = evaluate_test(model.train(), config, test, device=torch.device("cpu"), precision="fp32",
                              batch_size=10)  # left in training mode, as after a run without validation
    assert torch.equal(model.groups[0].norm1.running_mean, stats) and not model.training
    assert report["accuracy"] == expected["accuracy"] and report["per_class"] == expected["per_class"]


class CornerLookup(nn.Module):
    """A stand-in model whose logits for an image are row i of `table`, i read back from the normalised
    top-left pixels of channels 0 and 1 (i % 256, i // 256); it keeps each batch's size and whether it
    ran under autocast."""

    def __init__(self, table: torch.Tensor, mean: float, std: float):
        super().__init__()
        self.table, self.mean, self.std, self.batches = table, mean, std, []

    def forward(self, images):
        self.batches.append((len(images), torch.is_autocast_enabled("cpu")))
        pixels = ((images[:, :2, 0, 0] * self.std + self.mean) * 255).round().long()
        return self.table[pixels[:, 0] + 256 * pixels[:, 1]]


def corner_coded_set(n: int, classes: list[str]) -> ImageSet:
    """n random images whose top-left pixels in channels 0 and 1 spell their index i (the top-right
    ones, which a mirror image puts top-left, spell i + 1 modulo n)."""
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    images[:, 0, 0, 0], images[:, 1, 0, 0] = torch.arange(n) % 256, torch.arange(n) // 256
    images[:, 0, 0, -1], images[:, 1, 0, -1] = (torch.arange(n) + 1) % n % 256, (torch.arange(n) + 1) % n // 256
    return ImageSet(images, torch.arange(n) % len(classes), classes)


def counted_pairs(labels: list[int], guesses: list[int], n: int) -> torch.Tensor:
    """The (n, n) confusion matrix counted pair by pair: row the label, column the guess."""
    counts = torch.zeros(n, n, dtype=torch.int64)
    for label, guess in zip(labels, guesses):
        counts[label, guess] += 1
    return counts


def test_evaluate_test_scores_every_image_once_in_batches_of_500_with_the_checkpoints_normalisation():
    classes = ["a", "b", "c"]
    test = corner_coded_set(1001, classes)
    table = torch.randn(1001, 3, generator=torch.Generator().manual_seed(2))
    model = CornerLookup(table, mean=0.1, std=0.5)
    config = model_config(mean=[0.1] * 3, std=[0.5] * 3, tta=0)  # tta 0: no mirrored view
    report, cm, probabilities = evaluate_test(model, config, test, device=torch.device("cpu"), precision="fp32")
    assert model.batches == [(500, False), (500, False), (1, False)]
    predicted = table.argmax(1)
    expected_cm = counted_pairs(test.labels.tolist(), predicted.tolist(), 3)
    assert torch.equal(cm, expected_cm)
    torch.testing.assert_close(probabilities, table.softmax(dim=1))
    assert report["accuracy"] == pytest.approx((predicted == test.labels).float().mean().item())
    recalls = {name: expected_cm[k, k].item() / expected_cm[k].sum().item() for k, name in enumerate(classes)}
    assert report["per_class_accuracy"] == pytest.approx(recalls)
    assert {name: s["recall"] for name, s in report["per_class"].items()} == report["per_class_accuracy"]
    assert report["test_images"] == 1001 and 0 <= report["test_seconds"] < 60
    with pytest.raises(UserError, match=r"test classes \['a', 'b', 'c'\] differ from the checkpoint's \['a', 'b'\]"):
        evaluate_test(model, model_config(classes="ab"), test, device=torch.device("cpu"), precision="fp32")


def test_evaluate_test_uses_the_checkpoints_test_time_views_and_the_precision_asked():
    test = corner_coded_set(20, ["a", "b"])
    table = torch.randn(20, 2, generator=torch.Generator().manual_seed(2))
    model = CornerLookup(table, mean=0.0, std=1.0)
    config = model_config(classes="ab", mean=[0.0] * 3, std=[1.0] * 3, tta=1)
    _, _, probabilities = evaluate_test(model, config, test, device=torch.device("cpu"), precision="bf16")
    mirrored = 0.5 * (table + table.roll(-1, dims=0))  # tta 1: the image and its mirror, which reads i + 1
    torch.testing.assert_close(probabilities, mirrored.softmax(dim=1))
    assert model.batches == [(20, True), (20, True)]  # the image, then its mirror, both under bf16 autocast


def confused_set() -> tuple[ImageSet, torch.Tensor, torch.Tensor]:
    """Twelve images of classes a, b, c with probabilities that confuse a as b three times (0.9, 0.5,
    0.7), b as c twice (0.8, 0.6) and c as a once (0.55); the rest right. Returns set, probabilities, cm."""
    test = ImageSet(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(3)),
                    torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]), ["a", "b", "c"])
    guesses = [(1, 0.9), (1, 0.5), (1, 0.7), (0, 0.95), (2, 0.8), (2, 0.6), (1, 0.9), (1, 0.85),
               (0, 0.55), (2, 0.9), (2, 0.99), (2, 0.7)]
    probabilities = torch.zeros(12, 3)
    for i, (guess, p) in enumerate(guesses):
        probabilities[i] = (1 - p) / 2
        probabilities[i, guess] = p
    return test, probabilities, counted_pairs(test.labels.tolist(), [guess for guess, _ in guesses], 3)


def shown(ax) -> list:
    """The images an axes shows, as arrays."""
    return [image.get_array() for image in ax.images]


def test_mistakes_show_the_most_confident_errors_of_the_most_confused_pairs(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch, hw3.report)
    test, probabilities, cm = confused_set()
    plot_mistakes(test, probabilities, cm, tmp_path / "two.png", pairs=2, per_pair=2)
    fig = figures["two.png"]
    axes = [fig.axes[:2], fig.axes[2:]]
    assert len(fig.axes) == 4 and tuple(fig.get_size_inches()) == pytest.approx((3.2, 3.8))
    # row 1: a predicted as b, the two most confident of three (images 0 and 2); row 2: b as c (4, 5)
    for row, indices, titles in ((0, [0, 2], ["b 0.90", "b 0.70"]), (1, [4, 5], ["c 0.80", "c 0.60"])):
        for ax, index, title in zip(axes[row], indices, titles):
            assert len(ax.images) == 1 and (shown(ax)[0] == test.images[index].permute(1, 2, 0).numpy()).all()
            assert ax.images[0].get_interpolation() == "nearest"
            assert (ax.get_title(), ax.title.get_fontsize()) == (title, 9)
            assert not ax.axison
    label = axes[0][0].texts[0]
    assert label.get_text() == "true a\n(3 as\nb)" and axes[1][0].texts[0].get_text() == "true b\n(2 as\nc)"
    assert label.get_position() == (-0.15, 0.5) and label.get_transform() == axes[0][0].transAxes
    assert (label.get_ha(), label.get_va(), label.get_fontsize()) == ("right", "center", 9)
    assert not axes[0][1].texts
    assert fig._suptitle.get_text() == ("most confident test mistakes of the most confused pairs "
                                        "(title: predicted, probability)") and fig._suptitle.get_fontsize() == 10
    assert_drawn(tmp_path / "two.png")


def test_mistakes_by_default_show_up_to_four_pairs_of_six_and_only_pairs_with_mistakes(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch, hw3.report)
    test, probabilities, cm = confused_set()
    plot_mistakes(test, probabilities, cm, tmp_path / "all.png")
    fig = figures["all.png"]
    assert len(fig.axes) == 3 * 6 and tuple(fig.get_size_inches()) == pytest.approx((9.6, 5.7))
    assert [sum(len(ax.images) for ax in fig.axes[6 * r:6 * r + 6]) for r in range(3)] == [3, 2, 1]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["b 0.90", "b 0.70", "b 0.50"]
    assert fig.axes[12].get_title() == "a 0.55" and fig.axes[12].texts[0].get_text() == "true c\n(1 as\na)"
    assert all(not ax.axison for ax in fig.axes)
    plot_mistakes(test, probabilities, torch.diag(torch.tensor([4, 4, 4])), tmp_path / "none.png")
    assert len(figures["none.png"].axes) == 6 and not any(ax.images for ax in figures["none.png"].axes)
    six_pairs = torch.tensor([[4, 3, 1], [2, 4, 6], [5, 4, 4]])  # every pair confused: the four largest shown
    plot_mistakes(test, probabilities, six_pairs, tmp_path / "four.png")
    assert [ax.texts[0].get_text().split("\n")[0] for ax in figures["four.png"].axes[::6]] == [
        "true b", "true c", "true c", "true a"]


def test_test_results_write_the_report_the_matrix_and_both_figures(tmp_path, monkeypatch):
    import common.plotting
    figures = capture_figures(monkeypatch, hw3.report)
    matrix_figures = capture_figures(monkeypatch, common.plotting)
    test, probabilities, cm = confused_set()
    report = {"accuracy": 0.5, "macro_f1": 0.25, "test_images": 12}
    write_test_results(report, cm, test, probabilities, tmp_path, {"seconds": 3.0, "accuracy": "overridden"})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == {"seconds": 3.0, "accuracy": 0.5, "macro_f1": 0.25, "test_images": 12,
                     "confusion_matrix": cm.tolist()}
    assert matrix_figures["confusion_matrix.png"].axes[0].get_title() == "CIFAR-10 test, accuracy 50.00%"
    mistakes = figures["mistakes.png"]  # plot_mistakes' defaults: three confused pairs, six columns
    assert len(mistakes.axes) == 18 and mistakes.axes[0].get_title() == "b 0.90"
    assert_drawn(tmp_path / "confusion_matrix.png")
    assert_drawn(tmp_path / "mistakes.png")


def test_the_seed_cnn_is_bias_free_convs_then_a_dropout_and_linear_head_for_ten_classes_by_default():
    model = hw3.model.SeedCNN((4, 8), dropout=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.bias for c in convs] == [None, None] and [c.padding for c in convs] == [(1, 1), (1, 1)]
    dropout, linear = model.classifier[1], model.classifier[2]
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    assert (linear.in_features, linear.out_features) == (8 * 8 * 8, 10)
    images = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    first = model.train()(images)
    assert not torch.equal(first, model(images))  # dropout is active in training
    assert torch.equal(model.eval()(images), model(images))


def test_airbench_parts_are_bias_free_with_a_frozen_whitening_and_shift_only_batchnorm():
    model = hw3.model.AirbenchNet((8, 16))
    assert model.whiten.bias is not None and model.whiten.bias.requires_grad
    assert not model.whiten.weight.requires_grad and model.head.bias is None and model.head.out_features == 10
    group = model.groups[0]
    for conv in (group.conv1, group.conv2):
        assert conv.bias is None and conv.padding == (1, 1)
    for norm in (group.norm1, group.norm2):
        assert (norm.eps, norm.momentum) == (1e-12, 0.4)
        assert not norm.weight.requires_grad and norm.bias.requires_grad
    assert group(torch.randn(2, 24, 16, 16)).shape == (2, 8, 8, 8)  # a 3x3 conv keeps the size; the pool halves it
    images = torch.randn(2, 3, 32, 32)
    model.eval()
    features = torch.amax(model.groups(nn.functional.gelu(model.whiten(images))), dim=(2, 3))
    torch.testing.assert_close(model(images), model.head(features) / 9)


def test_a_config_builds_one_network_per_member_with_one_logit_per_class():
    single = model_config("cnn", (4,)).member()
    assert isinstance(single, hw3.model.SeedCNN) and single.classifier[-1].out_features == 3
    assert isinstance(model_config("cnn", (4,)).build(), hw3.model.SeedCNN)  # one member: no Ensemble around it
    three = model_config("airbench", (4,), classes="ab", members=3).build()
    assert isinstance(three, Ensemble) and len(three.members) == 3 and three(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    assert all(isinstance(m, hw3.model.AirbenchNet) for m in three.members)


def test_a_loaded_model_is_in_eval_mode_with_channels_last_weights(tmp_path):
    tiny_checkpoint(tmp_path / "model.pt", tta=0)
    model, _ = load_model(tmp_path / "model.pt", torch.device("cpu"))
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not model.training and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()


def test_a_checkpoint_config_missing_fields_names_each(tmp_path):
    config = dataclasses.asdict(model_config("cnn", (4,)))
    del config["std"], config["tta"]
    save_checkpoint(tmp_path / "old.pt", kind=CHECKPOINT_KIND, model=model_config("cnn", (4,)).member(), config=config)
    with pytest.raises(UserError) as err:
        load_model(tmp_path / "old.pt", torch.device("cpu"))
    assert str(err.value) == f"{tmp_path / 'old.pt'}: checkpoint config lacks std, tta"


def test_checkpoint_configs_are_checked_at_each_limit():
    good = {"model": "cnn", "widths": [8, 16, 32], "classes": ["a", "b"], "mean": [0.4, -0.1, 0.0],
            "std": [0.2, 0.2, 1e-9], "tta": 2}
    widths = "widths must be a list of 1 to 5 channel counts, each 1 to 2048"
    classes = "classes must be a list of 2 to 1000 names"
    tta = "tta must be 0, 1 or 2, and members 1 to 16"
    cases = [({}, None), ({"widths": [1]}, None), ({"widths": [2048] * 5}, None), ({"widths": []}, widths),
             ({"widths": [8] * 6}, widths), ({"widths": [0]}, widths), ({"widths": [2049]}, widths),
             ({"widths": (8,)}, widths), ({"widths": [8.0]}, widths),
             ({"model": "vgg"}, "model 'vgg' is not one of cnn, airbench"),
             ({"model": ["cnn"]}, "model ['cnn'] is not one of cnn, airbench"),
             ({"classes": ["a"]}, classes), ({"classes": [f"c{i}" for i in range(1000)]}, None),
             ({"classes": [f"c{i}" for i in range(1001)]}, classes),
             ({"mean": [0.4, 0.5]}, "mean must be 3 finite numbers"), ({"mean": (0.4, 0.5, 0.6)}, "mean must be 3 finite numbers"),
             ({"mean": [0.4, 0.5, 1]}, "mean must be 3 finite numbers"),
             ({"mean": [0.4, 0.5, float("nan")]}, "mean must be 3 finite numbers"),
             ({"std": [0.2, 0.2, 0.0]}, "std must be 3 finite numbers above 0"),
             ({"std": [0.2, 0.2, float("inf")]}, "std must be 3 finite numbers above 0"),
             ({"std": [0.2, 0.2, -0.5]}, "std must be 3 finite numbers above 0"),
             ({"tta": 0}, None), ({"tta": 1}, None), ({"tta": 3}, tta), ({"members": 16}, None), ({"members": 1}, None),
             ({"members": 17}, tta), ({"members": 0}, tta), ({"tta": 3, "members": 2}, tta)]
    for change, problem in cases:
        assert ModelConfig(**{**good, **change}).problem() == problem, change


def test_test_time_views_average_the_image_its_mirror_and_two_reflected_one_pixel_shifts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))  # any model; linear keeps the check exact
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(predict_logits(model, images), model(images))
    mirrored = 0.5 * (model(images) + model(images.flip(-1)))
    torch.testing.assert_close(predict_logits(model, images, 1), mirrored)
    up_left = torch.tensor([1, *range(31)])  # row/column i shows i - 1, reflected at the border
    down_right = torch.tensor([*range(1, 32), 30])
    views = [images[:, :, index][:, :, :, index] for index in (up_left, down_right)]
    shifted = sum(0.5 * (model(v) + model(v.flip(-1))) for v in views) / 2
    torch.testing.assert_close(predict_logits(model, images, 2), 0.5 * mirrored + 0.5 * shifted)


# --- scripts --------------------------------------------------------------------------------------
TRAIN_ARGS = ["--quiet", "--device", "cpu", "--precision", "bf16", "--widths", "8", "16", "16", "--epochs", "3",
              "--val-size", "12", "--batch-size", "16", "--lr", "0.01"]


@pytest.fixture
def trained(cifar_jpeg_dir, tmp_path):
    """A tiny run of hw3/train.py on the fixture; returns (data dir, output dir)."""
    out = tmp_path / "out"
    result = run_script("hw3/train.py", "--data-dir", cifar_jpeg_dir, "--out-dir", out, *TRAIN_ARGS,
                        env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    return cifar_jpeg_dir, out


@pytest.mark.script
def test_train_writes_results_that_beat_chance(trained):
    _, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("accuracy_plot.png", "confusion_matrix.png", "mistakes.png"):
        assert_drawn(out / name)
    history = json.loads((out / "history.json").read_text())
    assert history["val_acc"][-1] == metrics["final_val_acc"] and len(history["epoch"]) == metrics["epochs"]
    assert metrics["test_images"] == 18 and metrics["accuracy"] > 0.6  # chance is 1/3
    assert set(metrics["per_class_accuracy"]) == set(CIFAR_CLASSES)
    assert {"macro_f1", "wall_seconds", "train_images_per_second", "parameters", "command"} <= set(metrics)


@pytest.mark.script
def test_eval_and_predict_work_from_the_checkpoint(trained, tmp_path, monkeypatch):
    data_dir, out = trained
    trained_metrics = json.loads((out / "metrics.json").read_text())
    result = run_script("hw3/eval.py", "--checkpoint", out / "model.pt", "--data-dir", data_dir, "--precision",
                        trained_metrics["precision"], "--out-dir", tmp_path / "eval", "--device", "cpu",
                        env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr  # in the training's precision it repeats the training's test
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(trained_metrics["accuracy"])
    result = run_script("hw3/eval.py", "--checkpoint", out / "model.pt", "--data-dir", data_dir,
                        "--out-dir", tmp_path / "eval32", "--device", "cpu", env={"CSE849_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr  # by default in fp32, whatever the training ran in
    fp32 = json.loads((tmp_path / "eval32" / "metrics.json").read_text())
    assert fp32["precision"] == "fp32" and abs(fp32["accuracy"] - evaluated["accuracy"]) <= 1 / 18 + 1e-9
    images = [sorted((data_dir / "cifar10-jpeg" / "test" / name).iterdir())[0] for name in CIFAR_CLASSES]
    figures = capture_figures(monkeypatch, hw3.predict)
    result = run_script("hw3/predict.py", images[0], "--checkpoint", out / "model.pt", *images[1:], "--device", "cpu",
                        "--explain-png", tmp_path / "why" / "explain.png")  # options may come between the images
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("wrote ") and lines[-1].endswith("explain.png")
    assert (tmp_path / "why" / "explain.png").read_bytes()[:4] == b"\x89PNG"
    assert len(colour_bars(figures["explain.png"])) == 3  # each heat map has its key
    model, config = load_model(out / "model.pt", torch.device("cpu"))  # the model's own probabilities, sorted
    batch = normalize(torch.stack([read_image(i, max_pixels=1024) for i in images]), config.mean, config.std)
    with torch.no_grad():
        expected = predict_logits(model, batch, config.tta).float().softmax(1)
    for image, name, line, row in zip(images, CIFAR_CLASSES, lines[:3], expected):  # brightness gives the class away
        ranked = [(config.classes[int(i)], f"{float(row[i]):.3f}") for i in row.argsort(descending=True)]
        assert line == f"{image}: " + ", ".join(f"{c} {p}" for c, p in ranked) and ranked[0][0] == name


@pytest.mark.script
def test_resume_after_ctrl_c_in_epoch_3_ends_as_the_uninterrupted_run(trained, tmp_path):
    data_dir, out = trained
    check_resume_after_interruption("hw3", ["--data-dir", data_dir, *TRAIN_ARGS], out, tmp_path / "resumed",
                                    saves=2, env={"CSE849_CACHE": str(tmp_path / "c")})


@pytest.mark.script
def test_an_ensemble_run_trains_each_member_saves_evaluates_and_resumes(cifar_jpeg_dir, tmp_path):
    args = ["--data-dir", cifar_jpeg_dir, "--device", "cpu", "--widths", "8", "16", "16",
            "--epochs", "2", "--val-size", "12", "--batch-size", "16", "--lr", "0.01", "--members", "2"]
    check_ensemble_run("hw3", args, cifar_jpeg_dir, tmp_path / "ensemble", {"CSE849_CACHE": str(tmp_path / "c")})


@pytest.mark.script
def test_missing_folder_says_what_was_looked_for(tmp_path, monkeypatch):
    for data_dir, message in ((tmp_path / "nothing", "no such folder; check the path, or leave --data-dir unset "
                                                     "to use data/ in the repository"),
                              (tmp_path / "cifar.tar.gz", f"a file, not a folder; point --data-dir at the folder "
                                                          f"that holds it ({tmp_path})")):
        if data_dir.suffix:
            data_dir.write_bytes(b"archive")
        result = run_script("hw3/train.py", "--data-dir", data_dir, "--out-dir", tmp_path / "out", "--device", "cpu",
                            env={"CSE849_CACHE": str(tmp_path / "c")})
        assert result.returncode == 3 and result.stderr == f"error: --data-dir {data_dir}: {message}\n"
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "out").exists()  # nothing made for a typo

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", no_network)
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py and .*cifar10-jpeg/test/<class>/\*.jpg; the "
                       r"download failed \(no network\)\. Download https://\S+cifar-10-python.tar.gz by hand"):
        load_cifar10(tmp_path / "data", "test")  # the default data/, absent: made for the download, then removed
    assert not (tmp_path / "data").exists()


def test_empty_class_folder_and_corrupt_image_are_named(cifar_jpeg_dir):
    cat = cifar_jpeg_dir / "cifar10-jpeg" / "test" / "cat"
    (cat / "0000.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match=r"cat/0000.jpg: not a readable image"):
        load_cifar10(cifar_jpeg_dir, "test", download=False)
    for image in cat.iterdir():
        image.unlink()
    with pytest.raises(UserError, match=r"test/cat: class folder holds no images"):
        load_cifar10(cifar_jpeg_dir, "test", download=False)


@pytest.mark.script
def test_checkpoint_from_another_model_is_refused(trained, tmp_path):
    data_dir, _ = trained
    result = run_script("hw3/eval.py", "--checkpoint", "hw0/results/q2_model.pt", "--data-dir", data_dir,
                        "--out-dir", tmp_path, "--device", "cpu")
    assert result.returncode == 2
    assert "holds a 'hw0-q2-linear' model, expected 'hw3-cifar10'" in result.stderr
    assert "Traceback" not in result.stderr


# --- Muon ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_orthogonalize_keeps_singular_vectors_and_brings_singular_values_near_one(shape):
    matrix = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    result = orthogonalize(matrix)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    singular_values = torch.linalg.svdvals(result)
    assert singular_values.min() > 0.4 and singular_values.max() < 1.6 and s.max() / s.min() > 3
    # the same singular vectors: U^T R V is (nearly) diagonal
    inner = u.T @ result @ vh.T
    assert (inner - torch.diag(inner.diag())).abs().max() < 0.05
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.randn(3))


def test_muon_sgd_groups_step_like_torch_nesterov_sgd():
    torch.manual_seed(0)
    weights = [torch.randn(5, requires_grad=True) for _ in range(2)]
    ours = Muon([{"params": [weights[0]], "muon": False}], lr=0.1, momentum=0.8, weight_decay=0.01)
    reference = torch.optim.SGD([weights[1]], lr=0.1, momentum=0.8, weight_decay=0.01, nesterov=True)
    with torch.no_grad():
        weights[1].copy_(weights[0])
    for _ in range(3):
        grad = torch.randn(5)
        for w, opt in zip(weights, (ours, reference)):
            w.grad = grad.clone()
            opt.step()
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


def test_muon_adamw_groups_step_like_torch_adamw():
    torch.manual_seed(0)
    weights = [torch.randn(4, 3, requires_grad=True) for _ in range(2)]
    ours = Muon([{"params": [weights[0]], "muon": False, "adam": True, "betas": (0.8, 0.95)}], lr=0.05,
                weight_decay=0.1)
    reference = torch.optim.AdamW([weights[1]], lr=0.05, betas=(0.8, 0.95), weight_decay=0.1)
    with torch.no_grad():
        weights[1].copy_(weights[0])
    start = weights[0].detach().clone()
    for _ in range(4):
        grad = torch.randn(4, 3)
        for w, opt in zip(weights, (ours, reference)):
            w.grad = grad.clone()
            opt.step()
    assert (weights[0] - start).abs().min() > 0.01
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


def test_muon_step_is_an_orthogonalized_update_of_the_normalized_weight():
    torch.manual_seed(0)
    weight = torch.randn(8, 4, 3, 3, requires_grad=True)
    start = weight.detach().clone()
    weight.grad = torch.randn_like(weight)
    Muon([weight], lr=0.1, momentum=0.5).step()
    step = (start * 8**0.5 / start.norm() - weight.detach()).reshape(8, -1) / 0.1
    assert torch.allclose(step, orthogonalize(1.5 * weight.grad.reshape(8, -1)), atol=1e-5)
    singular_values = torch.linalg.svdvals(step)
    assert singular_values.min() > 0.4 and singular_values.max() < 1.6
    with pytest.raises(ValueError, match="not vectors"):
        Muon([torch.zeros(3, requires_grad=True)], lr=0.1)


# --- predict.py in-process, on a tiny checkpoint ------------------------------------------------
def tiny_checkpoint(path, tta: int) -> tuple[nn.Module, dict]:
    """A small untrained cnn saved as train.py saves it, with skewed statistics so every class differs."""
    torch.manual_seed(0)
    config = ModelConfig(model="cnn", widths=[4, 8, 8], classes=list(CIFAR_CLASSES), mean=[0.4, 0.5, 0.6],
                         std=[0.2, 0.25, 0.3], tta=tta)
    model = config.member()
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, kind=CHECKPOINT_KIND, model=model, config=config)
    return model.eval(), config


@pytest.mark.parametrize("tta", [0, 2])
def test_predict_prints_the_top_classes_of_each_image_as_the_model_ranks_them(tmp_path, monkeypatch, capsys, tta):
    model, config = tiny_checkpoint(tmp_path / "model.pt", tta)
    pictures = cifar_images(2, seed=3)[0]
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    torchvision.io.write_png(pictures[0], str(paths[0]))
    torchvision.io.write_png(torch.nn.functional.interpolate(pictures[1:].float(), size=(48, 40)).to(torch.uint8)[0],
                             str(paths[1]))  # not 32x32: resized
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, paths[0], "--top", "2", paths[1],
                                "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 0, err
    images = torch.stack([hw3.predict.read_input(p) for p in paths])
    assert images.shape == (2, 3, 32, 32) and torch.equal(images[0], pictures[0])
    with torch.no_grad():
        probabilities = predict_logits(model, normalize(images, config.mean, config.std), tta).softmax(1)
    top = probabilities.topk(2, dim=1)
    expected = [f"{path}: {CIFAR_CLASSES[i[0]]} {p[0]:.3f}, {CIFAR_CLASSES[i[1]]} {p[1]:.3f}"
                for path, p, i in zip(paths, top.values.tolist(), top.indices.tolist())]
    assert out.splitlines() == expected


def test_predict_explains_the_top_class_and_names_unreadable_images(tmp_path, monkeypatch, capsys):
    tiny_checkpoint(tmp_path / "model.pt", tta=1)
    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    torchvision.io.write_png(cifar_images(1, seed=4)[0][0], str(good))
    broken.write_bytes(b"not an image")
    figures = capture_figures(monkeypatch, hw3.predict)
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, good, broken, "--checkpoint",
                                tmp_path / "model.pt", "--device", "cpu", "--explain-png", tmp_path / "why.png")
    assert status == 2 and err.strip().splitlines()[-1] == "error: 1 of 2 images could not be read (see above)"
    assert "broken.png" in err and out.startswith(f"{good}: ") and len(out.strip().splitlines()) == 2  # + written
    fig = figures["why.png"]
    assert len(fig.axes) == 3 and fig.axes[0].get_title().startswith(f"{tmp_path.name}/good.png: ")
    assert fig.axes[1].get_title() == "integrated gradients"


def test_predict_explains_each_image_by_the_log_probability_of_its_own_top_class(tmp_path, monkeypatch, capsys):
    model, config = tiny_checkpoint(tmp_path / "model.pt", tta=1)
    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "c")]
    for path, picture in zip(paths, cifar_images(3, seed=5)[0]):
        torchvision.io.write_png(picture, str(path))
    scored = []

    def record_score(score, batch):  # stands in for integrated gradients: keeps what it would explain
        scored.append((score(batch).detach(), batch))
        return torch.zeros_like(batch)
    monkeypatch.setattr(hw3.predict, "integrated_gradients", record_score)
    figures = capture_figures(monkeypatch, hw3.predict)
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, *paths, "--checkpoint", tmp_path / "model.pt",
                                "--device", "cpu", "--explain-png", tmp_path / "why.png")
    assert status == 0, err
    (score, batch), = scored
    images = torch.stack([hw3.predict.read_input(path) for path in paths])
    torch.testing.assert_close(batch, normalize(images, config.mean, config.std))
    with torch.no_grad():
        log_p = predict_logits(model, batch, 1).log_softmax(1)  # tta 1, as the checkpoint says
    torch.testing.assert_close(score, log_p.max(dim=1).values)
    titles = [ax.get_title() for ax in figures["why.png"].axes[0:6:2]]  # image and heat map per row, then the bars
    assert titles == [f"{tmp_path.name}/{path.name}: {CIFAR_CLASSES[k]} {p:.2f}"
                      for path, k, p in zip(paths, log_p.argmax(1).tolist(), log_p.exp().max(1).values.tolist())]


def test_explanations_show_each_image_beside_its_positive_evidence(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch, hw3.predict)
    images = cifar_images(2, seed=6)[0]
    attributions = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hw3.predict.plot_explanations(images, attributions, ["first", "second"], tmp_path / "why.png")
    fig = figures["why.png"]
    assert len(fig.axes) == 6 and tuple(fig.get_size_inches()) == pytest.approx((4.8, 4.8))
    for row, key in enumerate(colour_bars(fig)):
        picture, heat = fig.axes[2 * row:2 * row + 2]
        pixels = images[row].permute(1, 2, 0).numpy()
        assert len(picture.images) == 1 and (picture.images[0].get_array() == pixels).all()
        assert picture.images[0].get_interpolation() == "nearest" and picture.images[0].get_alpha() is None
        assert (picture.get_title(), picture.title.get_fontsize()) == (["first", "second"][row], 9)
        under, shown = heat.images
        assert (under.get_array() == pixels).all() and under.get_alpha() == 0.35
        assert under.get_interpolation() == "nearest"
        expected = attributions[row].sum(dim=0).clamp(min=0).numpy()
        assert np.allclose(shown.get_array(), expected) and (expected == 0).any() and (expected > 0).any()
        assert (shown.get_cmap().name, shown.get_alpha(), shown.get_interpolation()) == ("inferno", 0.75, "bilinear")
        assert (heat.get_title(), heat.title.get_fontsize()) == ("integrated gradients", 9)
        assert not picture.axison and not heat.axison
        assert key.get_ylabel() == "raises the top class's\nlog-probability by"
        assert key.yaxis.label.get_fontsize() == 7 and key.yaxis.get_ticklabels()[0].get_fontsize() == 6
        assert key.images or key.collections  # the colour bar draws the heat map's scale
        panel = picture.get_position().width  # the bar takes 4.6% of the heat map's panel, 4% apart from it
        assert key.get_position().width == pytest.approx(0.046 * panel, rel=0.05)
        assert key.get_position().x0 - heat.get_position().x1 == pytest.approx(0.04 * panel, rel=0.05)


def test_predict_reads_its_default_checkpoint_from_the_repository_from_any_folder(tmp_path, monkeypatch, capsys):
    import common.cli
    (tmp_path / "repo" / "hw3" / "results").mkdir(parents=True)
    tiny_checkpoint(tmp_path / "repo" / "hw3" / "results" / "model.pt", tta=0)
    monkeypatch.setattr(common.cli, "REPO_ROOT", tmp_path / "repo")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    torchvision.io.write_png(cifar_images(1, seed=7)[0][0], "a.png")
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, "a.png", "--device", "cpu")
    assert status == 0, err
    assert out.startswith("a.png: ") and out.count(", ") == 2  # three classes by default


def test_predict_help_names_its_inputs_and_options_with_their_defaults(monkeypatch, capsys):
    assert_help(monkeypatch, capsys, hw3.predict.main,
                "usage: script [-h] [--seed SEED] [--threads THREADS] [--device {auto,cpu,cuda,mps}] [--quiet] "
                "[--checkpoint CHECKPOINT] [--top TOP] [--explain-png OUT.png] IMAGE [IMAGE ...] ",
                ("IMAGE image files (jpg, png, ...)",
                 "--checkpoint CHECKPOINT a model.pt or model_int8.pt that hw3/train.py wrote (default: "
                 "hw3/results/model.pt)",
                 "--top TOP how many classes to show, most likely first (default: 3)",
                 "--explain-png OUT.png also write each image beside a heat map of the evidence for its top class"))


def test_predict_refuses_to_draw_over_an_input_and_says_when_no_image_could_be_read(tmp_path, monkeypatch, capsys):
    tiny_checkpoint(tmp_path / "model.pt", tta=0)
    image = tmp_path / "a.png"
    torchvision.io.write_png(cifar_images(1, seed=8)[0][0], str(image))
    before = image.read_bytes()
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, image, "--explain-png", image,
                                "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 2 and err.strip() == f"error: --explain-png {image}: that is one of the inputs; name a new file"
    assert image.read_bytes() == before and out == ""
    for name in ("x.png", "y.png"):
        (tmp_path / name).write_bytes(b"not an image")
    status, out, err = run_main(monkeypatch, capsys, hw3.predict.main, tmp_path / "x.png", tmp_path / "y.png",
                                "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    assert status == 2 and err.strip().splitlines()[-1] == "error: none of the 2 images could be read"


def test_read_input_keeps_a_32_pixel_image_and_shrinks_a_larger_one_without_aliasing(tmp_path):
    picture = cifar_images(1, seed=9)[0][0]
    torchvision.io.write_png(picture, str(tmp_path / "small.png"))
    assert torch.equal(hw3.predict.read_input(tmp_path / "small.png"), picture)
    stripes = ((torch.arange(96)[:, None] + torch.arange(96)) % 2 * 255).to(torch.uint8).expand(3, 96, 96)
    torchvision.io.write_png(stripes.contiguous(), str(tmp_path / "checkerboard.png"))
    shrunk = hw3.predict.read_input(tmp_path / "checkerboard.png")
    assert shrunk.shape == (3, 32, 32) and 100 <= shrunk.min() <= shrunk.max() <= 155  # grey, not black and white


# --- augmentation and batches, unit by unit --------------------------------------------------------
def test_augmentation_follows_its_generator_alone():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8).float()
    for augment in (lambda g: random_flip(images, g), lambda g: random_crop(images, 2, g)):
        torch.manual_seed(1)
        first = augment(torch.Generator().manual_seed(5))
        torch.manual_seed(2)  # another global state: the result must not change
        assert torch.equal(first, augment(torch.Generator().manual_seed(5)))


def test_pixels_are_scaled_by_255_before_normalising():
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(normalize(white, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), torch.ones(1, 3, 2, 2))
    mean, std = channel_stats(torch.stack([white[0], torch.zeros(3, 2, 2, dtype=torch.uint8)]))
    assert mean == [0.5] * 3 and std == pytest.approx([(8 / 7 * 0.25) ** 0.5] * 3, rel=1e-6)  # 8 pixels, n - 1


def test_cifar_batches_default_to_seed_0_padding_4_one_process_and_epoch_0(monkeypatch):
    import common.cifar
    images, labels = cifar_images(40, seed=0)
    data = ImageSet(images, labels, list(CIFAR_CLASSES))
    stats = dict(mean=[0.5] * 3, std=[0.25] * 3)
    monkeypatch.setattr(common.cifar, "shard", lambda order, pad: pytest.fail("sharded without being asked"))
    default = [x for x, _ in CifarBatches(data, batch_size=8, train=True, **stats)]
    explicit = CifarBatches(data, batch_size=8, train=True, seed=0, crop_padding=4, flip="random", **stats)
    explicit.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(default, (x for x, _ in explicit)))
    assert data.subset(torch.tensor([0, 1])).classes == list(CIFAR_CLASSES)
    with pytest.raises(UserError, match=r"^unknown flip 'sometimes'; choose random, alternate$"):
        CifarBatches(data, batch_size=8, train=True, flip="sometimes", **stats)


@pytest.mark.parametrize("train", [True, False])
def test_cifar_batches_are_sharded_only_when_asked_with_padding_for_training(monkeypatch, train):
    import common.cifar
    calls = []
    monkeypatch.setattr(common.cifar, "shard", lambda order, pad: calls.append(pad) or order[::2])
    images, labels = cifar_images(10, seed=0)
    data, stats = ImageSet(images, labels, list(CIFAR_CLASSES)), dict(mean=[0.5] * 3, std=[0.25] * 3)
    sharded = CifarBatches(data, batch_size=4, train=train, shard=True, **stats)
    assert sum(len(y) for _, y in sharded) == 5 and calls[-1] is train
    calls.clear()
    assert sum(len(y) for _, y in CifarBatches(data, batch_size=4, train=train, **stats)) == 10 and calls == []


def test_cifar_batches_augment_from_their_own_seed_whatever_the_global_random_state():
    images, labels = cifar_images(24, seed=1)
    data, stats = ImageSet(images, labels, list(CIFAR_CLASSES)), dict(mean=[0.5] * 3, std=[0.25] * 3)
    torch.manual_seed(1)
    first = [x for x, _ in CifarBatches(data, batch_size=8, train=True, seed=3, **stats)]
    torch.manual_seed(2)
    again = [x for x, _ in CifarBatches(data, batch_size=8, train=True, seed=3, **stats)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
