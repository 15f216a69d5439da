"""torchrun + DistributedDataParallel on CPU (gloo, two processes): shards, one-step equivalence with a
single process, and whole distributed runs that write their results once."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import common.cifar as cifar
import common.distributed as distributed
import common.text_batches as text_batches
from common.cifar import CifarBatches, ImageSet
from common.errors import UserError
from common.text_batches import TextBatches
from common.training import run_epoch
from tests.conftest import run_subprocess

CPU = torch.device("cpu")


def as_rank(monkeypatch, rank: int, world: int) -> None:
    """Make the sharding helpers behave as process `rank` of `world`."""
    for module in (distributed, cifar):
        monkeypatch.setattr(module, "rank", lambda: rank, raising=False)
    for module in (distributed, text_batches):
        monkeypatch.setattr(module, "world_size", lambda: world)


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (10, 3), (2, 3)])
def test_padded_shards_are_equal_and_cover_everything(monkeypatch, n, world):
    order = torch.randperm(n)
    shards = []
    for rank in range(world):
        as_rank(monkeypatch, rank, world)
        shards.append(distributed.shard(order, pad=True).tolist())
    assert len({len(s) for s in shards}) == 1  # equal step counts, or DDP would hang
    assert set(sum(shards, [])) == set(order.tolist())
    if n % world == 0:
        assert sorted(sum(shards, [])) == sorted(order.tolist())  # disjoint when nothing is padded


def test_loader_shards_are_disjoint_cover_the_data_and_reshuffle(monkeypatch):
    data = ImageSet(torch.zeros(40, 3, 32, 32, dtype=torch.uint8), torch.arange(40), ["x"])
    seen = {}
    for epoch in (1, 2):
        for rank in range(2):
            as_rank(monkeypatch, rank, 2)
            loader = CifarBatches(data, batch_size=8, mean=[0.0] * 3, std=[1.0] * 3, train=True,
                                  seed=5, shard=True)
            loader.set_epoch(epoch)
            assert len(loader) == 3
            seen[epoch, rank] = torch.cat([labels for _, labels in loader]).tolist()
        assert not set(seen[epoch, 0]) & set(seen[epoch, 1])
        assert sorted(seen[epoch, 0] + seen[epoch, 1]) == list(range(40))
    assert seen[1, 0] != seen[2, 0]


def test_text_batches_split_every_global_batch_across_ranks(monkeypatch):
    sequences = [torch.ones(n, dtype=torch.long).numpy() for n in range(1, 41)]
    seen = {}
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        loader = TextBatches(sequences, torch.arange(40), batch_size=8, max_len=64, head=8, train=True,
                             seed=3, shard=True)
        loader.set_epoch(1)
        seen[rank] = [labels.tolist() for _, labels in loader]
    assert len(seen[0]) == len(seen[1]) == 5 and all(len(b) == 4 for b in seen[0] + seen[1])
    assert sorted(sum(seen[0] + seen[1], [])) == list(range(40))  # disjoint and complete
    for mine, theirs in zip(seen[0], seen[1]):  # the two halves of one length bucket
        assert abs(max(mine) - max(theirs)) < 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small model and one fixed global batch of 16."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def one_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    result = run_epoch(model, [(x, y)], nn.functional.cross_entropy, device=CPU, optimizer=optimizer)
    return result["loss"]


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = distributed.setup("cpu")
    model, x, y = problem()
    model = distributed.wrap(model, device)
    index = distributed.shard(torch.arange(len(x)), pad=True)  # this process's half of the batch
    loss = one_step(model, x[index], y[index])
    if distributed.is_main():
        torch.save({"model": distributed.unwrap(model).state_dict(), "loss": loss}, out)
    distributed.teardown()


def test_two_process_ddp_step_equals_one_process_step(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(ddp_worker, args=(2, free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out)
    single, x, y = problem()
    loss = one_step(single, x, y)
    assert ddp["loss"] == pytest.approx(loss, rel=1e-6)  # the epoch loss is summed over both ranks
    changed = 0
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=1e-5, atol=1e-6)
        changed += not torch.equal(value, problem()[0].state_dict()[name])
    assert changed > 0  # the step really moved the parameters


def torchrun(script: str, *args, env: dict) -> "subprocess.CompletedProcess":  # noqa: F821
    return run_subprocess("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                          *args, env=env)


@pytest.mark.script
def test_hw3_two_process_run_writes_results_once_and_resumes(cifar_jpeg_dir, tmp_path):
    out, env = tmp_path / "out", {"CSE849_CACHE": str(tmp_path / "cache")}
    args = ["hw3/train.py", "--data-dir", cifar_jpeg_dir, "--out-dir", out, "--widths", "8", "16", "16",
            "--epochs", "2", "--val-size", "12", "--batch-size", "16", "--lr", "0.01", "--device", "cpu"]
    result = torchrun(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("metrics.json") == 1 and result.stdout.count("epoch   2/2") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["command"].startswith("torchrun --nproc_per_node=2")
    assert metrics["train_images"] == 48 and metrics["accuracy"] > 0.5
    result = torchrun(*args, "--resume", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("resumed from") == 1


@pytest.mark.script
def test_hw4_two_process_ensemble_run_writes_results_once(imdb_dir, tmp_path):
    out = tmp_path / "out"
    result = torchrun("hw4/train.py", "--data-dir", imdb_dir, "--out-dir", out, "--dim", "32", "--layers", "1",
                      "--heads", "2", "--epochs", "4", "--batch-size", "8", "--lr", "3e-3", "--val-size", "10",
                      "--max-len", "32", "--min-count", "1", "--head", "8", "--members", "2", "--device", "cpu",
                      env={"CSE849_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("metrics.txt") == 1 and result.stdout.count("epoch   4/4") == 2
    assert result.stdout.count("ensemble of 2: validation accuracy") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["command"].startswith("torchrun --nproc_per_node=2")
    assert metrics["test_reviews"] == 20 and metrics["accuracy"] > 0.6  # chance is 0.5


def test_uneven_global_batch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.per_rank_batch_size(16) == 8
    with pytest.raises(UserError, match="--batch-size 15 does not split evenly over 2 processes"):
        distributed.per_rank_batch_size(15)


def test_plain_python_is_a_world_of_one():
    assert distributed.setup("cpu") == CPU and not torch.distributed.is_initialized()
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.wrap(model := nn.Linear(2, 2), CPU) is model
    assert distributed.per_rank_batch_size(15) == 15
