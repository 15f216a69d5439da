"""common/cifar.py unit by unit: reading one image file (sizes, formats, every refusal), finding the data
set's format (and the download when neither is there), the python batches, and the decoded-images cache."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

import common.cifar as cifar
from common.cifar import ImageSet, load_cifar10, read_image
from common.errors import DataNotFoundError, UserError
from tests.conftest import CIFAR_CLASSES, cifar_images


def distinct_pixels(height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image whose three channels and every pixel differ."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 7 % 256, cols * 11 % 256, (rows * 3 + cols * 5 + 40) % 256], axis=-1).astype(np.uint8)


# --- read_image -------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".bmp"])  # torchvision decodes PNG; BMP goes to Pillow
def test_an_image_reads_as_its_exact_rgb_pixels_channels_first(tmp_path, monkeypatch, suffix):
    if suffix == ".png":  # torchvision's decoder reads it; Pillow is only the fallback
        monkeypatch.setattr(cifar, "_decode_with_pillow", lambda path: pytest.fail("decoded by Pillow"))
    pixels = distinct_pixels(30, 40)
    Image.fromarray(pixels).save(tmp_path / f"a{suffix}")
    image = read_image(tmp_path / f"a{suffix}", max_pixels=1200)
    assert image.dtype == torch.uint8 and image.shape == (3, 30, 40)
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))


def test_a_grey_image_reads_as_three_equal_channels_and_a_gif_as_its_first_frame(tmp_path):
    grey = distinct_pixels(8, 8)[..., 0]
    for suffix in (".png", ".bmp"):  # each decoder makes it RGB
        Image.fromarray(grey, mode="L").save(tmp_path / f"grey{suffix}")
        assert torch.equal(read_image(tmp_path / f"grey{suffix}", max_pixels=64), torch.from_numpy(grey).expand(3, 8, 8))
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    image = read_image(tmp_path / "moving.gif", max_pixels=48)
    assert image.shape == (3, 6, 8) and image[:, 0, 0].tolist() == [200, 10, 10]


def test_pillows_decoder_reads_rgb_channels_first_and_refuses_what_it_cannot_read(tmp_path):
    pixels = distinct_pixels(5, 7)
    Image.fromarray(pixels).convert("P").save(tmp_path / "palette.bmp")  # a palette image, made RGB
    expected = np.array(Image.open(tmp_path / "palette.bmp").convert("RGB"))
    image = cifar._decode_with_pillow(tmp_path / "palette.bmp")
    assert image.shape == (3, 5, 7) and image.is_contiguous() and torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1))
    (tmp_path / "junk.bmp").write_bytes(b"BM not really")
    with pytest.raises(UserError, match=r"^.*junk\.bmp: not a readable image \(corrupt or unsupported format\)$"):
        cifar._decode_with_pillow(tmp_path / "junk.bmp")


def test_an_image_over_the_pixel_limit_or_not_the_exact_size_is_refused_from_its_header(tmp_path):
    Image.fromarray(distinct_pixels(30, 40)).save(tmp_path / "a.png")
    path = tmp_path / "a.png"
    assert read_image(path, max_pixels=1200, exact=(40, 30)).shape == (3, 30, 40)  # at the limit: read
    with pytest.raises(UserError) as refused:
        read_image(path, max_pixels=1199)
    assert str(refused.value) == f"{path}: image is 40x30; images over 0.001199 megapixels are refused"
    with pytest.raises(UserError) as refused:
        read_image(path, max_pixels=10_000, exact=(30, 40))
    assert str(refused.value) == f"{path}: image is 40x30, expected 30x40"
    Image.new("RGB", (1000, 1000)).save(tmp_path / "large.png")
    with pytest.raises(UserError, match="images over 0.999999 megapixels are refused"):
        read_image(tmp_path / "large.png", max_pixels=999_999)


def test_each_unreadable_file_is_one_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    cases = {tmp_path / "folder.png": "a folder, not an image file", tmp_path / "absent.png": "no such file",
             tmp_path / "junk.png": "not a readable image (corrupt or unsupported format)"}
    for path, why in cases.items():
        with pytest.raises(UserError) as refused:
            read_image(path, max_pixels=10_000)
        assert str(refused.value) == f"{path}: {why}"
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.truncate(cifar.MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(UserError) as refused:
        read_image(huge, max_pixels=10_000)
    assert str(refused.value) == f"{huge}: 50 MB; images over 50 MB are refused"
    with huge.open("wb") as f:
        f.truncate(cifar.MAX_IMAGE_BYTES)  # at the limit: opened, then found unreadable
    with pytest.raises(UserError, match="not a readable image"):
        read_image(huge, max_pixels=10_000)


def test_an_image_that_decodes_to_another_size_than_its_header_is_refused(tmp_path, monkeypatch):
    Image.fromarray(distinct_pixels(30, 40)).save(tmp_path / "a.png")
    monkeypatch.setattr(torchvision.io, "decode_image", lambda data, mode: torch.zeros(3, 10, 20, dtype=torch.uint8))
    with pytest.raises(UserError) as refused:
        read_image(tmp_path / "a.png", max_pixels=10_000)
    assert str(refused.value) == f"{tmp_path / 'a.png'}: decodes to 20x10, its header says 40x30"


# --- finding the data -------------------------------------------------------------------------------
def place_batches(data_dir: Path, names: list[str]) -> None:
    """Tiny python batches (12 images of 3 classes each) under data_dir/cifar-10-batches-py."""
    folder = data_dir / cifar.TORCHVISION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        images, labels = cifar_images(12, seed=i)
        (folder / name).write_bytes(pickle.dumps({"data": images.reshape(12, -1).numpy(), "labels": labels.tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))


def test_without_either_format_the_error_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    tried = []
    monkeypatch.setattr(cifar, "_download", lambda folder, split: tried.append((folder, split)) or "no network")
    by_hand = (f"Download {cifar.DOWNLOAD_URL} by hand and unpack it in {tmp_path} (it holds cifar-10-batches-py/), "
               "or point --data-dir (or $CSE849_DATA) at the folder holding it")
    looked = (f"no CIFAR-10 test split in {tmp_path}: looked for {tmp_path / 'cifar-10-batches-py'} and "
              f"{tmp_path / 'cifar10-jpeg' / 'test'}/<class>/*.jpg")
    with pytest.raises(DataNotFoundError) as missing:
        load_cifar10(tmp_path, "test", download=False)
    assert str(missing.value) == f"{looked}. {by_hand}" and tried == []
    with pytest.raises(DataNotFoundError) as missing:
        load_cifar10(tmp_path, "test")
    assert str(missing.value) == f"{looked}; the download failed (no network). {by_hand}"
    assert tried == [(tmp_path, "test")]
    with pytest.raises(DataNotFoundError) as missing:
        load_cifar10(tmp_path, "train", fmt="torchvision")
    assert str(missing.value) == (f"{tmp_path / 'cifar-10-batches-py'}: not found (--dataset-format torchvision); "
                                  f"the download failed (no network). {by_hand}")
    with pytest.raises(DataNotFoundError) as missing:
        load_cifar10(tmp_path, "train", fmt="imagefolder")  # no download for a format torchvision does not fetch
    assert str(missing.value) == f"{tmp_path / 'cifar10-jpeg' / 'train'}: not found (--dataset-format imagefolder)"
    with pytest.raises(DataNotFoundError) as missing:
        load_cifar10(tmp_path, "train", fmt="torchvision", download=False)
    assert str(missing.value) == f"{tmp_path / 'cifar-10-batches-py'}: not found (--dataset-format torchvision)"
    assert tried == [(tmp_path, "test"), (tmp_path, "train")]


def test_a_successful_download_is_read_in_the_torchvision_format(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cifar, "_download", lambda folder, split: place_batches(folder, ["test_batch"]))
    assert len(load_cifar10(tmp_path / "auto", "test")) == 12
    assert len(load_cifar10(tmp_path / "forced", "test", fmt="torchvision")) == 12


def test_the_torchvision_format_needs_every_batch_of_the_split_and_wins_over_image_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cifar, "_download", lambda folder, split: "not now")
    place_batches(tmp_path, [f"data_batch_{i}" for i in range(1, 5)])  # the fifth is missing
    (tmp_path / "cifar10-jpeg" / "train" / "cat").mkdir(parents=True)
    Image.fromarray(distinct_pixels(32, 32)).save(tmp_path / "cifar10-jpeg" / "train" / "cat" / "a.png")
    assert load_cifar10(tmp_path, "train").classes == ["cat"]  # the image folder, as the batches are incomplete
    place_batches(tmp_path, [f"data_batch_{i}" for i in range(1, 6)])
    assert len(load_cifar10(tmp_path, "train")) == 60 and load_cifar10(tmp_path, "train").classes == CIFAR_CLASSES
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        load_cifar10(tmp_path, "val")
    with pytest.raises(UserError, match="^unknown dataset format 'tar'; choose auto, torchvision, imagefolder$"):
        load_cifar10(tmp_path, "train", fmt="tar")


class FailingCIFAR10:
    """Stands in for torchvision's CIFAR10: leaves part of an archive behind, then raises `error`."""

    calls: list = []
    error: Exception = OSError()

    def __init__(self, root: str, train: bool, download: bool):
        FailingCIFAR10.calls.append((root, train, download))
        (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"part")
        if self.error is not None:
            raise self.error


def test_a_download_that_cannot_even_make_its_folder_leaves_an_existing_one(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()

    def refuse(folder):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(cifar, "made_for_download", refuse)
    assert cifar._download(tmp_path / "empty", "train") == "Permission denied"
    assert (tmp_path / "empty").is_dir()  # the user's folder, though empty, is not removed


def test_a_download_says_why_it_failed_in_one_short_line_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FailingCIFAR10)
    reasons = [(type("URLError", (OSError,), {"reason": "no route to host"})(), "no route to host"),
               (PermissionError(13, "Permission denied"), "Permission denied"),
               (RuntimeError("File not found or corrupted.\nsecond line"), "File not found or corrupted."),
               (RuntimeError("x" * 300), "x" * 160), (RuntimeError(), "RuntimeError")]
    for error, reason in reasons:
        FailingCIFAR10.calls, FailingCIFAR10.error = [], error
        assert cifar._download(tmp_path / "fresh", "train") == reason
        assert not (tmp_path / "fresh").exists()  # the folder it made is gone with the archive
        assert FailingCIFAR10.calls == [(str(tmp_path / "fresh"), True, True)]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    assert cifar._download(tmp_path / "mine", "test") == "RuntimeError"
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # an existing folder stays, minus the part
    assert FailingCIFAR10.calls[-1] == (str(tmp_path / "mine"), False, True)
    FailingCIFAR10.error = None
    assert cifar._download(tmp_path / "ok", "test") is None and (tmp_path / "ok" / "cifar-10-python.tar.gz").exists()


def test_an_image_folder_reads_only_image_files_and_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cifar10-jpeg" / "test"
    (folder / "cat" / "extra.jpg").mkdir(parents=True)  # a folder with an image's name: not an image
    (folder / "cat" / "notes.txt").write_text("not an image")
    Image.fromarray(distinct_pixels(32, 32)).save(folder / "cat" / "a.PNG")  # suffixes in any case
    data = load_cifar10(tmp_path, "test", download=False)
    assert len(data) == 1 and data.classes == ["cat"]
    (folder / "dog").mkdir()
    with pytest.raises(UserError) as refused:
        load_cifar10(tmp_path, "test", download=False)
    assert str(refused.value) == f"{folder / 'dog'}: class folder holds no images"
    for name in ("cat", "dog"):
        for entry in (folder / name).iterdir():
            entry.rmdir() if entry.is_dir() else entry.unlink()
        (folder / name).rmdir()
    with pytest.raises(UserError) as refused:
        load_cifar10(tmp_path, "test", download=False)
    assert str(refused.value) == f"{folder}: no class folders (expected {folder}/<class>/<image>)"


def test_a_limit_takes_images_evenly_spread_in_either_format_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    place_batches(tmp_path, ["test_batch"])
    whole = cifar._read_batches(tmp_path / cifar.TORCHVISION_DIR, "test")
    limited = load_cifar10(tmp_path, "test", fmt="torchvision", limit=3)
    assert torch.equal(limited.images, whole.images[[0, 5, 11]]) and not (tmp_path / "cache").exists()
    folder = tmp_path / "cifar10-jpeg" / "test" / "cat"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(distinct_pixels(32, 32) + i).save(folder / f"{i:02d}.png")
    limited = load_cifar10(tmp_path, "test", fmt="imagefolder", limit=3)
    expected = torch.stack([torch.from_numpy(distinct_pixels(32, 32) + i).permute(2, 0, 1) for i in (0, 5, 11)])
    assert torch.equal(limited.images, expected) and not (tmp_path / "cache").exists()


# --- python batches -----------------------------------------------------------------------------------
def test_python_batches_that_are_not_a_dict_of_arrays_are_one_error_each(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    place_batches(tmp_path, ["test_batch"])
    folder = tmp_path / cifar.TORCHVISION_DIR
    cases = [("test_batch", pickle.dumps([1, 2]), "test_batch: not a CIFAR-10 python batch (holds a list, not a dict)"),
             ("test_batch", b"", "test_batch: not a CIFAR-10 python batch (EOFError)"),
             ("test_batch", b"\x80\x09", "test_batch: not a CIFAR-10 python batch (ValueError)"),
             ("test_batch", pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})[:-3],
              "test_batch: not a CIFAR-10 python batch (a damaged pickle: pickle data was truncated)"),
             ("test_batch", pickle.dumps(Path("x")), "test_batch: refused: it asks to load pathlib.PosixPath, which a "
                                                     "CIFAR-10 batch never does"),
             ("batches.meta", pickle.dumps({"label_names": []}), "batches.meta: no list of class names under 'label_names'"),
             ("batches.meta", pickle.dumps({"label_names": ["a", 1]}), "batches.meta: no list of class names under 'label_names'"),
             ("batches.meta", pickle.dumps({"names": ["a"]}), "batches.meta: no list of class names under 'label_names'")]
    for name, content, message in cases:
        place_batches(tmp_path, ["test_batch"])
        (folder / name).write_bytes(content)
        with pytest.raises(UserError) as refused:
            cifar._read_batches(folder, "test")
        assert str(refused.value).endswith(message) and str(refused.value).startswith(str(folder)), message


@pytest.mark.parametrize("data, labels", [
    (np.zeros((2, 3072), np.float32), [0, 1]), (np.zeros((2, 3072, 1), np.uint8), [0, 1]),
    (np.zeros((2, 3071), np.uint8), [0, 1]), ([[0] * 3072] * 2, [0, 1]), (np.zeros((2, 3072), np.uint8), (0, 1)),
    (np.zeros((2, 3072), np.uint8), [0]), (np.zeros((2, 3072), np.uint8), [0, 3]),
    (np.zeros((2, 3072), np.uint8), [0, -1]), (np.zeros((2, 3072), np.uint8), [0, 1.0])])
def test_a_batch_of_the_wrong_type_shape_or_labels_is_refused(tmp_path, data, labels):
    place_batches(tmp_path, ["test_batch"])
    folder = tmp_path / cifar.TORCHVISION_DIR
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels}))
    with pytest.raises(UserError) as refused:
        cifar._read_batches(folder, "test")
    assert str(refused.value) == (f"{folder / 'test_batch'}: not a CIFAR-10 python batch (expected uint8 'data' of "
                                  "shape (N, 3072) and N 'labels' below 3)")


def test_a_python_2_pickle_reads_its_byte_strings_as_latin_1(tmp_path):
    # what CIFAR-10's own files are: protocol 2, names as byte strings (SHORT_BINSTRING)
    (tmp_path / "batches.meta").write_bytes(b"\x80\x02}U\x0blabel_names]U\x03\xe9t\xe9as.")
    assert cifar._unpickle(tmp_path / "batches.meta") == {"label_names": ["\xe9t\xe9"]}


def test_python_batches_are_read_in_order_as_channels_first_images(tmp_path):
    place_batches(tmp_path, [f"data_batch_{i}" for i in range(1, 6)])
    data = cifar._read_batches(tmp_path / cifar.TORCHVISION_DIR, "train")
    expected = [cifar_images(12, seed=i) for i in range(5)]
    assert torch.equal(data.images, torch.cat([images for images, _ in expected]))
    assert torch.equal(data.labels, torch.cat([labels for _, labels in expected])) and data.labels.dtype == torch.int64
    assert data.classes == CIFAR_CLASSES
    folder = tmp_path / cifar.TORCHVISION_DIR
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [1]}))
    assert len(cifar._read_batches(folder, "train")) == 49  # batches of any size


# --- the cache ----------------------------------------------------------------------------------------
class CountingLoad:
    """What `_cached` calls to build an ImageSet of `images` and `labels`; counts its calls."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels, self.calls = images, labels, 0

    def __call__(self) -> ImageSet:
        self.calls += 1
        return ImageSet(self.images, self.labels, CIFAR_CLASSES)


def test_the_cache_is_keyed_by_the_files_and_used_instead_of_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    files = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        files.append(tmp_path / name / "x.bin")
        files[-1].write_bytes(name.encode())
    images, labels = cifar_images(4, seed=0)
    load = CountingLoad(images, labels)
    first = cifar._cached(files, None, load)
    assert torch.equal(first.images, images) and load.calls == 1 and len(list((tmp_path / "cache").iterdir())) == 1
    again = cifar._cached(files, None, load)
    assert load.calls == 1 and torch.equal(again.images, images) and torch.equal(again.labels, labels)
    assert again.classes == CIFAR_CLASSES
    cifar._cached(files[::-1], None, load)  # another order of the same files: another key
    files[0].write_bytes(b"A")  # the same names, other bytes: another key
    cifar._cached(files, None, load)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.bin").write_bytes(b"a")  # the same bytes and name in another folder: another key
    cifar._cached([tmp_path / "c" / "x.bin", files[1]], None, load)
    assert load.calls == 4 and len(list((tmp_path / "cache").iterdir())) == 4


def test_the_cache_rebuilds_a_damaged_or_planted_entry_and_names_a_file_it_cannot_read(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    (tmp_path / "x.bin").write_bytes(b"x")
    images, labels = cifar_images(4, seed=0)
    load = CountingLoad(images, labels)
    cifar._cached([tmp_path / "x.bin"], None, load)
    (entry,) = (tmp_path / "cache").iterdir()
    torch.save({"images": images, "labels": labels + 5, "classes": CIFAR_CLASSES}, entry)  # labels past the classes
    assert torch.equal(cifar._cached([tmp_path / "x.bin"], None, load).labels, labels) and load.calls == 2
    entry.write_bytes(b"not a checkpoint")
    assert torch.equal(cifar._cached([tmp_path / "x.bin"], None, load).images, images) and load.calls == 3
    torch.save({"images": images, "labels": labels, "classes": CIFAR_CLASSES, "planted": Path("x")}, entry)
    cifar._cached([tmp_path / "x.bin"], None, load)
    assert load.calls == 4  # loaded weights-only, the planted object was refused, not unpickled: rebuilt
    with pytest.raises(UserError) as refused:
        cifar._cached([tmp_path / "absent.bin"], None, load)
    assert str(refused.value) == f"{tmp_path / 'absent.bin'}: cannot read (No such file or directory)"


def test_the_cache_key_holds_a_file_over_the_image_limit_by_name_and_size_without_reading_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    images, labels = cifar_images(4, seed=0)
    load = CountingLoad(images, labels)
    for size, read in ((cifar.MAX_IMAGE_BYTES, True), (cifar.MAX_IMAGE_BYTES + 1, False)):
        path = tmp_path / f"{size}.jpg"
        with path.open("wb") as f:
            f.truncate(size)
        cifar._cached([path], None, load)
        with path.open("r+b") as f:
            f.write(b"changed")  # the same size, other bytes
        calls = load.calls
        cifar._cached([path], None, load)
        assert load.calls == calls + read  # a file read into the key makes a new key when its bytes change


def test_a_limited_load_is_an_even_spread_and_never_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    images, labels = cifar_images(10, seed=0)
    data = cifar._cached([], 4, lambda: ImageSet(images, labels, CIFAR_CLASSES))
    assert torch.equal(data.images, images[[0, 3, 6, 9]]) and torch.equal(data.labels, labels[[0, 3, 6, 9]])
    assert len(cifar._cached([], 10, lambda: ImageSet(images, labels, CIFAR_CLASSES))) == 10
    assert len(cifar._cached([], 15, lambda: ImageSet(images, labels, CIFAR_CLASSES))) == 10  # never more
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("change", [
    {"images": np.zeros((2, 3, 32, 32), np.uint8)}, {"images": torch.zeros(2, 3, 32, 32)},
    {"images": torch.zeros(2, 3, 32, dtype=torch.uint8)}, {"images": torch.zeros(2, 3, 32, 31, dtype=torch.uint8)},
    {"images": torch.zeros(2, 1, 32, 32, dtype=torch.uint8)}, {"labels": [0, 1]},
    {"labels": torch.tensor([0, 1], dtype=torch.int32)}, {"labels": torch.tensor([0])}, {"labels": torch.tensor([[0, 1]])},
    {"labels": torch.tensor([0, -1])}, {"labels": torch.tensor([0, 3])}, {"classes": ("a", "b", "c")},
    {"classes": ["a", 2, "c"]}, {"images": torch.zeros(0, 3, 32, 32, dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.int64)}])
def test_a_cached_image_set_must_be_well_formed(change):
    good = {"images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "labels": torch.tensor([0, 2]),
            "classes": ["a", "b", "c"]}
    assert cifar._is_image_set(ImageSet(**good))
    assert cifar._is_image_set(ImageSet(good["images"][:1], good["labels"][:1], good["classes"]))  # one image will do
    assert not cifar._is_image_set(ImageSet(**{**good, **change}))
