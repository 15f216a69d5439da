"""Ensembles of classifiers trained separately: they vote with their averaged class probabilities."""

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from common.atomic_io import write_json
from common.checkpoint import COMPACT_CHECKPOINT, save_checkpoint
from common.cli import settings_of
from common.distributed import is_main, unwrap
from common.metrics import accuracy
from common.plotting import plot_member_histories
from common.training import Checkpointing, evaluate, fit


class Ensemble(nn.Module):
    """Classifiers voting with their averaged class probabilities; returns those as log-probabilities."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: Tensor) -> Tensor:
        return vote([member(*inputs) for member in self.members])


def vote(logits: Sequence[Tensor]) -> Tensor:
    """The average of the class probabilities of each member's `logits`, as log-probabilities."""
    log_probabilities = torch.stack([x.float().log_softmax(-1) for x in logits])
    return log_probabilities.logsumexp(0) - math.log(len(logits))


def members_of(model: nn.Module) -> list[nn.Module]:
    """An Ensemble's members, or the one model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def join_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The members' training histories one after another, epochs numbered on from 1."""
    history = {key: [value for h in histories for value in h[key]] for key in histories[0]}
    history["epoch"] = list(range(1, len(history["epoch"]) + 1))
    return history


def mean_throughput(histories: list[dict[str, list[float]]]) -> float:
    """Training samples per second, averaged over every member's epochs."""
    rates = [rate for h in histories for rate in h["samples_per_second"]]
    return sum(rates) / len(rates)


def write_training_record(out: Path, model: nn.Module, histories: list[dict], *, kind: str, config: dict,
                          plot_name: str, title: str, compact: bool = False) -> None:
    """history.json (the members' epochs one after another), model.pt (and, if `compact`, its int8 copy
    COMPACT_CHECKPOINT), and each member's curves."""
    write_json(out / "history.json", join_histories(histories))
    save_checkpoint(out / "model.pt", kind=kind, model=model, config=config)
    if compact:
        save_checkpoint(out / COMPACT_CHECKPOINT, kind=kind, model=model, config=config, compact=True)
    plot_member_histories(histories, ["loss", "acc"], out / plot_name, title=title)


def validation_record(model: nn.Module, histories: list[dict], loader: Iterable | None, *,
                      device: torch.device, precision: str) -> dict:
    """metrics.json's validation fields: `final_val_acc` of the model reported (the members' vote for an
    ensemble) and `member_val_acc`, each member's last epoch; None without a validation split."""
    if loader is None:
        return {"final_val_acc": None, "member_val_acc": None}
    member_accs = [h["val_acc"][-1] for h in histories]
    if len(member_accs) == 1:
        return {"final_val_acc": member_accs[0], "member_val_acc": member_accs}
    acc = evaluate(model, loader, nn.NLLLoss(), device=device, precision=precision, metrics={"acc": accuracy})["acc"]
    if is_main():  # every process evaluates its shard; one prints
        print(f"ensemble of {len(histories)}: validation accuracy {100 * acc:.2f}%", flush=True)
    return {"final_val_acc": acc, "member_val_acc": member_accs}


def member_checkpointing(out_dir: Path, member: int, members: int, kind: str, config: dict, settings: dict,
                         resume: bool) -> Checkpointing:
    """Where member `member` (from 0) keeps its training state; on resume, a later member that never
    saved one starts afresh."""
    state = out_dir / "train_state" / ("last.pt" if members == 1 else f"member{member + 1}.pt")
    return Checkpointing(state, kind, config, settings, resume=resume and (member == 0 or state.exists()))


def fit_member(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, train_loader: Iterable,
               val_loader: Iterable | None, args, member: int, *, kind: str, config: dict, device: torch.device,
               grad_clip: float | None = None) -> tuple[nn.Module, dict]:
    """Train member `member` (from 0) of `args.members` with cross-entropy (`args.label_smoothing`) and
    accuracy through `fit`, checkpointed under `args.out_dir`; returns the plain model and its history."""
    history = fit(model, optimizer, nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
                  train_loader, val_loader, epochs=args.epochs, device=device, scheduler=scheduler,
                  metrics={"acc": accuracy}, precision=args.precision, grad_clip=grad_clip, quiet=args.quiet,
                  checkpointing=member_checkpointing(args.out_dir, member, args.members, kind, config,
                                                     settings_of(args), args.resume),
                  desc=f"member {member + 1}/{args.members}" if args.members > 1 else "")
    return unwrap(model), history


def ensemble(members: list[nn.Module]) -> nn.Module:
    """The one model itself, or an Ensemble of several."""
    return members[0] if len(members) == 1 else Ensemble(members)
