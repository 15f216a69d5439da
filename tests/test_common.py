"""The `common` package: data location, errors, seeding, devices, atomic files, checkpoints, metrics, plots."""

import dataclasses
import json
import os
import random
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

from common.atomic_io import atomic_path, same_result, staged_folder, write_json, write_text
from common.checkpoint import COMPACT_CHECKPOINT, load_checkpoint, load_weights, save_checkpoint
from common.cli import make_parser, progress, run, settings_of
from common.course_data import load_course_splits
from common.data_dir import cache_dir, made_for_download, require_file, resolve_data_dir
from common.device import autocast, report_machine, select_device
from common.ensemble import Ensemble, ensemble, members_of, vote
from common.errors import DataNotFoundError, UserError
from common.metrics import accuracy, classification_report, confusion_matrix, precision_recall_f1
from common.plotting import (new_figure, plot_confusion_matrix, plot_curves, plot_member_histories,
                             plot_scatter_fit, save_figure)
from common.seeding import device_rng_state, seed_everything, set_device_rng_state
from common.tensor_batches import TensorBatches
from common.training import (Checkpointing, join_histories, mean_throughput, member_checkpointing, member_label,
                             validation_record, warmup_linear_decay, write_training_record)
from tests.conftest import ROOT, assert_drawn, capture_figures, run_subprocess


# --- data location ---------------------------------------------------------------------------
def test_threads_option_sets_torch_s_threads_at_parse_time_and_is_no_setting():
    before = torch.get_num_threads()
    try:
        args = make_parser("demo", "runs/demo").parse_args(["--threads", "1"])
        assert torch.get_num_threads() == 1 and args.threads == 1 and "threads" not in settings_of(vars(args))
    finally:
        torch.set_num_threads(before)


def test_fp16_on_a_cpu_is_warned_about(capsys):
    report_machine(torch.device("cpu"), "fp16")
    assert "warning: fp16 on a CPU is emulated" in capsys.readouterr().err
    report_machine(torch.device("cpu"), "fp32")
    assert capsys.readouterr().err == ""


def test_data_dir_prefers_argument_then_env_then_default(monkeypatch, tmp_path):
    (tmp_path / "arg").mkdir(), (tmp_path / "env").mkdir()
    monkeypatch.setenv("CSE849_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.setenv("CSE849_DATA", str(tmp_path / "typo"))  # a folder the user names must exist
    with pytest.raises(DataNotFoundError, match=r"^\$CSE849_DATA .*typo: no such folder"):
        resolve_data_dir()
    assert not (tmp_path / "typo").exists()
    monkeypatch.delenv("CSE849_DATA")
    assert resolve_data_dir() == ROOT / "data"  # inside the repository, whatever the current folder


def test_a_named_data_folder_that_is_missing_or_a_file_says_which_option_named_it(monkeypatch, tmp_path):
    monkeypatch.delenv("CSE849_DATA", raising=False)
    (tmp_path / "data.pt").write_text("x")
    with pytest.raises(DataNotFoundError, match=rf"^--data-dir {re.escape(str(tmp_path))}/typo: no such folder; check "
                                                 r"the path, or leave --data-dir unset to use data/ in the repository$"):
        resolve_data_dir(tmp_path / "typo")
    with pytest.raises(DataNotFoundError, match=rf"^--data-dir {re.escape(str(tmp_path))}/data.pt: a file, not a "
                                                 rf"folder; point --data-dir at the folder that holds it \({re.escape(str(tmp_path))}\)$"):
        resolve_data_dir(tmp_path / "data.pt")


def test_a_download_makes_the_data_folder_and_its_parents_and_says_so(tmp_path):
    folder = tmp_path / "a" / "data"
    assert made_for_download(folder) is True and folder.is_dir()
    assert made_for_download(folder) is False  # already there


def test_the_cache_folder_is_made_where_the_environment_says_or_in_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "deep" / "cache"))
    assert cache_dir() == tmp_path / "deep" / "cache" and (tmp_path / "deep" / "cache").is_dir()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "file"))
    with pytest.raises(UserError, match=rf"^\$CSE849_CACHE={re.escape(str(tmp_path))}/file: a file, not a folder; "
                                        r"point it at a folder \(or unset it\)$"):
        cache_dir()
    monkeypatch.setenv("CSE849_CACHE", str(tmp_path / "file" / "below"))
    with pytest.raises(UserError, match=r"/file/below: cannot make the cache folder \(Not a directory\)$"):
        cache_dir()
    monkeypatch.delenv("CSE849_CACHE")
    assert cache_dir() == ROOT / ".cache"


def test_missing_data_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match="HW0_data.pt: no such file") as err:
        require_file(tmp_path, "HW0_data.pt")
    message = str(err.value)
    assert str(tmp_path / "HW0_data.pt") in message and "--data-dir" in message
    assert "\n" not in message


def test_run_turns_user_errors_into_one_line_and_exit_status(capsys):
    def bad():
        raise DataNotFoundError("somewhere/file.pt: no such file")
    with pytest.raises(SystemExit) as exit_info:
        run(bad)
    assert exit_info.value.code == 3
    assert capsys.readouterr().err == "error: somewhere/file.pt: no such file\n"
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: (_ for _ in ()).throw(UserError("bad option")))
    assert exit_info.value.code == 2


# --- seeding and devices -----------------------------------------------------------------------
def test_seed_everything_makes_runs_repeat():
    generator = seed_everything(7)
    first = (torch.rand(3), torch.randperm(10, generator=generator))
    generator = seed_everything(7)
    second = (torch.rand(3), torch.randperm(10, generator=generator))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_seed_everything_seeds_python_and_numpy_too():
    draws = []
    for seed in (7, 7, 8):
        seed_everything(seed)
        draws.append((random.random(), np.random.rand()))
    assert draws[0] == draws[1] and draws[0][0] != draws[2][0] and draws[0][1] != draws[2][1]


@pytest.mark.parametrize("kind", ["cuda", "mps"])
def test_device_random_state_is_read_and_restored_from_the_devices_own_generator(monkeypatch, kind):
    module, calls = getattr(torch, kind), []
    monkeypatch.setattr(module, "get_rng_state", lambda *device: calls.append(("get", *device)) or torch.tensor([3]))
    monkeypatch.setattr(module, "set_rng_state", lambda *args: calls.append(("set", *args)))
    device = torch.device(f"{kind}:0" if kind == "cuda" else kind)
    assert torch.equal(device_rng_state(device), torch.tensor([3]))
    set_device_rng_state(device, torch.tensor([4]))
    expected_get, expected_set = ("get", device), ("set", torch.tensor([4]), device)
    if kind == "mps":  # one generator: no device argument
        expected_get, expected_set = ("get",), ("set", torch.tensor([4]))
    assert calls[0] == expected_get and len(calls[1]) == len(expected_set)
    assert all(a is b or (torch.is_tensor(a) and torch.equal(a, b)) or a == b for a, b in zip(calls[1], expected_set))
    assert device_rng_state(torch.device("cpu")) is None  # the CPU's state is torch.get_rng_state()
    set_device_rng_state(torch.device("cpu"), torch.tensor([5]))
    assert len(calls) == 2


@pytest.mark.parametrize("quiet, terminal, shown", [(False, True, True), (True, True, False), (False, False, False)])
def test_progress_bars_show_only_on_a_terminal_and_without_quiet(monkeypatch, quiet, terminal, shown):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    with progress(total=3, desc="epoch 1/2", quiet=quiet) as bar:
        assert bar.disable is not shown
        if shown:  # a disabled tqdm keeps none of these
            assert (bar.total, bar.desc, bar.leave) == (3, "epoch 1/2", True)
            assert callable(bar.dynamic_ncols)  # the width follows the terminal's
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress(range(3), leave=False) as bar:  # shown unless asked otherwise
        assert bar.disable is False and bar.leave is False and bar.desc == "" and list(bar) == [0, 1, 2]


@pytest.mark.parametrize("cuda, mps, auto", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_choice(monkeypatch, cuda, mps, auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert select_device("auto") == torch.device(auto)
    assert select_device("cpu") == torch.device("cpu")
    if cuda:
        assert select_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(UserError, match="--device cuda: no cuda device is available"):
            select_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_bf16_autocast_changes_matmul_dtype_and_fp32_does_not():
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        autocast(torch.device("cpu"), "fp8")


# --- atomic files --------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json(target, {"a": 1, "b": [2]})
    assert target.read_text() == '{\n  "a": 1,\n  "b": [\n    2\n  ]\n}\n'  # indented by 2: readable diffs
    write_text(target, "second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["metrics.json"]


def test_a_re_run_with_the_same_result_keeps_the_files_that_hold_it(tmp_path):
    """Only times, the machine and the typed command differ: the committed bytes stay; a result that
    differs replaces them."""
    metrics = {"accuracy": 0.9, "wall_seconds": 60.0, "threads": 2, "grid": [{"c": 1, "seconds": 3.0}]}
    text = "accuracy   0.9000\nwall time  1.0 min\ncommand    python hw4/train.py\n"
    with staged_folder(tmp_path) as out:
        write_json(out / "metrics.json", metrics)
        write_text(out / "metrics.txt", text)
        (out / "plot.png").write_bytes(b"png one")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    seen = []
    with staged_folder(tmp_path, announce=lambda path, changed: seen.append((path.name, changed))) as out:
        write_json(out / "metrics.json", {**metrics, "wall_seconds": 99.0, "threads": 1,
                                          "grid": [{"c": 1, "seconds": 5.0}]})
        write_text(out / "metrics.txt", text.replace("1.0 min", "2.5 min").replace("train.py", "train.py --quiet"))
        (out / "plot.png").write_bytes(b"png one")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert sorted(seen) == [("metrics.json", False), ("metrics.txt", False), ("plot.png", False)]
    with staged_folder(tmp_path) as out:  # another result: every changed file lands
        write_json(out / "metrics.json", {**metrics, "grid": [{"c": 2, "seconds": 3.0}]})
        write_text(out / "metrics.txt", text.replace("0.9000", "0.9100"))
        (out / "plot.png").write_bytes(b"png two")
    assert json.loads((tmp_path / "metrics.json").read_text())["grid"][0]["c"] == 2
    assert "0.9100" in (tmp_path / "metrics.txt").read_text() and (tmp_path / "plot.png").read_bytes() == b"png two"


def test_same_result_reads_json_and_text_files_and_compares_anything_else_byte_for_byte(tmp_path):
    def pair(name: str, old: bytes, new: bytes) -> bool:
        (tmp_path / f"old{name}").write_bytes(old), (tmp_path / f"new{name}").write_bytes(new)
        return same_result(tmp_path / f"old{name}", tmp_path / f"new{name}")
    assert pair(".md", b"# report\nwall time  1.0 min\n", b"# report\nwall time  9.0 min\n")
    assert pair(".txt", b"\xff\xfe bytes\ncommand    a\n", b"\xff\xfe bytes\ncommand    b\n")  # not UTF-8
    assert pair(".csv", b"lr,val\n0.1,0.5\ncommand python x\n", b"lr,val\n0.1,0.5\ncommand python x --quiet\n")
    assert not pair(".json", b"{not json", b"{not json either")  # unreadable JSON: a different result
    assert not pair(".png", b"one", b"two") and pair(".png", b"one", b"one")


def test_a_block_that_raises_lands_none_of_its_files(tmp_path):
    (tmp_path / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with staged_folder(tmp_path) as out:
            write_text(out / "metrics.json", "new")
            write_text(out / "model.pt", "weights")
            raise RuntimeError("half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no model.pt, no staging folder
    assert (tmp_path / "metrics.json").read_text() == "old"


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed mid-write"):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.txt"]


# --- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "m.pt", kind="demo", model=model, config={"width": 3}, classes=["a"])
    loaded = load_checkpoint(tmp_path / "m.pt", kind="demo", required=("classes",))
    clone = nn.Linear(3, 2)
    load_weights(clone, loaded["model"], tmp_path / "m.pt")
    assert torch.equal(clone.weight, model.weight) and loaded["config"] == {"width": 3}


def test_equal_weights_give_equal_checkpoint_bytes(tmp_path):
    """A re-run that reproduces a model must leave its committed checkpoint byte for byte as it was."""
    model = nn.Linear(3, 2)
    for name in ("a.pt", "b.pt", "a.pt"):  # two names, and the same name twice (a fresh temp file each time)
        save_checkpoint(tmp_path / name, kind="demo", model=model, config={"width": 3})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    save_checkpoint(tmp_path / "c.pt", kind="demo", model=model, config={"width": 4})
    assert (tmp_path / "c.pt").read_bytes() != (tmp_path / "a.pt").read_bytes()


@pytest.mark.parametrize("problem, message", [
    ("missing", "no such checkpoint"),
    ("corrupt", "not a readable PyTorch checkpoint"),
    ("foreign", "not a cse849 checkpoint"),
    ("wrong kind", "holds a 'other' model, expected 'demo'"),
    ("missing key", "missing classes"),
])
def test_bad_checkpoints_give_one_line_errors(tmp_path, problem, message):
    path = tmp_path / "m.pt"
    if problem == "corrupt":
        save_checkpoint(path, kind="demo", model=nn.Linear(2, 2))
        path.write_bytes(path.read_bytes()[:100])
    elif problem == "foreign":
        torch.save({"state_dict": {}}, path)
    elif problem == "wrong kind":
        save_checkpoint(path, kind="other", model=nn.Linear(2, 2))
    elif problem == "missing key":
        save_checkpoint(path, kind="demo", model=nn.Linear(2, 2))
    with pytest.raises(UserError, match=message) as err:
        load_checkpoint(path, kind="demo", required=("classes",))
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_weights_of_another_shape_give_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="weights do not fit the model"):
        load_weights(nn.Linear(3, 2), nn.Linear(4, 2).state_dict(), tmp_path / "m.pt")


class Unsafe:
    """A pickled object that is not a tensor or a plain container: torch.load(weights_only=True) refuses it."""


def test_a_checkpoint_holding_arbitrary_objects_is_refused_unread(tmp_path):
    torch.save({"format": "cse849-checkpoint", "kind": "demo", "model": {}, "config": {}, "extra": Unsafe()},
               tmp_path / "m.pt")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "m.pt", kind="demo")


@pytest.mark.parametrize("error, shown", [
    (RuntimeError("first line\nsecond line"), "(first line)"),
    (RuntimeError(""), "(RuntimeError)"),
    (ValueError("x" * 120), "(" + "x" * 120 + ")"),  # 120 characters are kept whole, more are cut at a space
    (ValueError("x" * 121), "(" + "x" * 120 + " ...)"),
    (ValueError("word " * 20 + "y" * 30 + " z" * 40), "(" + "word " * 20 + "...)"),
    (ValueError("a b" + "c" * 117 + " " + "d" * 10), "(a ...)"),  # not at the space just past 120
    (ValueError("a b\tc" + "d" * 130), "(a ...)"),
])
def test_an_unreadable_checkpoint_s_reason_is_one_short_line(tmp_path, monkeypatch, error, shown):
    save_checkpoint(tmp_path / "m.pt", kind="demo", model=nn.Linear(2, 2))

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "m.pt", kind="demo")
    assert str(err.value) == f"{tmp_path / 'm.pt'}: not a readable PyTorch checkpoint {shown}"


def test_a_checkpoint_names_the_kinds_and_keys_it_lacks(tmp_path):
    save_checkpoint(tmp_path / "m.pt", kind="toy", model=nn.Linear(2, 2))
    assert load_checkpoint(tmp_path / "m.pt", kind=("other", "toy"))["kind"] == "toy"  # any of several kinds
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "m.pt", kind=("a", "b"))
    assert str(err.value).endswith("checkpoint holds a 'toy' model, expected 'a' or 'b'")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "m.pt", kind="toy", required=("classes", "epoch"))
    assert str(err.value).endswith("checkpoint is missing classes, epoch")


def test_a_run_folder_stands_for_its_checkpoint(tmp_path):
    from common.checkpoint import checkpoint_in
    assert checkpoint_in(tmp_path / "x.pt") == tmp_path / "x.pt"  # a file path is kept, even if absent
    with pytest.raises(UserError) as err:
        checkpoint_in(tmp_path)
    assert str(err.value) == (f"{tmp_path}: a folder without model.pt or {COMPACT_CHECKPOINT}; give the run "
                              "folder a train.py wrote, or the checkpoint file itself")
    (tmp_path / COMPACT_CHECKPOINT).write_bytes(b"")
    assert checkpoint_in(tmp_path) == tmp_path / COMPACT_CHECKPOINT
    (tmp_path / "model.pt").write_bytes(b"")
    assert checkpoint_in(tmp_path) == tmp_path / "model.pt"  # the full one first


def test_a_compact_checkpoint_keeps_each_weight_s_dtype_and_integer_tensors_exact(tmp_path):
    model = nn.Linear(4, 3).to(torch.bfloat16)
    model.register_buffer("counts", torch.arange(6).view(2, 3))  # an integer matrix is no weight to quantize
    save_checkpoint(tmp_path / "small.pt", kind="toy", model=model, compact=True)
    loaded = load_checkpoint(tmp_path / "small.pt", kind="toy")["model"]
    assert loaded["weight"].dtype == torch.bfloat16 and torch.equal(loaded["counts"], model.counts)
    payload = torch.load(tmp_path / "small.pt", weights_only=True)
    payload["model"]["weight"]["dtype"] = "int64"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "bad.pt", kind="toy")
    assert str(err.value) == f"{tmp_path / 'bad.pt'}: compact weights of weight are malformed"


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A model config as the homeworks write theirs: a linear layer, refused above 9 inputs."""

    inputs: int
    outputs: int = 2
    built = []  # the configs `build` was called on (a class attribute, not a field)

    def problem(self) -> str | None:
        return None if self.inputs < 10 else "inputs too many"

    def build(self) -> nn.Module:
        ToyConfig.built.append(self)
        return nn.Linear(self.inputs, self.outputs)


def test_load_model_rebuilds_the_config_checks_it_before_building_and_loads_the_weights(tmp_path, monkeypatch):
    from common.checkpoint import load_model
    monkeypatch.setattr(ToyConfig, "built", [])
    source = nn.Linear(3, 4)
    save_checkpoint(tmp_path / "m.pt", kind="toy", model=source, config=ToyConfig(3, 4))
    assert load_checkpoint(tmp_path / "m.pt", kind="toy")["config"] == {"inputs": 3, "outputs": 4}  # as a dict
    model, config = load_model(tmp_path / "m.pt", kind="toy", config_type=ToyConfig)
    assert torch.equal(model.weight, source.weight) and config == ToyConfig.built[0] == ToyConfig(3, 4)
    save_checkpoint(tmp_path / "old.pt", kind="toy", model=nn.Linear(3, 2), config={"inputs": 3, "gone": 1})
    assert load_model(tmp_path / "old.pt", kind="toy", config_type=ToyConfig)[1] == ToyConfig(3, 2)  # unknown key left
    save_checkpoint(tmp_path / "none.pt", kind="toy", model=source, config={"outputs": 4})
    with pytest.raises(UserError) as err:
        load_model(tmp_path / "none.pt", kind="toy", config_type=ToyConfig)
    assert str(err.value) == f"{tmp_path / 'none.pt'}: checkpoint config lacks inputs"  # outputs has a default
    save_checkpoint(tmp_path / "big.pt", kind="toy", model=source, config={"inputs": 99, "outputs": 4})
    with pytest.raises(UserError) as err:
        load_model(tmp_path / "big.pt", kind="toy", config_type=ToyConfig)
    assert str(err.value) == f"{tmp_path / 'big.pt'}: checkpoint config refused: inputs too many"
    torch.save({"format": "cse849-checkpoint", "kind": "toy", "model": {}, "config": [3]}, tmp_path / "list.pt")
    with pytest.raises(UserError) as err:
        load_model(tmp_path / "list.pt", kind="toy", config_type=ToyConfig)
    assert str(err.value) == f"{tmp_path / 'list.pt'}: checkpoint config is not a dict"
    assert len(ToyConfig.built) == 2  # a refused config builds nothing


def test_config_checks_accept_exactly_their_bounds():
    from common.checkpoint import names, whole
    assert whole(2, 2, 4) and whole(4, 2, 4) and not whole(1, 2, 4) and not whole(5, 2, 4)
    assert not whole(True, 0, 4) and not whole(3.0, 2, 4) and not whole("3", 2, 4)
    assert names(["a"], 1, 2) and names(["a", "b"], 1, 2) and not names([], 1, 2) and not names(["a"] * 3, 1, 2)
    assert not names(["a", 2], 1, 2) and not names("ab", 1, 2) and not names([1, 2, 3], 1, 2)


def test_a_missing_checkpoint_says_which_command_makes_it_and_offers_the_int8_copy(tmp_path):
    from common.checkpoint import missing_checkpoint_message
    write_json(tmp_path / "metrics.json", {"command": "python hw3/train.py", "wall_seconds": 600})
    message = missing_checkpoint_message(tmp_path / "model.pt")
    assert message == (f"{tmp_path / 'model.pt'}: no such checkpoint file: it is not in git (too large). "
                       "`python hw3/train.py` makes it, in about 10 min (machine not recorded)")
    (tmp_path / COMPACT_CHECKPOINT).write_bytes(b"")
    assert message + f", or pass --checkpoint {tmp_path / COMPACT_CHECKPOINT}, its int8 copy" == \
        missing_checkpoint_message(tmp_path / "model.pt")
    assert ", or pass" not in missing_checkpoint_message(tmp_path / COMPACT_CHECKPOINT)  # not itself


def test_weights_that_do_not_fit_are_named_in_one_short_line(tmp_path, monkeypatch):
    from common.checkpoint import load_model
    save_checkpoint(tmp_path / "m.pt", kind="toy", model=nn.Linear(3, 2).state_dict(), config={"inputs": 4})
    with pytest.raises(UserError) as err:  # a state dict saved; a Linear(4, 2) built
        load_model(tmp_path / "m.pt", kind="toy", config_type=ToyConfig)
    assert str(err.value).startswith(f"{tmp_path / 'm.pt'}: weights do not fit the model (")
    model = nn.Linear(2, 2)
    monkeypatch.setattr(model, "load_state_dict", lambda state: (_ for _ in ()).throw(
        RuntimeError("size\n\t mismatch " + "x" * 300)))
    with pytest.raises(UserError) as err:
        load_weights(model, {}, "m.pt")
    assert str(err.value) == "m.pt: weights do not fit the model (" + ("size mismatch " + "x" * 300)[:200] + ")"


def test_a_file_that_is_no_zip_archive_is_named_as_no_checkpoint(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "m.pt", kind="toy")
    assert str(err.value) == f"{tmp_path / 'm.pt'}: not a PyTorch checkpoint (a model.pt that a train.py wrote)"


# --- course data files -----------------------------------------------------------------------------
def test_course_splits_load_and_validate(hw0_data_dir):
    splits = load_course_splits(hw0_data_dir / "HW0_data.pt")
    assert splits["train"][0].shape == (200,) and splits["train"][1].shape == (200,)
    assert splits["test"][1] is None and splits["test"][0].dtype == torch.float32


@pytest.mark.parametrize("change, message", [
    (lambda d: [d.pop("y_val"), d.pop("x_test")], r"missing keys y_val, x_test \(found x_train, y_train, x_val, y_test\)"),
    (lambda d: d.update(x_train=torch.zeros(200, 3)), r"x_train has shape \(200, 3\), expected \(N\)"),
    (lambda d: d.update(y_train=torch.zeros(5)), r"y_train has shape \(5,\), expected \(200,\) to match x_train"),
    (lambda d: d.update(x_val=torch.zeros(100, dtype=torch.long)), "x_val should be a float tensor, found Tensor of torch.int64"),
    (lambda d: d.update(y_val=[0.0] * 100), "y_val should be a float tensor, found list"),
    (lambda d: d.update(x_test=torch.tensor(1.0)), "x_test is empty"),
    (lambda d: d.update(x_test=torch.zeros(0)), "x_test is empty"),
    (lambda d: d.update(y_train=torch.full((200,), float("inf"))), r"y_train holds 200 non-finite value\(s\) \(nan or inf\)"),
])
def test_course_splits_reject_wrong_keys_and_shapes(hw0_data_dir, change, message):
    path = hw0_data_dir / "HW0_data.pt"
    data = torch.load(path)
    data["y_test"] = torch.zeros(len(data["x_test"]))
    change(data)
    torch.save(data, path)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: {message}$"):
        load_course_splits(path)


def test_course_splits_check_the_feature_shape_and_keep_one_row_splits(tmp_path):
    data = {f"{v}_{s}": torch.ones(1, 3, 4) if v == "x" else torch.ones(1) for v in "xy" for s in ("train", "val", "test")}
    torch.save(data, tmp_path / "one.pt")
    splits = load_course_splits(tmp_path / "one.pt", feature_shape=(3, 4))
    assert splits["test"][0].shape == (1, 3, 4) and splits["test"][1].tolist() == [1.0]
    with pytest.raises(UserError, match=r"x_train has shape \(1, 3, 4\), expected \(N, 3, 5\)$"):
        load_course_splits(tmp_path / "one.pt", feature_shape=(3, 5))


class NotATensor:
    """An object torch.save pickles but a weights-only load refuses."""


def test_course_splits_reject_non_dict_and_garbage_and_never_unpickle_objects(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "a.pt")
    with pytest.raises(UserError, match=r"a.pt: expected a dict of tensors, found list$"):
        load_course_splits(tmp_path / "a.pt")
    (tmp_path / "b.pt").write_text("not a torch file")
    with pytest.raises(UserError, match=r"b.pt: not a readable torch file \((?!NoneType)\w+\)$"):
        load_course_splits(tmp_path / "b.pt")
    torch.save({"x_train": NotATensor()}, tmp_path / "c.pt")
    with pytest.raises(UserError, match=r"c.pt: not a readable torch file \(UnpicklingError\)$"):
        load_course_splits(tmp_path / "c.pt")


# --- metrics -----------------------------------------------------------------------------------------
def test_accuracy_and_confusion_matrix():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    targets = torch.tensor([0, 0, 1, 1])
    assert accuracy(logits, targets).item() == pytest.approx(0.5)
    per_token = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])  # classes on the last dimension
    assert accuracy(per_token, torch.tensor([[1, 1]])).item() == pytest.approx(0.5)
    cm = confusion_matrix(logits.argmax(1), targets, num_classes=2)
    assert cm.tolist() == [[1, 1], [1, 1]]
    cm = confusion_matrix(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 2, 1, 1]), num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), num_classes=2)


def test_precision_recall_f1_against_hand_computed_values():
    # true 0 predicted 0: 3, true 0 predicted 1: 1, true 1 predicted 0: 2, true 1 predicted 1: 4
    cm = torch.tensor([[3, 1], [2, 4]])
    scores = precision_recall_f1(cm)
    assert scores["precision"].tolist() == pytest.approx([3 / 5, 4 / 5])
    assert scores["recall"].tolist() == pytest.approx([3 / 4, 4 / 6])
    f1_pos = 2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    assert scores["f1"][1].item() == pytest.approx(f1_pos)
    report = classification_report(cm, ["neg", "pos"])
    assert report["accuracy"] == pytest.approx(0.7)
    assert report["per_class"]["pos"]["support"] == 6 and report["per_class"]["neg"]["support"] == 4
    f1_neg = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    assert report["per_class"]["neg"]["f1"] == pytest.approx(f1_neg)
    assert report["macro_f1"] == pytest.approx((f1_neg + f1_pos) / 2)  # every class in the mean, class 0 too
    three = classification_report(torch.tensor([[5, 0, 0], [2, 1, 0], [0, 3, 4]]), ["a", "b", "c"])
    f1s = [2 * 5 / (2 * 5 + 2), 2 * 1 / (2 * 1 + 2 + 3), 2 * 4 / (2 * 4 + 3)]  # 2 tp / (2 tp + fp + fn)
    assert three["macro_f1"] == pytest.approx(sum(f1s) / 3)


def test_warmup_then_linear_decay():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_linear_decay(optimizer, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(1 / 8) and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_without_warm_up_the_lr_decays_from_the_first_step_and_a_one_step_decay_starts_at_the_peak():
    def lrs(total: int, **warmup: int) -> list[float]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler, seen = warmup_linear_decay(optimizer, total, **warmup), []
        for _ in range(total):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen
    assert lrs(4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert lrs(3, warmup_steps=2) == pytest.approx([0.5, 1.0, 1.0])  # the last step alone decays: full lr


# --- plots ----------------------------------------------------------------------------------------
def test_plots_are_written_as_png(tmp_path):
    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
               "train_acc": [0.5, 0.7], "val_acc": [0.4, 0.6]}
    plot_member_histories([history, history], ["loss", "acc"], tmp_path / "curves.png")
    plot_confusion_matrix(torch.tensor([[5, 1], [2, 7]]).numpy(), ["a", "b"], tmp_path / "cm.png")
    for name in ("curves.png", "cm.png"):
        assert_drawn(tmp_path / name)


def test_member_histories_draw_each_metric_train_solid_and_validation_dashed(tmp_path, monkeypatch):
    import common.plotting
    figures = capture_figures(monkeypatch, common.plotting)
    first = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "train_acc": [0.5, 0.7], "val_acc": [0.4, 0.6]}
    second = {"epoch": [1, 2], "train_loss": [0.9, 0.4], "train_acc": [0.6, 0.8]}  # no validation
    plot_member_histories([first, second], ["loss", "acc"], tmp_path / "curves.png", title="two members")
    fig = figures["curves.png"]
    assert fig._suptitle.get_text() == "two members" and len(fig.axes) == 2
    assert tuple(fig.get_size_inches()) == (11.0, 4.2)  # two panels of 5.5 x 4.2
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.lines] == ["member 1 train", "member 1 val", "member 2 train"]
    assert [line.get_linestyle() for line in loss.lines] == ["-", "--", "-"]
    assert all(line.get_marker() == "." and list(line.get_xdata()) == [1, 2] for line in loss.lines)
    assert [list(line.get_ydata()) for line in acc.lines] == [[0.5, 0.7], [0.4, 0.6], [0.6, 0.8]]
    assert (loss.get_xlabel(), loss.get_ylabel(), acc.get_ylabel()) == ("epoch", "loss", "acc")
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["member 1 train", "member 1 val", "member 2 train"]
    assert loss.xaxis.get_major_locator()._integer and loss.get_yscale() == "linear"
    assert all(line.get_visible() and line.get_alpha() == 0.3 for line in loss.get_xgridlines())
    plot_member_histories([first], ["loss"], tmp_path / "one.png")
    assert [line.get_label() for line in figures["one.png"].axes[0].lines] == ["train", "val"]  # one run: no member
    assert figures["one.png"]._suptitle is None


def test_curves_can_use_a_log_scale_and_panels_come_as_a_grid():
    fig, axes = new_figure(1, 3, panel_size=(2.0, 3.0))
    assert axes.shape == (3, 1) and tuple(fig.get_size_inches()) == (2.0, 9.0)
    plot_curves(axes[0, 0], {"epoch": [1, 2], "train_loss": [1.0, 0.1]}, "loss", log=True, label="run a ")
    assert axes[0, 0].get_yscale() == "log" and axes[0, 0].lines[0].get_label() == "run a train"
    plot_curves(axes[1, 0], {"epoch": [1, 2], "train_loss": [1.0, 0.1]}, "loss")
    assert axes[1, 0].lines[0].get_label() == "train"
    fig, axes = new_figure()
    assert axes.shape == (1, 1) and tuple(fig.get_size_inches()) == (5.5, 4.2)


def test_a_saved_figure_is_a_150_dpi_png_laid_out_tightly_and_closed(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.image import imread
    fig, axes = new_figure(panel_size=(2.0, 1.0))
    axes[0, 0].plot([0, 1], [0, 1])
    left = fig.subplotpars.left
    later = new_figure()[0]  # the current figure now: saving `fig` must close `fig`, not this one
    save_figure(fig, tmp_path / "tight.png")
    assert imread(tmp_path / "tight.png").shape[:2] == (150, 300) and not plt.fignum_exists(fig.number)
    assert plt.fignum_exists(later.number)
    plt.close(later)
    assert fig.subplotpars.left != left  # tight_layout moved the panel's edge
    constrained = plt.figure(figsize=(2.0, 1.0), layout="constrained")
    save_figure(constrained, tmp_path / "constrained.png")
    assert type(constrained.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"  # kept, not made tight


def test_scatter_fit_thins_the_points_and_draws_each_curve_sorted():
    fig, axes = new_figure()
    ax = axes[0, 0]
    x = np.arange(4000.0)
    plot_scatter_fit(ax, x, 2 * x, {"fit": (np.array([[3.0], [1.0], [2.0]]), np.array([30.0, 10.0, 20.0]))},
                     points_label="points")
    points = ax.collections[0]
    assert points.get_offsets().shape == (2000, 2) and points.get_offsets()[1].tolist() == [2.0, 4.0]  # 2,000 at most
    assert points.get_sizes().tolist() == [6] and points.get_alpha() == 0.35 and points.get_label() == "points"
    assert points.get_facecolor()[0][:3].tolist() == pytest.approx([0.5019, 0.5019, 0.5019], abs=1e-3)  # gray
    (line,) = ax.lines
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0] and list(line.get_ydata()) == [10.0, 20.0, 30.0]
    assert line.get_linewidth() == 2 and line.get_label() == "fit"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y") and ax.get_legend() is not None
    assert all(line.get_alpha() == 0.3 for line in ax.get_ygridlines())
    few = new_figure()[1][0, 0]
    plot_scatter_fit(few, np.arange(10.0), np.arange(10.0), {}, max_points=3)
    assert few.collections[0].get_offsets().shape == (4, 2) and few.collections[0].get_label() == "data"
    plot_scatter_fit(few, np.arange(3.0), np.arange(3.0), {})
    assert few.collections[1].get_offsets().shape == (3, 2)  # fewer points than the cap: all of them


def test_confusion_matrix_shows_row_rates_as_percentages(tmp_path, monkeypatch):
    import common.plotting
    figures = capture_figures(monkeypatch, common.plotting)
    plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["a", "b"], tmp_path / "cm.png", title="test split")
    fig = figures["cm.png"]
    ax = fig.axes[0]
    assert tuple(fig.get_size_inches()) == (5.0, 4.0)  # at least 4 inches square, plus the colour bar
    image = ax.images[0]
    assert np.asarray(image.get_array()).ravel().tolist() == pytest.approx([5 / 6, 1 / 6, 2 / 9, 7 / 9])
    assert image.get_clim() == (0, 1) and image.get_cmap().name == "Blues"
    assert [(t.get_text(), t.get_color()) for t in ax.texts] == [("83", "white"), ("17", "black"),
                                                                  ("22", "black"), ("78", "white")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"] and ax.get_xticklabels()[0].get_rotation() == 45
    assert ax.get_xticklabels()[0].get_horizontalalignment() == "right"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "test split")
    assert fig.axes[1].get_ylabel() == "fraction of true class"
    assert all(t.get_fontsize() == 8 and (t.get_ha(), t.get_va()) == ("center", "center") for t in ax.texts)
    colour_bar = image.colorbar.ax
    assert colour_bar is fig.axes[1]
    fig.canvas.draw()
    matrix, bar = ax.get_window_extent(), colour_bar.get_window_extent()
    assert bar.height / matrix.height == pytest.approx(1.0, abs=0.005)  # as tall as the matrix (fraction 0.046)
    assert 0 < bar.x0 - matrix.x1 < 18  # close beside it (pad 0.04)
    panel, key = ax.get_position(original=True), colour_bar.get_position(original=True)
    assert key.width / panel.width == pytest.approx(0.046 / (1 - 0.046 - 0.04))  # the bar's 4.6% of the panel
    assert (key.x0 - panel.x1) / panel.width == pytest.approx(0.04 / (1 - 0.046 - 0.04))  # 4% between them
    plot_confusion_matrix(np.array([[1, 0], [1, 1]]), ["a", "b"], tmp_path / "small.png")
    assert [(t.get_text(), t.get_color()) for t in figures["small.png"].axes[0].texts] == [
        ("100", "white"), ("0", "black"), ("50", "black"), ("50", "black")]  # half is not more than half
    plot_confusion_matrix(np.zeros((10, 10)), [str(i) for i in range(10)], tmp_path / "ten.png")
    assert tuple(figures["ten.png"].get_size_inches()) == (9.0, 8.0) and figures["ten.png"].axes[0].get_title() == ""
    assert figures["ten.png"].axes[0].images[0].get_array().max() == 0  # an empty row is 0, not nan


class FixedLogits(nn.Module):
    """A classifier that looks up preset logits by sample index."""

    def __init__(self, logits: list[list[float]]):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, index):
        return self.logits[index]


def test_validation_record_reports_the_vote_of_an_ensemble_and_each_members_last_epoch(capsys, monkeypatch):
    loader = [(torch.arange(3), torch.tensor([0, 1, 1]))]
    a, b = FixedLogits([[3, 0], [0, 1], [1, 0]]), FixedLogits([[0, 1], [0, 1], [0, 3]])  # 2 of 3 right each
    histories = [{"val_acc": [0.9, 0.1, 2 / 3]}, {"val_acc": [0.8, 0.2, 2 / 3]}]  # the last epoch, not the best
    record = validation_record(Ensemble([a, b]), histories, loader, device=torch.device("cpu"), precision="fp32")
    assert capsys.readouterr().out == "ensemble of 2: validation accuracy 100.00%\n"
    assert record == {"final_val_acc": 1.0, "member_val_acc": [2 / 3, 2 / 3]}  # averaged probabilities fix all 3
    alone = validation_record(a, histories[:1], loader, device=torch.device("cpu"), precision="fp32")
    assert alone == {"final_val_acc": 2 / 3, "member_val_acc": [2 / 3]}
    assert validation_record(a, histories[:1], None, device=torch.device("cpu"), precision="fp32") == {
        "final_val_acc": None, "member_val_acc": None}
    import common.training
    calls = []
    monkeypatch.setattr(common.training, "evaluate", lambda *args, **kwargs: calls.append(kwargs) or {"acc": 0.5})
    record = validation_record(Ensemble([a, b]), histories, loader, device=torch.device("cpu"), precision="bf16")
    assert calls[0]["precision"] == "bf16"  # the vote is evaluated in the run's precision
    assert record["final_val_acc"] == 0.5 and capsys.readouterr().out.endswith("validation accuracy 50.00%\n")


def test_a_script_started_as_a_user_would_fails_in_one_line_without_a_traceback(tmp_path):
    """The rest of the suite runs scripts in-process; this one starts Python as a user does."""
    result = run_subprocess("hw0/q3.py", "--data-dir", tmp_path, "--out-dir", tmp_path / "out")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "HW0_data.pt" in result.stderr


def test_a_compact_checkpoint_loads_as_the_full_one_within_its_int8_rounding(tmp_path):
    model = nn.Sequential(nn.Embedding(500, 32), nn.Linear(32, 3), nn.LayerNorm(3))
    with torch.no_grad():
        model[0].weight[7] *= 40  # one large row: its scale must not coarsen the others
    save_checkpoint(tmp_path / "full.pt", kind="toy", model=model)
    save_checkpoint(tmp_path / "small.pt", kind="toy", model=model, compact=True)
    loaded = load_checkpoint(tmp_path / "small.pt", kind="toy")["model"]
    for key, tensor in model.state_dict().items():
        assert loaded[key].dtype == tensor.dtype and loaded[key].shape == tensor.shape
        if tensor.dim() < 2:
            assert torch.equal(loaded[key], tensor)  # biases and norms are kept exactly
        else:
            step = tensor.abs().amax(dim=1, keepdim=True) / 127  # each row to half its own int8 step
            assert ((loaded[key] - tensor).abs() <= step / 2 + 1e-7).all(), key
    assert (tmp_path / "small.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    payload = torch.load(tmp_path / "small.pt", weights_only=True)
    payload["model"]["0.weight"]["dtype"] = "int64"  # a compact weight that is not a float type
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="compact weights of 0.weight are malformed"):
        load_checkpoint(tmp_path / "bad.pt", kind="toy")


def test_a_missing_checkpoint_says_which_command_makes_it_and_how_long_it_takes(tmp_path):
    with pytest.raises(UserError) as missing:
        load_checkpoint(tmp_path / "model.pt", kind="toy")
    assert str(missing.value) == (f"{tmp_path / 'model.pt'}: no such checkpoint file; train one first (the "
                                  "homework's train.py writes model.pt into its --out-dir)")
    write_json(tmp_path / "metrics.json", {"command": "python hw3/train.py --model airbench",
                                           "wall_seconds": 1536.7, "machine_class": "AMD EPYC, 2 threads"})
    with pytest.raises(UserError, match=r"not in git \(too large\)\. `python hw3/train.py --model airbench` "
                                        r"makes it, in about 26 min \(AMD EPYC, 2 threads\)$"):
        load_checkpoint(tmp_path / "model.pt", kind="toy")


def test_recorded_commands_write_paths_inside_the_repository_relative_to_it(monkeypatch):
    from common.distributed import launch_command
    monkeypatch.setattr("sys.argv", ["train.py", "--out-dir", str(ROOT / "runs" / "a b"), "--data-dir", "/elsewhere"])
    assert launch_command("hw3/train.py") == "python hw3/train.py --out-dir 'runs/a b' --data-dir /elsewhere"


# --- tensor batches and ensembles ------------------------------------------------------------------
def test_tensor_batches_in_order_are_consecutive_slices_with_a_short_last_one():
    x, y = torch.arange(10).float().unsqueeze(1), torch.arange(10) * 2
    batches = TensorBatches(x, y, batch_size=4)
    assert len(batches) == 3 and len(TensorBatches(x, y, batch_size=5)) == 2
    got = list(batches)
    assert [len(b[0]) for b in got] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in got]), x) and torch.equal(torch.cat([b[1] for b in got]), y)
    assert list(batches)[2][1].tolist() == [16, 18]  # a second pass gives the same batches


def test_shuffled_tensor_batches_keep_pairs_cover_every_row_and_repeat_with_the_seed():
    x, y = torch.arange(11).float(), torch.arange(11) + 100
    batches = TensorBatches(x, y, batch_size=3, generator=torch.Generator().manual_seed(0))
    first, second = list(batches), list(batches)
    assert len(batches) == 4 and [len(b[0]) for b in first] == [3, 3, 3, 2]
    for bx, by in first + second:
        assert torch.equal(by, bx.long() + 100)  # each target stays with its input
    assert sorted(torch.cat([b[0] for b in first]).tolist()) == list(range(11))
    assert torch.cat([b[0] for b in first]).tolist() != list(range(11))  # shuffled
    assert torch.cat([b[0] for b in first]).tolist() != torch.cat([b[0] for b in second]).tolist()  # per pass
    again = list(TensorBatches(x, y, batch_size=3, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))


def test_tensor_batches_refuse_inputs_and_targets_of_different_lengths():
    with pytest.raises(ValueError, match="5 inputs but 4 targets"):
        TensorBatches(torch.zeros(5), torch.zeros(4), batch_size=2)


def test_an_ensemble_votes_with_its_members_and_one_model_stays_itself():
    a, b = FixedLogits([[3.0, 0.0]]), FixedLogits([[0.0, 1.0]])
    both = ensemble([a, b])
    assert isinstance(both, Ensemble) and members_of(both) == [a, b]
    assert ensemble([a]) is a and members_of(a) == [a]
    index = torch.tensor([0])
    expected = (a(index).softmax(-1) + b(index).softmax(-1)) / 2
    assert torch.allclose(both(index).exp(), expected)
    tokens = [torch.randn(2, 5, 3), torch.randn(2, 5, 3)]  # classes on the last dimension, whatever comes before
    assert torch.allclose(vote(tokens).exp(), (tokens[0].softmax(-1) + tokens[1].softmax(-1)) / 2)


def test_joined_histories_number_the_members_epochs_on_and_throughput_averages_every_epoch():
    first = {"epoch": [1, 2], "train_loss": [0.9, 0.5], "samples_per_second": [10.0, 20.0]}
    second = {"epoch": [1], "train_loss": [0.7], "samples_per_second": [60.0]}
    assert join_histories([first, second]) == {
        "epoch": [1, 2, 3], "train_loss": [0.9, 0.5, 0.7], "samples_per_second": [10.0, 20.0, 60.0]}
    assert mean_throughput([first, second]) == 30.0  # the mean over epochs, not of the members' means (35)


def test_a_training_record_holds_the_joined_history_the_weights_and_each_members_curves(tmp_path, monkeypatch):
    import common.plotting
    figures = capture_figures(monkeypatch, common.plotting)
    model = nn.Linear(2, 2)
    histories = [{"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.8],
                  "train_acc": [0.5, 0.7], "val_acc": [0.4, 0.6]},
                 {"epoch": [1, 2], "train_loss": [0.9, 0.4], "val_loss": [1.0, 0.7],
                  "train_acc": [0.6, 0.8], "val_acc": [0.5, 0.65]}]
    write_training_record(tmp_path, model, histories, kind="toy", config={"width": 2}, plot_name="curves.png",
                          title="two members")
    assert json.loads((tmp_path / "history.json").read_text()) == join_histories(histories)
    saved = load_checkpoint(tmp_path / "model.pt", kind="toy")
    assert saved["config"] == {"width": 2} and torch.equal(saved["model"]["weight"], model.weight)
    assert not (tmp_path / COMPACT_CHECKPOINT).exists()
    fig = figures["curves.png"]
    assert fig._suptitle.get_text() == "two members"
    loss_axes, acc_axes = fig.axes[:2]
    assert [line.get_label() for line in loss_axes.lines] == ["member 1 train", "member 1 val",
                                                               "member 2 train", "member 2 val"]
    assert list(acc_axes.lines[3].get_ydata()) == [0.5, 0.65]
    assert_drawn(tmp_path / "curves.png")
    write_training_record(tmp_path, model, histories[:1], kind="toy", config={"depth": 1}, plot_name="one.png", title="",
                          compact=True)
    compact = load_checkpoint(tmp_path / COMPACT_CHECKPOINT, kind="toy")
    assert compact.get("compact") == "int8" and compact["config"] == {"depth": 1}
    assert [line.get_label() for line in figures["one.png"].axes[0].lines] == ["train", "val"]


def test_member_checkpointing_names_each_members_state_and_resumes_only_members_that_saved(tmp_path):
    alone = member_checkpointing(tmp_path, 0, 1, "toy", {"w": 1}, {"lr": 0.1}, resume=True)
    assert alone == Checkpointing(tmp_path / "train_state" / "last.pt", "toy", {"w": 1}, {"lr": 0.1}, resume=True)
    second = member_checkpointing(tmp_path, 1, 3, "toy", {}, {}, resume=True)
    assert second.path == tmp_path / "train_state" / "member2.pt" and not second.resume  # never saved: afresh
    second.path.parent.mkdir()
    second.path.write_bytes(b"")
    assert member_checkpointing(tmp_path, 1, 3, "toy", {}, {}, resume=True).resume
    assert not member_checkpointing(tmp_path, 1, 3, "toy", {}, {}, resume=False).resume
    assert member_checkpointing(tmp_path, 0, 3, "toy", {}, {}, resume=True).resume  # member 1 must have one


def test_a_member_is_labelled_by_its_place_among_several_and_not_at_all_alone():
    assert member_label(1, 3) == "member 2/3" and member_label(0, 2) == "member 1/2" and member_label(0, 1) == ""
