"""Command-line conventions shared by every script: common options, progress bars and one-line error
reporting."""

import argparse
import dataclasses
import errno
import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, TypeVar

import torch
from torch import nn
from tqdm import tqdm

from common.checkpoint import ModelConfig
from common.data_dir import resolve_data_dir
from common.device import PRECISIONS, report_machine, select_device
from common.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
AnyRecipe = TypeVar("AnyRecipe")  # a hw train.py's Recipe dataclass


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it is unset (None), empty, or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        unset = action.default is None or action.default is False or action.default == []
        if unset or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class RepoPath(str):
    """A default path written relative to the repository: shown so in --help, resolved against the repo."""


def repo_path(text: str | Path) -> Path:
    """An argparse type for a path: a `RepoPath` default resolves against the repository, so a script
    works from any folder; a path the user types resolves against the current folder, as usual."""
    return REPO_ROOT / text if isinstance(text, RepoPath) else Path(text).expanduser()


class SetThreads(argparse.Action):
    """--threads N: torch.set_num_threads(N) as soon as it is parsed, before anything runs."""

    def __call__(self, parser, namespace, value, option_string=None):
        torch.set_num_threads(value)
        setattr(namespace, self.dest, value)


def make_parser(description: str, results_dir: str | None, *, data: bool = True,
                device: bool = True) -> argparse.ArgumentParser:
    """A parser with the options scripts share: output folder (when `results_dir` names its default),
    seed, quiet, and the data folder and device for scripts that read data files or run on an accelerator."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpWithDefaults)
    if data:
        parser.add_argument("--data-dir", default=None,
                            help="folder holding the data (default: $CSE849_DATA if set, else data/ in the "
                                 "repository)")
    if results_dir is not None:  # a string default goes through `type` too, so it is checked as well
        parser.add_argument("--out-dir", type=output_folder, default=RepoPath(results_dir),
                            help="where plots, metrics and checkpoints are written (default: %(default)s "
                                 "in the repository)")
    parser.add_argument("--seed", type=seed_number, default=0, help="random seed (0 to 2^31 - 1)")
    parser.add_argument("--threads", type=positive(), action=SetThreads,
                        help="CPU threads (default: all cores, or $OMP_NUM_THREADS); 1 when another job "
                             "shares a 2-core machine, where two sets of threads spin against each other")
    if device:
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                            help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return parser


def option(help: str, **argparse_kwargs) -> dict:
    """A recipe field's metadata: the help and `add_argument` keywords (type, choices, nargs) of its option."""
    return {"help": help, **argparse_kwargs}


def add_recipe_options(parser: argparse.ArgumentParser, recipe: type) -> None:
    """One option per field of the dataclass `recipe`, --field-name, as the field's metadata (`option`)
    declares it; the defaults come from the recipe chosen (`parser.set_defaults`)."""
    for field in dataclasses.fields(recipe):
        parser.add_argument("--" + field.name.replace("_", "-"), **field.metadata)


def recipe_from(options: dict, recipe: type[AnyRecipe]) -> AnyRecipe:
    """The `recipe` dataclass holding the parsed `options` (`vars(args)`) its fields name."""
    return recipe(**{field.name: options[field.name] for field in dataclasses.fields(recipe)})


def add_training_args(parser: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float,
                      resume: bool = True) -> None:
    """Options of scripts that train through `common.training.fit`."""
    parser.add_argument("--epochs", type=positive(), default=epochs, help="passes over the training data")
    parser.add_argument("--batch-size", type=positive(), default=batch_size, help="examples per step")
    parser.add_argument("--lr", type=positive(float), default=lr, help="(peak) learning rate")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="continue from the last per-epoch checkpoint in --out-dir")


def add_precision_arg(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """--precision: auto (see `common.device.resolve_precision`), bf16, fp16 or fp32; the eval scripts default
    to fp32, whose figures are the same on every CPU."""
    parser.add_argument("--precision", default=default, choices=PRECISIONS,
                        help="auto: bf16 autocast where the hardware runs bf16 natively (CUDA GPUs from "
                             "Ampere on, CPUs with AVX-512 BF16 or AMX), fp16 with a gradient scaler on "
                             "older CUDA GPUs (V100, T4), else fp32; bf16/fp16/fp32 force one (default: %(default)s)")


def number(kind: type = float, low: float | None = None, high: float | None = None, *,
           open_low: bool = False, open_high: bool = False) -> Callable[[str], int | float]:
    """An argparse type for a finite `kind` (int: a whole number) in [low, high]; an end left None is
    unbounded, and `open_low` / `open_high` leave that end out. Its range is kept on it for the tests."""
    bounds = [f"{'>' if open_low else '>='} {low}"] if low is not None else []
    bounds += [f"{'<' if open_high else '<='} {high}"] if high is not None else []

    def parse(text: str) -> int | float:
        try:
            value = kind(text) if kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a {'whole number' if kind is int else 'number'}, got {text}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if ((low is not None and (value < low or open_low and value == low))
                or (high is not None and (value > high or open_high and value == high))):
            raise argparse.ArgumentTypeError(f"must be {' and '.join(bounds)}, got {text}")
        return value

    parse.kind, parse.low, parse.high, parse.open_low, parse.open_high = kind, low, high, open_low, open_high
    return parse


def positive(kind: type = int) -> Callable[[str], int | float]:
    """An argparse type accepting only finite values > 0."""
    return number(kind, 0, open_low=True)


finite = number(float)                   # any finite number
probability = number(float, 0, 1)        # a number in [0, 1]
fraction = number(float, 0, 1, open_high=True)  # a share of something that cannot be all of it: [0, 1)
non_negative = number(float, 0)          # a weight decay, say
count = number(int, 0)                   # a whole number >= 0
seed_number = number(int, 0, 2**31 - 1)  # numpy's seeds are unsigned 32-bit; members add their index


class DefaultInt(int):
    """An int option's default, told apart from the same number typed (argparse converts only typed values)."""


def validation_size(val_size: int, limit: int | None) -> int:
    """--val-size; with --limit and no --val-size typed, at most a tenth of the limit, so a smoke run
    needs only --limit."""
    return min(val_size, limit // 10) if limit and isinstance(val_size, DefaultInt) else val_size


def output_folder(text: str | Path) -> Path:
    """An argparse type for an output folder (see `repo_path`): a folder, or a path that can be one,
    in a place where it can be written. It is not created here, so a run that fails before it writes
    leaves no empty folder behind."""
    path = repo_path(text)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == path else f": {existing}"
        raise argparse.ArgumentTypeError(f"{path}{where} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write there (permission denied)")
    return path


def output_file(text: str | Path) -> Path:
    """An argparse type for an output file: not a folder, in a folder `output_folder` accepts."""
    path = repo_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    output_folder(path.parent)
    return path


def png_file(text: str | Path) -> Path:
    """An argparse type for a figure to write: an `output_file` whose name ends in .png."""
    path = output_file(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{path}: the figure is a PNG; give a name ending in .png")
    return path


def refuse_overwriting_inputs(output: Path | None, inputs: list[Path], option: str) -> None:
    """A UserError if `output` is one of the `inputs` files, which writing it would destroy."""
    if output is not None and output.exists() and any(output.samefile(p) for p in inputs if p.exists()):
        raise UserError(f"{option} {output}: that is one of the inputs; name a new file")


def read_each(paths: list, read: Callable[[object], object], what: str,
              others: int = 0) -> tuple[list[tuple[object, object]], int]:
    """`read` each input, printing an `error:` line for each one it refuses instead of stopping: the
    (input, what was read) pairs in order, and how many failed. A UserError when none could be read
    and there are no `others` inputs to go on with (the one input's own error, if there was one)."""
    done, errors = [], []
    for path in paths:
        try:
            done.append((path, read(path)))
        except UserError as err:
            errors.append(err)
    if not done and not others and len(errors) == 1:
        raise errors[0]
    for err in errors:
        print(f"error: {err}", file=sys.stderr, flush=True)
    if not done and not others and errors:
        raise UserError(f"none of the {len(errors)} {what} could be read")
    return done, len(errors)


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None,
             quiet: bool = False, leave: bool = True) -> tqdm:
    """A tqdm bar, disabled when `quiet` or when stderr is not a terminal (logs, CI, pipes)."""
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def run(main: Callable[[], object]) -> None:
    """Call `main()`; a `UserError` becomes one `error:` line on stderr and a non-zero exit status."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as err:  # a full disk, a read-only or forbidden folder: the user's to fix
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        print(f"error: {err.filename or 'writing results'}: {err.strerror}", file=sys.stderr)
        sys.exit(2)


def add_eval_out_dir(parser: argparse.ArgumentParser) -> None:
    """--out-dir of an eval script: by default a folder of its own beside the checkpoint."""
    parser.add_argument("--out-dir", type=output_folder,
                        help="where the evaluation is written (default: eval-<data folder name>/ in the "
                             "checkpoint's folder; never the training run's own folder)")
    add_force_arg(parser)


class EvalRun(NamedTuple):
    """What an eval script works with."""

    data_dir: Path
    out: Path
    device: torch.device
    machine: dict
    model: nn.Module
    config: ModelConfig


def start_eval(load_model: Callable[[Path, torch.device], tuple[nn.Module, ModelConfig]], checkpoint: Path, *,
               out_dir: Path | None, data_dir: str | None, device: str, precision: str, force: bool) -> EvalRun:
    """The checkpoint's model and config, loaded first; the data folder; the output folder: `out_dir`, or
    `eval-<data folder name>/` beside the checkpoint, never the checkpoint's own folder (it holds the
    training run's metrics); the device and precision, printed."""
    torch_device = select_device(device)
    model, config = load_model(checkpoint, torch_device)
    data_folder = resolve_data_dir(data_dir)
    try:
        out = out_dir or output_folder(checkpoint.parent / f"eval-{data_folder.resolve().name}")
    except argparse.ArgumentTypeError as err:
        raise UserError(str(err)) from None
    if out.resolve() == checkpoint.parent.resolve():
        raise UserError(f"--out-dir {out}: that folder holds the training run of {checkpoint}; "
                        "evaluate into another (the default is eval-<data folder name>/ inside it)")
    check_out_dir(out, settings=None, force=force)
    machine = report_machine(torch_device, precision)
    return EvalRun(data_folder, out, torch_device, machine, model, config)


# options a resumed run may change
RESUME_IGNORES = ("resume", "quiet", "device", "data_dir", "out_dir", "force", "threads")
RUN_FILES = ("model.pt", "history.json")  # what marks a folder as holding a training run


def add_force_arg(parser: argparse.ArgumentParser) -> None:
    """--force: write into an --out-dir that holds another run's model.pt or history.json."""
    parser.add_argument("--force", action="store_true",
                        help="write into an --out-dir that holds another run's model.pt or history.json")


def check_out_dir(out: Path, *, settings: dict | None, force: bool, facts: dict | None = None) -> None:
    """Refuse an output folder holding another run's model.pt or history.json, unless `force`: a run
    with `settings` may write over the run that recorded the same ones in its metrics.json (the options
    both know, precision aside, which follows the machine), if the record also agrees with each of
    `facts` it holds (a forced device or precision, the data's sizes); an eval (`settings` None) never does."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found or force:
        return
    try:
        record = json.loads((out / "metrics.json").read_text())
        recorded = record["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        record, recorded = None, None
    if settings is not None and isinstance(recorded, dict):
        shared = (set(settings) & set(recorded)) - {"precision"}
        if shared and all(settings[k] == recorded[k] for k in shared):
            other = [f"{k} {record[k]} there, {v} here" for k, v in (facts or {}).items() if record.get(k, v) != v]
            if not other:
                return  # the same run again: it reproduces these files
            raise UserError(f"--out-dir {out} holds a run with the same options but another "
                            f"{'; '.join(other)}; choose another folder, or pass --force to write over it")
    raise UserError(f"--out-dir {out} holds another run ({', '.join(found)}); choose another folder, or "
                    "pass --force to write over it")


def forced_facts(options: dict) -> dict:
    """The device and precision the user forced (not auto) among a run's `options` (`vars(args)`): a run may
    replace only a record made with them."""
    return {key: options[key] for key in ("device", "precision") if options[key] != "auto"}


def settings_of(options: dict) -> dict:
    """A run's `options` (`vars(args)`) but RESUME_IGNORES: what a resumed run must share with the run it
    continues."""
    return {k: v for k, v in options.items() if k not in RESUME_IGNORES}


def shown_path(path: str | Path) -> str:
    """`path` as written from the repository root: relative to it when inside it, else unchanged."""
    resolved = Path(path).expanduser().resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def report_written(path: Path, changed: bool = True) -> None:
    """Tell the user where a result went (paths shown relative to the repo when inside it), or that the
    file there already held the same result and was kept."""
    print(f"wrote {shown_path(path)}" if changed else f"kept {shown_path(path)} (the same result)")
