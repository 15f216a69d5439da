"""Nothing lost, nothing accepted that should not be: a failed run leaves earlier results byte-identical,
eval writes beside a run and never over it, and bad values, bad data, a diverging loss, a bad output
folder, a full disk and Ctrl-C each end in one clear line. Scripts run in-process through
`common.cli.run`, as their `__main__` does."""

import errno
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import hw0.q2
import hw0.q3
import hw1.q1
import hw3.eval
import hw3.predict
import hw3.train
import hw4.eval
import hw4.predict
import hw4.train
from common.checkpoint import load_checkpoint
from common.course_data import load_course_splits
from common.errors import TrainingDiverged
from common.training import Checkpointing, Optimization, fit
from tests.conftest import run_main, write_cifar_imagefolder

HW3_TINY = ["--widths", "4", "4", "4", "--epochs", "1", "--batch-size", "16", "--val-size", "12", "--device", "cpu",
            "--quiet"]
HW4_TINY = ["--dim", "16", "--layers", "1", "--heads", "2", "--epochs", "1", "--batch-size", "8", "--val-size", "10",
            "--max-len", "32", "--head", "8", "--min-count", "1", "--members", "1", "--device", "cpu", "--quiet"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- a failed run leaves the previous one's files byte-identical ---------------------------------------
@pytest.fixture
def hw3_run(cifar_jpeg_dir, tmp_path, monkeypatch, capsys):
    """A finished tiny hw3 run in `out`; returns (data dir, out)."""
    out = tmp_path / "out"
    status, _, err = run_main(monkeypatch, capsys, hw3.train.main, "--data-dir", cifar_jpeg_dir, "--out-dir", out,
                              *HW3_TINY)
    assert status == 0, err
    return cifar_jpeg_dir, out


@pytest.mark.script
def test_hw3_train_checks_the_test_split_before_writing_anything(hw3_run, tmp_path, monkeypatch, capsys):
    data_dir, out = hw3_run
    before = snapshot(out)
    broken = tmp_path / "no_test"
    shutil.copytree(data_dir / "cifar10-jpeg" / "train", broken / "cifar10-jpeg" / "train")
    status, stdout, err = run_main(monkeypatch, capsys, hw3.train.main, "--data-dir", broken, "--out-dir", out,
                                   *HW3_TINY)
    assert status == 3 and "epoch" not in stdout
    one_error_line(err, "cifar10-jpeg")
    other_classes = write_cifar_imagefolder(tmp_path / "other", {"train": 8, "test": 2})
    (other_classes / "cifar10-jpeg" / "test" / "ship").rename(other_classes / "cifar10-jpeg" / "test" / "truck")
    status, _, err = run_main(monkeypatch, capsys, hw3.train.main, "--data-dir", other_classes, "--out-dir", out,
                              *HW3_TINY)
    assert status == 2
    one_error_line(err, "test split's classes")
    assert snapshot(out) == before


@pytest.mark.script
def test_hw3_interrupted_test_pass_leaves_the_previous_results(hw3_run, monkeypatch, capsys):
    data_dir, out = hw3_run
    before = {name: data for name, data in snapshot(out).items() if not name.startswith("train_state")}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(hw3.train, "evaluate_test", interrupted)
    status, _, err = run_main(monkeypatch, capsys, hw3.train.main, "--data-dir", data_dir, "--out-dir", out,
                              "--seed", "1", "--force", *HW3_TINY)  # another run's folder: on purpose
    assert status == 130 and err.strip() == "interrupted"
    after = {name: data for name, data in snapshot(out).items() if not name.startswith("train_state")}
    assert after == before  # the staged files of the interrupted run never landed


@pytest.mark.script
def test_hw4_train_checks_the_test_split_before_writing_anything(imdb_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    status, _, err = run_main(monkeypatch, capsys, hw4.train.main, "--data-dir", imdb_dir, "--out-dir", out,
                              *HW4_TINY)
    assert status == 0, err
    before = snapshot(out)
    shutil.rmtree(imdb_dir / "aclImdb" / "test")
    status, stdout, err = run_main(monkeypatch, capsys, hw4.train.main, "--data-dir", imdb_dir, "--out-dir", out,
                                   *HW4_TINY)
    assert status != 0 and "epoch" not in stdout
    one_error_line(err, "test")
    assert snapshot(out) == before


# --- eval scripts write beside a run, never over it --------------------------------------------------
@pytest.mark.script
def test_hw3_eval_writes_a_folder_of_its_own_and_a_failed_eval_changes_nothing(hw3_run, tmp_path, monkeypatch,
                                                                               capsys):
    data_dir, out = hw3_run
    training = snapshot(out)
    status, _, err = run_main(monkeypatch, capsys, hw3.eval.main, "--checkpoint", out / "model.pt",
                              "--data-dir", data_dir, "--device", "cpu")
    assert status == 0, err
    evaluated = out / f"eval-{data_dir.name}"
    assert (evaluated / "metrics.json").is_file() and (evaluated / "confusion_matrix.png").is_file()
    assert {k: v for k, v in snapshot(out).items() if not k.startswith("eval-")} == training
    status, _, err = run_main(monkeypatch, capsys, hw3.eval.main, "--checkpoint", out / "model.pt",
                              "--data-dir", data_dir, "--out-dir", out)
    assert status == 2
    one_error_line(err, "holds the training run")
    before = snapshot(out)
    status, _, err = run_main(monkeypatch, capsys, hw3.eval.main, "--checkpoint", out / "model.pt",
                              "--data-dir", tmp_path / "nowhere", "--out-dir", evaluated)
    assert status == 3
    one_error_line(err, "nowhere")
    assert snapshot(out) == before


@pytest.mark.script
def test_hw4_eval_writes_a_folder_of_its_own(imdb_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_main(monkeypatch, capsys, hw4.train.main, "--data-dir", imdb_dir, "--out-dir", out, *HW4_TINY)[0] == 0
    training = snapshot(out)
    status, _, err = run_main(monkeypatch, capsys, hw4.eval.main, "--checkpoint", out / "model.pt",
                              "--data-dir", imdb_dir, "--device", "cpu", "--quiet")
    assert status == 0, err
    assert (out / f"eval-{imdb_dir.name}" / "metrics.txt").is_file()
    assert {k: v for k, v in snapshot(out).items() if not k.startswith("eval-")} == training
    before = snapshot(out)
    status, _, err = run_main(monkeypatch, capsys, hw4.eval.main, "--checkpoint", out / "model.pt",
                              "--data-dir", tmp_path / "nowhere", "--out-dir", out / f"eval-{imdb_dir.name}")
    assert status == 3
    assert snapshot(out) == before


# --- bad values and bad data ---------------------------------------------------------------------------
@pytest.mark.script
@pytest.mark.parametrize("main, argv", [
    (hw0.q2.main, ["--lr", "nan"]), (hw0.q2.main, ["--alpha", "inf"]), (hw1.q1.main, ["--lrs", "0.1", "nan"]),
    (hw3.train.main, ["--weight-decay", "nan"]), (hw4.train.main, ["--dropout=-inf"]),
])
def test_numeric_options_reject_nan_and_infinity(main, argv, monkeypatch, capsys, tmp_path):
    status, _, err = run_main(monkeypatch, capsys, main, *argv, "--out-dir", tmp_path)
    assert status == 2 and "must be a finite number" in err and "Traceback" not in err


@pytest.mark.script
def test_course_data_with_nan_is_refused_naming_the_file_and_key(hw0_data_dir, monkeypatch, capsys, tmp_path):
    path = hw0_data_dir / "HW0_data.pt"
    data = torch.load(path)
    data["y_val"][3] = float("nan")
    torch.save(data, path)
    with pytest.raises(Exception, match=r"HW0_data.pt: y_val holds 1 non-finite value"):
        load_course_splits(path)
    status, _, err = run_main(monkeypatch, capsys, hw0.q3.main, "--data-dir", hw0_data_dir, "--out-dir", tmp_path)
    assert status == 2
    one_error_line(err, "HW0_data.pt: y_val holds 1 non-finite value")
    assert not list(tmp_path.glob("q3_*"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_diverging_loss_stops_fit_and_keeps_the_last_good_checkpoint(tmp_path, bad):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 2), torch.randint(0, 2, (4,))) for _ in range(3)]
    calls = []

    def loss_fn(output, target):  # finite for the first epoch and one step, then nan or infinite
        calls.append(1)
        loss = nn.functional.cross_entropy(output, target)
        return loss if len(calls) <= 4 else loss * bad
    spec = Checkpointing(tmp_path / "state.pt", kind="demo")
    with pytest.raises(TrainingDiverged, match=r"epoch 2: the loss became nan or infinite at step 2 of 3 "
                                               r"\(lr 0.1\); the checkpoint after epoch 1 is kept"):
        fit(model, loss_fn, Optimization(optimizer), batches, None, epochs=3, checkpointing=spec, desc=None)
    assert load_checkpoint(spec.path, kind="demo")["epoch"] == 1


@pytest.mark.script
def test_a_diverging_script_exits_with_one_line(monkeypatch, capsys, tmp_path):
    status, _, err = run_main(monkeypatch, capsys, hw0.q2.main, "--lr", "1e30", "--epochs", "2", "--n-train", "500",
                              "--quiet", "--device", "cpu", "--out-dir", tmp_path)
    assert status == 2
    one_error_line(err, "training diverged in epoch", "Try a lower --lr")
    assert not list(tmp_path.glob("q2_*"))


# --- output folders, a full disk ----------------------------------------------------------------------
@pytest.mark.script
def test_out_dir_that_is_a_file_is_one_line(monkeypatch, capsys, tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    status, _, err = run_main(monkeypatch, capsys, hw0.q2.main, "--out-dir", not_a_folder)
    assert status == 2 and "is a file, not a folder" in err and "Traceback" not in err
    status, _, err = run_main(monkeypatch, capsys, hw0.q2.main, "--out-dir", not_a_folder / "below")
    assert status == 2 and "--out-dir" in err and "Traceback" not in err


@pytest.mark.script
def test_an_explanation_figure_that_cannot_be_written_is_refused_before_any_work(monkeypatch, capsys, tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    for main, option in ((hw3.predict.main, "--explain-png"), (hw4.predict.main, "--explain-png")):
        status, out, err = run_main(monkeypatch, capsys, main, "--checkpoint", tmp_path / "absent.pt",
                                    option, not_a_folder / "why.png", "input")
        assert status == 2 and f"{option}: {not_a_folder} is a file, not a folder" in err and out == ""
        status, _, err = run_main(monkeypatch, capsys, main, option, tmp_path, "input")
        assert status == 2 and f"{tmp_path} is a folder, not a file" in err


@pytest.mark.script
def test_a_full_disk_is_one_line_and_leaves_earlier_results(monkeypatch, capsys, tmp_path):
    argv = ["--epochs", "1", "--n-train", "500", "--quiet", "--device", "cpu", "--out-dir", tmp_path]
    assert run_main(monkeypatch, capsys, hw0.q2.main, *argv)[0] == 0
    before = snapshot(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "q2_model.pt"))
    monkeypatch.setattr(hw0.q2, "save_checkpoint", disk_full)
    status, _, err = run_main(monkeypatch, capsys, hw0.q2.main, *argv, "--seed", "3")
    assert status == 2
    one_error_line(err, "q2_model.pt: No space left on device")
    assert snapshot(tmp_path) == before
