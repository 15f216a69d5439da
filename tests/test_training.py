"""The shared training loop: it learns, records history, checkpoints each epoch and resumes exactly."""

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common import training
from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import TrainingDiverged, UserError
from common.metrics import accuracy
from common.seeding import seed_everything
from common.training import Checkpointing, Optimization, evaluate, fit, predict, run_epoch

CPU = torch.device("cpu")


def blobs(n: int = 256, seed: int = 0) -> TensorDataset:
    """Two Gaussian blobs in 2-D, labels 0/1."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    points = torch.randn(n, 2, generator=generator) + (labels[:, None] * 2 - 1) * 1.5
    return TensorDataset(points, labels)


class EpochBatches:
    """Batches of a TensorDataset shuffled by (seed, epoch), as the repo's CIFAR and IMDB loaders are."""

    def __init__(self, data: TensorDataset, batch_size: int, seed: int = 0):
        self.data, self.batch_size, self.seed, self.epoch = data, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        for start in range(0, len(order), self.batch_size):
            yield self.data[order[start:start + self.batch_size]]


def setup(seed: int = 0, dropout: float = 0.0):
    seed_everything(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    train = EpochBatches(blobs(), batch_size=32)
    val = DataLoader(blobs(128, seed=1), batch_size=64)
    return model, optimizer, scheduler, train, val


def test_fit_learns_and_records_history():
    model, optimizer, scheduler, train, val = setup()
    before = evaluate(model, val, nn.CrossEntropyLoss(), device=CPU, metrics={"acc": accuracy})
    history = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=3,
                  metrics={"acc": accuracy}, desc=None)
    assert history["epoch"] == [1, 2, 3]
    assert history["val_acc"][-1] > 0.9
    assert history["val_loss"][-1] < before["loss"]
    outputs, targets = predict(model, val, device=CPU)
    assert outputs.shape == (128, 2) and targets.shape == (128,)


def test_epoch_loss_and_accuracy_are_means_over_samples_when_the_last_batch_is_short():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(9, 3), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    batches = [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]  # 4, 4 and 1 samples
    with torch.no_grad():
        per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")
        right = (model(x).argmax(1) == y).float()
    result = evaluate(model, batches, nn.CrossEntropyLoss(), device=CPU, metrics={"acc": accuracy})
    assert result["loss"] == pytest.approx(per_sample.mean().item(), abs=1e-6)  # not the mean of 3 batch means
    assert result["acc"] == pytest.approx(right.mean().item())
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # training with lr 0: the same sums, in train mode
    history = fit(model, nn.CrossEntropyLoss(), Optimization(frozen), batches, None, epochs=1, desc=None)
    assert history["train_loss"][0] == pytest.approx(per_sample.mean().item(), abs=1e-6)


def test_each_epoch_line_names_the_member_it_belongs_to(capsys):
    model, optimizer, _, train, val = setup()
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2, desc="member 2/3")
    lines = capsys.readouterr().out.splitlines()
    assert [line[:22] for line in lines] == ["member 2/3 epoch   1/2", "member 2/3 epoch   2/2"]
    assert all("train_loss " in line and "val_loss " in line for line in lines)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_fit_trains_and_evaluates_in_the_precision_asked_for(precision, dtype):
    model, optimizer, _, train, val = setup()
    seen = set()
    model[0].register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    history = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=3,
                  metrics={"acc": accuracy}, precision=precision, desc=None)
    assert seen == {dtype}  # every forward pass, training and validation, ran in `precision`
    assert history["val_acc"][-1] > 0.9
    assert model[0].weight.dtype == torch.float32  # autocast keeps the master weights in fp32


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight, optimizer, scheduler, train, val = setup(dropout=0.2)
    full = fit(straight, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=4, desc=None)

    spec = Checkpointing(tmp_path / "state.pt", kind="demo", config={"width": 8}, settings={"lr": 1e-2})
    first, optimizer, scheduler, train, val = setup(dropout=0.2)
    fit(first, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=2, checkpointing=spec,
        desc=None)
    saved = load_checkpoint(spec.path, kind="demo")
    assert saved["epoch"] == 2 and saved["config"] == {"width": 8} and saved["settings"] == {"lr": 1e-2}

    # A fresh process would rebuild everything from other seeds; the checkpoint must restore it all.
    resumed, optimizer, scheduler, train, val = setup(seed=123, dropout=0.2)
    spec.resume = True
    history = fit(resumed, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=4,
                  checkpointing=spec, desc=None)
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["train_loss"] == pytest.approx(full["train_loss"], rel=1e-6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_resume_refuses_changed_settings_or_missing_checkpoint(tmp_path):
    model, optimizer, _, train, val = setup()
    spec = Checkpointing(tmp_path / "state.pt", kind="demo", settings={"lr": 1e-2}, resume=True)
    with pytest.raises(UserError, match="no checkpoint at"):
        fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=1, checkpointing=spec, desc=None)
    spec.resume = False
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=1, checkpointing=spec, desc=None)
    changed = Checkpointing(spec.path, kind="demo", settings={"lr": 5e-2}, resume=True)
    with pytest.raises(UserError, match=r"different settings \(lr: 0.01 -> 0.05\)"):
        fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2, checkpointing=changed,
            desc=None)


def test_empty_loader_is_a_clear_error():
    model, optimizer, _, _, val = setup()
    empty = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(UserError, match=r"^a data loader produced no batches \(is the dataset empty\?\)$"):
        fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), empty, val, epochs=1, desc=None)


# --- run_epoch and fit, unit by unit ----------------------------------------------------------------
class FakeBar:
    """A progress bar that records what it was told."""

    def __init__(self, disable: bool = False, **kwargs):
        self.disable, self.kwargs, self.updates, self.postfixes = disable, kwargs, [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.updates.append(n)

    def set_postfix(self, **kwargs):
        self.postfixes.append(kwargs)


def three_batches(seed: int = 0, sizes=(4, 4, 2)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 2, generator=generator), torch.randint(0, 2, (n,), generator=generator)) for n in sizes]


def second_metric(output, target):
    return (output[:, 1] > 0).float().mean()


def test_run_epoch_sums_in_float64_with_exact_sample_counts_and_several_metrics():
    torch.manual_seed(0)
    model, batches = nn.Linear(2, 2), three_batches()
    result = run_epoch(model, batches, nn.CrossEntropyLoss(), device=CPU,  # precision: fp32 by default
                       metrics={"acc": accuracy, "second": second_metric})
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(x), y).double() * len(y) for x, y in batches]
        seconds = [second_metric(model(x), y).double() * len(y) for x, y in batches]
    assert result["samples"] == 10 and list(result) == ["loss", "acc", "second", "samples"]
    assert abs(result["loss"] - (sum(losses) / 10).item()) < 1e-12  # float64 sums, not float32
    assert abs(result["second"] - (sum(seconds) / 10).item()) < 1e-12
    assert "skipped_steps" not in result  # only fp16 (a scaler) counts them


def test_run_epoch_accepts_a_loss_that_is_exactly_zero():
    model = nn.Linear(2, 2)
    result = run_epoch(model, three_batches(), lambda output, target: output.sum() * 0, device=CPU)
    assert result == {"loss": 0.0, "samples": 10}


def test_run_epoch_advances_a_visible_progress_bar_once_per_batch_with_the_loss():
    model, bar = nn.Linear(2, 2), FakeBar()
    run_epoch(model, three_batches(), nn.CrossEntropyLoss(), device=CPU, progress=bar)
    assert bar.updates == [1, 1, 1]
    assert len(bar.postfixes) == 3 and all(p["refresh"] is False for p in bar.postfixes)
    assert all(len(p["loss"].split(".")[1]) == 4 for p in bar.postfixes)
    hidden = FakeBar(disable=True)
    run_epoch(model, three_batches(), nn.CrossEntropyLoss(), device=CPU, progress=hidden)
    assert hidden.updates == [] and hidden.postfixes == []


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_run_epoch_clips_the_gradient_norm(precision):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0) if precision == "fp16" else None
    run_epoch(model, three_batches(sizes=(8,)), nn.CrossEntropyLoss(), device=CPU, precision=precision,
              optimization=Optimization(optimizer, grad_clip=1e-3), scaler=scaler)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)  # lr 1: the step is the clipped gradient


def test_run_epoch_in_fp16_counts_the_steps_its_scaler_skipped():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    overflowing = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)  # fp16 gradients overflow: both steps skipped
    result = run_epoch(model, three_batches(sizes=(4, 4)), nn.CrossEntropyLoss(), device=CPU, precision="fp16",
                       optimization=Optimization(optimizer), scaler=overflowing)
    assert result["skipped_steps"] == 2 and overflowing.get_scale() == 2.0 ** 98
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    fine = torch.amp.GradScaler("cpu", init_scale=1.0)
    result = run_epoch(model, three_batches(sizes=(4, 4)), nn.CrossEntropyLoss(), device=CPU, precision="fp16",
                       optimization=Optimization(optimizer), scaler=fine)
    assert result["skipped_steps"] == 0 and not torch.equal(before[0], model.weight)


def test_run_epoch_says_where_the_loss_stopped_being_finite(monkeypatch):
    def loss_at(bad_step: int):
        calls = []

        def loss_fn(output, target):
            calls.append(1)
            loss = nn.functional.cross_entropy(output, target)
            return loss * float("inf") if len(calls) == bad_step else loss
        return loss_fn
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with pytest.raises(TrainingDiverged, match=r"^the loss became nan or infinite at step 2 of 3 \(lr 0.5\)$"):
        run_epoch(model, three_batches(), loss_at(2), device=CPU, optimization=Optimization(optimizer))
    with pytest.raises(TrainingDiverged, match=r"^the loss became nan or infinite at step 1 of 3 \(lr 0.5\)$"):
        run_epoch(nn.Linear(2, 2), three_batches(), loss_at(1), device=CPU, optimization=Optimization(optimizer))
    with pytest.raises(TrainingDiverged, match=r"^the loss became nan or infinite in evaluation$"):
        run_epoch(model, three_batches(), loss_at(3), device=CPU)
    # under torchrun another process's non-finite loss arrives through the summed totals, even on a
    # process that had no batches
    monkeypatch.setattr(training, "all_reduce_sum", lambda totals: totals + torch.eye(len(totals))[-1].to(totals))
    for batches in (three_batches(), []):
        with pytest.raises(TrainingDiverged, match=r"^the loss became nan or infinite in another process$"):
            fresh = nn.Linear(2, 2)
            run_epoch(fresh, batches, nn.CrossEntropyLoss(), Optimization(torch.optim.SGD(fresh.parameters(), lr=0.5)),
                      device=CPU)


def test_fit_records_each_epochs_lr_time_throughput_and_metrics(monkeypatch):
    clock = iter(range(0, 1000, 2))
    monkeypatch.setattr(training, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    bars = []
    monkeypatch.setattr(training, "progress", lambda **kwargs: bars.append(FakeBar(**kwargs)) or bars[-1])
    model, optimizer, scheduler, train, val = setup()
    epochs_seen = []
    train.set_epoch = epochs_seen.append
    history = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=2,
                  metrics={"acc": accuracy}, desc=None)
    assert list(history) == ["epoch", "lr", "seconds", "samples_per_second", "train_loss", "train_acc",
                             "val_loss", "val_acc"]
    assert epochs_seen == [1, 2]
    assert history["lr"] == [1e-2, 1e-2 * 0.5 ** (len(train) // 5)]  # at each epoch's start; the schedule steps per batch
    assert history["seconds"] == [4.0, 4.0]  # the clock ticks 2 s at the start, after training and after validation
    assert history["samples_per_second"] == [128.0, 128.0]  # 256 samples over the 2 s of training
    assert [bar.kwargs for bar in bars] == [{"total": len(train), "desc": f"epoch {e}/2", "quiet": True,
                                             "leave": False} for e in (1, 2)]
    assert [len(bar.updates) for bar in bars] == [len(train)] * 2


def test_fit_clips_gradients_when_asked():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    fit(model, nn.CrossEntropyLoss(), Optimization(torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1e-3),
        three_batches(sizes=(8,)), None, epochs=1, desc=None)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_fit_prints_one_line_per_epoch(capsys):
    model, optimizer, _, train, val = setup()
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, None, epochs=1)
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"epoch   1/1  train_loss \d\.\d{4}  \d+\.\ds", line), line


def test_a_diverging_fit_says_whether_a_checkpoint_was_kept(tmp_path):
    def diverging_in(epoch: int, spec):
        model, optimizer, _, train, _ = setup()

        def loss_fn(output, target):
            loss = nn.functional.cross_entropy(output, target)
            return loss * float("nan") if train.epoch == epoch else loss
        with pytest.raises(TrainingDiverged) as err:
            fit(model, loss_fn, Optimization(optimizer), train, None, epochs=3, checkpointing=spec, desc=None)
        return str(err.value)
    spec = Checkpointing(tmp_path / "state.pt", kind="demo")
    assert diverging_in(2, spec) == (f"training diverged in epoch 2: the loss became nan or infinite at step 1 of 8 "
                                     f"(lr 0.01); the checkpoint after epoch 1 is kept in {spec.path}. "
                                     "Try a lower --lr.")
    assert diverging_in(1, spec).endswith("at step 1 of 8 (lr 0.01); nothing was saved. Try a lower --lr.")
    assert diverging_in(2, None).endswith("(lr 0.01); nothing was saved. Try a lower --lr.")


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # a skipped first step
def test_fit_in_fp16_resumes_its_loss_scale_and_the_device_random_state(tmp_path, monkeypatch, capsys):
    def gradient_scaler(device, precision):  # a scale so large that the first steps are skipped
        return torch.amp.GradScaler(device.type, init_scale=2.0 ** 20) if precision == "fp16" else None
    monkeypatch.setattr(training, "gradient_scaler", gradient_scaler)
    device_states = []
    monkeypatch.setattr(training, "device_rng_state", lambda device: torch.tensor([7]))
    monkeypatch.setattr(training, "set_device_rng_state", lambda device, state: device_states.append((device, state)))
    straight, optimizer, scheduler, train, val = setup()
    full = fit(straight, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=2,
               precision="fp16", desc=None)
    assert list(full)[4:] == ["skipped_steps", "train_loss", "val_loss"] and full["skipped_steps"][0] > 0
    spec = Checkpointing(tmp_path / "state.pt", kind="demo")
    first, optimizer, scheduler, train, val = setup()
    fit(first, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=1, precision="fp16",
        checkpointing=spec, desc=None)
    resumed, optimizer, scheduler, train, val = setup(seed=5)
    spec.resume = True
    history = fit(resumed, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=2,
                  precision="fp16", checkpointing=spec)
    assert history["skipped_steps"] == full["skipped_steps"]
    assert history["train_loss"] == pytest.approx(full["train_loss"], rel=1e-6)
    assert len(device_states) == 1 and torch.equal(device_states[0][1], torch.tensor([7]))
    assert device_states[0][0] == CPU
    assert capsys.readouterr().out.startswith(f"resumed from {spec.path} after epoch 1\n")


def test_resume_names_what_the_checkpoint_lacks_or_what_changed(tmp_path):
    model, optimizer, _, train, val = setup()
    path = tmp_path / "state.pt"
    save_checkpoint(path, kind="demo", model=model, settings={"lr": 1}, epoch=1, history={}, torch_rng=torch.get_rng_state())
    with pytest.raises(UserError, match=r"state.pt: checkpoint is missing optimizer$"):
        fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2,
            checkpointing=Checkpointing(path, kind="demo", settings={"lr": 1}, resume=True), desc=None)
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=1, checkpointing=Checkpointing(path,
        kind="demo", settings={"lr": 1, "extra": 2}), desc=None)
    changed = Checkpointing(path, kind="demo", settings={"lr": 3}, resume=True)
    with pytest.raises(UserError, match=r"different settings \(extra: 2 -> None, lr: 1 -> 3\)$"):
        fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2, checkpointing=changed,
            desc=None)
    other = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    same = Checkpointing(path, kind="demo", settings={"lr": 1, "extra": 2}, resume=True)
    with pytest.raises(UserError, match=r"state.pt: weights do not fit the model"):
        fit(other, nn.CrossEntropyLoss(), Optimization(torch.optim.SGD(other.parameters(), lr=0.1)), train, val,
            epochs=2, checkpointing=same, desc=None)


def test_resume_without_the_scheduler_it_was_saved_with(tmp_path):
    model, optimizer, scheduler, train, val = setup()
    spec = Checkpointing(tmp_path / "state.pt", kind="demo")
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer, scheduler), train, val, epochs=1, checkpointing=spec,
        desc=None)
    spec.resume = True
    history = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2, checkpointing=spec,
                  desc=None)
    assert history["epoch"] == [1, 2]


def test_resume_in_fp32_from_an_fp16_checkpoint(tmp_path):
    model, optimizer, _, train, val = setup()
    spec = Checkpointing(tmp_path / "state.pt", kind="demo")
    fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=1, precision="fp16",
        checkpointing=spec, desc=None)
    assert load_checkpoint(spec.path, kind="demo")["scaler"] is not None
    spec.resume = True
    history = fit(model, nn.CrossEntropyLoss(), Optimization(optimizer), train, val, epochs=2, checkpointing=spec,
                  desc=None)  # no scaler to restore the scale into
    assert history["epoch"] == [1, 2] and len(history["train_loss"]) == 2


class SometimesExtra(nn.Module):
    """A linear layer plus a bias `extra` that only the forward passes with `use_extra` set add."""

    def __init__(self):
        super().__init__()
        self.linear, self.extra, self.use_extra = nn.Linear(2, 2), nn.Parameter(torch.zeros(2)), True

    def forward(self, x):
        return self.linear(x) + self.extra if self.use_extra else self.linear(x)


def test_a_step_leaves_alone_the_parameters_its_loss_did_not_use():
    torch.manual_seed(0)
    model = SometimesExtra()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    run_epoch(model, three_batches(sizes=(4,)), nn.CrossEntropyLoss(), device=CPU, optimization=Optimization(optimizer))
    moved = model.extra.detach().clone()
    assert moved.abs().sum() > 0
    model.use_extra = False  # stale gradients from the step before must not keep moving it (AdamW's momentum)
    run_epoch(model, three_batches(sizes=(4, 4)), nn.CrossEntropyLoss(), Optimization(optimizer), device=CPU)
    assert torch.equal(model.extra.detach(), moved)
