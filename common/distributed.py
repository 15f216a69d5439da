"""Multi-process training with torchrun and DistributedDataParallel.

Under `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK) `setup` joins the process group: nccl on
CUDA, gloo on CPU. A plain `python script.py` is a world of one and every helper here is a no-op.
Rule: `--batch-size` is the global batch; each of N processes takes batch-size / N, so the learning
rate needs no rescaling and N processes optimise the same objective as one.
"""

import os
import shlex
import sys

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from common.cli import shown_path
from common.device import select_device
from common.errors import UserError


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in the one process that prints, writes results and saves checkpoints."""
    return rank() == 0


def setup(device_name: str = "auto") -> torch.device:
    """This process's device; under torchrun also join the process group (nccl on CUDA, else gloo)."""
    device = select_device(device_name)
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "mps":
        raise UserError("torchrun on mps is not supported; use --device cpu")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK") if name not in os.environ]
    if missing:  # RANK and WORLD_SIZE left in the environment, but no torchrun around this process
        raise UserError(f"RANK and WORLD_SIZE are set but {', '.join(missing)} are not: start the script with "
                        "torchrun, or unset RANK and WORLD_SIZE to run as one process")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def teardown() -> None:
    """Leave the process group (after every rank has arrived), if one was joined."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def per_rank_batch_size(global_batch_size: int) -> int:
    """The global batch split evenly across the processes; an uneven split is an error."""
    world = world_size()
    if global_batch_size % world:
        raise UserError(f"--batch-size {global_batch_size} does not split evenly over {world} processes")
    return global_batch_size // world


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in DistributedDataParallel when distributed, else unchanged."""
    if not is_distributed():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum `tensor` over all processes, in place, and return it (a no-op in one process)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def shard(order: Tensor, *, pad: bool) -> Tensor:
    """This process's share of `order`: every world_size-th item from its rank. With `pad`, the order
    first wraps around so every rank gets as many items (and batches) as the others, as DDP needs."""
    world = world_size()
    if pad and len(order) % world:
        extra = world - len(order) % world
        order = torch.cat([order, order.repeat(extra // len(order) + 1)[:extra]])
    return order[rank()::world]


def launch_command(script: str) -> str:
    """The command line that started this run (torchrun included) as typed from the repository root:
    absolute paths inside the repository are written relative to it."""
    launcher = f"torchrun --nproc_per_node={world_size()} " if world_size() > 1 else "python "
    args = [shlex.quote(shown_path(arg) if arg.startswith("/") else arg) for arg in sys.argv[1:]]
    return launcher + " ".join([script, *args])
