"""hw0: the synthetic linear-regression pipeline and the MLP on HW0_data.pt."""

import csv
import json

import pytest
import torch

from common.checkpoint import load_checkpoint
from hw0.q2 import LinearData, fit_line, make_model
from hw0.q3 import LADDERS, at_ladder_end, coordinate_search, make_mlp
from tests.conftest import assert_drawn, capture_figures, run_script


def test_each_split_is_fixed_and_distinct():
    a, b = LinearData(100, "train", 2.0, 1.0), LinearData(100, "train", 2.0, 1.0)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, LinearData(100, "val", 2.0, 1.0).x)
    x, y = a[3]
    assert x.shape == (1,) and y.shape == (1,) and len(a) == 100
    with pytest.raises(ValueError, match="split must be one of"):
        LinearData(10, "holdout", 2.0, 1.0)


def test_model_seed_fixes_the_initial_weights():
    assert torch.equal(make_model(1).weight, make_model(1).weight)
    assert not torch.equal(make_model(1).weight, make_model(2).weight)
    assert make_model(1).bias.item() == 0.0
    assert torch.equal(make_mlp(3, (-1, 2))[0].weight, make_mlp(3, (-1, 2))[0].weight)
    assert not torch.equal(make_mlp(3, (-1, 2))[0].weight, make_mlp(4, (-1, 2))[0].weight)


def test_mlp_first_layer_kinks_are_spread_over_the_input_range():
    layer = make_mlp(1, (2.0, 5.0))[0]
    kinks = -layer.bias / layer.weight[:, 0]  # relu(w x + b) bends at x = -b / w
    assert ((kinks > 2.0) & (kinks < 5.0)).all() and kinks.std() > 0.3


def test_small_run_recovers_alpha_and_beta_within_0_05():
    model, history, _ = fit_line(n_train=4000, n_val=500, alpha=-1.5, beta=0.7, epochs=8,
                                 batch_size=64, lr=0.02)
    assert abs(model.weight.item() + 1.5) < 0.05
    assert abs(model.bias.item() - 0.7) < 0.05
    assert history["val_loss"][-1] == pytest.approx(1.0, abs=0.15)  # the noise variance


def test_q2_script_writes_its_results(tmp_path):
    result = run_script("hw0/q2.py", "--n-train", "2000", "--epochs", "10", "--quiet",
                        "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert_drawn(tmp_path / "q2_plot.png")
    rows = {line.split()[0]: line.split()[1:] for line in (tmp_path / "q2_params.txt").read_text().splitlines()
            if line.startswith(("alpha", "beta"))}
    true, estimated, least_squares = map(float, rows["alpha"])
    assert true == 2.0 and abs(estimated - 2.0) < 0.1 and abs(estimated - least_squares) < 0.05
    true, estimated, least_squares = map(float, rows["beta"])
    assert true == 1.0 and abs(estimated - 1.0) < 0.1 and abs(estimated - least_squares) < 0.05


def test_q3_script_sweeps_and_writes_its_results(tmp_path, hw0_data_dir, monkeypatch):
    import hw0.q3
    figures = capture_figures(monkeypatch, hw0.q3)
    result = run_script("hw0/q3.py", "--data-dir", hw0_data_dir, "--epochs", "100", "--batch-size", "64",
                        "--lr", "0.03", "--margin", "1", "--seeds", "1", "2", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if line.startswith("search run ")]  # progress in a log too
    assert len(runs) == 11 and runs[0].startswith("search run 1: batch size 32, lr 0.03, 100 epochs: val MSE ")
    rows = list(csv.DictReader((tmp_path / "q3_sweep.csv").open()))
    # margin 1: the start, its six neighbours and the four corners of its batch x lr square, then stay
    assert len(rows) == 11 and ("32", "0.03", "100") == (rows[0]["batch_size"], rows[0]["lr"], rows[0]["epochs"])
    metrics = json.loads((tmp_path / "q3_metrics.json").read_text())
    assert metrics["chosen"] == {"batch_size": 64, "lr": 0.03, "epochs": 100} and metrics["at_end_of_range"] == []
    # y = x^2 on [-2, 2] has variance ~1.4; a trained MLP must do far better than a constant.
    assert metrics["best_val_mse"] < 0.1 and set(metrics["val_mse_by_seed"]) == {"1", "2"}
    assert_drawn(tmp_path / "q3_sweep.png")
    by_seed = metrics["val_mse_by_seed"]
    assert metrics["best_val_mse"] == min(by_seed.values())
    assert metrics["best_seed"] == int(min(by_seed, key=by_seed.get))
    assert metrics["val_mse_mean"] == pytest.approx(sum(by_seed.values()) / 2)
    by_epochs = next(ax for ax in figures["q3_sweep.png"].axes if ax.get_xlabel() == "epochs")
    assert [t.get_text() for t in by_epochs.get_xticklabels()] == ["50", "100", "200"]  # each run, written out
    predictions = torch.tensor([float(v) for v in (tmp_path / "q3_test_output.txt").read_text().split()])
    saved = load_checkpoint(tmp_path / "q3_model.pt", kind="hw0-q3-mlp")  # the best seed's model made them
    model = make_mlp(saved["config"]["seed"], (-2.0, 2.0))
    model.load_state_dict(saved["model"])
    x_test = torch.load(hw0_data_dir / "HW0_data.pt")["x_test"]
    with torch.no_grad():
        torch.testing.assert_close(predictions, model(x_test[:, None]).ravel(), atol=1e-6, rtol=0)
    assert saved["config"]["seed"] == metrics["best_seed"] and (predictions - x_test**2).abs().mean() < 0.3
    assert_drawn(tmp_path / "q3_plot.png")


def test_coordinate_search_walks_to_an_interior_minimum_and_tries_each_setting_once():
    target = {"batch_size": 256, "lr": 0.003, "epochs": 200}
    calls = []

    def bowl(setting: dict) -> dict:  # squared distance in rungs from `target`, plus 1
        calls.append(tuple(setting.values()))
        rungs = sum((LADDERS[a].index(setting[a]) - LADDERS[a].index(target[a])) ** 2 for a in LADDERS)
        return {"val_mse": 1.0 + rungs}

    chosen, rows = coordinate_search(bowl, {"batch_size": 32, "lr": 0.1, "epochs": 50})
    assert chosen == target and at_ladder_end(chosen) == []
    assert len(calls) == len(set(calls)) == len(rows)
    for axis, ladder in LADDERS.items():  # both neighbours on every axis were tried, and lost
        rung = ladder.index(chosen[axis])
        for i in (rung - 1, rung + 1):
            assert tuple({**chosen, axis: ladder[i]}.values()) in calls
    edge, _ = coordinate_search(lambda s: {"val_mse": 1.0 / s["epochs"]}, {"batch_size": 32, "lr": 0.1, "epochs": 50})
    assert edge["epochs"] == LADDERS["epochs"][-1] and at_ladder_end(edge) == ["epochs"]


def test_q3_missing_and_malformed_data_give_one_line_errors(tmp_path, hw0_data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("hw0/q3.py", "--data-dir", empty, "--out-dir", tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("error: ") and "HW0_data.pt" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

    data = torch.load(hw0_data_dir / "HW0_data.pt")
    del data["x_test"]
    torch.save(data, hw0_data_dir / "HW0_data.pt")
    result = run_script("hw0/q3.py", "--data-dir", hw0_data_dir, "--out-dir", tmp_path)
    assert result.returncode == 2 and "missing keys x_test" in result.stderr
    assert "Traceback" not in result.stderr
