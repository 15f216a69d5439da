"""Smoke runs of every script on the real data (few samples and epochs), when $CSE849_DATA is set.

They catch format mistakes on the real files that the tiny fixtures cannot.
"""

import json
from pathlib import Path

import pytest

from tests.conftest import run_script

SMOKE_RUNS = {
    "hw0/q3.py": ["--epochs", "50", "--batch-size", "1024", "--lr", "0.1", "--margin", "1", "--seeds", "1"],
    "hw1/q2.py": ["--epochs", "1", "--lrs", "0.01"],
    "hw2/train.py": ["--epochs", "3", "--limit", "2000", "--val-size", "500"],
    "hw3/train.py": ["--limit", "600", "--val-size", "100", "--epochs", "1", "--batch-size", "64"],
    "hw4/train.py": ["--limit", "600", "--val-size", "100", "--epochs", "4", "--max-len", "96",
                     "--head", "32", "--dim", "32", "--layers", "1", "--lr", "3e-3"],
}


def check_hw0_q3(out: Path) -> None:
    metrics = json.loads((out / "q3_metrics.json").read_text())
    assert {"chosen", "search_runs", "val_mse_by_seed", "best_val_mse"} <= set(metrics)
    assert metrics["best_val_mse"] < 10  # the validation targets' variance is about 46


def check_hw1_q2(out: Path) -> None:
    val_mse = json.loads((out / "q2_metrics.json").read_text())["val_mse"]
    assert val_mse["hand_written"] < 0.5 * val_mse["predicting_the_train_mean"]


def check_hw2_train(out: Path) -> None:
    final = json.loads((out / "bn_effect.json").read_text())["final"]
    assert set(final) == {"no BN", "hand-written BN", "PyTorch BN"}
    assert all(run["val_acc"] > 0.15 for run in final.values())  # chance is 0.10


def check_hw3_train(out: Path) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class_accuracy", "device", "precision", "command"} <= set(metrics)
    assert metrics["test_images"] == 600 and metrics["accuracy"] > 0.13  # --limit 600; chance is 0.10


def check_hw4_train(out: Path) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "per_class", "confusion_matrix", "device", "precision", "command"} <= set(metrics)
    assert metrics["precision"] in ("bf16", "fp32")  # the autocast precision, not a classification score
    assert metrics["test_reviews"] == 600 and metrics["accuracy"] > 0.55  # --limit 600; chance is 0.50


CHECKS = {"hw0/q3.py": check_hw0_q3, "hw1/q2.py": check_hw1_q2, "hw2/train.py": check_hw2_train,
          "hw3/train.py": check_hw3_train, "hw4/train.py": check_hw4_train}


@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_script_runs_on_real_data(script, real_data_dir, tmp_path):
    result = run_script(script, "--data-dir", real_data_dir, "--out-dir", tmp_path, "--quiet", "--device", "cpu",
                        *SMOKE_RUNS[script])
    assert result.returncode == 0, result.stderr[-2000:]
    CHECKS[script](tmp_path)
