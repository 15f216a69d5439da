"""Checkpoints that say what they are: saved atomically, validated on load with one-line errors."""

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from common.atomic_io import atomic_path
from common.errors import UserError

FORMAT = "cse849-checkpoint"


def save_checkpoint(path: str | os.PathLike, *, kind: str, model: nn.Module | dict,
                    config: dict | None = None, **extra: object) -> None:
    """Atomically save `model`'s weights with its `kind` (e.g. 'hw3-cnn'), `config` and any extras."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    payload = {"format": FORMAT, "kind": kind, "model": state, "config": config or {}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, *, kind: str | tuple[str, ...],
                    required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint saved by `save_checkpoint`, checking its kind and `required` extra keys."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated/foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({reason[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a cse849 checkpoint (no '{FORMAT}' header)")
    kinds = (kind,) if isinstance(kind, str) else kind
    if payload.get("kind") not in kinds:
        raise UserError(f"{path}: checkpoint holds a {payload.get('kind')!r} model, "
                        f"expected {' or '.join(map(repr, kinds))}")
    missing = [key for key in ("model", "config", *required) if key not in payload]
    if missing:
        raise UserError(f"{path}: checkpoint is missing {', '.join(missing)}")
    return payload


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Load `state` into `model`, turning a shape or key mismatch into a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise UserError(f"{path}: weights do not fit the model ({detail[:200]})") from None


def load_model(path: str | os.PathLike, *, kind: str, config_keys: tuple[str, ...],
               build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict]:
    """The model `build(config)` makes from a checkpoint's config, with the checkpoint's weights."""
    checkpoint = load_checkpoint(path, kind=kind)
    config = checkpoint["config"]
    missing = [key for key in config_keys if key not in config]
    if missing:
        raise UserError(f"{path}: checkpoint config lacks {', '.join(missing)}")
    model = build(config)
    load_weights(model, checkpoint["model"], path)
    return model, config
