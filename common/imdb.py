"""The IMDB Large Movie Review set: found as an `aclImdb/` folder or an `aclImdb*.tar.gz` archive in the
data dir (extracted once into the cache), else downloaded; read as texts and 0/1 labels."""

import hashlib
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from common.data_dir import cache_dir
from common.errors import DataNotFoundError, UserError

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
CLASSES = ["neg", "pos"]  # label 0, label 1
SPLITS = ("train", "test")
MOVIE_BLOCK = 250  # review ids per group in Reviews.groups


@dataclass
class Reviews:
    """Review texts, their labels as int64 (0 = neg, 1 = pos), and `groups`: blocks of MOVIE_BLOCK
    consecutive review ids per label. aclImdb numbers reviews in the order of its per-movie URL
    lists, so one movie's reviews have consecutive ids and a block holds whole movies (bar its edges)."""

    texts: list[str]
    labels: Tensor
    groups: Tensor

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Tensor) -> "Reviews":
        return Reviews([self.texts[i] for i in index.tolist()], self.labels[index], self.groups[index])

    def sample(self, limit: int | None) -> "Reviews":
        """A fixed random `limit` of the reviews (all of them if `limit` is None), for smoke runs."""
        if limit is None or limit >= len(self):
            return self
        return self.subset(torch.randperm(len(self), generator=torch.Generator().manual_seed(0))[:limit])


def load_imdb(data_dir: str | os.PathLike, split: str, *, download: bool = True) -> Reviews:
    """The `split` ("train" or "test") reviews, in a fixed order (neg then pos, by file name)."""
    if split not in SPLITS:
        raise UserError(f"unknown IMDB split {split!r}; expected one of {SPLITS}")
    root = find_imdb(Path(data_dir), split, download=download)
    texts, labels, groups = [], [], []
    for label, name in enumerate(CLASSES):
        folder = root / split / name
        if not folder.is_dir():
            raise UserError(f"{folder}: missing; an aclImdb folder holds {split}/neg and {split}/pos")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise UserError(f"{folder}: holds no .txt reviews")
        texts += [path.read_text(encoding="utf-8", errors="replace") for path in files]
        labels += [label] * len(files)
        groups += [label * 10**9 + _review_id(path, i) // MOVIE_BLOCK for i, path in enumerate(files)]
    return Reviews(texts, torch.tensor(labels), torch.tensor(groups))


def find_imdb(data_dir: Path, split: str, *, download: bool = True) -> Path:
    """The `aclImdb` folder holding `split`: extracted in the data dir, or from an archive there
    (extracted once into the cache), or downloaded when the network allows."""
    folder = data_dir / "aclImdb"
    if (folder / split).is_dir():
        return folder
    archives = sorted(data_dir.glob("aclImdb*.tar.gz")) if data_dir.is_dir() else []
    for archive in archives:
        extracted = _extract(archive)
        if (extracted / split).is_dir():
            return extracted
    if download and not archives and _download(data_dir):
        return find_imdb(data_dir, split, download=False)
    looked = f"{folder}/{split}" + (f" and {', '.join(map(str, archives))}" if archives else
                                     f" or {data_dir}/aclImdb*.tar.gz")
    raise DataNotFoundError(f"IMDB {split} split not found: looked for {looked}. Put the aclImdb folder "
                            f"or archive there, or point --data-dir (or $CSE849_DATA) at it.")


def _extract(archive: Path) -> Path:
    """Extract `archive` (its train/test reviews only) into the cache once; returns its aclImdb folder."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / f"imdb-{key}"
    done = target / ".complete"
    if not done.exists():
        try:
            with tarfile.open(archive) as tar:
                wanted = [m for m in tar if _is_review(m.name)]
                tar.extractall(target, members=wanted, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise UserError(f"{archive}: not a readable .tar.gz archive ({err})") from None
        done.touch()
    return target / "aclImdb"


def _review_id(path: Path, position: int) -> int:
    """The id in an aclImdb review name `<id>_<rating>.txt`; the file's position for other names."""
    number = path.stem.split("_")[0]
    return int(number) if number.isdigit() else position


def _is_review(name: str) -> bool:
    """Only aclImdb/{train,test}/{neg,pos}/*.txt: no unsup, no .feat or vocabulary files."""
    parts = Path(name).parts
    return (len(parts) == 4 and parts[0] == "aclImdb" and parts[1] in SPLITS and parts[2] in CLASSES
            and parts[3].endswith(".txt"))


def _download(data_dir: Path) -> bool:
    """Fetch the official archive into `data_dir`; False (quietly) when the network is unavailable."""
    target = data_dir / Path(URL).name
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        print(f"downloading {URL} to {target} ...", flush=True)
        with urllib.request.urlopen(URL, timeout=60) as response, open(target.with_suffix(".part"), "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError:
        target.with_suffix(".part").unlink(missing_ok=True)
        return False
    target.with_suffix(".part").rename(target)
    return True
