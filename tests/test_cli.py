"""common/cli.py unit by unit: the shared options and their --help, number types, output paths,
reading several inputs, one-line errors, eval folders and refusing another run's folder."""

import argparse
import dataclasses
import errno
import json
import os
import re

import pytest
import torch
from torch import nn

import common.cli as cli
from common.cli import (DefaultInt, RepoPath, add_eval_out_dir, add_force_arg, add_precision_arg, add_recipe_options,
                        add_training_args, check_out_dir, forced_facts, make_parser, number, option, output_file,
                        output_folder, png_file, positive, read_each, recipe_from, refuse_overwriting_inputs, repo_path,
                        report_written, run, start_eval, validation_size)
from common.errors import DataNotFoundError, UserError
from tests.conftest import ROOT


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings}


def test_the_shared_options_have_their_defaults_and_help(monkeypatch):
    parser = make_parser("demo", "hw9/results")
    options = actions(parser)
    assert list(options) == ["--help", "--data-dir", "--out-dir", "--seed", "--threads", "--device", "--quiet"]
    assert options["--out-dir"].default == "hw9/results" and isinstance(options["--out-dir"].default, RepoPath)
    assert options["--device"].default == "auto" and options["--device"].choices == ["auto", "cpu", "cuda", "mps"]
    assert options["--seed"].default == 0 and options["--seed"].type("2147483647") == 2**31 - 1
    args = parser.parse_args([])
    assert (args.out_dir, args.data_dir, args.seed, args.device, args.quiet) == (ROOT / "hw9/results", None, 0, "auto", False)
    assert parser.description == "demo"
    assert list(actions(make_parser("demo", None, data=False, device=False))) == ["--help", "--seed", "--threads", "--quiet"]
    text = parser.format_help()
    assert "(default: hw9/results in the repository)" in " ".join(text.split())
    assert "random seed (0 to 2^31 - 1) (default: 0)" in " ".join(text.split())
    assert re.search(r"--quiet\s+no progress bars or per-epoch lines\n", text)  # False: no default shown
    assert "--threads THREADS CPU threads (default: all cores" in " ".join(text.split())
    assert "(default: None)" not in text and text.count("(default:") == 5  # each said once: own words or argparse's
    own = make_parser("demo", None)
    own.add_argument("--steps", type=int, default=5, help="steps (default: five of them)")
    own.add_argument("--bare", type=int)
    helped = " ".join(own.format_help().split())
    assert helped.endswith("--steps STEPS steps (default: five of them) --bare BARE")  # said by the help: not twice


def test_threads_are_set_as_soon_as_the_option_is_parsed():
    before = torch.get_num_threads()
    asked = 1 if before != 1 else 2  # a number other than the present one (make mutate runs with 1 thread)
    try:
        args = make_parser("demo", None).parse_args(["--threads", str(asked)])
        assert args.threads == asked and torch.get_num_threads() == asked
    finally:
        torch.set_num_threads(before)


def test_training_and_precision_options(monkeypatch):
    parser = make_parser("demo", None)
    add_training_args(parser, epochs=3, batch_size=64, lr=0.01)
    add_precision_arg(parser)
    args = parser.parse_args([])
    assert (args.epochs, args.batch_size, args.lr, args.resume, args.precision) == (3, 64, 0.01, False, "auto")
    assert actions(parser)["--precision"].choices == ("auto", "bf16", "fp16", "fp32")
    assert parser.parse_args(["--resume", "--lr", "0.5"]).lr == 0.5
    for option, value in (("--epochs", "0"), ("--batch-size", "-1"), ("--lr", "0")):
        with pytest.raises(SystemExit):
            parser.parse_args([option, value])
    bare = make_parser("demo", None)
    add_training_args(bare, epochs=1, batch_size=1, lr=1.0, resume=False)
    assert "--resume" not in actions(bare)
    help_text = " ".join(parser.format_help().split())
    assert "passes over the training data (default: 3)" in help_text and "(peak) learning rate (default: 0.01)" in help_text
    assert "force one (default: auto)" in help_text
    evaluating = make_parser("demo", None)
    add_precision_arg(evaluating, default="fp32")  # as the eval scripts declare it
    assert evaluating.parse_args([]).precision == "fp32" and evaluating.parse_args(["--precision", "auto"]).precision == "auto"
    assert "force one (default: fp32)" in " ".join(evaluating.format_help().split())


def test_each_recipe_field_is_the_option_its_metadata_declares():
    @dataclasses.dataclass(frozen=True)
    class Recipe:
        widths: list[int] = dataclasses.field(metadata=option("channels", type=positive(), nargs="+"))
        batch_size: int = dataclasses.field(default=8, metadata=option("examples per step", type=positive()))
        flip: str = dataclasses.field(default="random", metadata=option("how", choices=["random", "alternate"]))

    parser = make_parser("demo", None)
    add_recipe_options(parser, Recipe)
    parser.set_defaults(**dataclasses.asdict(Recipe(widths=[4, 8])))
    args = parser.parse_args(["--batch-size", "16", "--widths", "2", "3", "5"])
    assert (args.widths, args.batch_size, args.flip) == ([2, 3, 5], 16, "random")
    assert parser.parse_args([]).widths == [4, 8] and parser.parse_args(["--flip", "alternate"]).flip == "alternate"
    assert actions(parser)["--batch-size"].help == "examples per step" and actions(parser)["--flip"].choices == [
        "random", "alternate"]
    for argv in (["--batch-size", "0"], ["--flip", "sideways"], ["--widths"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert " ".join(parser.format_help().split()).count("examples per step (default: 8)") == 1
    recipe = recipe_from(vars(args), Recipe)  # the recipe's fields only, not the run's other options (seed)
    assert recipe == Recipe(widths=[2, 3, 5], batch_size=16, flip="random") and args.seed == 0


@pytest.mark.parametrize("make, text, message", [  # each type made inside the test, where mutmut sees it
    (lambda: number(float, 0, 1), "1.5", "must be >= 0 and <= 1, got 1.5"),
    (lambda: number(float, 0, 1, open_low=True), "0", "must be > 0 and <= 1, got 0"),
    (lambda: number(float, 0, 1, open_high=True), "1", "must be >= 0 and < 1, got 1"),
    (lambda: number(float, 0, 1, open_high=True), "1.5", "must be >= 0 and < 1, got 1.5"),
    (lambda: number(float, None, 1), "2", "must be <= 1, got 2"),
    (lambda: number(int, 1), "0", "must be >= 1, got 0"),
    (lambda: number(int), "2.5", "must be a whole number, got 2.5"),
    (lambda: number(), "abc", "must be a number, got abc"),
    (lambda: number(), "nan", "must be a finite number, got nan"),
    (lambda: number(), "-inf", "must be a finite number, got -inf"),
    (lambda: positive(), "0", "must be > 0, got 0"),
    (lambda: positive(float), "-0.5", "must be > 0, got -0.5"),
])
def test_number_types_refuse_what_is_out_of_range_in_words(make, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message.replace('.', '[.]')}$"):
        make()(text)


def test_number_types_accept_their_ends_and_keep_their_range():
    closed, half_open = number(float, 0, 1), number(int, -2, 3, open_high=True)
    assert (closed("0"), closed("1"), half_open("-2"), half_open("2")) == (0.0, 1.0, -2, 2)
    assert isinstance(number()("3"), float) and isinstance(number(int)("3"), int)
    assert (half_open.kind, half_open.low, half_open.high, half_open.open_low, half_open.open_high) == (int, -2, 3, False, True)
    assert number()("-1e9") == -1e9  # unbounded both ways by default
    assert positive()("1") == 1 and positive().kind is int and positive(float)("0.5") == 0.5


def test_a_default_validation_size_shrinks_with_a_limit_but_a_typed_one_does_not():
    assert validation_size(DefaultInt(5000), 100) == 10
    assert validation_size(DefaultInt(5000), None) == 5000
    assert validation_size(5000, 100) == 5000
    assert validation_size(DefaultInt(5), 100) == 5
    assert isinstance(validation_size(DefaultInt(5000), 100), int)


def test_output_paths_are_checked_without_being_made(tmp_path):
    assert repo_path(RepoPath("hw3/results")) == ROOT / "hw3/results"
    assert repo_path("~/x") == repo_path(os.path.expanduser("~/x"))
    assert output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{tmp_path}/file is a file, not a folder$"):
        output_folder(tmp_path / "file")
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{tmp_path}/file/below: {tmp_path}/file is a file, not a folder$"):
        output_folder(tmp_path / "file" / "below")
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{tmp_path} is a folder, not a file$"):
        output_file(tmp_path)
    with pytest.raises(argparse.ArgumentTypeError, match=r"is a file, not a folder$"):
        output_file(tmp_path / "file" / "out.png")
    assert png_file(tmp_path / "a.PNG") == tmp_path / "a.PNG"
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{tmp_path}/a.jpg: the figure is a PNG; give a name ending in .png$"):
        png_file(tmp_path / "a.jpg")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_that_cannot_be_written_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(argparse.ArgumentTypeError, match=r"locked/out: cannot write there \(permission denied\)$"):
        output_folder(locked / "out")


def test_a_folder_without_search_permission_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)  # no write or search permission
    with pytest.raises(argparse.ArgumentTypeError, match=r"out: cannot write there \(permission denied\)$"):
        output_folder(tmp_path / "out")
    asked = []
    monkeypatch.setattr(cli.os, "access", lambda path, mode: asked.append((path, mode)) or True)
    output_folder(tmp_path / "out")
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


def test_an_output_that_is_one_of_the_inputs_is_refused(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_text("x")
    refuse_overwriting_inputs(None, [a], "--explain-png")
    refuse_overwriting_inputs(b, [a], "--explain-png")  # a new file
    b.write_text("y")
    refuse_overwriting_inputs(b, [a, tmp_path / "missing.png"], "--explain-png")
    with pytest.raises(UserError, match=rf"^--explain-png {tmp_path}/a.png: that is one of the inputs; name a new file$"):
        refuse_overwriting_inputs(a, [tmp_path / "missing.png", tmp_path / "." / "a.png"], "--explain-png")


def test_each_input_is_read_and_each_refusal_said(capsys):
    def read(name):
        if name.startswith("bad"):
            raise UserError(f"{name}: unreadable")
        return name.upper()
    assert read_each(["a", "bad1", "b"], read, "files") == ([("a", "A"), ("b", "B")], 1)
    assert capsys.readouterr().err == "error: bad1: unreadable\n"
    with pytest.raises(UserError, match=r"^bad1: unreadable$"):  # the only input: its own error
        read_each(["bad1"], read, "files")
    with pytest.raises(UserError, match=r"^none of the 2 files could be read$"):
        read_each(["bad1", "bad2"], read, "files")
    assert capsys.readouterr().err == "error: bad1: unreadable\nerror: bad2: unreadable\n"
    assert read_each(["bad1"], read, "files", others=1) == ([], 1)  # texts given too: go on with them
    assert capsys.readouterr().err == "error: bad1: unreadable\n"
    assert read_each([], read, "files") == ([], 0)


@pytest.mark.parametrize("error, status, line", [
    (UserError("bad option"), 2, "error: bad option"),
    (DataNotFoundError("no data"), 3, "error: no data"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/metrics.json"), 2, "error: /out/metrics.json: No space left on device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), 2, "error: writing results: Disk quota exceeded"),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), 2, "error: /ro: Read-only file system"),
    (OSError(errno.EACCES, "Permission denied", "/x"), 2, "error: /x: Permission denied"),
    (OSError(errno.EPERM, "Operation not permitted", "/y"), 2, "error: /y: Operation not permitted"),
])
def test_run_turns_what_the_user_can_fix_into_one_line_and_a_status(capsys, error, status, line):
    def main():
        raise error
    with pytest.raises(SystemExit) as exit_info:
        run(main)
    assert exit_info.value.code == status and capsys.readouterr().err == line + "\n"


def test_run_lets_a_bug_through_as_a_traceback():
    def main():
        raise OSError(errno.EBADF, "Bad file descriptor")
    with pytest.raises(OSError):
        run(main)
    run(lambda: None)


def test_report_written_shows_paths_from_the_repository(capsys, tmp_path):
    report_written(ROOT / "hw3" / "results" / "m.json")
    report_written(tmp_path / "x.json", changed=False)
    assert capsys.readouterr().out == f"wrote hw3/results/m.json\nkept {tmp_path}/x.json (the same result)\n"


def test_forced_facts_are_what_was_not_left_to_auto():
    args = argparse.Namespace(device="cpu", precision="auto")
    assert forced_facts(vars(args)) == {"device": "cpu"}
    assert forced_facts({"device": "auto", "precision": "bf16", "seed": 0}) == {"precision": "bf16"}


def test_another_runs_folder_is_refused_unless_forced_or_the_same_run(tmp_path):
    check_out_dir(tmp_path, settings={"lr": 1}, force=False)  # empty: fine
    (tmp_path / "history.json").write_text("{}")
    with pytest.raises(UserError, match=rf"^--out-dir {tmp_path} holds another run \(history.json\); choose another "
                                        r"folder, or pass --force to write over it$"):
        check_out_dir(tmp_path, settings={"lr": 1}, force=False)
    check_out_dir(tmp_path, settings={"lr": 1}, force=True)
    (tmp_path / "model.pt").write_text("x")
    (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"lr": 1, "precision": "bf16"}, "device": "cpu"}))
    check_out_dir(tmp_path, settings={"lr": 1, "precision": "fp32", "new": 2}, force=False)  # the same run
    with pytest.raises(UserError, match=r"holds another run \(model.pt, history.json\)"):
        check_out_dir(tmp_path, settings={"lr": 2}, force=False)
    with pytest.raises(UserError, match=r"holds another run"):
        check_out_dir(tmp_path, settings=None, force=False)  # an eval never writes over a run
    with pytest.raises(UserError, match=rf"^--out-dir {tmp_path} holds a run with the same options but another device "
                                        r"cpu there, cuda here; choose another folder, or pass --force to write over it$"):
        check_out_dir(tmp_path, settings={"lr": 1}, force=False, facts={"device": "cuda", "test_images": 10})
    (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"lr": 1}, "device": "cpu", "precision": "fp32"}))
    with pytest.raises(UserError, match=r"same options but another device cpu there, cuda here; precision fp32 there, "
                                        r"bf16 here; choose"):
        check_out_dir(tmp_path, settings={"lr": 1}, force=False, facts={"device": "cuda", "precision": "bf16"})
    (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"other": 1}}))
    with pytest.raises(UserError, match=r"holds another run"):
        check_out_dir(tmp_path, settings={"lr": 1}, force=False)  # no option in common
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"holds another run"):
        check_out_dir(tmp_path, settings={"lr": 1}, force=False)


def test_an_eval_writes_beside_the_checkpoint_in_a_folder_of_its_own(tmp_path, monkeypatch, capsys):
    run_dir, data = tmp_path / "run", tmp_path / "my-data"
    run_dir.mkdir(), data.mkdir()
    loaded = []

    def load_model(path, device):
        loaded.append((path, device))
        return nn.Linear(1, 1), {"k": 1}
    parser = make_parser("demo", None)
    parser.add_argument("--checkpoint", type=repo_path, default=run_dir / "model.pt")
    add_eval_out_dir(parser)
    add_precision_arg(parser)
    args = parser.parse_args(["--data-dir", str(data), "--device", "cpu", "--precision", "fp32"])
    assert args.out_dir is None and args.force is False

    def eval_options(args: argparse.Namespace) -> dict:
        return {key: getattr(args, key) for key in ("out_dir", "data_dir", "device", "precision", "force")}
    started = start_eval(load_model, args.checkpoint, **eval_options(args))
    assert started.out == run_dir / "eval-my-data" and started.data_dir == data and started.config == {"k": 1}
    assert loaded == [(run_dir / "model.pt", torch.device("cpu"))] and started.machine["precision"] == "fp32"
    assert started.device == torch.device("cpu") and isinstance(started.model, nn.Linear)
    assert capsys.readouterr().out.startswith("device cpu (")
    args.out_dir = run_dir
    with pytest.raises(UserError, match=rf"^--out-dir {run_dir}: that folder holds the training run of {run_dir}/model.pt; "
                                        r"evaluate into another \(the default is eval-<data folder name>/ inside it\)$"):
        start_eval(load_model, args.checkpoint, **eval_options(args))
    args.out_dir = other = tmp_path / "other_run"
    other.mkdir()
    (other / "model.pt").write_text("another run's")
    with pytest.raises(UserError, match="holds another run"):
        start_eval(load_model, args.checkpoint, **eval_options(args))
    args.force = True  # then an eval may write there
    assert start_eval(load_model, args.checkpoint, **eval_options(args)).out == other
    args.out_dir, args.force = None, False
    (run_dir / "eval-my-data").write_text("a file")
    with pytest.raises(UserError, match=r"eval-my-data is a file, not a folder$"):
        start_eval(load_model, args.checkpoint, **eval_options(args))


def test_every_shared_option_says_what_it_does_in_help():
    parser = make_parser("demo", "hw9/results")
    add_training_args(parser, epochs=1, batch_size=2, lr=0.1)
    add_precision_arg(parser)
    add_force_arg(parser)
    helps = {name: action.help for name, action in actions(parser).items()}
    assert helps == {
        "--help": "show this help message and exit",
        "--data-dir": "folder holding the data (default: $CSE849_DATA if set, else data/ in the repository)",
        "--out-dir": "where plots, metrics and checkpoints are written (default: %(default)s in the repository)",
        "--seed": "random seed (0 to 2^31 - 1)",
        "--threads": "CPU threads (default: all cores, or $OMP_NUM_THREADS); 1 when another job shares a 2-core "
                     "machine, where two sets of threads spin against each other",
        "--device": "auto picks cuda, then mps, then cpu",
        "--quiet": "no progress bars or per-epoch lines",
        "--epochs": "passes over the training data",
        "--batch-size": "examples per step",
        "--lr": "(peak) learning rate",
        "--resume": "continue from the last per-epoch checkpoint in --out-dir",
        "--precision": "auto: bf16 autocast where the hardware runs bf16 natively (CUDA GPUs from Ampere on, CPUs "
                       "with AVX-512 BF16 or AMX), fp16 with a gradient scaler on older CUDA GPUs (V100, T4), else "
                       "fp32; bf16/fp16/fp32 force one (default: %(default)s)",
        "--force": "write into an --out-dir that holds another run's model.pt or history.json",
    }
    assert parser.parse_args(["--lr", "0.5"]).lr == 0.5 and isinstance(parser.parse_args(["--lr", "1"]).lr, float)
    evaluation = make_parser("demo", None)
    add_eval_out_dir(evaluation)
    assert actions(evaluation)["--out-dir"].help == ("where the evaluation is written (default: eval-<data folder name>/ "
                                                     "in the checkpoint's folder; never the training run's own folder)")
    with pytest.raises(SystemExit):
        evaluation.parse_args(["--out-dir", __file__])  # a file: checked by its type
