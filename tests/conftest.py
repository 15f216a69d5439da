"""Shared fixtures: tiny data files in the real formats, and a helper that runs a script as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` from the repo root, capturing text output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


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
