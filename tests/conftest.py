"""Shared fixtures: tiny data files in the real formats, and a helper that runs a script as a user would."""

import contextlib
import email.message
import importlib
import io
import json
import os
import subprocess
import urllib.error
import sys
from pathlib import Path

import pytest
import torch

import common.training
from common.atomic_io import without_run_details
from common.cli import run

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs several workers: one thread each, or they spin
    torch.set_num_threads(1)

SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1"}  # two processes on 2 cores must not spin against each other


def run_subprocess(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repo root as a user would, capturing text output (one thread each)."""
    full_env = {**os.environ, **SUBPROCESS_ENV, **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_script(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` in this process, as its `__main__` would (through
    `common.cli.run`), with `env` added to the environment; returns the exit status and the captured
    text. An exception `run` lets through (a traceback for the user) fails the test where it happens."""
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_argv, threads = dict(os.environ), sys.argv, torch.get_num_threads()
    os.environ.update(env or {})
    sys.argv = [script, *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            run(module.main)
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code if isinstance(exit_info.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        torch.set_num_threads(threads)  # a script may choose one thread for itself
    return subprocess.CompletedProcess([script, *args], status, stdout.getvalue(), stderr.getvalue())


def run_main(monkeypatch, capsys, main, *argv) -> tuple[int, str, str]:
    """Run a script's `main` as `python script argv...` would; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["script", *map(str, argv)])
    try:
        run(main)
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_help(monkeypatch, capsys, main, usage: str, lines: tuple[str, ...]) -> None:
    """`main --help` exits 0 and shows `usage` first, then the script's docstring and each of `lines`
    (whitespace folded, so the checks do not depend on the terminal's width)."""
    status, out, _ = run_main(monkeypatch, capsys, main, "--help")
    flat = " ".join(out.split())
    assert status == 0 and flat.startswith(usage), flat
    assert " ".join(sys.modules[main.__module__].__doc__.split()) in flat
    for line in lines:
        assert line in flat, line


class FakeResponse:
    """A response of `body`, read in the sizes asked, with HTTP's case-blind headers."""

    def __init__(self, body: bytes, length: int | None, reads: list, fail_after: int | None = None):
        self.body, self.reads, self.fail_after = body, reads, fail_after
        self.headers = email.message.Message()
        if length is not None:
            self.headers["Content-Length"] = str(length)

    def read(self, n: int) -> bytes:
        self.reads.append(n)
        if self.fail_after is not None and len(self.reads) > self.fail_after:
            raise OSError(104, "Connection reset by peer")
        chunk, self.body = self.body[:n], self.body[n:]
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def no_network(*args, **kwargs):
    """A stand-in for a download call on a machine without the network: tests never fetch anything."""
    raise urllib.error.URLError("no network")


def capture_figures(monkeypatch: pytest.MonkeyPatch, module: object) -> dict[str, object]:
    """Make `module`'s save_figure also keep each figure (by file name) for the test to inspect."""
    import common.plotting
    kept, save = {}, common.plotting.save_figure  # bound first: `module` may be common.plotting itself

    def save_and_keep(fig, path):
        kept[Path(path).name] = fig
        save(fig, path)
    monkeypatch.setattr(module, "save_figure", save_and_keep)
    return kept


def assert_drawn(path: Path, min_colours: int = 20) -> None:
    """`path` is a PNG with something drawn on it: a real size and many colours (not a blank canvas)."""
    from PIL import Image
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 100, (path, image.format, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) >= min_colours, f"{path}: only {len(colours)} colours"


def colour_bars(fig) -> list:
    """The colour-bar axes of a figure."""
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def run_interrupted(script: str, *args, saves: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """`run_script`, with Ctrl-C arriving right after fit writes its `saves`-th per-epoch checkpoint."""
    real_save, count = common.training._save, []

    def save_then_interrupt(*save_args, **save_kwargs):
        real_save(*save_args, **save_kwargs)
        count.append(1)
        if len(count) == saves:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common.training, "_save", save_then_interrupt)
        return run_script(script, *args, env=env)


def assert_same_run(a: Path, b: Path) -> None:
    """Two output folders hold the same run: metrics, history (timings aside) and model weights."""
    def without_timings(path: Path) -> dict:
        return without_run_details(json.loads(path.read_text()))
    assert without_timings(a / "metrics.json") == without_timings(b / "metrics.json")
    assert without_timings(a / "history.json") == without_timings(b / "history.json")
    weights_a, weights_b = (torch.load(folder / "model.pt", weights_only=False)["model"] for folder in (a, b))
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def check_resume_after_interruption(hw: str, train_args: list, done: Path, out: Path, *, saves: int,
                                    env: dict) -> None:
    """`<hw>/train.py` stopped by Ctrl-C after `saves` epoch checkpoints leaves no results, and its
    `--resume` ends with the same results as the uninterrupted run in `done`."""
    args = [*train_args, "--out-dir", out]
    result = run_interrupted(f"{hw}/train.py", *args, saves=saves, env=env)
    assert result.returncode == 130 and "interrupted" in result.stderr
    assert not (out / "metrics.json").exists()
    result = run_script(f"{hw}/train.py", *args, "--resume", env=env)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout
    assert_same_run(done, out)


def check_ensemble_run(hw: str, train_args: list, data_dir: Path, out: Path, env: dict) -> None:
    """`<hw>/train.py` with `--members 2` (and 2 epochs): each member trains, eval.py reproduces the test
    accuracy from the ensemble's checkpoint, and a run interrupted in the middle of member 2 resumes to
    the same results."""
    result = run_script(f"{hw}/train.py", *train_args, "--out-dir", out, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch   2/2") == 2 and "ensemble of 2: validation accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["members"] == 2 and json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3, 4]
    assert len(metrics["member_val_acc"]) == 2 and 0 <= metrics["final_val_acc"] <= 1
    result = run_script(f"{hw}/eval.py", "--checkpoint", out / "model.pt", "--data-dir", data_dir,
                        "--precision", metrics["precision"], "--out-dir", out.parent / "eval", "--device", "cpu", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((out.parent / "eval" / "metrics.json").read_text())["accuracy"] == pytest.approx(metrics["accuracy"])
    check_resume_after_interruption(hw, train_args, out, out.parent / "resumed", saves=3, env=env)


def full_batch_losses(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                      optimizer: torch.optim.Optimizer, steps: int, scheduler=None) -> list[float]:
    """Cross-entropy before each of `steps` full-batch optimizer (and scheduler) steps."""
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def hw0_data_dir(tmp_path: Path) -> Path:
    """A data folder with a small HW0_data.pt: y = x^2 + noise, 1-D inputs, no y_test."""
    generator = torch.Generator().manual_seed(0)
    data = {}
    for split, n in (("train", 200), ("val", 100), ("test", 50)):
        x = torch.rand(n, generator=generator) * 4 - 2
        data[f"x_{split}"] = x
        if split != "test":
            data[f"y_{split}"] = x**2 + 0.1 * torch.randn(n, generator=generator)
    torch.save(data, tmp_path / "HW0_data.pt")
    return tmp_path


@pytest.fixture
def real_data_dir() -> Path:
    """The real data folder from $CSE849_DATA; tests using it are skipped when it is not set."""
    path = os.environ.get("CSE849_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip("real data not available (set CSE849_DATA)")
    return Path(path)


CIFAR_CLASSES = ["cat", "dog", "ship"]


def cifar_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random 32x32 images whose mean brightness depends on the label (so they are learnable)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CIFAR_CLASSES)
    base = (labels * 90 + 20).view(-1, 1, 1, 1)
    images = (base + torch.randint(0, 40, (n, 3, 32, 32), generator=generator)).clamp(0, 255)
    return images.to(torch.uint8), labels


def write_cifar_imagefolder(root: Path, per_class: dict[str, int]) -> Path:
    """`root/cifar10-jpeg/{split}/<class>/NNNN.jpg` with `per_class[split]` JPEGs per class."""
    from torchvision.io import encode_jpeg
    for split, count in per_class.items():
        images, labels = cifar_images(count * len(CIFAR_CLASSES), seed=len(split))
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / "cifar10-jpeg" / split / CIFAR_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:04d}.jpg").write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())
    return root


@pytest.fixture
def cifar_jpeg_dir(tmp_path: Path, monkeypatch) -> Path:
    """A tiny CIFAR ImageFolder (3 classes, 20 train / 6 test images each); caches go to tmp."""
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    return write_cifar_imagefolder(tmp_path / "jpeg", {"train": 20, "test": 6})


@pytest.fixture
def cifar_batches_dir(tmp_path: Path, monkeypatch) -> Path:
    """A tiny `cifar-10-batches-py` in torchvision's pickle format (3 classes)."""
    import pickle
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "batches" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images, labels = cifar_images(12, seed=i)
        batch = {"data": images.reshape(12, -1).numpy(), "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))
    return tmp_path / "batches"


POSITIVE_WORDS = ["great", "wonderful", "loved", "superb", "moving", "brilliant"]
NEGATIVE_WORDS = ["awful", "boring", "hated", "dull", "terrible", "waste"]
FILLER = ["the", "film", "plot", "actor", "scene", "a", "was", "and", "it", "story", "this", "of"]


def write_imdb_folder(root: Path, per_label: dict[str, int]) -> Path:
    """`root/aclImdb/{split}/{neg,pos}/<id>_<stars>.txt` reviews whose sentiment words give the label,
    with `<br />` markup, plus an `unsup` folder and a `.feat` file that loaders must ignore."""
    generator = torch.Generator().manual_seed(0)
    for split, count in per_label.items():
        for label, words in (("neg", NEGATIVE_WORDS), ("pos", POSITIVE_WORDS)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                length = int(torch.randint(5, 40, (1,), generator=generator))
                picks = torch.randint(0, len(FILLER), (length,), generator=generator).tolist()
                tokens = [FILLER[j] for j in picks]
                for _ in range(3):
                    spot = int(torch.randint(0, len(tokens) + 1, (1,), generator=generator))
                    tokens.insert(spot, words[int(torch.randint(0, len(words), (1,), generator=generator))])
                text = " ".join(tokens).capitalize() + ".<br /><br />" + " ".join(tokens[:3]) + "!"
                (folder / f"{i}_{2 if label == 'neg' else 9}.txt").write_text(text)
        (root / "aclImdb" / split / "labeledBow.feat").write_text("0 1:1\n")
    (root / "aclImdb" / "train" / "unsup").mkdir(exist_ok=True)
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    return root


@pytest.fixture
def imdb_dir(tmp_path: Path, monkeypatch) -> Path:
    """A tiny extracted aclImdb folder (30 train / 10 test reviews per label); caches go to tmp."""
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "cache"))
    return write_imdb_folder(tmp_path / "imdb", {"train": 30, "test": 10})


@pytest.fixture
def imdb_archive_dir(imdb_dir: Path, tmp_path: Path) -> Path:
    """The same reviews as `imdb_dir`, packed as `aclImdb_v1.tar.gz` alone in a folder."""
    import tarfile
    folder = tmp_path / "archive"
    folder.mkdir()
    with tarfile.open(folder / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(imdb_dir / "aclImdb", arcname="aclImdb")
    return folder
