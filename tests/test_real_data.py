"""Smoke runs of every script on the real data (few samples, one epoch), when $CSE849_DATA is set.

They catch format mistakes on the real files that the tiny fixtures cannot.
"""

import pytest

from tests.conftest import run_script

SMOKE_RUNS = {
    "hw0/q3.py": ["--epochs", "1", "--batch-sizes", "256", "--lrs", "0.01", "--seeds", "1"],
    "hw1/q2.py": ["--epochs", "1", "--lrs", "0.01"],
    "hw2/train.py": ["--epochs", "1", "--limit", "600", "--val-size", "100"],
    "hw3/train.py": ["--limit", "600", "--val-size", "100", "--epochs", "1", "--batch-size", "64"],
    "hw4/train.py": ["--limit", "300", "--val-size", "50", "--epochs", "1", "--max-len", "128",
                     "--head", "32", "--dim", "32", "--layers", "1"],
}


@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_script_runs_on_real_data(script, real_data_dir, tmp_path):
    result = run_script(script, "--data-dir", real_data_dir, "--out-dir", tmp_path, "--quiet",
                        *SMOKE_RUNS[script])
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(tmp_path.iterdir())
