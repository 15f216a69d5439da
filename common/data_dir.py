"""Where data lives: --data-dir, else $CSE849_DATA, else data/ in the repository; and where derived
caches go."""

import os
from pathlib import Path

from common.errors import DataNotFoundError, UserError

DATA_ENV = "CSE849_DATA"
CACHE_ENV = "CSE849_CACHE"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument if given, else $CSE849_DATA, else data/ in the repository. A folder
    the user named must exist (nothing is created for a mistyped one); data/ may not yet (a download
    makes it)."""
    named = "--data-dir" if data_dir is not None else f"${DATA_ENV}" if os.environ.get(DATA_ENV) else None
    path = Path(data_dir if data_dir is not None else os.environ.get(DATA_ENV) or _REPO_ROOT / "data").expanduser()
    if named and path.is_file():
        raise DataNotFoundError(f"{named} {path}: a file, not a folder; point {named} at the folder that holds "
                                f"it ({path.parent})")
    if named and not path.is_dir():
        raise DataNotFoundError(f"{named} {path}: no such folder; check the path, or leave {named} unset to "
                                f"use data/ in the repository")
    return path


def made_for_download(data_dir: Path) -> bool:
    """Make `data_dir` (the default data/) for a download; True if it did not exist before."""
    existed = data_dir.is_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    return not existed


def remove_if_made(data_dir: Path, made: bool, *leftovers: Path) -> None:
    """After a failed download: delete its `leftovers` and, if the download made `data_dir`, the folder
    when it is empty again, so a failure leaves nothing the user did not ask for."""
    for path in leftovers:
        path.unlink(missing_ok=True)
    if made and data_dir.is_dir() and not any(data_dir.iterdir()):
        data_dir.rmdir()


def require_file(data_dir: Path, name: str) -> Path:
    """`data_dir/name`, or a one-line DataNotFoundError saying where it looked and how to fix it."""
    path = Path(data_dir) / name
    if not path.is_file():
        raise DataNotFoundError(
            f"{path}: no such file. Put {name} in that folder, or point --data-dir "
            f"(or ${DATA_ENV}) at the folder that holds it."
        )
    return path


def cache_dir() -> Path:
    """Folder for decoded/tokenised caches: $CSE849_CACHE, else .cache/ in the repo (git-ignored)."""
    path = Path(os.environ.get(CACHE_ENV) or _REPO_ROOT / ".cache").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"${CACHE_ENV}={path}: a file, not a folder; point it at a folder (or unset it)") from None
    except OSError as err:
        raise UserError(f"${CACHE_ENV}={path}: cannot make the cache folder ({err.strerror})") from None
    return path
