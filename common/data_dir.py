"""Where data lives: --data-dir, else $CSE849_DATA, else data/ in the repository; and where derived
caches go."""

import os
from pathlib import Path

from common.errors import DataNotFoundError, UserError

DATA_ENV = "CSE849_DATA"
CACHE_ENV = "CSE849_CACHE"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument if given, else $CSE849_DATA, else data/ in the repository."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get(DATA_ENV) or _REPO_ROOT / "data").expanduser()


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
