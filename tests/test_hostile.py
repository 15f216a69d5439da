"""Hostile inputs: no data folder, image, archive, cache or path can run code, exhaust memory or quietly
change a result. Each crafted input is built here; the bombs run in a child process whose peak memory
and time are measured."""

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

import common.imdb
from common.atomic_io import write_text
from common.checkpoint import save_checkpoint
from common.cifar import load_cifar10
from common.errors import UserError
from common.imdb import load_imdb
from common.text import tokenize_corpus
from tests.conftest import (CIFAR_CLASSES, ROOT, SUBPROCESS_ENV, FakeResponse, run_main, run_script,
                            write_imdb_folder)

GB = 2**30


def run_bounded(*args, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float, float]:
    """`python <args>` from the repository root in a child process (at most 60 s of CPU): its result,
    wall seconds and peak resident memory in bytes."""
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=out, stderr=err,
                                env={**os.environ, **SUBPROCESS_ENV, **(env or {})},
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CPU, (60, 60)))
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 also gives the child's usage
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), out.read(), err.read())
    return result, time.perf_counter() - began, usage.ru_maxrss * 1024  # Linux reports kB


def one_error_line(result: subprocess.CompletedProcess, *phrases: str, status: int = 2) -> None:
    """A refusal: exit `status` (2 for bad input, 3 for data not found), ending in one `error:` line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status and len(lines) >= 1 and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[-1], lines[-1]


def assert_bounded(seconds: float, peak: float) -> None:
    assert seconds < 10 and peak < 1 * GB, f"{seconds:.1f} s, {peak / GB:.2f} GB"  # torch's import included


# --- code from a data folder ----------------------------------------------------------------------
class RunsCode:
    """Unpickles into a shell command: what a planted CIFAR batch would try."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.script
def test_a_cifar_batch_that_would_run_code_is_refused_and_nothing_runs(cifar_batches_dir, tmp_path):
    marker = tmp_path / "pwned"
    folder = cifar_batches_dir / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": [0]}))
    result, seconds, peak = run_bounded("hw2/train.py", "--data-dir", cifar_batches_dir, "--out-dir",
                                        tmp_path / "out", "--limit", "30", "--val-size", "6", "--quiet",
                                        env={"CSE849_CACHE": str(tmp_path / "c")})
    one_error_line(result, "data_batch_1: refused: it asks to load posix.system")
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert_bounded(seconds, peak)


def test_a_cifar_batch_of_the_wrong_shape_or_labels_is_one_error(cifar_batches_dir):
    folder = cifar_batches_dir / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(UserError, match=r"test_batch: not a CIFAR-10 python batch \(expected uint8 'data'"):
        load_cifar10(cifar_batches_dir, "test", download=False)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 7]}))
    with pytest.raises(UserError, match="labels' below 3"):
        load_cifar10(cifar_batches_dir, "test", download=False)


# --- image bombs ----------------------------------------------------------------------------------
def jpeg_claiming(width: int, height: int) -> bytes:
    """A tiny valid JPEG whose header (SOF0) says it is `width` x `height`."""
    data = bytearray(encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)).numpy().tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (IHDR, with its CRC) says it is `width` x `height`."""
    data = bytearray(encode_png(torch.zeros(3, 8, 8, dtype=torch.uint8)).numpy().tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.script
def test_predict_refuses_image_bombs_from_their_headers(tmp_path):
    bombs = {"bomb.jpg": jpeg_claiming(20000, 20000), "bomb.png": png_claiming(10000, 10000),
             "huge.jpg": jpeg_claiming(65500, 65500)}
    for name, content in bombs.items():
        (tmp_path / name).write_bytes(content)
    result, seconds, peak = run_bounded("hw3/predict.py", *(tmp_path / name for name in bombs), "--device", "cpu")
    one_error_line(result, "none of the 3 images could be read")
    refusals = result.stderr.strip().splitlines()[:-1]
    assert len(refusals) == 3 and result.stdout == ""  # each said on its own line; no prediction printed
    for line, (name, size) in zip(refusals, [("bomb.jpg", "20000x20000"), ("bomb.png", "10000x10000"),
                                             ("huge.jpg", "65500x65500")]):
        assert line == (f"error: {tmp_path / name}: image is {size}; images over 25 megapixels are refused")
    assert_bounded(seconds, peak)


def test_a_data_set_image_must_be_32x32_by_its_header(cifar_jpeg_dir):
    victim = next((cifar_jpeg_dir / "cifar10-jpeg" / "test" / "cat").iterdir())
    victim.write_bytes(jpeg_claiming(20000, 20000))
    with pytest.raises(UserError, match=r"image is 20000x20000, expected 32x32"):
        load_cifar10(cifar_jpeg_dir, "test", download=False)


# --- archives and downloads -----------------------------------------------------------------------
def archive_with(tmp_path: Path, add) -> Path:
    """A data folder holding aclImdb_v1.tar.gz: the tiny review set plus what `add(tar)` puts in."""
    source = write_imdb_folder(tmp_path / "src", {"train": 3, "test": 3})
    folder = tmp_path / "archive"
    folder.mkdir()
    with tarfile.open(folder / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(source / "aclImdb", arcname="aclImdb")
        add(tar)
    return folder


class Zeros:
    """A file object of `size` zero bytes, so a large archive member costs no memory to write."""

    def __init__(self, size: int):
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.mark.script
def test_an_archive_member_over_the_review_cap_is_refused_before_extraction(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))

    def add(tar):
        member = tarfile.TarInfo("aclImdb/train/pos/99_9.txt")
        member.size = 300_000_000
        tar.addfile(member, Zeros(member.size))
    folder = archive_with(tmp_path, add)
    assert (folder / "aclImdb_v1.tar.gz").stat().st_size < 1_000_000  # 300 MB of zeros, packed
    result, seconds, peak = run_bounded("-c", "from common.cli import run; from common.imdb import load_imdb; "
                                        f"run(lambda: load_imdb({str(folder)!r}, 'train', download=False))",
                                        env={"CSE849_CACHE": str(tmp_path / "cache")})
    one_error_line(result, "aclImdb/train/pos/99_9.txt is 300 MB; a review is under 1 MB")
    assert_bounded(seconds, peak)
    assert sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file()) == 0


@pytest.mark.parametrize("kind, make", [
    ("link", lambda: tarfile.TarInfo("aclImdb/train/pos/98_9.txt")),
    ("link", lambda: tarfile.TarInfo("aclImdb/test/neg/97_1.txt")),
    ("folder", lambda: tarfile.TarInfo("aclImdb/train/neg/96_1.txt")),
])
def test_links_and_folders_where_reviews_belong_are_one_error(tmp_path, monkeypatch, kind, make):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    member = make()
    member.type = {"link": tarfile.SYMTYPE, "folder": tarfile.DIRTYPE}[kind]
    member.linkname = member.name if "test" in member.name else "missing.txt"  # self-referencing or dangling
    folder = archive_with(tmp_path, lambda tar: tar.addfile(member))
    with pytest.raises(UserError, match=f"{member.name} is a {kind}, where a review file belongs"):
        load_imdb(folder, "train", download=False)


def test_an_extracted_archive_is_checked_against_its_manifest_and_re_extracted(imdb_archive_dir, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache2"))
    first = load_imdb(imdb_archive_dir, "train", download=False)
    review = next((tmp_path / "cache2").rglob("*.txt"))
    review.write_text("tampered")  # a different size from what the manifest recorded
    again = load_imdb(imdb_archive_dir, "train", download=False)
    assert again.texts == first.texts and "tampered" not in again.texts


@pytest.mark.parametrize("body, length", [(b"<html>Please log in to the hotel wifi</html>", None),
                                          (b"\x1f\x8b truncated", 84_125_825)])
def test_a_download_that_is_not_the_archive_is_deleted_and_said(tmp_path, monkeypatch, body, length):
    monkeypatch.setattr(common.imdb.urllib.request, "urlopen", lambda url, timeout: FakeResponse(
        body, len(body) if length is None else length, []))
    with pytest.raises(UserError, match=r"is not the IMDB archive .*it was deleted"):
        load_imdb(tmp_path, "train")
    assert list(tmp_path.iterdir()) == []  # neither the archive nor its .part is left behind


# --- caches ---------------------------------------------------------------------------------------
def test_the_cifar_cache_follows_the_files_bytes_not_their_mtime(cifar_jpeg_dir):
    first = load_cifar10(cifar_jpeg_dir, "test", download=False)
    victim = sorted((cifar_jpeg_dir / "cifar10-jpeg" / "test" / CIFAR_CLASSES[0]).iterdir())[0]
    stat = victim.stat()
    victim.write_bytes(encode_jpeg(torch.full((3, 32, 32), 255, dtype=torch.uint8), quality=100).numpy().tobytes())
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime, new pixels
    second = load_cifar10(cifar_jpeg_dir, "test", download=False)
    assert not torch.equal(first.images[0], second.images[0]) and second.images[0].min() > 240


def test_a_tampered_cifar_cache_is_rebuilt(cifar_jpeg_dir, tmp_path):
    first = load_cifar10(cifar_jpeg_dir, "test", download=False)
    cache = next((tmp_path / "cache").glob("cifar10-*.pt"))
    torch.save({"images": first.images, "labels": first.labels + 5, "classes": first.classes}, cache)
    assert torch.equal(load_cifar10(cifar_jpeg_dir, "test", download=False).labels, first.labels)


def test_a_tampered_token_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path))
    texts = ["A fine film.", "Not good at all!"]
    first = tokenize_corpus(texts, quiet=True)
    cache = next(tmp_path.glob("tokens-*.npz"))
    words = np.frombuffer("\n".join(first.words).encode(), dtype=np.uint8)
    np.savez(cache, words=words, flat=first.flat + 1000, offsets=first.offsets)  # ids beyond the words
    again = tokenize_corpus(texts, quiet=True)
    assert again.words == first.words and np.array_equal(again.flat, first.flat)


def test_the_token_cache_key_holds_the_tokenizer_settings_and_nltk_version():
    import nltk
    from common.text import _MARKUP, TOKEN_PATTERN, TOKENIZER_SETTINGS
    assert TOKEN_PATTERN in TOKENIZER_SETTINGS and _MARKUP.pattern in TOKENIZER_SETTINGS
    assert f"nltk {nltk.__version__}" in TOKENIZER_SETTINGS


# --- overwrites and temp files --------------------------------------------------------------------
@pytest.mark.script
def test_predict_never_writes_its_figure_over_an_input(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode_png(torch.zeros(3, 32, 32, dtype=torch.uint8)).numpy().tobytes())
    before = photo.read_bytes()
    result = run_script("hw3/predict.py", photo, "--explain-png", photo, "--device", "cpu")
    assert result.returncode == 2 and f"--explain-png {photo}: that is one of the inputs" in result.stderr
    assert photo.read_bytes() == before


@pytest.mark.script
def test_the_explanation_figure_must_be_a_png_before_any_work(tmp_path):
    result = run_script("hw4/predict.py", "fine", "--explain-png", tmp_path / "out.pt")
    assert result.returncode == 2 and "out.pt: the figure is a PNG; give a name ending in .png" in result.stderr


@pytest.mark.script
def test_eval_refuses_a_folder_holding_another_run_unless_forced(tmp_path, cifar_jpeg_dir):
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "history.json").write_text("{}")
    (other / "metrics.json").write_text('{"accuracy": 0.9}')
    result = run_script("hw3/eval.py", "--data-dir", cifar_jpeg_dir, "--out-dir", other, "--device", "cpu")
    assert result.returncode == 2 and f"--out-dir {other} holds another run (history.json)" in result.stderr
    assert json.loads((other / "metrics.json").read_text()) == {"accuracy": 0.9}
    result = run_script("hw3/eval.py", "--data-dir", cifar_jpeg_dir, "--out-dir", other, "--device", "cpu",
                        "--force")  # past the folder check, the committed 10-class model meets 3-class data
    assert result.returncode == 2 and "test classes ['cat', 'dog', 'ship'] differ" in result.stderr


@pytest.mark.script
def test_train_refuses_another_runs_folder_but_re_runs_its_own(tmp_path, cifar_jpeg_dir):
    """Another run: other options, a forced device or precision other than the record's, or other data."""
    args = ["--data-dir", cifar_jpeg_dir, "--device", "cpu", "--widths", "4", "8", "8", "--epochs", "1",
            "--val-size", "12", "--batch-size", "16", "--quiet", "--out-dir", tmp_path / "run"]
    assert run_script("hw3/train.py", *args).returncode == 0
    assert run_script("hw3/train.py", *args).returncode == 0  # the same run again reproduces its files
    result = run_script("hw3/train.py", *args, "--lr", "0.5")
    assert result.returncode == 2 and "holds another run (model.pt, history.json)" in result.stderr
    assert run_script("hw3/train.py", *args, "--lr", "0.5", "--force").returncode == 0
    made = json.loads((tmp_path / "run" / "metrics.json").read_text())
    other = {"bf16": "fp32", "fp32": "bf16"}[made["precision"]]
    result = run_script("hw3/train.py", *args, "--lr", "0.5", "--precision", other)  # refused before any work
    assert result.returncode == 2 and f"another precision {made['precision']} there, {other} here" in result.stderr
    assert run_script("hw3/train.py", *args, "--lr", "0.5", "--precision", made["precision"]).returncode == 0
    result = run_script("hw3/train.py", *args, "--lr", "0.5", "--device", "auto")  # auto may follow the machine
    assert result.returncode == 0, result.stderr
    extra = next((cifar_jpeg_dir / "cifar10-jpeg" / "test" / "cat").iterdir())
    (extra.parent / f"extra{extra.suffix}").write_bytes(extra.read_bytes())  # other data: one more test image
    result = run_script("hw3/train.py", *args, "--lr", "0.5")
    assert result.returncode == 2 and "test_images 18 there, 19 here" in result.stderr, result.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_images"] == 18


def test_a_planted_link_at_a_temp_name_cannot_redirect_a_write(tmp_path):
    victim, target = tmp_path / "victim.txt", tmp_path / "results.json"
    victim.write_text("keep me")
    for pid in range(os.getpid() - 5, os.getpid() + 5):  # the names the old scheme would have used
        (tmp_path / f".results.json.{pid}.tmp.json").symlink_to(victim)
    write_text(target, "new results")
    assert target.read_text() == "new results" and victim.read_text() == "keep me"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.script
def test_a_run_that_fails_before_writing_leaves_no_new_folder(tmp_path):
    out = tmp_path / "new" / "results"
    result = run_script("hw3/train.py", "--data-dir", tmp_path / "no_data", "--out-dir", out, "--device", "cpu")
    assert result.returncode == 3 and not (tmp_path / "new").exists()


# --- long text, and one line where a traceback was ------------------------------------------------
@pytest.mark.script
def test_a_huge_review_file_is_refused_in_bounded_memory(tmp_path):
    review = tmp_path / "review.txt"
    with open(review, "wb") as file:
        file.truncate(200_000_000)  # 200 MB, sparse
    result, seconds, peak = run_bounded("hw4/predict.py", "--file", review, "--device", "cpu")
    one_error_line(result, "review.txt: over 1 MB; a review file must be smaller")
    assert_bounded(seconds, peak)
    small = tmp_path / "small.txt"
    small.write_text("A fine film.")
    _, _, baseline = run_bounded("hw4/predict.py", "--file", small, "--device", "cpu")  # torch's own share
    assert peak - baseline < 50 * 2**20  # the 200 MB file cost next to nothing


@pytest.mark.script
def test_an_empty_review_is_scored_with_a_warning(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    result = run_script("hw4/predict.py", "--file", empty)
    assert result.returncode == 0 and f"warning: {empty} holds no words" in result.stderr


@pytest.mark.script
def test_a_cache_folder_that_is_a_file_is_one_error(tmp_path, cifar_jpeg_dir):
    (tmp_path / "cache_file").write_text("x")
    result = run_script("hw3/train.py", "--data-dir", cifar_jpeg_dir, "--out-dir", tmp_path / "o", "--device", "cpu",
                        "--quiet", env={"CSE849_CACHE": str(tmp_path / "cache_file")})
    assert result.returncode == 2 and "$CSE849_CACHE=" in result.stderr and "a file, not a folder" in result.stderr


@pytest.mark.script
def test_a_stray_rank_without_torchrun_is_one_error(tmp_path, cifar_jpeg_dir):
    result = run_script("hw3/train.py", "--data-dir", cifar_jpeg_dir, "--out-dir", tmp_path / "o", "--device",
                        "cpu", env={"RANK": "0", "WORLD_SIZE": "2"})
    assert result.returncode == 2 and "RANK and WORLD_SIZE are set but MASTER_ADDR" in result.stderr


@pytest.mark.script
@pytest.mark.parametrize("hw, change, message, huge", [  # huge: measured in a child, as it must not allocate
    ("hw4", {"dim": 1_000_000, "heads": 1}, "dim 1-4096", True),
    ("hw4", {"dim": 4096, "heads": 4, "layers": 64}, "parameters, over the 200,000,000", True),
    ("hw4", {"dropout": "0.1"}, "dropout in [0, 1)", False),
    ("hw3", {"widths": "abc"}, "widths must be a list of 1 to 5 channel counts", False),
    ("hw3", {"widths": [100_000, 100_000, 100_000]}, "each 1 to 2048", True),
    ("hw3", {"mean": [float("nan")] * 3}, "mean must be 3 finite numbers", False),
])
def test_a_checkpoint_config_asking_for_absurd_sizes_or_wrong_types_is_refused(tmp_path, monkeypatch, capsys, hw,
                                                                               change, message, huge):
    if hw == "hw4":
        config = {"vocab": ["<pad>", "<unk>", "good"], "classes": ["neg", "pos"], "dim": 8, "layers": 1,
                  "heads": 2, "ff_mult": 2, "dropout": 0.1, "max_len": 16, "head": 4, "members": 1}
        kind, script, inputs = "hw4-imdb-transformer", "hw4/predict.py", ["good"]
    else:
        config = {"model": "cnn", "widths": [4, 8, 8], "classes": ["a", "b"], "mean": [0.5] * 3,
                  "std": [0.2] * 3, "tta": 0, "members": 1}
        image = tmp_path / "x.png"
        image.write_bytes(encode_png(torch.zeros(3, 32, 32, dtype=torch.uint8)).numpy().tobytes())
        kind, script, inputs = "hw3-cifar10", "hw3/predict.py", [image]
    save_checkpoint(tmp_path / "model.pt", kind=kind, model={}, config={**config, **change})
    args = (*inputs, "--checkpoint", tmp_path / "model.pt", "--device", "cpu")
    if not huge:  # nothing to measure: run in-process
        import hw3.predict
        import hw4.predict
        main = {"hw3": hw3.predict.main, "hw4": hw4.predict.main}[hw]
        status, _, err = run_main(monkeypatch, capsys, main, *args)
        one_error_line(subprocess.CompletedProcess(args, status, "", err), "model.pt: checkpoint config refused: ",
                       message)
        return
    result, seconds, peak = run_bounded(script, *args)
    one_error_line(result, "model.pt: checkpoint config refused: ", message)
    assert_bounded(seconds, peak)


@pytest.mark.script
def test_top_must_be_positive(tmp_path):
    result = run_script("hw3/predict.py", tmp_path / "x.png", "--top", "-1")
    assert result.returncode == 2 and "--top: must be > 0, got -1" in result.stderr


@pytest.mark.script
def test_predict_says_which_images_it_cannot_read_and_predicts_the_rest(tmp_path):
    from PIL import Image
    red, green = Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (40, 20), (30, 200, 30))
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[green.resize((32, 32))])  # animated
    green.save(tmp_path / "green.bmp")  # a format torchvision does not decode
    (tmp_path / "broken.gif").write_bytes(b"GIF89a")
    (tmp_path / "folder.png").mkdir()
    result = run_script("hw3/predict.py", tmp_path / "anim.gif", tmp_path / "broken.gif", tmp_path / "green.bmp",
                        tmp_path / "folder.png", "--top", "1", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(tmp_path / "anim.gif"),
                                                                          str(tmp_path / "green.bmp")]
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'broken.gif'}: not a readable image (corrupt or unsupported format)",
        f"error: {tmp_path / 'folder.png'}: a folder, not an image file",
        "error: 2 of 4 images could not be read (see above)"]
    from_folder = run_script("hw3/predict.py", tmp_path / "green.bmp", "--checkpoint", "hw3/results", "--top", "1",
                             "--device", "cpu")
    assert from_folder.returncode == 0 and from_folder.stdout == result.stdout.splitlines()[1] + "\n"  # its model.pt
    wrong = run_script("hw3/predict.py", tmp_path / "green.bmp", "--checkpoint", "hw3/results/explain.png")
    assert wrong.stderr == ("error: hw3/results/explain.png: not a PyTorch checkpoint (a model.pt that a train.py "
                            "wrote)\n")


@pytest.mark.script
def test_hw4_predict_reads_byte_order_marks_refuses_binary_and_warns_when_no_word_is_known(tmp_path):
    (tmp_path / "utf16.txt").write_bytes("A wonderful film".encode("utf-16"))  # with its byte-order mark
    (tmp_path / "binary.txt").write_bytes(b"good\x00\x01\x02")
    result = run_script("hw4/predict.py", "--file", tmp_path / "utf16.txt", "--file", tmp_path / "binary.txt",
                        "zzzz qqqq", "", "--explain", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].startswith(f"{tmp_path / 'utf16.txt'}: pos ")  # "a wonderful film", not "� � a w o n d"
    assert "wonderful" in result.stdout and "[no words]" in result.stdout
    # words are shown as written; only the bag's n-grams name <unk>, the token it reads for unknown words
    assert not any("<unk>" in line for line in lines if not line.startswith("n-grams, "))
    assert any(line.startswith("n-grams, ") and '"<unk> <unk>"' in line for line in lines)  # "zzzz qqqq"
    assert f"error: {tmp_path / 'binary.txt'}: not a text file (it holds NUL bytes)" in result.stderr
    assert "\"zzzz qqqq\": none of its words is in the model's vocabulary" in result.stderr
    assert "\"\" holds no words" in result.stderr and result.stderr.endswith(
        "error: 1 of 2 review files could not be read (see above)\n")
