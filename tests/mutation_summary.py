"""`make mutate`: mutation testing (mutmut) of the modules named, in one mutmut run, updating their rows of
the committed summary tests/MUTATION.md (killed, timed out, survived per module, and the survivors by name)
and its line on the last run (modules, mutants, minutes, machine)."""

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "tests" / "MUTATION.md"
LAST_RUNS = ("Last run of every module:", "Last run:")  # the whole `make mutate`, and the latest of any size
HEADER = ["module", "mutants", "killed", "timed out", "survived", "equivalent", "not checked", "caught"]
# Survivors that no test on a CPU-only machine can tell apart from the original, each with the reason;
# they are left out of the caught share.
FLUSH = "`flush` changes only when printed text leaves Python's buffer, not the text"
WEIGHTS_ONLY = "torch 2.6 and later (requirements.lock: 2.14.1) load with weights_only=True by default"
CPU_MAP = ("loading without map_location='cpu' differs only for a checkpoint saved on a GPU, which no test "
           "on a CPU-only machine can make")
INT64 = "NumPy 2 and torch make Python ints int64 by default, and the batch they fill is int64 anyway"
STABLE = "NumPy reads a sort kind without regard to case ('STABLE' is 'stable')"
CACHE_KEY = ("the cache key stays a function of the tokenizer settings and every text, each text ended by a "
             "separator: only the cache file's name changes")
HALF = ("a float32 uniform draw is exactly 0.5 with probability 2**-24, so < 0.5 and <= 0.5 mirror the same "
        "images in any test of practical size")
ON_THE_CPU = ("on the CPU, `.to(None)`, `.to(device)` without non_blocking and a tensor made without `device=` "
              "are the same tensor")
MPS_SUMS = "only an MPS device (no float64) sums the epoch's totals in float32"
EMPTY_FLAGS = ("the non-finite flags of a process with no batches are empty or all False: no index is found in "
               "them either way")
MATPLOTLIB_CASE = "matplotlib reads this keyword's value without regard to case"
TOPK_DIM = "topk's default dimension is the last, the classes' of (N, classes)"
EQUIVALENT = {
    **{f"common.checkpoint.x_load_checkpoint__mutmut_{n}": WEIGHTS_ONLY for n in (22, 25)},
    **{f"common.checkpoint.x_load_checkpoint__mutmut_{n}": CPU_MAP for n in (21, 24)},
    **{f"common.training.x_validation_record__mutmut_{n}": FLUSH for n in (36, 38, 41)},
    **{f"common.training.x__restore__mutmut_{n}": FLUSH for n in (85, 87, 90)},
    **{f"common.training.x_fit__mutmut_{n}": FLUSH for n in (176, 178, 185)},
    **{f"common.training.x_run_epoch__mutmut_{n}": ON_THE_CPU for n in (13, 15, 16, 17, 79, 82, 88, 91, 94)},
    **{f"common.training.x_run_epoch__mutmut_{n}": MPS_SUMS for n in (71, 74, 75)},
    **{f"common.training.x_run_epoch__mutmut_{n}": EMPTY_FLAGS for n in (87, 90, 92)},
    **{f"common.course_data.x_load_course_splits__mutmut_{n}": CPU_MAP for n in (5, 8)},
    **{f"common.course_data.x_load_course_splits__mutmut_{n}": WEIGHTS_ONLY for n in (6, 9)},
    **{f"common.text_batches.x_pad_batch__mutmut_{n}": INT64 for n in (4, 7, 13, 15)},
    "common.text_batches.x_truncate__mutmut_1": "a text of exactly max_len tokens cut to its head and tail is all of it",
    **{f"common.text_batches.xǁTextBatchesǁbatches__mutmut_{n}": STABLE for n in (9, 40)},
    "common.text.xǁVocabǁbuild__mutmut_11": STABLE,
    **{f"common.text.x_tokenize_corpus__mutmut_{n}": CACHE_KEY for n in (7, 12, 15, 18, 21)},
    **{f"common.text.x_tokenize_corpus__mutmut_{n}": "np.load refuses pickles by default (allow_pickle=False)"
       for n in (23, 25)},
    **{f"common.text.x_tokenize_corpus__mutmut_{n}": "Python's default codec is UTF-8, and codec names ignore case"
       for n in (30, 35, 101, 105, 106, 110)},
    "common.text.x_tokenize_corpus__mutmut_47": "tokens hold no whitespace, so splitting on any whitespace is "
                                                "splitting on newlines",
    **{f"common.text.x_tokenize_corpus__mutmut_{n}": INT64 for n in (88, 90)},
    "common.plotting.x_new_figure__mutmut_6": "squeeze=None is falsy: the axes stay a 2-D array",
    **{f"common.plotting.x_plot_confusion_matrix__mutmut_{n}": "dividing integer counts by integer sums gives "
       "float rates in NumPy anyway" for n in (4, 6)},
    **{f"common.plotting.x_plot_confusion_matrix__mutmut_{n}": "without the image or axes, the colour bar takes "
       "the current ones, which are these" for n in (51, 52, 57)},
    "common.plotting.x_plot_scatter_fit__mutmut_29": "matplotlib reads colour names without regard to case",
    **{f"common.device.x_report_machine__mutmut_{n}": FLUSH for n in (8, 10, 12, 24, 27, 34)},
    "common.distributed.x_setup__mutmut_33": "torch.device(n) with an integer is the n-th CUDA device",
    "common.distributed.x_shard__mutmut_12": ("repeating the order once more than needed and cutting it to the "
                                              "same length gives the same items"),
    **{f"common.cifar.x_random_crop__mutmut_{n}": ON_THE_CPU for n in (14, 29, 46, 48, 52, 54, 57, 59, 62, 64)},
    **{f"common.cifar.x_random_crop__mutmut_{n}": "torch.randint(n, size) draws from [0, n) as randint(0, n, size) "
       "does" for n in (19, 34)},
    **{f"common.cifar.x_normalize__mutmut_{n}": ON_THE_CPU for n in (11, 13, 28, 30)},
    **{f"common.cifar.x_normalize__mutmut_{n}": "a (3, 1, 1) view broadcasts over the batch as (1, 3, 1, 1) does"
       for n in (6, 23)},
    "common.cifar.x_flip_where__mutmut_7": ON_THE_CPU,
    **{f"common.cifar.xǁCifarBatchesǁ__init____mutmut_{n}": ON_THE_CPU for n in (14, 17, 18)},
    "common.cifar.xǁCifarBatchesǁ__iter____mutmut_36": ON_THE_CPU,
    **{f"common.cifar.xǁCifarBatchesǁ__iter____mutmut_{n}": ("any of these formulas gives each seed, epoch and "
       "process a stream of its own") for n in (2, 4, 12, 14)},
    "common.cifar.x_random_flip__mutmut_9": HALF,
    "common.cifar.xǁCifarBatchesǁ__iter____mutmut_24": HALF,
    **{f"common.imdb.x__download__mutmut_{n}": "the temporary file's name changes; it is renamed or removed either way"
       for n in (7, 8)},
    **{f"common.imdb.x__download__mutmut_{n}": ("nothing can fail between this assignment and made_for_download's, so "
       "its value is never read") for n in (9, 10)},
    **{f"common.imdb.x__download__mutmut_{n}": FLUSH for n in (14, 16, 17)},
    **{f"common.imdb.x__download__mutmut_{n}": "HTTP header names are read without regard to case" for n in (36, 37)},
    "common.imdb.x__download__mutmut_39": "any negative length means 'not sent'",
    **{f"common.imdb.x__extract__mutmut_{n}": "the SHA256 of a file is the same whatever size of blocks it is read in"
       for n in (13, 15, 16)},
    "common.imdb.x__extract__mutmut_22": "only the cache folder's name changes: it is still one folder per archive content",
    "common.imdb.x__extract__mutmut_90": "a UserError is raised only before extraction starts, when the folder does "
                                         "not exist yet",
    "common.imdb.x_find_imdb__mutmut_19": "globbing a folder that does not exist finds nothing",
    "common.imdb.x_find_imdb__mutmut_39": "download=None is falsy, as False is",
    **{f"common.imdb.x_read_review_file__mutmut_{n}": "any read of 4 bytes or more holds every byte-order mark"
       for n in (9, 10)},
    **{f"common.imdb.x_read_review_file__mutmut_{n}": "Python's default text encoding is UTF-8 (a UTF-8 locale or "
       "UTF-8 mode), and codec names ignore case" for n in (13, 18)},
    **{f"common.imdb.x_read_review_file__mutmut_{n}": ("reading more of an over-long file refuses it the same way; "
       "only memory differs, which test_hostile's bounded-memory script test checks") for n in (28, 30)},
    **{f"common.cli.x_read_each__mutmut_{n}": FLUSH for n in (15, 18, 19)},
    "common.cli.xǁHelpWithDefaultsǁ_get_help_string__mutmut_13": ("with no help text, 'default' is in neither '' nor "
                                                                 "'XXXX'"),
    **{f"common.cifar.x__cached__mutmut_{n}": ("only the cache file's name changes: it is still one entry per list "
       "of files and their bytes") for n in (22, 23, 30)},
    **{f"common.cifar.x__cached__mutmut_{n}": WEIGHTS_ONLY for n in (33, 35)},
    "common.cifar.x__cached__mutmut_5": "a limit equal to the size keeps every index in order: the same set",
    **{f"common.cifar.x__decode_all__mutmut_{n}": ("every image is checked to be exactly 32x32 first: 1024 pixels, "
       "within either limit") for n in (24, 25)},
    **{f"common.cifar.x__detect_format__mutmut_{n}": ("_where names the image folder for any format but "
       "'torchvision', and the torchvision folder whatever the split") for n in (67, 76, 80, 81)},
    "common.cifar.x__download__mutmut_1": "made=None is falsy, as False is",
    **{f"common.cifar.x__read_batches__mutmut_{n}": INT64 for n in (76, 78)},
    "common.cifar.x__unpickle__mutmut_8": "codec names ignore case",
    "common.cifar.x_load_cifar10__mutmut_53": "a limit equal to the size keeps every file in order: the same list",
    "common.cli.x_add_training_args__mutmut_36": "number() reads a float for any kind but int, None included",
    "common.cli.x_make_parser__mutmut_11": "argparse's default is None anyway",
    "common.cli.x_number__mutmut_22": "for kind float, kind(text) is float(text)",
    "common.cli.xǁHelpWithDefaultsǁ_get_help_string__mutmut_15": ("argparse asks for the help string only of an "
                                                                 "option that has help text"),
    **{f"hw1.layers.xǁLinearǁbackward__mutmut_{n}": ("any two distinct keys keep W's and b's moments apart, and no "
       "other code reads them") for n in (22, 23, 31, 32)},
    **{f"hw2.batchnorm.{name}": ("the element count is a multiple of the channel count, so true division gives "
       "the same whole number, as a float, in the same arithmetic") for name in (
        "x_batchnorm_backward__mutmut_13", "x_batchnorm_backward_graph__mutmut_8", "x_batchnorm_forward__mutmut_43",
        "x_check_input__mutmut_11")},
    "hw2.batchnorm.x_per_channel__mutmut_3": "a (C, 1, ...) view broadcasts over the batch as (1, C, 1, ...) does",
    **{f"hw2.batchnorm.xǁBatchNormǁ__init____mutmut_{n}": INT64 for n in (44, 47)},
    **{f"hw2.batchnorm.xǁBatchNormǁ__init____mutmut_{n}": ON_THE_CPU for n in (45, 48)},
    "hw3.model.x_load_model__mutmut_9": ON_THE_CPU,
    "hw3.model.xǁAirbenchNetǁ__init____mutmut_10": "a Conv2d has a bias by default",
    **{f"hw3.model.{name}": "bias=None is falsy, as False is" for name in (
        "xǁAirbenchNetǁ__init____mutmut_28", "xǁConvGroupǁ__init____mutmut_6", "xǁConvGroupǁ__init____mutmut_22",
        "xǁSeedCNNǁ__init____mutmut_11")},
    **{f"hw3.model.xǁSeedCNNǁ__init____mutmut_{n}": "ReLU gives the same values in place or not; only memory differs"
       for n in (21, 22)},
    "hw3.model.xǁSeedCNNǁ__init____mutmut_29": ("widths hold 1 to 5 entries, and 33 // 2**k == 32 // 2**k for every "
                                               "k >= 1"),
    **{f"hw4.model.xǁModelConfigǁmember__mutmut_{n}": ("problem() accepts exactly 2 classes, either encoder's "
       "default num_classes") for n in (13, 30)},
    "hw4.model.x_load_model__mutmut_8": ON_THE_CPU,
    **{f"hw4.model.xǁBaggedClassifierǁforward__mutmut_{n}": ("the vote of one member is its log-softmax, whose two "
       "classes differ by as much as its logits do") for n in (14, 16)},
    **{f"hw4.model.x_sinusoidal_positions__mutmut_{n}": ("an int64 arange times a float32 is float32, and these "
       "whole numbers are exact in either") for n in (3, 5, 12, 16)},
    "hw4.model.xǁTransformerClassifierǁ__init____mutmut_18": "persistent=None is falsy, as False is",
    **{f"hw4.model.xǁRegionCNNǁforward__mutmut_{n}": "F.pad fills with 0 by default, and PAD_ID is 0" for n in (12, 15)},
    "hw4.model.xǁRegionCNNǁforward__mutmut_18": ("each slot of a region reads `length` columns, so padding past the "
                                                "first region - 1 is never read"),
    **{f"hw4.model.xǁRegionCNNǁforward__mutmut_{n}": ON_THE_CPU for n in (42, 44)},
    "hw4.model.xǁTransformerClassifierǁforward__mutmut_44": ("boolean weights multiply and count as 1.0 and 0.0 "
                                                            "do"),
    "hw4.explain.x_as_markers__mutmut_8": "a word at step 0 gets 0 marks, whichever sign is chosen",
    **{f"hw4.explain.x_plot_words__mutmut_{n}": ("the figure is resized to `width` by the laid-out height before "
       "anything is drawn; one panel is new_figure's default") for n in (10, 11, 12, 15)},
    **{f"hw4.explain.x_plot_words__mutmut_{n}": MATPLOTLIB_CASE for n in (19, 153)},
    **{f"hw4.explain.x_plot_words__mutmut_{n}": ("a text measures the same with the figure's own renderer, which "
       "matplotlib uses when given none, and wherever it is placed") for n in (20, 51, 52, 56)},
    **{f"hw4.explain.x_plot_words__mutmut_{n}": "10 points is matplotlib's default font size" for n in (90, 95)},
    **{f"hw4.explain.{name}": "all scores are 0 when the largest is: 0 / 1 and 0 / 2 are both 0" for name in (
        "x_plot_words__mutmut_34", "x_strengths__mutmut_4")},
    **{f"hw4.explain.x_word_attributions__mutmut_{n}": ON_THE_CPU for n in (8, 29, 31)},
    **{f"hw3.predict.x_main__mutmut_{n}": ON_THE_CPU for n in (77, 81, 94)},
    **{f"hw4.predict.x_main__mutmut_{n}": ON_THE_CPU for n in (114, 118, 172)},
    "hw4.predict.x_main__mutmut_174": ("a model without a bag reads a None beside the ids as no embeddings given, "
                                       "and computes them itself"),
    **{f"hw{hw}.predict.x_main__mutmut_{n}": TOPK_DIM for hw, n in ((3, 117), (4, 184))},
    **{f"hw{hw}.predict.x_main__mutmut_3": "data=None is falsy, as False is" for hw in (3, 4)},
    **{f"hw4.predict.x_main__mutmut_{n}": "argparse's metavar for --file is FILE anyway (its name in capitals)"
       for n in (27, 33)},
    **{f"hw3.predict.x_plot_explanations__mutmut_{n}": MATPLOTLIB_CASE for n in (33, 62, 78, 111)},
    "hw3.predict.x_plot_explanations__mutmut_88": ("without a mappable, matplotlib's colorbar takes the current image: "
                                                   "this heat map, drawn last"),
    **{f"hw3.predict.x_plot_explanations__mutmut_{n}": ("without ax, the colour bar takes its room from the mappable's "
       "own axes: these") for n in (89, 93)},
    **{f"hw3.predict.x_read_input__mutmut_{n}": "resizing a 32x32 image to 32x32 gives it back unchanged"
       for n in (6, 8, 10, 11)},
    "hw3.predict.x_read_input__mutmut_17": "torchvision's resize antialiases tensors by default (since 0.17)",
    "hw3.report.x_evaluate_test__mutmut_9": "train=None is falsy, as False is",
    "hw3.report.x_evaluate_test__mutmut_16": ON_THE_CPU,
    **{f"hw3.report.x_plot_mistakes__mutmut_{n}": MATPLOTLIB_CASE for n in (35, 59)},
    "hw3.report.x_plot_mistakes__mutmut_91": "an explicit fontsize=None is matplotlib's font.size, 10 points",
    "common.tensor_batches.xǁTensorBatchesǁ__iter____mutmut_12":
        "the shuffled order left on the CPU (`.to(None)`) indexes a tensor on any device to the same batches",
}


def outcome(code: int | None) -> str:
    """mutmut's exit code of one mutant's test run, in words."""
    if code is None:
        return "not checked"
    if code in (-24, 36, 152):  # the CPU-time limit (SIGXCPU) or mutmut's own timeout
        return "timed out"
    return "survived" if code in (0, 5, 33) else "killed"  # 5, 33: no test ran it


def module_row(module: str) -> tuple[list[str], list[str]]:
    """The summary row of one module (a path like common/metrics.py) and its survivors' names."""
    codes = json.loads((ROOT / "mutants" / f"{module}.meta").read_text())["exit_code_by_key"]
    counts = {name: 0 for name in HEADER[2:7]}
    survivors = []
    for key, code in sorted(codes.items()):
        verdict = "equivalent" if outcome(code) == "survived" and key in EQUIVALENT else outcome(code)
        counts[verdict] += 1
        if verdict == "survived":
            survivors.append(key)
    checked = len(codes) - counts["not checked"] - counts["equivalent"]
    caught = (counts["killed"] + counts["timed out"]) / checked if checked else 0.0
    return [f"`{module}`", str(len(codes)), *map(str, counts.values()), f"{caught:.1%}"], survivors


def update_summary(module: str, last_run: str | None = None) -> None:
    """Replace (or add) `module`'s row and survivors in tests/MUTATION.md, keeping the other modules', and
    the lines on the last runs (`last_run`, if given, replaces the one it starts like; a whole run, both)."""
    rows, survivors, runs = {}, {}, {}
    if SUMMARY.exists():
        for line in SUMMARY.read_text().splitlines():
            if line.startswith(LAST_RUNS):
                runs[next(p for p in LAST_RUNS if line.startswith(p))] = line
            elif line.startswith("| `"):
                rows[line.split("`")[1]] = line
            elif line.startswith("- `") and " survived: " in line:
                survivors[line.split("`")[1]] = line
    if last_run:
        if last_run.startswith(LAST_RUNS[0]):  # the whole run is also the latest
            runs.pop(LAST_RUNS[1], None)
        runs[next(p for p in LAST_RUNS if last_run.startswith(p))] = last_run
    rows = {m: line for m, line in rows.items() if (ROOT / m).is_file()}  # modules since removed drop out
    survivors = {m: line for m, line in survivors.items() if (ROOT / m).is_file()}
    row, alive = module_row(module)
    rows[module] = "| " + " | ".join(row) + " |"
    survivors[module] = f"- `{module}` survived: " + (", ".join(f"`{name.split('.')[-1]}`" for name in alive) or "none")
    lines = ["# Mutation testing", "",
             "`make mutate MODULE=common/metrics.py` runs mutmut on one module with the unit tests (setup.cfg's",
             "selection, less the tests marked `script`, which run whole scripts) and updates its row; `make mutate`",
             "runs every module of common/ and the hw modules the Makefile names, in one mutmut run. A timed-out",
             "mutant made the tests loop or slow down past mutmut's limit, so it counts as caught (mutmut forks a",
             "process per mutant, so `make mutate` sets OMP_NUM_THREADS=1: a forked torch thread pool can hang,",
             "which read as timeouts). An equivalent survivor is one that no test on a CPU-only machine can tell",
             "apart, with the reason below; the caught share leaves those out. `mutmut show NAME` prints a survivor.",
             "", *(line for prefix in LAST_RUNS if prefix in runs for line in (runs[prefix], "")),
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
             *(rows[m] for m in sorted(rows)), "", "Survivors:", *(survivors[m] for m in sorted(survivors)),
             "", "Equivalent:", *(f"- `{name}`: {why}" for name, why in sorted(EQUIVALENT.items()))]
    SUMMARY.write_text("\n".join(lines) + "\n")


def has_functions(module: str) -> bool:
    """Whether the source file `module` defines a function or method: mutmut mutates nothing else."""
    tree = ast.parse((ROOT / module).read_text())
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(tree))


def machine_class() -> str:
    """The CPU's name, its core count and the instruction set torch uses, for the last-run line."""
    import torch
    sys.path.insert(0, str(ROOT))
    from common.device import processor_name
    return f"{os.cpu_count()} cores of {processor_name()}, torch capability {torch.backends.cpu.get_cpu_capability()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="+", help="source files to mutate, e.g. common/metrics.py")
    args = parser.parse_args()
    modules = [m for m in args.modules if has_functions(m)]
    for module in sorted(set(args.modules) - set(modules)):
        print(f"=== mutmut: {module} defines no functions, nothing to mutate ===", flush=True)
    if not modules:
        return
    # one mutmut run for them all: its stats, clean-test and forced-failure runs are paid once
    patterns = [re.sub(r"\.py$", "", module).replace("/", ".") + ".*" for module in modules]
    print(f"=== mutmut: {', '.join(modules)} ===", flush=True)
    began = time.perf_counter()
    status = subprocess.run([sys.executable, "-m", "mutmut", "run", *patterns], cwd=ROOT).returncode
    if status != 0:
        sys.exit(f"error: mutmut failed (exit status {status})")
    minutes = (time.perf_counter() - began) / 60
    mutants = sum(len(json.loads((ROOT / "mutants" / f"{m}.meta").read_text())["exit_code_by_key"]) for m in modules)
    listed = {line.split("`")[1] for line in (SUMMARY.read_text().splitlines() if SUMMARY.exists() else [])
              if line.startswith("| `")}
    prefix = LAST_RUNS[0] if set(modules) >= listed else LAST_RUNS[1]
    last_run = (f"{prefix} {len(modules)} module{'s' * (len(modules) > 1)}, {mutants} mutants in {minutes:.0f} "
                f"min on {machine_class()}.")
    for module in modules:
        update_summary(module, last_run)
        print(f"updated {SUMMARY.relative_to(ROOT)}: " + SUMMARY.read_text().split(f"`{module}` |")[1].split("\n")[0])
    print(last_run)


if __name__ == "__main__":
    main()
