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
from common.training import Optimization, run_epoch
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
    result = run_epoch(model, [(x, y)], nn.functional.cross_entropy, device=CPU, optimization=Optimization(optimizer))
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


# --- the helpers one by one, with torch.distributed faked -------------------------------------------
class FakeDist:
    """The parts of torch.distributed the helpers call, recording each call."""

    def __init__(self, rank: int = 1, world: int = 2):
        self.calls, self.rank, self.world = [], rank, world

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def get_rank(self):
        return self.rank

    def get_world_size(self):
        return self.world

    def init_process_group(self, backend):
        self.calls.append(("init", backend))

    def barrier(self):
        self.calls.append(("barrier",))

    def destroy_process_group(self):
        self.calls.append(("destroy",))

    def all_reduce(self, tensor):
        self.calls.append(("all_reduce",))
        tensor.mul_(self.world)


def torchrun_env(monkeypatch, **extra) -> None:
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_torchrun_is_recognised_by_rank_and_world_size_together(monkeypatch):
    torchrun_env(monkeypatch)
    assert distributed.launched_by_torchrun()
    monkeypatch.delenv("WORLD_SIZE")
    assert not distributed.launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK")
    assert not distributed.launched_by_torchrun()


def test_a_process_group_is_joined_with_gloo_on_the_cpu_and_nccl_on_this_ranks_gpu(monkeypatch):
    fake = FakeDist()
    fake.is_initialized = lambda: False
    monkeypatch.setattr(distributed, "dist", fake)
    torchrun_env(monkeypatch, MASTER_ADDR="localhost", MASTER_PORT="29500", LOCAL_RANK="1")
    assert distributed.setup("cpu") == CPU and fake.calls == [("init", "gloo")]
    fake.calls.clear()
    chosen = []
    monkeypatch.setattr(distributed, "select_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert distributed.setup("cuda") == torch.device("cuda", 1) == chosen[0] and fake.calls == [("init", "nccl")]
    monkeypatch.setattr(distributed, "select_device", lambda name: torch.device("mps"))
    with pytest.raises(UserError, match=r"^torchrun on mps is not supported; use --device cpu$"):
        distributed.setup("mps")


def test_a_stray_rank_in_the_environment_is_a_clear_error_and_a_joined_group_is_kept(monkeypatch):
    fake = FakeDist()
    fake.is_initialized = lambda: False
    monkeypatch.setattr(distributed, "dist", fake)
    torchrun_env(monkeypatch, MASTER_PORT="29500")
    with pytest.raises(UserError, match=r"^RANK and WORLD_SIZE are set but MASTER_ADDR, LOCAL_RANK are not: start "
                                        r"the script with torchrun, or unset RANK and WORLD_SIZE to run as one process$"):
        distributed.setup("cpu")
    fake.is_initialized = lambda: True  # already joined: nothing more to do
    assert distributed.setup("cpu") == CPU and fake.calls == []


def test_setup_picks_the_device_automatically_by_default(monkeypatch):
    asked = []
    monkeypatch.setattr(distributed, "select_device", lambda name: asked.append(name) or CPU)
    assert distributed.setup() == CPU and asked == ["auto"]


def test_the_global_batch_splits_into_whole_per_process_batches(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    size = distributed.per_rank_batch_size(256)
    assert size == 64 and isinstance(size, int)


def test_unwrap_takes_the_model_out_of_its_ddp_wrapper(monkeypatch):
    class FakeDDP(nn.Module):
        def __init__(self, module, device_ids):
            super().__init__()
            self.module, self.device_ids = module, device_ids
    monkeypatch.setattr(distributed, "DistributedDataParallel", FakeDDP)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    model = nn.Linear(2, 2)
    wrapped = distributed.wrap(model, CPU)
    assert isinstance(wrapped, FakeDDP) and wrapped.module is model and distributed.unwrap(wrapped) is model
    assert distributed.unwrap(model) is model


def test_under_a_process_group_the_helpers_use_it(monkeypatch):
    fake = FakeDist(rank=1, world=2)
    monkeypatch.setattr(distributed, "dist", fake)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (1, 2, False)
    assert distributed.all_reduce_sum(torch.ones(2)).tolist() == [2.0, 2.0]
    distributed.teardown()
    assert fake.calls == [("all_reduce",), ("barrier",), ("destroy",)]
    wrapped = []
    monkeypatch.setattr(distributed, "DistributedDataParallel", lambda model, device_ids: wrapped.append(device_ids) or model)
    distributed.wrap(nn.Linear(2, 2), torch.device("cuda", 1))
    distributed.wrap(nn.Linear(2, 2), CPU)
    assert wrapped == [[1], None]
    fake.rank = 0
    assert distributed.is_main()


def test_without_a_process_group_nothing_is_reduced_or_torn_down(monkeypatch):
    fake = FakeDist()
    fake.is_initialized = lambda: False
    monkeypatch.setattr(distributed, "dist", fake)
    assert distributed.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
    distributed.teardown()
    assert fake.calls == [] and (distributed.rank(), distributed.world_size()) == (0, 1)
    fake.is_available = lambda: False
    fake.is_initialized = lambda: True  # a build without torch.distributed
    assert distributed.world_size() == 1


def test_the_recorded_command_names_torchrun_and_its_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr("sys.argv", ["hw3/train.py", "--epochs", "2", "--out-dir", "runs/a b"])
    assert distributed.launch_command("hw3/train.py") == "torchrun --nproc_per_node=2 hw3/train.py --epochs 2 --out-dir 'runs/a b'"


def test_the_recorded_command_leaves_arguments_that_are_not_absolute_paths_as_typed(monkeypatch):
    from tests.conftest import ROOT
    monkeypatch.chdir(ROOT / "hw3")  # started from inside a homework folder
    monkeypatch.setattr("sys.argv", ["train.py", "--lr", "0.1", "--data-dir", str(ROOT / "data")])
    assert distributed.launch_command("hw3/train.py") == "python hw3/train.py --lr 0.1 --data-dir data"
