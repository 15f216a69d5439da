"""CIFAR-10 as uint8 tensors (N, 3, 32, 32): read from torchvision's `cifar-10-batches-py` or an
ImageFolder `cifar10-jpeg/{train,test}/<class>/*`, decoded once and cached; a seeded validation split;
normalisation and augmentation applied to whole batches as tensors."""

import hashlib
import io
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from PIL import Image, UnidentifiedImageError

from common.atomic_io import atomic_path
from common.data_dir import cache_dir, made_for_download, remove_if_made
from common.distributed import rank, shard
from common.errors import DataNotFoundError, UserError
from common.splits import split_indices

TORCHVISION_DIR = "cifar-10-batches-py"
IMAGEFOLDER_DIR = "cifar10-jpeg"
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # what torchvision's CIFAR10 fetches
FORMATS = ("auto", "torchvision", "imagefolder")
FORMAT_HELP = (f"the data set's layout: {TORCHVISION_DIR}/ (torchvision), {IMAGEFOLDER_DIR}/<split>/<class>/ "
               "image files (imagefolder), or auto: whichever is there")
FLIPS = ("random", "alternate")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
MAX_IMAGE_BYTES = 50 * 2**20  # an image file larger than this is refused before it is read
Image.MAX_IMAGE_PIXELS = None  # PIL's own bomb check would hide the size; `read_image` checks it
CACHE_VERSION = 2  # bump when what a cache holds changes
# What a CIFAR-10 python batch may build when unpickled: numpy arrays, and nothing that runs code.
PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


@dataclass
class ImageSet:
    """Images as uint8 (N, 3, 32, 32), labels as int64 (N,), and the class names in label order."""

    images: Tensor
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)


def load_cifar10(data_dir: str | os.PathLike, split: str, *, fmt: str = "auto",
                 download: bool = True, limit: int | None = None) -> ImageSet:
    """The 'train' or 'test' split from `data_dir`, in the format found (or forced with `fmt`).

    With neither format present and `download`, torchvision's copy is fetched into `data_dir`.
    `limit` keeps an evenly spread subset (for smoke runs; not cached)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format {fmt!r}; choose {', '.join(FORMATS)}")
    data_dir = Path(data_dir)
    fmt = _detect_format(data_dir, split, fmt, download)
    if fmt == "torchvision":
        files = [data_dir / TORCHVISION_DIR / name for name in [*_batch_names(split), "batches.meta"]]
        return _cached(files, limit, lambda: _read_batches(data_dir / TORCHVISION_DIR, split))
    folder = data_dir / IMAGEFOLDER_DIR / split
    classes, files, labels = _list_imagefolder(folder)
    if limit is not None and limit < len(files):
        keep = torch.linspace(0, len(files) - 1, limit).long().tolist()
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    return _cached(files, limit, lambda: ImageSet(_decode_all(files), torch.tensor(labels), classes))


def split_train_val(data: ImageSet, val_size: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """A seeded random split of `data` into (train, validation) with `val_size` validation images."""
    train, val = split_indices(len(data), val_size, seed)
    return data.subset(train), data.subset(val)


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the 0-1 scale."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).float() / 255
    return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()


def normalize(images: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """uint8 (N, 3, H, W) images to float32, scaled to 0-1 and standardised per channel."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean_t) / std_t


def flip_where(images: Tensor, mask: Tensor) -> Tensor:
    """Mirror left-right the images where the boolean `mask` (N,) is set."""
    return torch.where(mask.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    return flip_where(images, torch.rand(len(images), generator=generator) < 0.5)


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Reflect-pad each image by `padding` pixels and cut a random crop of the original size."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, [padding] * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class CifarBatches:
    """Batches `(images, labels)` from an ImageSet: normalised float32, channels-last, and for
    training shuffled and augmented (flip, padded crop) with generators seeded by (seed, epoch). The
    uint8 images are copied to `device` once (CIFAR-10 is 150 MB), so batches are cut and augmented there.
    `flip="alternate"` mirrors a fixed random half of the images in odd epochs and the other half in
    even ones (airbench's alternating flip: every image is seen both ways every two epochs).

    With `shard`, each torchrun process takes its own share (training shares padded to equal size)."""

    def __init__(self, data: ImageSet, *, batch_size: int, mean: list[float], std: list[float],
                 train: bool, seed: int = 0, crop_padding: int = 4, flip: str = "random",
                 shard: bool = False, device: torch.device | str = "cpu"):
        if flip not in FLIPS:
            raise UserError(f"unknown flip {flip!r}; choose {', '.join(FLIPS)}")
        self.data, self.batch_size, self.train, self.shard, self.flip = data, batch_size, train, shard, flip
        self.mean, self.std, self.seed, self.crop_padding = mean, std, seed, crop_padding
        self.device = torch.device(device)
        self.images, self.labels = data.images.to(self.device), data.labels.to(self.device)  # CPU: no copy
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self._order(None)) // self.batch_size)

    def _order(self, shuffle: torch.Generator | None) -> Tensor:
        """This process's image indices: shuffled with `shuffle` if given, else in order."""
        n = len(self.data)
        order = torch.arange(n) if shuffle is None else torch.randperm(n, generator=shuffle)
        return shard(order, pad=self.train) if self.shard else order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch_seed = self.seed * 100_003 + self.epoch
        # The shuffle is the same in every process (so shards are disjoint); augmentation differs.
        order = self._order(torch.Generator().manual_seed(epoch_seed) if self.train else None)
        augment = torch.Generator().manual_seed(epoch_seed * 1_009 + rank())
        if self.flip == "alternate":  # the half mirrored in even epochs (the rest in odd ones), by seed
            halves = torch.rand(len(self.data), generator=torch.Generator().manual_seed(self.seed)) < 0.5
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            on_device = index.to(self.device)
            images, labels = normalize(self.images[on_device], self.mean, self.std), self.labels[on_device]
            if self.train:
                if self.flip == "alternate":
                    images = flip_where(images, halves[index] ^ bool(self.epoch % 2))
                else:
                    images = random_flip(images, augment)
                if self.crop_padding:
                    images = random_crop(images, self.crop_padding, augment)
            yield images.contiguous(memory_format=torch.channels_last), labels


# --- reading the two on-disk formats ------------------------------------------------------------
def _detect_format(data_dir: Path, split: str, fmt: str, download: bool) -> str:
    present = {
        "torchvision": all((data_dir / TORCHVISION_DIR / n).is_file() for n in _batch_names(split)),
        "imagefolder": (data_dir / IMAGEFOLDER_DIR / split).is_dir(),
    }
    by_hand = (f"Download {DOWNLOAD_URL} by hand and unpack it in {data_dir} (it holds {TORCHVISION_DIR}/), "
               "or point --data-dir (or $CSE849_DATA) at the folder holding it")
    if fmt != "auto":
        if present[fmt]:
            return fmt
        failure = _download(data_dir, split) if fmt == "torchvision" and download else "not tried"
        if failure is None:
            return fmt
        raise DataNotFoundError(f"{_where(data_dir, split, fmt)}: not found (--dataset-format {fmt})"
                                + ("" if failure == "not tried" else f"; the download failed ({failure}). {by_hand}"))
    for kind in ("torchvision", "imagefolder"):
        if present[kind]:
            return kind
    failure = _download(data_dir, split) if download else "not tried"
    if failure is None:
        return "torchvision"
    raise DataNotFoundError(
        f"no CIFAR-10 {split} split in {data_dir}: looked for {_where(data_dir, split, 'torchvision')} "
        f"and {_where(data_dir, split, 'imagefolder')}/<class>/*.jpg"
        + ("" if failure == "not tried" else f"; the download failed ({failure})") + f". {by_hand}")


def _where(data_dir: Path, split: str, fmt: str) -> Path:
    return data_dir / TORCHVISION_DIR if fmt == "torchvision" else data_dir / IMAGEFOLDER_DIR / split


def _download(data_dir: Path, split: str) -> str | None:
    """torchvision's CIFAR-10 into `data_dir`: None on success, else why it failed, leaving nothing behind."""
    from torchvision.datasets import CIFAR10
    made = False
    try:
        made = made_for_download(data_dir)
        CIFAR10(str(data_dir), train=split == "train", download=True)
        return None
    except Exception as err:  # no network, read-only folder, interrupted transfer: reported by the caller
        remove_if_made(data_dir, made, data_dir / Path(DOWNLOAD_URL).name)
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err) or type(err).__name__
        return str(reason).splitlines()[0][:160]


def _batch_names(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR-10 batch never holds."""


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds only what PICKLE_GLOBALS names, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in PICKLE_GLOBALS:
            raise _Refused(f"it asks to load {module}.{name}, which a CIFAR-10 batch never does")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """A CIFAR-10 python pickle as a dict, through `_ArraysOnly`; anything else is a UserError."""
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except _Refused as err:
        raise UserError(f"{path}: refused: {err}") from None
    except pickle.UnpicklingError as err:  # a damaged or cut-off file
        raise UserError(f"{path}: not a CIFAR-10 python batch (a damaged pickle: {err})") from None
    except Exception as err:
        raise UserError(f"{path}: not a CIFAR-10 python batch ({type(err).__name__})") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path}: not a CIFAR-10 python batch (holds a {type(batch).__name__}, not a dict)")
    return batch


def _read_batches(folder: Path, split: str) -> ImageSet:
    meta = _unpickle(folder / "batches.meta")
    classes = meta.get("label_names")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise UserError(f"{folder / 'batches.meta'}: no list of class names under 'label_names'")
    images, labels = [], []
    for name in _batch_names(split):
        batch = _unpickle(folder / name)
        data, targets = batch.get("data"), batch.get("labels")
        if not (hasattr(data, "dtype") and data.dtype == "uint8" and data.ndim == 2 and data.shape[1] == 3072
                and isinstance(targets, list) and len(targets) == len(data)
                and all(isinstance(t, int) and 0 <= t < len(classes) for t in targets)):
            raise UserError(f"{folder / name}: not a CIFAR-10 python batch (expected uint8 'data' of shape "
                            f"(N, 3072) and N 'labels' below {len(classes)})")
        images.append(torch.from_numpy(data.copy()).reshape(-1, 3, 32, 32))
        labels.append(torch.tensor(targets, dtype=torch.int64))
    return ImageSet(torch.cat(images), torch.cat(labels), classes)


def _list_imagefolder(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise UserError(f"{folder}: no class folders (expected {folder}/<class>/<image>)")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(Path(e.path) for e in os.scandir(folder / name)
                       if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"{folder / name}: class folder holds no images")
        files += found
        labels += [label] * len(found)
    return classes, files, labels


def read_image(path: Path, *, max_pixels: int, exact: tuple[int, int] | None = None) -> Tensor:
    """An image file as uint8 (3, H, W) RGB. Its size is read from the header first: a file over
    MAX_IMAGE_BYTES, an image of more than `max_pixels` or, with `exact`, not of (width, height) is
    refused before anything is decoded."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not an image file")
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise UserError(f"{path}: {size / 2**20:.0f} MB; images over {MAX_IMAGE_BYTES // 2**20} MB are refused")
        with Image.open(path) as header:  # reads the header only
            width, height = header.size
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UserError(f"{path}: not a readable image (corrupt or unsupported format)") from None
    if exact is not None and (width, height) != exact:
        raise UserError(f"{path}: image is {width}x{height}, expected {exact[0]}x{exact[1]}")
    if width * height > max_pixels:
        raise UserError(f"{path}: image is {width}x{height}; images over {max_pixels / 1e6:g} megapixels "
                        "are refused")
    from torchvision.io import ImageReadMode, decode_image  # here, not above: a 1.5 s import a cached set never needs

    try:
        image = decode_image(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8),
                             mode=ImageReadMode.RGB)
        image = image[0] if image.dim() == 4 else image  # an animated GIF: its first frame
    except Exception:  # a format torchvision does not decode (BMP, TIFF, ...): Pillow's decoder
        image = _decode_with_pillow(path)
    if image.shape[1:] != (height, width):  # the header lied about the size
        raise UserError(f"{path}: decodes to {image.shape[2]}x{image.shape[1]}, its header says {width}x{height}")
    return image


def _decode_with_pillow(path: Path) -> Tensor:
    """An image Pillow can read, as uint8 (3, H, W) RGB (its first frame); a UserError if it cannot."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except Exception:
        raise UserError(f"{path}: not a readable image (corrupt or unsupported format)") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def _decode_all(files: list[Path]) -> Tensor:
    images = torch.empty(len(files), 3, 32, 32, dtype=torch.uint8)
    for i, path in enumerate(files):
        images[i] = read_image(path, max_pixels=32 * 32, exact=(32, 32))
    return images


def _cached(files: list[Path], limit: int | None, load) -> ImageSet:
    """`load()`, cached under a key made of the source files' names and bytes (hashing them is cheap
    next to decoding); a cache that does not hold what the key promises is rebuilt."""
    if limit is not None:
        data = load()
        return data if limit >= len(data) else data.subset(torch.linspace(0, len(data) - 1, limit).long())
    digest = hashlib.sha256(f"cifar10 cache v{CACHE_VERSION}\n".encode())
    for path in files:
        try:
            content = path.read_bytes() if path.stat().st_size <= MAX_IMAGE_BYTES else b"too large"
        except OSError as err:
            raise UserError(f"{path}: cannot read ({err.strerror})") from None
        digest.update(f"{path.parent.name}/{path.name}|{len(content)}\n".encode() + hashlib.sha256(content).digest())
    cache = cache_dir() / f"cifar10-{digest.hexdigest()[:24]}.pt"
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            data = ImageSet(saved["images"], saved["labels"], saved["classes"])
            if _is_image_set(data):
                return data
        except Exception:
            pass  # a damaged cache is rebuilt below
    data = load()
    with atomic_path(cache) as tmp:
        torch.save({"images": data.images, "labels": data.labels, "classes": data.classes}, tmp)
    return data


def _is_image_set(data: ImageSet) -> bool:
    """Whether a cached ImageSet is well formed: uint8 (N, 3, 32, 32) images, N int64 labels that index
    its list of class names."""
    images, labels, classes = data.images, data.labels, data.classes
    return (isinstance(images, Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and tuple(images.shape[1:]) == (3, 32, 32) and isinstance(labels, Tensor)
            and labels.dtype == torch.int64 and labels.shape == (len(images),) and isinstance(classes, list)
            and all(isinstance(c, str) for c in classes) and len(labels) > 0
            and 0 <= int(labels.min()) and int(labels.max()) < len(classes))
