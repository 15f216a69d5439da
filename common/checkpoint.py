"""Checkpoints that say what they are: saved atomically, validated on load with one-line errors."""

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol, TypeVar

import torch
from torch import nn

from common.atomic_io import atomic_path
from common.errors import UserError

FORMAT = "cse849-checkpoint"
COMPACT_CHECKPOINT = "model_int8.pt"  # the int8 copy small enough for git, beside a model.pt that is not


class ModelConfig(Protocol):
    """A homework's model config (a dataclass): it names what is wrong with itself, and builds its model."""

    def problem(self) -> str | None: ...

    def build(self) -> nn.Module: ...


Config = TypeVar("Config", bound=ModelConfig)


def save_checkpoint(path: str | os.PathLike, *, kind: str, model: nn.Module | dict,
                    config: ModelConfig | dict | None = None, compact: bool = False, **extra: object) -> None:
    """Atomically save `model`'s weights with its `kind` (e.g. 'hw3-cnn'), `config` (a dataclass is stored
    as a dict) and any extras; `compact` stores the weights as `int8_state` does (about a quarter of the size)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    if compact:
        state, extra = int8_state(state), {**extra, "compact": "int8"}
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    payload = {"format": FORMAT, "kind": kind, "model": state, "config": config or {}, **extra}
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(payload, file)  # through the open file: a path would put its random name in the archive


def load_checkpoint(path: str | os.PathLike, *, kind: str | tuple[str, ...],
                    required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint saved by `save_checkpoint`, checking its kind and `required` extra keys."""
    path = checkpoint_in(Path(path))
    if not path.is_file():
        raise UserError(missing_checkpoint_message(path))
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise UserError(f"{path}: not a PyTorch checkpoint (a model.pt that a train.py wrote)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated/foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        short = reason if len(reason) <= 120 else reason[:120].rsplit(" ", 1)[0] + " ..."
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({short})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a cse849 checkpoint (no '{FORMAT}' header)")
    kinds = (kind,) if isinstance(kind, str) else kind
    if payload.get("kind") not in kinds:
        raise UserError(f"{path}: checkpoint holds a {payload.get('kind')!r} model, "
                        f"expected {' or '.join(map(repr, kinds))}")
    missing = [key for key in ("model", "config", *required) if key not in payload]
    if missing:
        raise UserError(f"{path}: checkpoint is missing {', '.join(missing)}")
    if payload.get("compact") == "int8":
        payload["model"] = float_state(payload["model"], path)
    return payload


def int8_state(state: dict[str, torch.Tensor]) -> dict:
    """Each floating tensor of 2 or more dimensions (weight matrices, filters, embeddings) as int8 rows
    with one float32 scale a row (the row's largest magnitude / 127); the rest kept as they are."""
    compact = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            rows = tensor.detach().float().reshape(len(tensor), -1)
            scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
            compact[key] = {"int8": (rows / scale[:, None]).round().to(torch.int8).reshape(tensor.shape),
                            "scale": scale, "dtype": str(tensor.dtype).removeprefix("torch.")}
        else:
            compact[key] = tensor
    return compact


def float_state(compact: dict, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state `int8_state` stored, with every int8 tensor scaled back to its floating dtype."""
    state = {}
    for key, value in compact.items():
        if isinstance(value, dict):
            try:
                q, scale, dtype = value["int8"], value["scale"], getattr(torch, value["dtype"])
                if q.dtype != torch.int8 or not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
                    raise TypeError
                state[key] = (q.float().reshape(len(q), -1) * scale[:, None]).reshape(q.shape).to(dtype)
            except (KeyError, TypeError, AttributeError, RuntimeError):
                raise UserError(f"{path}: compact weights of {key} are malformed") from None
        else:
            state[key] = value
    return state


def whole(value: object, low: int, high: int) -> bool:
    """Whether `value` is an int (not a bool) in [low, high]: for checking a checkpoint's config."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def names(value: object, low: int, high: int) -> bool:
    """Whether `value` is a list of `low` to `high` strings."""
    return isinstance(value, list) and low <= len(value) <= high and all(isinstance(v, str) for v in value)


def checkpoint_in(path: Path) -> Path:
    """`path`, or for a run's folder the checkpoint inside it: its model.pt, else its int8 copy."""
    if not path.is_dir():
        return path
    for name in ("model.pt", COMPACT_CHECKPOINT):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: a folder without model.pt or {COMPACT_CHECKPOINT}; give the run folder a "
                    "train.py wrote, or the checkpoint file itself")


def missing_checkpoint_message(path: Path) -> str:
    """Why `path` is absent and how to make it: the command and time recorded in the metrics.json
    beside it, when a committed run left one (its model.pt was too large for git)."""
    try:
        record = json.loads((path.parent / "metrics.json").read_text())
        command, minutes = record["command"], record["wall_seconds"] / 60
        machine = record.get("machine_class", "machine not recorded")
    except (OSError, ValueError, KeyError, TypeError):
        return (f"{path}: no such checkpoint file; train one first (the homework's train.py writes "
                "model.pt into its --out-dir)")
    compact = path.parent / COMPACT_CHECKPOINT
    also = f", or pass --checkpoint {compact}, its int8 copy" if compact.is_file() and path != compact else ""
    return (f"{path}: no such checkpoint file: it is not in git (too large). `{command}` makes it, in "
            f"about {minutes:.0f} min ({machine}){also}")


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Load `state` into `model`, turning a shape or key mismatch into a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise UserError(f"{path}: weights do not fit the model ({detail[:200]})") from None


def config_from(config_type: type[Config], stored: dict, path: str | os.PathLike) -> Config:
    """The `config_type` dataclass a checkpoint's config dict describes; keys it does not know (an older
    run's) are left out, and a field without a default must be there."""
    fields = dataclasses.fields(config_type)
    missing = [f.name for f in fields if f.name not in stored and f.default is dataclasses.MISSING]
    if missing:
        raise UserError(f"{path}: checkpoint config lacks {', '.join(missing)}")
    return config_type(**{f.name: stored[f.name] for f in fields if f.name in stored})


def load_model(path: str | os.PathLike, *, kind: str, config_type: type[Config]) -> tuple[nn.Module, Config]:
    """The model a checkpoint's config builds, with the checkpoint's weights; the config is first checked
    (its `problem()`), so a crafted one cannot ask for an absurd allocation."""
    checkpoint = load_checkpoint(path, kind=kind)
    if not isinstance(checkpoint["config"], dict):
        raise UserError(f"{path}: checkpoint config is not a dict")
    config = config_from(config_type, checkpoint["config"], path)
    problem = config.problem()
    if problem:
        raise UserError(f"{path}: checkpoint config refused: {problem}")
    model = config.build()
    load_weights(model, checkpoint["model"], path)
    return model, config
