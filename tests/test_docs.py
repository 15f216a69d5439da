"""The READMEs against the files they cite: every figure in a results table comes from a committed file,
every documented command is safe to type, and the options the README promises are the scripts' own."""

import argparse
import importlib
import json
import re
import subprocess
import sys

import pytest
import torch

from common.cli import HelpWithDefaults
from tests.conftest import ROOT, run_main, run_script

READMES = ["README.md", "RUNNING.md",
           "hw0/README.md", "hw1/README.md", "hw2/README.md", "hw3/README.md", "hw4/README.md",
           "benchmarks/README.md"]


def load(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def text_field(text: str, pattern: str) -> str:
    """The first group of `pattern` in a results text file's content."""
    return re.search(pattern, text, re.MULTILINE).group(1)


def versions(path: str) -> list[str]:
    """A results file as it is in the tree and as it was committed (the README quotes the committed run;
    a re-run on another machine or thread count may change the tree's, which the README explains)."""
    committed = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    return [(ROOT / path).read_text()] + ([committed.stdout] if committed.returncode == 0 else [])


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# (README, the start of a table row, the file its figures come from, the figures as the row shows them)
FIGURES = [
    ("README.md", "| hw0 q2 |", "hw0/results/q2_params.txt", lambda text: [
        "α " + text_field(text, r"^alpha\s+\S+\s+(\S+)"), "β " + text_field(text, r"^beta\s+\S+\s+(\S+)")]),
    ("README.md", "| hw0 q3 |", "hw0/results/q3_metrics.json", lambda m: [
        f"{m['val_mse_mean']:.3f} mean", f"best {m['best_val_mse']:.3f}", f"{m['wall_seconds']:.0f} s"]),
    ("README.md", "| hw1 q2 |", "hw1/results/q2_metrics.json", lambda m: [
        f"{m['val_mse']['hand_written']:.4f}", f"{m['wall_seconds']:.0f} s"]),
    ("README.md", "| hw2 |", "hw2/results/check.txt", lambda text: [
        text_field(text, r"largest difference from PyTorch: (\S+) ")]),
    ("README.md", "| hw3 | the seed's CNN", "hw3/results/metrics.json", lambda m: [
        pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("README.md", "| hw3 | airbench", "hw3/results/airbench/metrics.json", lambda m: [
        pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("README.md", "| hw4 |", "hw4/results/metrics.json", lambda m: [
        pct(m["accuracy"]), f"F1 {m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"])]),
    ("README.md", "| hw4 | n-gram", "hw4/results/baseline/metrics.json", lambda m: [
        pct(m["accuracy"]), f"F1 {m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"])]),
    ("README.md", "| `python hw4/baseline.py` (", "hw4/results/baseline/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
        minutes(m["wall_seconds"])]),
    ("hw4/README.md", "| baseline, `python hw4/baseline.py` |", "hw4/results/baseline/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
        minutes(m["wall_seconds"])]),
    ("hw4/README.md", "| the same, `--out-dir runs/baseline_avx2` |", "hw4/results/selection/baseline_avx2.json",
     lambda m: [pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"]), f"{m['peak_rss_gb']:.1f} GB"]),
    ("hw4/README.md", "| larger vocabulary, `--min-count 2 --max-vocab 52000` |",
     "hw4/results/selection/baseline_vocab52k.json", lambda m: [
         pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"]),
         f"{m['peak_rss_gb']:.1f} GB"]),
    ("hw4/README.md", "| `bag_late_fusion` |", "hw4/results/selection/bag_late_fusion.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"])]),
    *[("hw4/README.md", f"| `{run}` |", f"hw4/results/selection/{run}.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"]),
        f"{m['peak_rss_gb']:.1f} GB"]) for run in ("bag_residual_m1", "bag_residual_m1_e1")],
    ("hw4/README.md", "| 1.0 |", "hw4/results/baseline/metrics.json", lambda m: [
        pct(g["val_acc"]) for g in m["grid"] if g["alpha"] == 1.0]),
    *[("README.md", start, source, lambda m, quoted=quoted: [quoted.format(pct(m["accuracy"]), m["precision"])])
      for start, source, quoted in (  # the paragraph on eval's fp32 default: each figure with its words
          ("depend on the CPU:", "hw3/results/eval-data/metrics.json", "hw3/eval.py` gives {0}"),
          ("depend on the CPU:", "hw3/results/selection/eval_fp32_avx2_capped.json", "gives {0}"),
          ("and `python hw4/eval.py` gives", "hw4/results/eval-data/metrics.json", "gives {0}"),
          ("`--precision auto`, hw3's eval gave", "hw3/results/selection/eval_fp32_avx2.json", "gave {0} (in {1})"),
          ("`--precision auto`, hw3's eval gave", "hw3/results/selection/cnn_adamw_e12.json", "committed {0} in {1}"),
          ("test figure is in its precision:", "hw3/results/metrics.json", "scores {0} in {1}"),
          ("test figure is in its precision:", "hw3/results/eval-data/metrics.json", "and {0} in {1}"))],
    ("hw2/README.md", "accuracies of", "hw2/results/selection/bn_effect_avx2.json", lambda m: [
        ", ".join(f"{100 * m['final'][k]['val_acc']:.2f} %" for k in ("no BN", "hand-written BN")) + " and "
        + f"{100 * m['final']['PyTorch BN']['val_acc']:.2f} %"]),
    ("hw2/README.md", "The hand-written layer takes", "hw2/results/check.txt", lambda text: [
        text_field(text, r"fastest hand-written .* ratio (\S+);") + " times as long",
        text_field(text, r"fastest hand-written (\S+ ms)") + " against "
        + text_field(text, r", PyTorch (\S+ ms), ratio")]),
    ("README.md", "| hw3 | the seed's CNN", "hw3/results/selection/cnn_default_avx2_capped.json", lambda m: [
        f"{pct(m['accuracy'])} in {minutes(m['wall_seconds'])} in {m['precision']}"]),
    ("README.md", "| hw4 | region CNNs beside an n-gram bag", "hw4/results/selection/default_avx512.json", lambda m: [
        f"{pct(m['accuracy'])} in {minutes(m['wall_seconds'])} on AVX-512 BF16"]),
    ("README.md", "| `python hw3/train.py` |", "hw3/results/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("README.md", "| `python hw3/train.py --model airbench --out-dir hw3/results/airbench` |",
     "hw3/results/airbench/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("README.md", "| `python hw4/train.py` (AVX2 only) |", "hw4/results/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
        minutes(m["wall_seconds"])]),
    ("README.md", "| `python hw4/eval.py` (", "hw4/results/eval-data/metrics.json", lambda m: [
        pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}"]),
    ("README.md", "| `python hw4/train.py --encoder transformer --bag-order 0 --members 3 --out-dir runs/transformer_alone` (",
     "hw4/results/selection/transformer_alone.json",
     lambda m: [pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
                minutes(m["wall_seconds"])]),
    ("hw0/README.md", "| q3, batch 128", "hw0/results/q3_metrics.json", lambda m: [
        ", ".join(f"{v:.3f}" for v in m["val_mse_by_seed"].values()),
        f"(mean {m['val_mse_mean']:.3f} ± {m['val_mse_std']:.3f})"]),
    ("benchmarks/README.md", "| `python hw3/train.py` |", "hw3/results/metrics.json", lambda m: [
        minutes(m["wall_seconds"])]),
    *[row for label, profile in (("", "profile_hw3_avx2"), (" (bf16)", "profile_hw3_muon_avx512")) for row in (
        ("benchmarks/README.md", f"| sum{label} |", f"benchmarks/results/{profile}.json", lambda m: [
            f"{m['total_seconds']:.1f} ({minutes(m['total_seconds'])})"]),
        ("benchmarks/README.md", f"| backward{label} |", f"benchmarks/results/{profile}.json", lambda m: [
            f"{m['seconds']['backward']:.1f}", f"{100 * m['seconds']['backward'] / m['total_seconds']:.1f}%"]))],
    ("benchmarks/README.md", "**The 7-epoch Muon default**", "benchmarks/results/profile_hw3_muon_avx2.json", lambda m: [
        f"{m['total_seconds']:.1f} s"]),
    ("benchmarks/README.md", "| `python hw4/train.py` |", "hw4/results/metrics.json", lambda m: [
        minutes(m["wall_seconds"])]),
    ("benchmarks/README.md", "| `python hw4/train.py --encoder transformer --out-dir runs/transformers_bag` |",
     "hw4/results/selection/transformers_bag.json", lambda m: [minutes(m["wall_seconds"])]),
    ("hw1/README.md", "| **0.01** (chosen) |", "hw1/results/q2_metrics.json", lambda m: [
        f"{row['train_mse']:.4f} | **{row['val_mse']:.4f}**" for row in m["sweep"] if row["lr"] == 0.01]),
    ("hw1/README.md", "| hand-written MLP and Adam |", "hw1/results/q2_metrics.json", lambda m: [
        f"{m['val_mse']['hand_written']:.5f}"]),
    ("hw1/README.md", "| `torch.nn` twin", "hw1/results/q2_metrics.json", lambda m: [
        f"{m['val_mse']['torch_nn']:.5f}"]),
    ("hw2/README.md", "| hand-written BN |", "hw2/results/bn_effect.json", lambda m: [
        f"{100 * m['final']['hand-written BN']['val_acc']:.2f} %", f"{m['train_seconds']['hand-written BN']:.1f} s"]),
    ("hw3/README.md", "| cnn default |", "hw3/results/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("hw3/README.md", "| same, capped at AVX2 |", "hw3/results/selection/cnn_default_avx2_capped.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("hw3/README.md", "| 7-epoch Muon default before |", "hw3/results/selection/cnn_e7_muon.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    ("hw3/README.md", "| airbench default |", "hw3/results/airbench/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])]),
    *[("hw3/README.md", f"| `{run}` |", f"hw3/results/selection/{run}.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), minutes(m["wall_seconds"])])
      for run in ("cnn_e6", "cnn_e6_alt", "cnn_e6_muon", "cnn_e6_muon_lr2", "cnn_e6_muon_lr05",
                  "cnn_e6_muon_seed1", "cnn_e5_muon_tta2", "cnn_e6_muon_tta2", "cnn_e7_muon", "cnn_e7_muon_seed1",
                  "cnn_e7_muon_avx512", "cnn_e7_muon_avx512_seed1", "cnn_e7_muon_avx512_rerun",
                  "cnn_e6_bs128_avx512", "cnn_e6_bs128_avx512_seed1", "cnn_e6_bs128_lr07_avx512",
                  "cnn_e6_bs128_lr07_avx512_seed1")],
    ("hw4/README.md", "| **default**, `python hw4/train.py` |", "hw4/results/metrics.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
        minutes(m["wall_seconds"])]),
    ("hw4/README.md", "| the same, int8 copy, `python hw4/eval.py` |", "hw4/results/eval-data/metrics.json",
     lambda m: [pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}"]),
    ("hw4/README.md", "| Transformer alone, `--encoder transformer --bag-order 0 --members 3` |",
     "hw4/results/selection/transformer_alone.json",
     lambda m: [pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
                minutes(m["wall_seconds"])]),
    *[("hw4/README.md", row, f"hw4/results/selection/{run}.json", lambda m: [
        pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}", minutes(m["wall_seconds"])])
      for row, run in (("| default, `--seed 1 --out-dir runs/cnn_m3_e8_seed1` |", "cnn_m3_e8_seed1"),
                       ("| default in bf16, `--out-dir runs/hw4_default_avx512` |", "default_avx512"),
                       ("| `default_cnn_seed1` |", "default_cnn_seed1"), ("| `default_e8_seed1` |", "default_e8_seed1"),
                       ("| Transformers beside the bag, `--encoder transformer` |", "transformers_bag"),
                       ("| `transformers_bag` |", "transformers_bag"), ("| `default_seed1` |", "default_seed1"),
                       ("| `cnn_m1` |", "cnn_m1"), ("| `cnn_m1_e8` |", "cnn_m1_e8"), ("| `default_e4` |", "default_e4"),
                       ("| `cnn_m1_e12` |", "cnn_m1_e12"), ("| `cnn_m1_e8_v30k` |", "cnn_m1_e8_v30k"),
                       ("| `cnn_m1_seq2` |", "cnn_m1_seq2"), ("| `cnn_m3_e8` |", "cnn_m3_e8"),
                       ("| `cnn_m3_e8_seed1` |", "cnn_m3_e8_seed1"), ("| `default_e8` |", "default_e8"),
                       ("| `cnn_m1_e8_ls01` |", "cnn_m1_e8_ls01"))],
    ("hw4/README.md", "| default | three region CNNs, 8 epochs |", "hw4/results/metrics.json", lambda m: [
        pct(m["encoders_val_acc"]), pct(m["final_val_acc"]), pct(m["accuracy"]), f"{m['per_class']['pos']['f1']:.4f}",
        minutes(m["wall_seconds"])]),
    ("hw4/README.md", "| same, `--seed 1 --out-dir runs/seed1` |", "hw4/results/selection/seed1.json", lambda m: [
        pct(m["ensemble_val_acc"]), pct(m["test"]["accuracy"]), f"{m['test']['f1']:.4f}"]),
]


def table_row(readme: str, start: str) -> str:
    """The first table row of `readme` that starts with `start` (the results tables come first)."""
    rows = [line for line in (ROOT / readme).read_text().splitlines() if line.startswith(start)]
    assert rows, f"{readme}: no table row starts with {start!r}"
    return rows[0]


@pytest.mark.parametrize("readme, start, source, figures", FIGURES, ids=[f"{r}:{s}" for r, s, _, _ in FIGURES])
def test_each_results_figure_is_the_one_in_its_file(readme, start, source, figures):
    row = table_row(readme, start)
    missing = [[figure for figure in figures(json.loads(text) if source.endswith(".json") else text)
                if figure not in row] for text in versions(source)]
    assert [] in missing, f"{readme}: the row {start!r} should show {missing[0]} (from {source})"


def test_hw2_readme_quotes_check_txt_whole():
    readme = (ROOT / "hw2/README.md").read_text()
    quoted = readme.split("From `hw2/results/check.txt`:\n\n```\n", 1)[1].split("```", 1)[0]
    assert quoted in versions("hw2/results/check.txt")


def fenced_commands() -> list[tuple[str, str]]:
    """(README, command) for every line of a bash block and every backticked command in the READMEs."""
    found = []
    for readme in READMES:
        text = (ROOT / readme).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
            found += [(readme, line.split("  #")[0].strip()) for line in block.splitlines() if line.strip()]
        found += [(readme, cmd) for cmd in re.findall(r"`((?:python|torchrun) [^`]+)`", text)]
    return found


def test_every_file_a_documented_command_reads_is_in_the_repository():
    for readme, command in fenced_commands():
        words = command.split()
        for i, word in enumerate(words[:-1]):
            if word in ("--file", "--checkpoint") and not words[i + 1].startswith("runs/"):  # runs/: made just before
                assert (ROOT / words[i + 1]).exists(), f"{readme}: `{command}` reads {words[i + 1]}, which is not there"


def test_readmes_name_no_development_only_paths():
    for readme in READMES:
        assert "shared/data" not in (ROOT / readme).read_text(), readme


TRAINING = re.compile(r"\bhw\d/(train|q\d|check)\.py\b")
HARMLESS = {"--quiet", "--resume", "--help", "--device", "cpu", "cuda", "auto"}


def test_every_documented_training_command_reproduces_its_files_or_has_its_own_out_dir():
    """A command that changes a default must not write over the committed results of another."""
    for readme, command in fenced_commands():
        if not TRAINING.search(command) or "--out-dir" in command or "--help" in command.split():
            continue
        options = set(command.split()[command.split().index(TRAINING.search(command).group(0)) + 1:])
        assert options <= HARMLESS, f"{readme}: `{command}` writes into hwN/results/ with non-default options"


def committed(pattern: str) -> list[str]:
    return subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.script
def test_data_and_the_environment_stay_out_of_git_even_as_symlinks():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "data", ".venv", "data/x.pt", ".venv/bin/python"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == ["data", ".venv", "data/x.pt", ".venv/bin/python"]  # "data" alone is how git sees a symlink


def test_benchmarks_write_into_runs_unless_told_otherwise():
    """Timings never repeat to the byte: a benchmark's default output must not be a committed record."""
    for script in ("benchmarks/gpu_check.py", "benchmarks/loop_overhead.py", "benchmarks/throughput.py",
                   "benchmarks/profile_hw3.py"):
        source = (ROOT / script).read_text()
        assert "default=Path(\"benchmarks/results" not in source, script
    for readme, command in fenced_commands():
        if command.startswith("python benchmarks/") and "--out" in command.split():
            out = command.split()[command.split().index("--out") + 1]
            assert out.startswith("runs/"), f"{readme}: `{command}` writes over a committed record"


def test_recorded_commands_are_as_a_user_types_them_from_the_root():
    for path in committed("*.json"):
        for command in re.findall(r'"command": "([^"]*)"', (ROOT / path).read_text()):
            assert not re.search(r"(^| |=)/", command), f"{path}: {command!r} has an absolute path"
            assert "shared" not in command, f"{path}: {command!r}"


def test_each_recorded_training_command_trains_what_its_record_says():
    """The command in a committed metrics.json, parsed today, gives the options the record holds (under
    `settings` or beside them, as `members` and `tta`, or in the history's length); options since removed
    must have been off."""
    import importlib
    import shlex
    from common.cli import settings_of
    for path in committed("hw*/results/**metrics.json"):
        record = load(path)
        words = shlex.split(record.get("command", ""))
        words = words[words.index("--nproc_per_node=2") + 1:] if words[:1] == ["torchrun"] else words[1:]
        if "settings" not in record or not words or not words[0].endswith("train.py"):
            continue
        module = importlib.import_module(words[0].removesuffix(".py").replace("/", "."))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", words)
            parsed = settings_of(vars(module.parse_args()))
        recorded = {**{k: record[k] for k in parsed if k in record}, **record["settings"]}
        history = ROOT / path.replace("metrics.json", "history.json")
        if "members" not in recorded and history.is_file():  # older records: one epoch list per member
            recorded["members"] = len(json.loads(history.read_text())["epoch"]) // recorded["epochs"]
        differing = {k: (recorded[k], parsed[k]) for k in parsed if k in recorded and k != "precision"
                     and recorded[k] != parsed[k]}
        assert not differing, f"{path}: `{record['command']}` today trains with (recorded, parsed) {differing}"
        assert all(not v for k, v in recorded.items() if k not in parsed), f"{path}: a removed option was on"


def test_every_results_file_that_reports_a_time_records_the_machine_class():
    for path in committed("hw*/results/**.json"):
        record = load(path)
        if isinstance(record, dict) and "wall_seconds" in record:
            assert record.get("machine_class"), f"{path} reports a time but no machine_class"


SCRIPTS = ["hw0/q2.py", "hw0/q3.py", "hw1/q1.py", "hw1/q2.py", "hw2/check.py", "hw2/train.py", "hw3/train.py",
           "hw3/eval.py", "hw3/predict.py", "hw4/train.py", "hw4/eval.py", "hw4/predict.py", "hw4/baseline.py"]


@pytest.fixture(scope="module")
def options() -> dict[str, dict[str, argparse.Action]]:
    """Each script's options, as its --help formats them."""
    seen: dict[str, dict[str, argparse.Action]] = {}
    original = HelpWithDefaults.add_argument

    def record(self, action):
        for option in action.option_strings:
            seen.setdefault(current, {})[option] = action
        return original(self, action)

    HelpWithDefaults.add_argument = record
    try:
        for current in SCRIPTS:
            result = run_script(current, "--help")
            assert result.returncode == 0, result.stderr
    finally:
        HelpWithDefaults.add_argument = original
    return seen


def test_every_option_has_a_help_text_and_no_absolute_default(options):
    for script, actions in options.items():
        for option, action in actions.items():
            assert action.help, f"{script} {option} has no help text"
            assert not str(action.default).startswith("/"), f"{script} {option} defaults to {action.default}"


def test_every_numeric_option_checks_its_range_and_its_default_lies_in_it(options):
    """Each number an option takes goes through common.cli.number, which refuses words, nan, inf, a
    fraction where a whole number is meant, and values just past either end of the option's range."""
    checked = 0
    for script, actions in options.items():
        for option, action in actions.items():
            if action.choices or action.type is None:  # choices name every value allowed
                continue
            if not hasattr(action.type, "kind"):
                assert action.type not in (int, float), f"{script} {option}: a bare {action.type.__name__}"
                continue
            parse, step = action.type, 1 if action.type.kind is int else 1e-3
            bad = ["x", "nan", "inf"] + (["1.5"] if parse.kind is int else [])
            if parse.low is not None:
                bad.append(str(parse.low if parse.open_low else parse.low - step))
            if parse.high is not None:
                bad.append(str(parse.high if parse.open_high else parse.high + step))
            for value in bad:
                with pytest.raises(argparse.ArgumentTypeError, match=rf"must be .*, got {re.escape(value)}$"):
                    parse(value)
            defaults = action.default if isinstance(action.default, list) else [action.default]
            for default in (d for d in defaults if d is not None):
                assert parse(str(default)) == default, f"{script} {option}: default {default} out of range"
            checked += 1
    assert checked >= 60


@pytest.mark.parametrize("script, args, message", [
    ("hw3/train.py", ["--seed", "-3"], "--seed: must be >= 0"),
    ("hw3/train.py", ["--weight-decay", "-1"], "--weight-decay: must be >= 0"),
    ("hw3/train.py", ["--label-smoothing", "1.5"], "--label-smoothing: must be >= 0 and < 1"),
    ("hw3/train.py", ["--label-smoothing", "-0.1"], "--label-smoothing: must be >= 0 and < 1"),
    ("hw3/train.py", ["--crop-padding", "-1"], "--crop-padding: must be >= 0 and <= 31"),
    ("hw3/train.py", ["--crop-padding", "40"], "--crop-padding: must be >= 0 and <= 31"),
    ("hw3/train.py", ["--epochs", "1.5"], "--epochs: must be a whole number, got 1.5"),
    ("hw4/train.py", ["--label-smoothing", "2"], "--label-smoothing: must be >= 0 and < 1"),
    ("hw4/train.py", ["--dropout", "1.5"], "--dropout: must be >= 0 and < 1"),
    ("hw4/train.py", ["--dropout", "-0.1"], "--dropout: must be >= 0 and < 1"),
    ("hw4/train.py", ["--warmup", "2"], "--warmup: must be >= 0 and < 1"),
    ("hw4/train.py", ["--warmup", "-1"], "--warmup: must be >= 0 and < 1"),
    ("hw4/train.py", ["--encoder", "transformer", "--heads", "3", "--dim", "128"],
     "--dim 128 must be a multiple of --heads 3"),
    ("hw4/train.py", ["--encoder", "transformer", "--dim", "7"], "--dim 7 must be a multiple of --heads 4"),
    ("hw4/train.py", ["--width", "0"], "--width: must be >= 1 and <= 8192"),
    ("hw4/train.py", ["--region", "17"], "--region: must be >= 1 and <= 16"),
    ("hw4/train.py", ["--encoder", "lstm"], "--encoder: invalid choice: 'lstm'"),
    ("hw4/baseline.py", ["--order", "4"], "--order: must be >= 1 and <= 3"),
    ("hw4/baseline.py", ["--max-vocab", "60000"], "--max-vocab: must be >= 3 and <= 52000"),
    ("hw2/train.py", ["--momentum", "1"], "--momentum: must be >= 0 and < 1"),
    ("hw0/q2.py", ["--model-seed", "-1"], "--model-seed: must be >= 0"),
])
def test_a_bad_option_value_is_one_error_line_before_any_work(script, args, message, tmp_path, monkeypatch, capsys):
    main = importlib.import_module(script.removesuffix(".py").replace("/", ".")).main
    status, _, err = run_main(monkeypatch, capsys, main, *args, "--out-dir", tmp_path / "out")
    assert status == 2 and "Traceback" not in err, err
    assert message in err.splitlines()[-1] and "error: " in err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_the_common_options_are_where_the_readme_says(options):
    def having(option: str) -> set[str]:
        return {script for script, actions in options.items() if option in actions}
    every = set(SCRIPTS)
    predicts = {"hw3/predict.py", "hw4/predict.py"}
    assert having("--seed") == having("--quiet") == having("--threads") == every
    assert having("--out-dir") == every - predicts
    assert having("--device") == every - {"hw1/q1.py", "hw2/check.py", "hw4/baseline.py"}
    assert having("--data-dir") == {"hw0/q3.py", "hw1/q2.py", "hw2/train.py", "hw3/train.py", "hw3/eval.py",
                                    "hw4/train.py", "hw4/eval.py", "hw4/baseline.py"}
    assert having("--precision") == {"hw3/train.py", "hw3/eval.py", "hw4/train.py", "hw4/eval.py"}
    assert having("--resume") == {"hw3/train.py", "hw4/train.py"}
    assert having("--force") == {"hw3/train.py", "hw3/eval.py", "hw4/train.py", "hw4/eval.py"}
    assert having("--top") == having("--explain-png") == predicts
    assert having("--checkpoint") == predicts | {"hw3/eval.py", "hw4/eval.py"}


def test_default_paths_are_shown_relative_to_the_repository(options):
    for script in ("hw3/train.py", "hw3/predict.py", "hw4/eval.py"):
        shown = [str(a.default) for a in options[script].values()
                 if a.dest in ("out_dir", "checkpoint") and a.default is not None]
        assert shown and all(path.startswith(script.split("/")[0] + "/results") for path in shown), shown


@pytest.mark.script
def test_default_paths_resolve_against_the_repository_from_any_folder(tmp_path, monkeypatch):
    from torchvision.io import encode_png
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grey.png").write_bytes(encode_png(torch.full((3, 32, 32), 128, dtype=torch.uint8)).numpy().tobytes())
    result = run_script("hw3/predict.py", "grey.png", "--device", "cpu")  # the committed checkpoint, found
    assert result.returncode == 0 and result.stdout.startswith("grey.png: "), result.stderr
    assert not (tmp_path / "hw3").exists() and not (tmp_path / "data").exists()


@pytest.mark.script
def test_run_all_leaves_a_terminal_to_the_script_and_reads_errors_elsewhere(tmp_path, monkeypatch, capfd):
    """On a terminal the script's stderr is the terminal (progress bars need one); in a log run_all reads
    it through, echoing it and quoting its error line in the summary."""
    import run_all
    script = tmp_path / "missing.py"
    script.write_text("import os, sys\n"  # is this stderr run_all's own (inherited) or a pipe to it?
                      "same = os.path.samestat(os.fstat(2), os.stat(f'/proc/{os.getppid()}/fd/2'))\n"
                      "print('shared' if same else 'piped', file=sys.stderr)\n"
                      "print('error: no data here', file=sys.stderr)\nsys.exit(3)\n")
    for terminal, detail in ((False, "no data here"), (True, "data not found (its error is above)")):
        monkeypatch.setattr(run_all.sys.stderr, "isatty", lambda: terminal)
        status, said, _ = run_all.run_script(str(script))
        echoed = capfd.readouterr().err
        assert (status, said) == ("skipped", detail) and "error: no data here" in echoed
        assert echoed.startswith("shared" if terminal else "piped"), echoed


def test_the_mutation_summary_counts_each_outcome_and_keeps_the_other_modules_rows(tmp_path, monkeypatch):
    from tests import mutation_summary as summary
    (tmp_path / "mutants" / "common").mkdir(parents=True)
    codes = {"common.m.x_f__mutmut_1": 1, "common.m.x_f__mutmut_2": 0, "common.m.x_g__mutmut_1": -24,
             "common.m.x_g__mutmut_2": None, "common.m.x_g__mutmut_3": 5, "common.m.x_h__mutmut_1": 0}
    (tmp_path / "mutants" / "common" / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    monkeypatch.setattr(summary, "ROOT", tmp_path)
    monkeypatch.setattr(summary, "SUMMARY", tmp_path / "MUTATION.md")
    monkeypatch.setattr(summary, "EQUIVALENT", {"common.m.x_h__mutmut_1": "no behaviour tells it apart"})
    (tmp_path / "MUTATION.md").write_text("| `common/other.py` | 9 | 9 | 0 | 0 | 0 | 0 | 100.0% |\n"
                                          "- `common/other.py` survived: none\n"
                                          "| `common/gone.py` | 5 | 5 | 0 | 0 | 0 | 0 | 100.0% |\n"
                                          "- `common/gone.py` survived: none\n")
    (tmp_path / "common").mkdir()
    for module in ("m.py", "other.py"):  # gone.py was removed since its run
        (tmp_path / "common" / module).write_text("")
    summary.update_summary("common/m.py")
    text = (tmp_path / "MUTATION.md").read_text()
    # killed 1, timed out 1, survived 2 (one with no test), equivalent 1, not checked 1: 2 of 4 caught
    assert "| `common/m.py` | 6 | 1 | 1 | 2 | 1 | 1 | 50.0% |" in text and "| `common/other.py` | 9 |" in text
    assert "- `common/m.py` survived: `x_f__mutmut_2`, `x_g__mutmut_3`" in text
    assert "- `common.m.x_h__mutmut_1`: no behaviour tells it apart" in text
    assert "- `common/other.py` survived: none" in text and "gone.py" not in text
    (tmp_path / "common" / "classes.py").write_text("class A(Exception):\n    code = 2\n")
    (tmp_path / "common" / "functions.py").write_text("class A:\n    def f(self):\n        return 1\n")
    assert not summary.has_functions("common/classes.py") and summary.has_functions("common/functions.py")


@pytest.mark.script
def test_run_all_has_help_and_runs_one_homework():
    result = subprocess.run([sys.executable, "run_all.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "--only" in result.stdout
    result = subprocess.run([sys.executable, "run_all.py", "--only", "hw5"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr
