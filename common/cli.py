"""Command-line conventions shared by every script: common options and one-line error reporting."""

import argparse
import errno
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from common.data_dir import resolve_data_dir
from common.device import PRECISIONS, report_machine, select_device
from common.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default, also for options given no help text."""

    def add_argument(self, action: argparse.Action) -> None:
        if action.option_strings and not action.help and action.default is not argparse.SUPPRESS:
            action.help = "(default: %(default)s)"
        super().add_argument(action)


def make_parser(description: str, results_dir: str | None, *, data: bool = True,
                device: bool = True) -> argparse.ArgumentParser:
    """A parser with the options scripts share: output folder (when `results_dir` names its default),
    seed, quiet, and the data folder and device for scripts that read data files or run on an accelerator."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpWithDefaults)
    if data:
        parser.add_argument("--data-dir", default=None,
                            help="folder holding the data; if unset, $CSE849_DATA, else ./data")
    if results_dir is not None:  # a string default goes through `type` too, so it is checked as well
        parser.add_argument("--out-dir", type=output_folder, default=str(REPO_ROOT / results_dir),
                            help="where plots, metrics and checkpoints are written")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    if device:
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                            help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return parser


def add_training_args(parser: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float,
                      resume: bool = True) -> None:
    """Options of scripts that train through `common.training.fit`."""
    parser.add_argument("--epochs", type=positive(), default=epochs)
    parser.add_argument("--batch-size", type=positive(), default=batch_size)
    parser.add_argument("--lr", type=positive(float), default=lr, help="(peak) learning rate")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="continue from the last per-epoch checkpoint in --out-dir")


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    """--precision: auto (bf16 autocast where the device runs bf16 natively, else fp32), bf16 or fp32."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast where the hardware runs bf16 natively (CUDA GPUs from "
                             "Ampere on, CPUs with AVX-512 BF16 or AMX), else fp32; bf16/fp32 force one")


def finite(text: str) -> float:
    """An argparse type accepting any finite number (no nan or inf)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive(kind: type = int) -> Callable[[str], int | float]:
    """An argparse type accepting only finite values > 0."""
    def parse(text: str) -> int | float:
        value = finite(text) if kind is float else kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def probability(text: str) -> float:
    """An argparse type accepting only values in [0, 1]."""
    value = finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def output_folder(text: str | Path) -> Path:
    """An argparse type for an output folder: created if missing, and checked to be a writable folder."""
    path = Path(text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder") from None
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: cannot write there ({err.strerror})") from None
    return path


def output_file(text: str | Path) -> Path:
    """An argparse type for an output file: not a folder, in a folder `output_folder` accepts."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    output_folder(path.parent)
    return path


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


class EvalRun(NamedTuple):
    """What an eval script works with."""

    data_dir: Path
    out: Path
    device: torch.device
    machine: dict
    model: nn.Module
    config: dict


def start_eval(args: argparse.Namespace, load_model: Callable[[Path, torch.device], tuple[nn.Module, dict]]
               ) -> EvalRun:
    """The data folder; the output folder, checked first: --out-dir, or `eval-<data folder name>/` beside
    the checkpoint, never the checkpoint's own folder (it holds the training run's metrics); the device
    and precision, printed; and the checkpoint's model and config."""
    data_dir = resolve_data_dir(args.data_dir)
    try:
        out = args.out_dir or output_folder(args.checkpoint.parent / f"eval-{data_dir.resolve().name}")
    except argparse.ArgumentTypeError as err:
        raise UserError(str(err)) from None
    if out.resolve() == args.checkpoint.parent.resolve():
        raise UserError(f"--out-dir {out}: that folder holds the training run of {args.checkpoint}; "
                        "evaluate into another (the default is eval-<data folder name>/ inside it)")
    device = select_device(args.device)
    machine = report_machine(device, args.precision)
    model, config = load_model(args.checkpoint, device)
    return EvalRun(data_dir, out, device, machine, model, config)


RESUME_IGNORES = ("resume", "quiet", "device", "data_dir", "out_dir")  # options a resumed run may change


def settings_of(args: argparse.Namespace) -> dict:
    """Every option but RESUME_IGNORES: what a resumed run must share with the run it continues."""
    return {k: v for k, v in vars(args).items() if k not in RESUME_IGNORES}


def report_written(path: Path) -> None:
    """Tell the user where a result went (paths shown relative to the repo when inside it)."""
    path = Path(path).resolve()
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    print(f"wrote {shown}")
