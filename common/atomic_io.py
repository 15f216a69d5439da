"""Atomic writes: a result file appears whole or not at all, and a run's files land together, even if
the run fails or is killed on the way."""

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the umask (setting it is the only way), then put it back


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary file beside `path` (made by `tempfile.mkstemp`: a fresh name, opened
    exclusively, so a link planted in the folder cannot redirect the write); on success it replaces
    `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes it private; a result file gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


# What differs between two runs that reach the same result: how long they took, on what machine, and
# how the command was typed (--quiet, say). A file that differs from the one it replaces only in these
# is left as it was, so a re-run that reproduces a committed result leaves git's tree clean.
RUN_DETAIL_KEYS = frozenset({
    "seconds", "samples_per_second", "wall_seconds", "test_seconds", "train_seconds", "train_images_per_second",
    "train_images_per_second_per_process", "train_reviews_per_second", "command", "machine_class", "device",
    "gpu", "cpu", "cpu_capability", "threads", "threads_per_process", "torch", "precision_reason"})
RUN_DETAIL_LINE = re.compile(r"^(wall time|command\b|forward\+backward, )")  # in metrics.txt, check.txt, ...


def without_run_details(value: object) -> object:
    """A loaded JSON value with RUN_DETAIL_KEYS dropped from every object in it."""
    if isinstance(value, dict):
        return {k: without_run_details(v) for k, v in value.items() if k not in RUN_DETAIL_KEYS}
    if isinstance(value, list):
        return [without_run_details(v) for v in value]
    return value


def same_result(old: Path, new: Path) -> bool:
    """Whether file `new` holds what `old` holds, but for run details: JSON without RUN_DETAIL_KEYS,
    text without RUN_DETAIL_LINE lines, anything else byte for byte."""
    before, after = old.read_bytes(), new.read_bytes()
    if before == after:
        return True
    if new.suffix == ".json":
        try:
            return without_run_details(json.loads(before)) == without_run_details(json.loads(after))
        except ValueError:
            return False
    if new.suffix in (".txt", ".md", ".csv"):
        def kept(data: bytes) -> list[str]:
            return [line for line in data.decode(errors="replace").splitlines() if not RUN_DETAIL_LINE.match(line)]
        return kept(before) == kept(after)
    return False


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, announce: Callable[[Path, bool], None] = lambda path, changed: None
                  ) -> Iterator[Path]:
    """A hidden folder inside `out_dir` to write a run's files into. If the block ends without an error
    they move into `out_dir` together (one rename each), except a file with the `same_result` as the one
    already there, which is kept as it was; `announce(path, changed)` is called for each. Otherwise they
    are deleted, and `out_dir` keeps exactly the files it had."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        yield stage
        files = sorted(path for path in stage.rglob("*") if path.is_file())
        changed = {}
        for path in files:
            target = out_dir / path.relative_to(stage)
            changed[target] = not (target.is_file() and same_result(target, path))
            if changed[target]:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        for target, was_changed in changed.items():
            announce(target, was_changed)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
