"""The course's `.pt` data files: a dict of tensors `x_train y_train x_val y_val x_test` (`y_test` optional)."""

import os
from pathlib import Path

import torch
from torch import Tensor

from common.errors import UserError

SPLITS = ("train", "val", "test")


def load_course_splits(path: str | os.PathLike, feature_shape: tuple[int, ...] = ()
                       ) -> dict[str, tuple[Tensor, Tensor | None]]:
    """`{split: (x, y)}` as float32, with `x` of shape (N, *feature_shape) and `y` of shape (N,)
    (`y` is None for an unlabelled test split). Wrong keys, types or shapes raise a one-line error."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path}: not a readable torch file ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    required = [f"{v}_{s}" for s in SPLITS for v in ("x", "y") if (v, s) != ("y", "test")]
    missing = [key for key in required if key not in data]
    if missing:
        raise UserError(f"{path}: missing keys {', '.join(missing)} (found {', '.join(map(str, data))})")
    splits = {}
    for split in SPLITS:
        x = _tensor(data, f"x_{split}", path)
        if tuple(x.shape[1:]) != feature_shape:
            raise UserError(f"{path}: x_{split} has shape {tuple(x.shape)}, "
                            f"expected (N{''.join(f', {d}' for d in feature_shape)})")
        y = _tensor(data, f"y_{split}", path) if f"y_{split}" in data else None
        if y is not None and tuple(y.shape) != (len(x),):
            raise UserError(f"{path}: y_{split} has shape {tuple(y.shape)}, expected ({len(x)},) "
                            f"to match x_{split}")
        splits[split] = (x, y)
    return splits


def _tensor(data: dict, key: str, path: Path) -> Tensor:
    value = data[key]
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise UserError(f"{path}: {key} should be a float tensor, found {type(value).__name__}"
                        + (f" of {value.dtype}" if isinstance(value, Tensor) else ""))
    if value.ndim == 0 or len(value) == 0:
        raise UserError(f"{path}: {key} is empty")
    bad = int((~torch.isfinite(value)).sum())
    if bad:
        raise UserError(f"{path}: {key} holds {bad} non-finite value(s) (nan or inf)")
    return value.float()
