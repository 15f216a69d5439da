"""The shared training loop: it learns, records history, checkpoints each epoch and resumes exactly."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.checkpoint import load_checkpoint
from common.errors import UserError
from common.metrics import accuracy
from common.seeding import seed_everything
from common.training import Checkpointing, evaluate, fit, predict

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


def test_fit_learns_and_records_history(tmp_path):
    model, optimizer, scheduler, train, val = setup()
    before = evaluate(model, val, nn.CrossEntropyLoss(), device=CPU, metrics={"acc": accuracy})
    history = fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=3, device=CPU,
                  metrics={"acc": accuracy}, history_path=tmp_path / "history.json", quiet=True)
    assert history["epoch"] == [1, 2, 3]
    assert history["val_acc"][-1] > 0.9
    assert history["val_loss"][-1] < before["loss"]
    assert json.loads((tmp_path / "history.json").read_text()) == history
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
    history = fit(model, frozen, nn.CrossEntropyLoss(), batches, None, epochs=1, device=CPU, quiet=True)
    assert history["train_loss"][0] == pytest.approx(per_sample.mean().item(), abs=1e-6)


def test_each_epoch_line_names_the_member_it_belongs_to(capsys):
    model, optimizer, _, train, val = setup()
    fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=2, device=CPU, desc="member 2/3")
    lines = capsys.readouterr().out.splitlines()
    assert [line[:22] for line in lines] == ["member 2/3 epoch   1/2", "member 2/3 epoch   2/2"]
    assert all("train_loss " in line and "val_loss " in line for line in lines)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_fit_trains_and_evaluates_in_the_precision_asked_for(precision, dtype):
    model, optimizer, _, train, val = setup()
    seen = set()
    model[0].register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    history = fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=3, device=CPU,
                  metrics={"acc": accuracy}, precision=precision, quiet=True)
    assert seen == {dtype}  # every forward pass, training and validation, ran in `precision`
    assert history["val_acc"][-1] > 0.9
    assert model[0].weight.dtype == torch.float32  # autocast keeps the master weights in fp32


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight, optimizer, scheduler, train, val = setup(dropout=0.2)
    full = fit(straight, optimizer, nn.CrossEntropyLoss(), train, val, epochs=4, device=CPU,
               scheduler=scheduler, quiet=True)

    spec = Checkpointing(tmp_path / "state.pt", kind="demo", settings={"lr": 1e-2})
    first, optimizer, scheduler, train, val = setup(dropout=0.2)
    fit(first, optimizer, nn.CrossEntropyLoss(), train, val, epochs=2, device=CPU,
        scheduler=scheduler, checkpointing=spec, quiet=True)
    assert load_checkpoint(spec.path, kind="demo")["epoch"] == 2

    # A fresh process would rebuild everything from other seeds; the checkpoint must restore it all.
    resumed, optimizer, scheduler, train, val = setup(seed=123, dropout=0.2)
    spec.resume = True
    history = fit(resumed, optimizer, nn.CrossEntropyLoss(), train, val, epochs=4, device=CPU,
                  scheduler=scheduler, checkpointing=spec, quiet=True)
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["train_loss"] == pytest.approx(full["train_loss"], rel=1e-6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_resume_refuses_changed_settings_or_missing_checkpoint(tmp_path):
    model, optimizer, _, train, val = setup()
    spec = Checkpointing(tmp_path / "state.pt", kind="demo", settings={"lr": 1e-2}, resume=True)
    with pytest.raises(UserError, match="no checkpoint at"):
        fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=1, device=CPU,
            checkpointing=spec, quiet=True)
    spec.resume = False
    fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=1, device=CPU,
        checkpointing=spec, quiet=True)
    changed = Checkpointing(spec.path, kind="demo", settings={"lr": 5e-2}, resume=True)
    with pytest.raises(UserError, match=r"different settings \(lr: 0.01 -> 0.05\)"):
        fit(model, optimizer, nn.CrossEntropyLoss(), train, val, epochs=2, device=CPU,
            checkpointing=changed, quiet=True)


def test_empty_loader_is_a_clear_error():
    model, optimizer, _, _, val = setup()
    empty = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(UserError, match="no batches"):
        fit(model, optimizer, nn.CrossEntropyLoss(), empty, val, epochs=1, device=CPU, quiet=True)
