"""Ensembles of classifiers trained separately: they vote with their averaged class probabilities."""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


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


def ensemble(members: list[nn.Module]) -> nn.Module:
    """The one model itself, or an Ensemble of several."""
    return members[0] if len(members) == 1 else Ensemble(members)
