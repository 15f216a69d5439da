"""The accelerator paths: fp16 with a gradient scaler, the device's random state in checkpoints, data
kept on the device. Each test runs on the CPU and, where one is present, on CUDA (`pytest -m device`,
as benchmarks/gpu_check.py runs them on a GPU)."""

import json

import pytest
import torch
from torch import nn

import common.training
from common.cifar import CifarBatches, load_cifar10
from common.seeding import device_rng_state, set_device_rng_state
from common.text_batches import TextBatches
from common.training import Checkpointing, Optimization, fit
from tests.conftest import assert_same_run, run_interrupted, run_script

pytestmark = pytest.mark.device
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
TINY_HW3 = ["--widths", "8", "16", "16", "--epochs", "3", "--val-size", "12", "--batch-size", "16",
            "--lr", "0.01", "--quiet"]


@pytest.mark.script
@pytest.mark.parametrize("device", DEVICES)
def test_fp16_trains_counts_skipped_steps_and_resumes_with_its_scaler(cifar_jpeg_dir, tmp_path, device):
    args = ["--data-dir", cifar_jpeg_dir, "--device", device, "--precision", "fp16", *TINY_HW3]
    done = tmp_path / "done"
    result = run_script("hw3/train.py", *args, "--out-dir", done)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((done / "metrics.json").read_text())
    history = json.loads((done / "history.json").read_text())
    assert metrics["precision"] == "fp16" and metrics["accuracy"] > 0.5  # chance is 1/3
    assert len(history["skipped_steps"]) == 3 and all(isinstance(n, int) for n in history["skipped_steps"])
    state = torch.load(done / "train_state" / "last.pt", weights_only=True)
    # the scale starts at 2**16 and halves at each skipped step (it grows only after 2000 good ones)
    assert state["scaler"]["scale"] == 2.0 ** 16 / 2 ** sum(history["skipped_steps"])
    resumed = tmp_path / "resumed"
    result = run_interrupted("hw3/train.py", *args, "--out-dir", resumed, saves=2)
    assert result.returncode == 130
    result = run_script("hw3/train.py", *args, "--out-dir", resumed, "--resume")
    assert result.returncode == 0 and "resumed from" in result.stdout, result.stderr
    assert_same_run(done, resumed)  # the scaler's scale and growth tracker came back too


@pytest.mark.script
@pytest.mark.parametrize("device", DEVICES)
def test_a_run_resumed_on_the_device_ends_as_the_uninterrupted_one(imdb_dir, tmp_path, device):
    args = ["--data-dir", imdb_dir, "--device", device, "--epochs", "3", "--members", "1", "--dim", "16",
            "--heads", "2", "--layers", "1", "--val-size", "10", "--batch-size", "8", "--dropout", "0.3",
            "--max-len", "32", "--head", "8", "--min-count", "1", "--quiet"]
    done, resumed = tmp_path / "done", tmp_path / "resumed"
    assert run_script("hw4/train.py", *args, "--out-dir", done).returncode == 0
    assert run_interrupted("hw4/train.py", *args, "--out-dir", resumed, saves=2).returncode == 130
    result = run_script("hw4/train.py", *args, "--out-dir", resumed, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_run(done, resumed)  # dropout after the resume drew the same masks


def test_fit_saves_and_restores_the_accelerators_random_state(tmp_path, monkeypatch):
    """Faked where no accelerator is present: the state `device_rng_state` gives goes into the
    checkpoint, and a resume hands it back to `set_device_rng_state`."""
    saved, restored = torch.arange(8, dtype=torch.uint8), []
    monkeypatch.setattr(common.training, "device_rng_state", lambda device: saved.clone())
    monkeypatch.setattr(common.training, "set_device_rng_state", lambda device, state: restored.append(state))
    model = nn.Linear(2, 1)
    data = [(torch.randn(4, 2), torch.randn(4, 1))]
    spec = Checkpointing(tmp_path / "last.pt", "toy")
    fit(model, nn.MSELoss(), Optimization(torch.optim.SGD(model.parameters(), lr=0.1)), data, None, epochs=1,
        checkpointing=spec, desc=None)
    assert torch.equal(torch.load(spec.path, weights_only=True)["device_rng"], saved)
    spec.resume = True
    fit(model, nn.MSELoss(), Optimization(torch.optim.SGD(model.parameters(), lr=0.1)), data, None, epochs=2,
        checkpointing=spec, desc=None)
    assert len(restored) == 1 and torch.equal(restored[0], saved)


def test_device_rng_state_reads_and_writes_the_generator_of_that_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or "s")
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", state, device)))
    cuda = torch.device("cuda", 1)
    assert device_rng_state(cuda) == "s"
    set_device_rng_state(cuda, "s")
    assert calls == [("get", cuda), ("set", "s", cuda)]
    assert device_rng_state(torch.device("cpu")) is None  # torch.get_rng_state holds the CPU's


@CUDA_ONLY
def test_cifar_batches_on_the_gpu_equal_those_on_the_cpu(cifar_jpeg_dir):
    data = load_cifar10(cifar_jpeg_dir, "train")
    options = dict(batch_size=16, mean=[0.5] * 3, std=[0.25] * 3, train=True, seed=3, crop_padding=2)
    gpu = CifarBatches(data, device="cuda", **options)
    assert gpu.images.is_cuda  # kept there: batches are cut and augmented on the device
    for (a, y_a), (b, y_b) in zip(CifarBatches(data, **options), gpu):
        assert torch.equal(a, b.cpu()) and torch.equal(y_a, y_b.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_an_fp16_step_whose_gradients_overflow_is_skipped_and_counted(device):
    device = torch.device(device)
    model = nn.Linear(4, 2).to(device)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0 ** 60)  # the scaled loss overflows fp16
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    result = common.training.run_epoch(model, data, nn.CrossEntropyLoss(), device=device, precision="fp16",
                                       scaler=scaler,
                                       optimization=Optimization(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert result["skipped_steps"] == 1 and scaler.get_scale() == 2.0 ** 59
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was not taken


@CUDA_ONLY
def test_text_batches_can_come_in_pinned_memory():
    sequences = [torch.arange(n).numpy() for n in (3, 5, 2)]
    plain = list(TextBatches(sequences, torch.tensor([0, 1, 0]), batch_size=2, max_len=4, head=2, train=False))
    pinned = list(TextBatches(sequences, torch.tensor([0, 1, 0]), batch_size=2, max_len=4, head=2, train=False,
                              pin=True))
    assert all(ids.is_pinned() and torch.equal(ids, p) for (ids, _), (p, _) in zip(pinned, plain))
