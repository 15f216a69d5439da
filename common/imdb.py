"""The IMDB Large Movie Review set: found as an `aclImdb/` folder or an `aclImdb*.tar.gz` archive in the
data dir (extracted once into the cache), else downloaded; read as texts and 0/1 labels."""

import codecs
import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from common.data_dir import cache_dir, made_for_download, remove_if_made
from common.errors import DataNotFoundError, UserError

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"  # of the archive at URL
MAX_REVIEW_BYTES = 1_000_000  # per archive member: IMDB's longest review is about 14 kB
MAX_EXTRACTED_BYTES = 500_000_000  # all members together: the 50,000 labelled reviews are about 65 MB
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
        texts += [read_review_file(path) for path in files]
        labels += [label] * len(files)
        groups += [label * 10**9 + _review_id(path, i) // MOVIE_BLOCK for i, path in enumerate(files)]
    return Reviews(texts, torch.tensor(labels), torch.tensor(groups))


def find_imdb(data_dir: Path, split: str, *, download: bool = True) -> Path:
    """The `aclImdb` folder holding `split`: extracted in the data dir, or from an archive there
    (extracted once into the cache), or downloaded when the network allows."""
    folder = data_dir / "aclImdb"
    if (folder / split).is_dir():
        return folder
    if (data_dir / split / "neg").is_dir() or (data_dir / split / "pos").is_dir():
        return data_dir  # pointed at the aclImdb folder itself
    archives = sorted(data_dir.glob("aclImdb*.tar.gz")) if data_dir.is_dir() else []
    for archive in archives:
        extracted = _extract(archive)
        if (extracted / split).is_dir():
            return extracted
    failure = _download(data_dir) if download and not archives else "not tried"
    if failure is None:
        return find_imdb(data_dir, split, download=False)
    looked = f"{folder}/{split}" + (f" and {', '.join(map(str, archives))}" if archives else
                                     f" or {data_dir}/aclImdb*.tar.gz")
    tried = "" if failure == "not tried" else f"; the download from {URL} failed ({failure})"
    raise DataNotFoundError(f"IMDB {split} split not found: looked for {looked}{tried}. Download "
                            f"{Path(URL).name} by hand and put it (or the aclImdb folder it holds) in "
                            f"{data_dir}, or point --data-dir (or $CSE849_DATA) at the folder holding it.")


def _extract(archive: Path) -> Path:
    """Extract `archive` (its train/test reviews only, each a regular file of at most MAX_REVIEW_BYTES,
    MAX_EXTRACTED_BYTES in all) into the cache once, keyed on the archive's bytes; returns its aclImdb
    folder. The folder's `.complete` manifest (each review's size) is checked before it is used again."""
    digest = hashlib.sha256()
    try:
        with open(archive, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise UserError(f"{archive}: cannot read ({err.strerror})") from None
    target = cache_dir() / f"imdb-{digest.hexdigest()[:24]}"
    manifest = target / ".complete"
    if _matches_manifest(target, manifest):
        return target / "aclImdb"
    shutil.rmtree(target, ignore_errors=True)
    sizes = {}
    try:
        with tarfile.open(archive) as tar:
            wanted = [m for m in tar if _is_review(m.name)]
            for member in wanted:
                if not member.isfile():
                    kind = ("link" if member.issym() or member.islnk() else "folder" if member.isdir()
                            else "special file")
                    raise UserError(f"{archive}: {member.name} is a {kind}, where a review file belongs; "
                                    "refused (an aclImdb archive holds only plain files there)")
                if member.size > MAX_REVIEW_BYTES:
                    raise UserError(f"{archive}: {member.name} is {member.size / 1e6:.0f} MB; a review is under "
                                    f"{MAX_REVIEW_BYTES / 1e6:g} MB, so the archive is refused")
                sizes[member.name] = member.size
            if sum(sizes.values()) > MAX_EXTRACTED_BYTES:
                raise UserError(f"{archive}: its reviews add up to {sum(sizes.values()) / 1e6:.0f} MB, over "
                                f"the {MAX_EXTRACTED_BYTES / 1e6:g} MB an aclImdb archive needs; refused")
            tar.extractall(target, members=wanted, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(target, ignore_errors=True)
        raise UserError(f"{archive}: not a readable .tar.gz archive ({err})") from None
    except UserError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    manifest.write_text(json.dumps(sizes))
    return target / "aclImdb"


def _matches_manifest(target: Path, manifest: Path) -> bool:
    """Whether an extracted folder holds exactly the review files its manifest lists, at their sizes."""
    try:
        sizes = json.loads(manifest.read_text())
        return all((target / name).is_file() and (target / name).stat().st_size == size
                   for name, size in sizes.items()) and len(sizes) == sum(
                       1 for _ in (target / "aclImdb").glob("*/*/*.txt"))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16 LE's, their prefix
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_review_file(path: Path) -> str:
    """One review file's text (UTF-8, or the encoding its byte-order mark names), reading no more than
    MAX_REVIEW_BYTES characters of it: a longer file, a folder, an unreadable or a binary file (NUL
    bytes) is a UserError."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a review file")
    try:
        with open(path, "rb") as file:
            start = file.read(4)
        encoding = next((name for bom, name in BOMS if start.startswith(bom)), "utf-8")
        with open(path, encoding=encoding, errors="replace") as file:
            text = file.read(MAX_REVIEW_BYTES + 1)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if len(text) > MAX_REVIEW_BYTES:
        raise UserError(f"{path}: over {MAX_REVIEW_BYTES // 1_000_000} MB; a review file must be smaller")
    if "\0" in text:
        raise UserError(f"{path}: not a text file (it holds NUL bytes); give a plain-text review")
    return text


def _review_id(path: Path, position: int) -> int:
    """The id in an aclImdb review name `<id>_<rating>.txt`; the file's position for other names."""
    number = path.stem.split("_")[0]
    return int(number) if number.isdigit() else position


def _is_review(name: str) -> bool:
    """Only aclImdb/{train,test}/{neg,pos}/*.txt: no unsup, no .feat or vocabulary files."""
    parts = Path(name).parts
    return (len(parts) == 4 and parts[0] == "aclImdb" and parts[1] in SPLITS and parts[2] in CLASSES
            and parts[3].endswith(".txt"))


def _download(data_dir: Path) -> str | None:
    """Fetch the official archive into `data_dir`, checked against its length and SHA256 before it
    takes its name; None on success, else why it failed (the network, say), leaving nothing behind."""
    target, part = data_dir / Path(URL).name, data_dir / (Path(URL).name + ".part")
    made = False
    try:
        made = made_for_download(data_dir)
        print(f"downloading {URL} to {target} ...", flush=True)
        digest, received = hashlib.sha256(), 0
        with urllib.request.urlopen(URL, timeout=60) as response, open(part, "wb") as file:
            expected = int(response.headers.get("Content-Length") or -1)
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                file.write(block)
                received += len(block)
    except OSError as err:
        remove_if_made(data_dir, made, part)
        return str(getattr(err, "reason", None) or err.strerror or err)
    if digest.hexdigest() != SHA256 or (expected >= 0 and received != expected):
        remove_if_made(data_dir, made, part)
        raise UserError(f"the download from {URL} is not the IMDB archive ({received} bytes, SHA256 "
                        f"{digest.hexdigest()[:12]}..., expected {SHA256[:12]}...; a proxy or login page?); "
                        "it was deleted. Download it by hand into the data folder")
    part.rename(target)
    return None
