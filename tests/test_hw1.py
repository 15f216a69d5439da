"""hw1: the hand-derived spiral gradient and its descent (q1), hand-written backprop layers and MLP (q2)."""

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hw1.layers import SGD, Adam, Linear, MSELoss, ReLU
from hw1.q1 import ESCAPE, descend, spiral, spiral_grad, start_point
from hw1.q2 import MLP, OPTIMIZERS, torch_twin
from tests.conftest import assert_drawn, capture_figures, colour_bars, run_script


def autograd_of(fn, x: torch.Tensor) -> torch.Tensor:
    """d fn(x).sum() / dx by torch.autograd."""
    x = x.clone().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad


# --- q1: the spiral ----------------------------------------------------------------------------
@pytest.mark.gradcheck
def test_spiral_gradient_matches_autograd_everywhere_including_axes_and_origin():
    generator = torch.Generator().manual_seed(0)
    uniform = (torch.rand(500, 2, generator=generator, dtype=torch.float64) * 2 - 1) * 5
    tiny = torch.tensor([1e-12, -1e-9, 1e-6, -1e-3], dtype=torch.float64)
    near_axes = torch.cat([
        torch.stack([tiny.repeat(3), torch.tensor([-4.0, 0.5, 3.0]).double().repeat_interleave(4)], 1),
        torch.stack([torch.tensor([-2.0, 1.5, 4.5]).double().repeat_interleave(4), tiny.repeat(3)], 1),
        torch.tensor([[0.0, 2.0], [0.0, -3.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64),
    ])
    near_origin = torch.randn(200, 2, generator=generator, dtype=torch.float64) \
        * torch.logspace(-9, -1, 200, dtype=torch.float64)[:, None]
    points = torch.cat([uniform, near_axes, near_origin])
    analytic = spiral_grad(points)
    assert analytic.shape == points.shape and torch.isfinite(analytic).all()
    assert torch.allclose(analytic, autograd_of(spiral, points), rtol=0, atol=1e-6)


def test_origin_has_zero_value_and_gradient_without_nans():
    origin = torch.zeros(2, dtype=torch.float64)
    assert spiral(origin).item() == 0.0
    assert torch.equal(spiral_grad(origin), torch.zeros(2, dtype=torch.float64))
    run = descend(origin, lr=0.1, steps=10)
    assert run.status == "converged" and run.steps == 0 and torch.equal(run.path, origin[None])


def test_small_step_descent_decreases_y_at_every_step():
    for seed in range(1, 6):
        run = descend(start_point(seed), lr=1e-4, steps=300)
        values = spiral(run.path)
        assert run.steps == 300 and run.status == "max steps"
        assert (values[1:] < values[:-1]).all()
        assert values[-1] < 0.9 * values[0]


def test_descent_reaches_the_origin_or_reports_an_escape():
    converged = descend(start_point(1), lr=0.1, steps=1000)
    assert converged.status == "converged" and converged.path[-1].norm() < 1e-6
    escaped = descend(start_point(1), lr=1.0, steps=1000)
    assert escaped.status == "escaped" and escaped.left_view_at == 1
    assert torch.isfinite(escaped.path).all() and escaped.path[-1].norm() > ESCAPE
    overflowed = descend(start_point(1), lr=1e308, steps=5)  # the first step overflows to inf
    assert overflowed.status == "escaped" and overflowed.left_view_at == 1
    assert torch.equal(overflowed.path, start_point(1)[None])


def test_start_points_are_seeded_and_inside_the_view():
    assert torch.equal(start_point(3), start_point(3))
    assert not torch.equal(start_point(3), start_point(4))
    assert all(start_point(seed).abs().max() <= 5 for seed in range(20))


# --- q2: layers against autograd ------------------------------------------------------------------
SHAPES = [(1, 1, 1), (7, 2, 5), (32, 100, 100), (5, 3, 1), (64, 10, 4)]  # (batch, d_in, d_out)


@pytest.mark.parametrize("batch, d_in, d_out", SHAPES)
@pytest.mark.gradcheck
def test_linear_backward_matches_autograd_and_applies_the_update(batch, d_in, d_out):
    generator = torch.Generator().manual_seed(batch * 1000 + d_in + d_out)
    layer = Linear(d_in, d_out, SGD(lr=0.05), generator=generator)
    layer.W, layer.b = layer.W.double(), torch.randn(d_out, generator=generator, dtype=torch.float64)
    x = torch.randn(batch, d_in, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(batch, d_out, generator=generator, dtype=torch.float64)
    W, b, xr = (t.clone().requires_grad_(True) for t in (layer.W, layer.b, x))
    # grad_out holds each sample's loss gradient: autograd of sum_i grad_out_i . out_i gives
    # the per-sample input gradients, and divided by the batch size the batch-mean parameter gradients.
    ((xr @ W + b) * grad_out).sum().backward()

    out = layer.forward(x)
    assert torch.allclose(out, x @ W.detach() + b.detach())
    grad_in = layer.backward(grad_out)
    assert torch.allclose(grad_in, xr.grad)
    assert torch.allclose(layer.grad_W, W.grad / batch) and torch.allclose(layer.grad_b, b.grad / batch)
    assert torch.allclose(layer.W, W.detach() - 0.05 * W.grad / batch)
    assert torch.allclose(layer.b, b.detach() - 0.05 * b.grad / batch)


@pytest.mark.parametrize("shape", [(1, 1), (9, 4), (32, 100), (3, 2, 5)])
@pytest.mark.gradcheck
def test_relu_backward_matches_autograd(shape):
    generator = torch.Generator().manual_seed(len(shape) + shape[-1])
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(shape, generator=generator, dtype=torch.float64)
    relu = ReLU()
    assert torch.equal(relu.forward(x), torch.relu(x))
    expected = autograd_of(lambda t: torch.relu(t) * grad_out, x)
    assert torch.allclose(relu.backward(grad_out), expected)


@pytest.mark.parametrize("shape", [(1, 1), (8, 1), (33, 3), (6,)])
@pytest.mark.gradcheck
def test_mse_loss_matches_torch_and_starts_the_chain_per_sample(shape):
    generator = torch.Generator().manual_seed(shape[0])
    pred = torch.randn(shape, generator=generator, dtype=torch.float64)
    target = torch.randn(shape, generator=generator, dtype=torch.float64)
    loss = MSELoss()
    assert torch.allclose(loss.forward(pred, target), nn.functional.mse_loss(pred, target))
    # The gradient of the mean loss, times the batch size: each sample's gradient of its own loss.
    expected = autograd_of(lambda p: nn.functional.mse_loss(p, target), pred) * shape[0]
    assert torch.allclose(loss.backward(), expected)


def central_difference(fn, t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """d fn() / d t, element by element, by (fn(t + eps) - fn(t - eps)) / 2 eps; `t` is changed in place
    and restored. fn returns a float64 scalar."""
    grad = torch.zeros_like(t)
    flat, flat_grad = t.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        kept = flat[i].item()
        flat[i] = kept + eps
        up = fn()
        flat[i] = kept - eps
        down = fn()
        flat[i] = kept
        flat_grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.gradcheck
def test_linear_relu_and_mse_backward_match_central_differences():
    """The CS231n check, independent of autograd: each hand-written backward against finite differences
    of the loss it claims to differentiate, in float64."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    linear, relu, mse = Linear(4, 3, SGD(lr=0.0), generator=generator), ReLU(), MSELoss()
    linear.W, linear.b = linear.W.double(), torch.randn(3, generator=generator, dtype=torch.float64)

    def loss() -> float:  # the batch-mean loss of Linear -> ReLU -> MSE
        return mse.forward(relu.forward(linear.forward(x)), target).item()

    expected = {name: central_difference(loss, t) for name, t in (("x", x), ("W", linear.W), ("b", linear.b))}
    loss()
    per_sample = mse.backward()  # each sample's gradient of its own loss: N times that of the mean
    grad_x = linear.backward(relu.backward(per_sample))
    assert torch.allclose(grad_x / len(x), expected["x"], rtol=1e-6, atol=1e-8)
    assert torch.allclose(linear.grad_W, expected["W"], rtol=1e-6, atol=1e-8)
    assert torch.allclose(linear.grad_b, expected["b"], rtol=1e-6, atol=1e-8)
    assert (expected["x"] == 0).any() and (expected["x"] != 0).any()  # some units off, some on


def test_eval_mode_keeps_nothing_and_cannot_backpropagate():
    x = torch.randn(4, 3)
    cases = [(Linear(3, 2, SGD(0.1)), "x", (x,), (torch.ones(4, 2),)),
             (ReLU(), "positive", (x,), (torch.ones(4, 3),)),
             (MSELoss(), "error", (x, torch.zeros(4, 3)), ())]
    for layer, kept, inputs, grads in cases:
        layer.train().forward(*inputs)
        assert getattr(layer, kept) is not None
        layer.eval().forward(*inputs)
        assert getattr(layer, kept) is None
        with pytest.raises(RuntimeError, match=f"^{type(layer).__name__}.backward needs a forward pass in training mode first$"):
            layer.backward(*grads)
        assert layer.training is False


def test_layers_start_with_nothing_kept_and_he_initialised_weights():
    layer = Linear(1000, 500, SGD(0.1), generator=torch.Generator().manual_seed(0))
    assert (layer.x, layer.grad_W, layer.grad_b) == (None, None, None)
    assert ReLU().positive is None and MSELoss().error is None
    assert layer.W.std().item() == pytest.approx((2 / 1000) ** 0.5, rel=0.01) and torch.equal(layer.b, torch.zeros(500))
    moved = layer.to("cpu")
    assert moved is layer and layer.W.shape == (1000, 500) and layer.b.shape == (500,)
    layer.to(torch.float64)  # `to` moves both parameters, as a device would
    assert (layer.W.dtype, layer.b.dtype) == (torch.float64, torch.float64)


def test_relu_passes_no_gradient_at_exactly_zero_as_torch_does():
    relu = ReLU().train()
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    relu.forward(x.detach())
    torch.relu(x).sum().backward()
    assert torch.equal(relu.backward(torch.ones(3)), x.grad) and x.grad.tolist() == [0.0, 0.0, 1.0]


def test_bad_shapes_raise_clear_errors():
    layer = Linear(3, 2, SGD(0.1))
    with pytest.raises(ValueError, match=r"Linear\(3, 2\) input should have shape \(N, 3\), got \(4, 5\)"):
        layer.forward(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"input should have shape \(N, 3\), got \(3,\)"):
        layer.forward(torch.randn(3))
    layer.forward(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"output gradient should have shape \(4, 2\), got \(4, 3\)"):
        layer.backward(torch.randn(4, 3))
    relu = ReLU()
    relu.forward(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"ReLU output gradient should have shape \(4, 3\), got \(3, 4\)"):
        relu.backward(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"prediction shape \(4, 1\) and target shape \(4,\) differ"):
        MSELoss().forward(torch.randn(4, 1), torch.randn(4))


# --- q2: the MLP against torch.nn ----------------------------------------------------------------
def double(mlp: MLP) -> MLP:
    for layer in mlp.linears():
        layer.W, layer.b = layer.W.double(), layer.b.double()
    return mlp


def test_mlp_is_seeded_and_its_twin_computes_the_same_function():
    assert torch.equal(MLP(SGD(0.1), seed=3).linears()[1].W, MLP(SGD(0.1), seed=3).linears()[1].W)
    assert not torch.equal(MLP(SGD(0.1), seed=3).linears()[1].W, MLP(SGD(0.1), seed=4).linears()[1].W)
    mlp = MLP(SGD(0.1), seed=3)
    assert [(l.d_in, l.d_out) for l in mlp.linears()] == [(2, 100), (100, 100), (100, 1)]
    x = torch.randn(50, 2)
    assert torch.allclose(torch_twin(mlp)(x), mlp.predict(x), atol=1e-6)


@pytest.mark.parametrize("rule", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch", [1, 16, 50])
@pytest.mark.gradcheck
def test_mlp_steps_match_torch_nn_with_torch_optim(batch, rule):
    """Three steps of the hand-written MLP and update rule equal torch.nn + torch.optim's, the step size
    changing between steps as the schedule changes it."""
    hand_rule, torch_rule = OPTIMIZERS[rule]
    generator = torch.Generator().manual_seed(batch)
    mlp = double(MLP(hand_rule(0.05), seed=batch))
    twin = torch_twin(mlp)
    optimizer = torch_rule(twin.parameters(), lr=0.05)
    for lr in (0.05, 0.03, 0.01):
        mlp.optimizer.lr = lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = torch.randn(batch, 2, generator=generator, dtype=torch.float64)
        y = torch.randn(batch, 1, generator=generator, dtype=torch.float64)
        loss = mlp.step(x, y)
        optimizer.zero_grad()
        twin_loss = nn.functional.mse_loss(twin(x), y)
        twin_loss.backward()
        optimizer.step()
        assert loss == pytest.approx(twin_loss.item(), rel=1e-12)
        for layer, linear in zip(mlp.linears(), (m for m in twin if isinstance(m, nn.Linear))):
            assert torch.allclose(layer.W, linear.weight.detach().T, rtol=1e-10, atol=1e-12)
            assert torch.allclose(layer.b, linear.bias.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.equal(mlp.linears()[0].W, double(MLP(hand_rule(0.05), seed=batch)).linears()[0].W)


def test_adam_first_step_moves_every_weight_by_the_learning_rate():
    """Adam's bias correction makes its first step lr * sign(g) (up to eps), whatever the gradient's scale."""
    adam = Adam(lr=0.01)
    param, grad = torch.zeros(5, dtype=torch.float64), torch.tensor([1e-3, -2.0, 50.0, -1e-2, 3.0]).double()
    assert torch.allclose(adam.update("p", param, grad), -0.01 * grad.sign(), rtol=1e-4)
    assert adam.moments["p"][2] == 1


# --- the scripts ---------------------------------------------------------------------------------
@pytest.fixture
def project1_data_dir(tmp_path: Path) -> Path:
    """A data folder with a small Project1_data.pt: a smooth function of 2-D inputs, no y_test."""
    generator = torch.Generator().manual_seed(0)
    data = {}
    for split, n in (("train", 256), ("val", 128), ("test", 40)):
        x = torch.rand(n, 2, generator=generator) * 4 - 2
        data[f"x_{split}"] = x
        if split != "test":
            data[f"y_{split}"] = torch.sin(x[:, 0]) + 0.05 * torch.randn(n, generator=generator)
    torch.save(data, tmp_path / "Project1_data.pt")
    return tmp_path


@pytest.mark.script
def test_q1_script_writes_every_plot_the_grid_and_the_endpoint_table(tmp_path, monkeypatch):
    import hw1.q1
    figures = capture_figures(monkeypatch, hw1.q1)
    result = run_script("hw1/q1.py", "--lrs", "0.01", "1", "--runs", "2", "--steps", "50", "--quiet",
                        "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("q1_0.01_1.png", "q1_0.01_2.png", "q1_1_1.png", "q1_1_2.png"):
        assert_drawn(tmp_path / "plots" / name)
    assert_drawn(tmp_path / "q1_grid.png")
    for name in ("q1_0.01_1.png", "q1_grid.png"):  # y's scale is given: one colour bar, labelled
        assert [bar.get_ylabel() for bar in colour_bars(figures[name])] == ["y"]
    rows = list(csv.DictReader((tmp_path / "q1_endpoints.csv").open()))
    assert [(r["lr"], r["seed"]) for r in rows] == [("0.01", "1"), ("0.01", "2"), ("1", "1"), ("1", "2")]
    assert all(r["status"] == "escaped" and r["left_view_at_step"] == "1" for r in rows[2:])
    assert all(float(r["final_y"]) < 50 and int(r["steps"]) == 50 for r in rows[:2])


@pytest.mark.script
def test_q2_script_sweeps_and_writes_its_results(tmp_path, project1_data_dir):
    result = run_script("hw1/q2.py", "--data-dir", project1_data_dir, "--epochs", "20",
                        "--lrs", "0.01", "0.03", "--quiet", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "q2_metrics.json").read_text())
    assert [row["lr"] for row in metrics["sweep"]] == [0.01, 0.03]
    best = min(metrics["sweep"], key=lambda row: row["val_mse"])
    assert metrics["chosen_lr"] == best["lr"] and metrics["val_mse"]["hand_written"] == best["val_mse"]
    # sin(x1) on [-2, 2] has variance ~0.6; the MLP must do far better, and torch.nn the same.
    assert metrics["val_mse"]["hand_written"] < 0.1
    assert metrics["val_mse"]["torch_nn"] == pytest.approx(metrics["val_mse"]["hand_written"], abs=1e-4)
    assert len((tmp_path / "q2_ytest.txt").read_text().split()) == 40
    for name in ("q2_loss.png", "q2_map.png"):
        assert_drawn(tmp_path / name)


@pytest.mark.script
def test_q2_reports_a_sweep_where_every_rate_diverges(tmp_path, project1_data_dir):
    result = run_script("hw1/q2.py", "--data-dir", project1_data_dir, "--epochs", "3",
                        "--optimizer", "sgd", "--lrs", "50", "--quiet", "--out-dir", tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "diverged" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.script
def test_q2_missing_and_malformed_data_give_one_line_errors(tmp_path, project1_data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("hw1/q2.py", "--data-dir", empty, "--out-dir", tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("error: ") and "Project1_data.pt" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

    data = torch.load(project1_data_dir / "Project1_data.pt")
    data["x_val"] = data["x_val"][:, :1]
    torch.save(data, project1_data_dir / "Project1_data.pt")
    result = run_script("hw1/q2.py", "--data-dir", project1_data_dir, "--out-dir", tmp_path)
    assert result.returncode == 2 and "x_val has shape (128, 1), expected (N, 2)" in result.stderr
    assert "Traceback" not in result.stderr
