"""Progress bars: tqdm on an interactive terminal, silent when stderr is not a TTY or with --quiet."""

import sys
from collections.abc import Iterable

from tqdm import tqdm


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None,
             quiet: bool = False, leave: bool = True) -> tqdm:
    """A tqdm bar, disabled when `quiet` or when stderr is not a terminal (logs, CI, pipes)."""
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())
