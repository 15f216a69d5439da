"""Atomic writes: a result file appears whole or not at all, and a run's files land together, even if
the run fails or is killed on the way."""

import contextlib
import json
import os
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


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, announce: Callable[[Path], None] = lambda path: None
                  ) -> Iterator[Path]:
    """A hidden folder inside `out_dir` to write a run's files into. If the block ends without an error
    they move into `out_dir` together (one rename each; `announce` is called with each new path);
    otherwise they are deleted, and `out_dir` keeps exactly the files it had."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        yield stage
        files = sorted(path for path in stage.rglob("*") if path.is_file())
        for path in files:
            target = out_dir / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        for path in files:
            announce(out_dir / path.relative_to(stage))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
