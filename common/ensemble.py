"""Ensembles of classifiers trained separately: they vote with their averaged class probabilities."""

import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from common.distributed import is_main
from common.metrics import accuracy
from common.training import Checkpointing, evaluate


class Ensemble(nn.Module):
    """Classifiers voting with their averaged class probabilities; returns those as log-probabilities."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: Tensor) -> Tensor:
        log_probabilities = torch.stack([member(*inputs).float().log_softmax(-1) for member in self.members])
        return log_probabilities.logsumexp(0) - math.log(len(self.members))


def join_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The members' training histories one after another, epochs numbered on from 1."""
    history = {key: [value for h in histories for value in h[key]] for key in histories[0]}
    history["epoch"] = list(range(1, len(history["epoch"]) + 1))
    return history


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


def ensemble(members: list[nn.Module]) -> nn.Module:
    """The one model itself, or an Ensemble of several."""
    return members[0] if len(members) == 1 else Ensemble(members)
