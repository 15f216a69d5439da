"""Command-line conventions shared by every script: common options and one-line error reporting."""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from common.device import PRECISIONS
from common.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default, also for options given no help text."""

    def add_argument(self, action: argparse.Action) -> None:
        if action.option_strings and not action.help and action.default is not argparse.SUPPRESS:
            action.help = "(default: %(default)s)"
        super().add_argument(action)


def make_parser(description: str, results_dir: str, *, data: bool = True,
                device: bool = True) -> argparse.ArgumentParser:
    """A parser with the options scripts share: output folder, seed, quiet, and the data folder and
    device for scripts that read data files or run on an accelerator."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=HelpWithDefaults
    )
    if data:
        parser.add_argument("--data-dir", default=None,
                            help="folder holding the data; if unset, $CSE849_DATA, else ./data")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / results_dir,
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


def positive(kind: type = int) -> Callable[[str], int | float]:
    """An argparse type accepting only values > 0."""
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def probability(text: str) -> float:
    """An argparse type accepting only values in [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


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


def report_written(path: Path) -> None:
    """Tell the user where a result went (paths shown relative to the repo when inside it)."""
    path = Path(path).resolve()
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    print(f"wrote {shown}")
