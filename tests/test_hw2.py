"""hw2: the hand-written batch normalization against autograd and PyTorch's BN in both layouts, eval
mode, the module as a drop-in for nn.BatchNorm1d/2d, clear errors, and the two scripts."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hw2.batchnorm import (BatchNorm, BatchNormFunction, batchnorm_backward, batchnorm_backward_graph,
                           batchnorm_forward)
from tests.conftest import assert_drawn, run_script

SHAPES = [(6, 4), (5, 3, 7), (4, 3, 5, 5), (2, 2, 1, 3)]  # (N, C), (N, C, L), (N, C, H, W)


def tensors(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """float64 x (offset and scaled), gamma, beta, dy and running statistics for `shape`."""
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *size: torch.randn(size, generator=generator, dtype=torch.float64)  # noqa: E731
    c = shape[1]
    return {"x": draw(*shape) * 3 + 2, "gamma": draw(c) + 1, "beta": draw(c), "dy": draw(*shape),
            "running_mean": draw(c), "running_var": draw(c).exp()}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.gradcheck
def test_gradcheck_of_the_function(shape, training):
    t = tensors(shape)
    x, gamma, beta = (t[k].requires_grad_(True) for k in ("x", "gamma", "beta"))
    function = lambda x, gamma, beta: BatchNormFunction.apply(  # noqa: E731
        x, gamma, beta, t["running_mean"].clone(), t["running_var"].clone(), training, 0.1, 1e-5)
    assert torch.autograd.gradcheck(function, (x, gamma, beta))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.gradcheck
def test_outputs_running_stats_and_gradients_match_pytorch(shape, training):
    t = tensors(shape, seed=1)
    x, gamma, beta = (t[k].clone().requires_grad_(True) for k in ("x", "gamma", "beta"))
    mean_ref, var_ref = t["running_mean"].clone(), t["running_var"].clone()
    expected = F.batch_norm(x, mean_ref, var_ref, gamma, beta, training, 0.3, 1e-3)
    expected.backward(t["dy"])
    mean, var = t["running_mean"].clone(), t["running_var"].clone()
    y, cache = batchnorm_forward(t["x"], t["gamma"], t["beta"], mean, var, training=training,
                                 momentum=0.3, eps=1e-3)
    dx, dgamma, dbeta = batchnorm_backward(t["dy"], cache)
    for ours, theirs in ((y, expected), (mean, mean_ref), (var, var_ref), (dx, x.grad),
                         (dgamma, gamma.grad), (dbeta, beta.grad)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    if training:
        for ours, theirs in zip(batchnorm_backward_graph(t["dy"], cache), (dx, dgamma, dbeta)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.gradcheck
def test_input_gradient_is_blind_to_shifting_and_scaling_the_input():
    """Per channel, sum(dL/dx) = 0 and (with eps = 0) sum(x_hat * dL/dx) = 0: y ignores x's mean and scale."""
    t = tensors((8, 3, 4, 4))
    y, cache = batchnorm_forward(t["x"], t["gamma"], t["beta"], eps=0.0)
    dx, _, _ = batchnorm_backward(t["dy"], cache)
    assert dx.sum(dim=(0, 2, 3)).abs().max() < 1e-12
    assert (dx * cache.x_hat).sum(dim=(0, 2, 3)).abs().max() < 1e-12


def test_eval_mode_normalises_with_the_running_statistics():
    torch.manual_seed(0)
    norm = BatchNorm(3).double()
    x = torch.randn(16, 3, 4, 4, dtype=torch.float64) * 2 + 5
    for _ in range(20):
        norm(x)
    norm.eval()
    y = norm(x)
    scale = (norm.running_var + norm.eps).rsqrt().view(1, 3, 1, 1)
    torch.testing.assert_close(y, (x - norm.running_mean.view(1, 3, 1, 1)) * scale)
    assert (y - norm.train()(x)).abs().max() > 1e-3  # the batch's own statistics give another output
    assert norm.num_batches_tracked.item() == 21


@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_tracks_running_statistics_like_pytorch(momentum):
    torch.manual_seed(0)
    ours, theirs = BatchNorm(4, momentum=momentum), nn.BatchNorm1d(4, momentum=momentum)
    for step in range(5):
        x = torch.randn(10, 4) * (step + 1) + step
        torch.testing.assert_close(ours(x), theirs(x))
    for name, buffer in theirs.named_buffers():
        torch.testing.assert_close(getattr(ours, name), buffer)


def test_module_drops_into_a_model_trains_like_pytorch_bn_and_shares_state_dicts():
    def model(norm_2d, norm_1d) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), norm_2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(6, 8), norm_1d(8), nn.ReLU(), nn.Linear(8, 2)).double()

    def train(net: nn.Sequential) -> list[float]:
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        losses = []
        for _ in range(10):
            loss = F.cross_entropy(net(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 8, 8, generator=generator, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last)
    target = (x.mean(dim=(1, 2, 3)) > 0).long()
    ours, theirs = model(BatchNorm, BatchNorm), model(nn.BatchNorm2d, nn.BatchNorm1d)
    losses = train(ours)
    assert losses[-1] < 0.8 * losses[0]
    torch.testing.assert_close(losses, train(theirs), rtol=0, atol=1e-12)

    fresh = model(nn.BatchNorm2d, nn.BatchNorm1d)
    fresh.load_state_dict(ours.state_dict())
    ours.eval(), fresh.eval()
    torch.testing.assert_close(ours(x), fresh(x), rtol=0, atol=1e-12)


def test_bad_input_is_a_clear_error():
    norm = BatchNorm(3)
    with pytest.raises(ValueError, match=r"BatchNorm\(3\) expects input of shape \(N, 3\).*got \(4, 5\)"):
        norm(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        norm(torch.randn(3))
    with pytest.raises(ValueError, match="more than one value per channel"):
        norm(torch.randn(1, 3))
    norm.eval()
    assert norm(torch.randn(1, 3)).shape == (1, 3)  # eval mode uses the running statistics
    with pytest.raises(ValueError, match="eval mode needs running_mean and running_var"):
        batchnorm_forward(torch.randn(4, 3), torch.ones(3), torch.zeros(3), training=False)


# --- scripts --------------------------------------------------------------------------------------
@pytest.mark.script
def test_check_script_passes_and_writes_its_table(tmp_path):
    result = run_script("hw2/check.py", "--quick", "--repeats", "2", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "check.txt").read_text()
    assert table == result.stdout.split("wrote ")[0]
    assert "largest difference from PyTorch" in table and "FAIL" not in table and "ratio" in table


@pytest.mark.script
def test_train_script_writes_the_plot_and_metrics(cifar_jpeg_dir, tmp_path):
    result = run_script("hw2/train.py", "--data-dir", cifar_jpeg_dir, "--out-dir", tmp_path, "--quiet",
                        "--epochs", "2", "--val-size", "12", "--batch-size", "16", "--widths", "4", "8",
                        env={"CSE849_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert_drawn(tmp_path / "bn_effect.png")
    metrics = json.loads((tmp_path / "bn_effect.json").read_text())
    assert set(metrics["histories"]) == {"no BN", "hand-written BN", "PyTorch BN"}
    assert max(metrics["hand_vs_pytorch_bn_first_batch_float64_max_difference"].values()) < 1e-12
    assert max(metrics["hand_vs_pytorch_bn_max_curve_difference"].values()) < 1e-3
    assert len(metrics["histories"]["PyTorch BN"]["val_acc"]) == 2


@pytest.mark.script
def test_train_script_without_data_exits_with_status_3(tmp_path):
    result = run_script("hw2/train.py", "--data-dir", tmp_path / "nothing", "--out-dir", tmp_path,
                        "--dataset-format", "imagefolder", env={"CSE849_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 3 and result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


def test_the_module_takes_its_dtype_and_defaults_from_pytorch():
    norm = BatchNorm(3, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var))
    assert norm.num_batches_tracked.dtype == torch.long and norm.num_batches_tracked.item() == 0
    reference = nn.BatchNorm1d(3)
    assert (norm.eps, norm.momentum) == (reference.eps, reference.momentum)
    x = torch.randn(8, 3)
    mine, theirs = (torch.zeros(3), torch.ones(3)), (torch.zeros(3), torch.ones(3))
    y, _ = batchnorm_forward(x, torch.ones(3), torch.zeros(3), *mine, training=True)
    expected = F.batch_norm(x, *theirs, training=True)  # PyTorch's defaults: momentum 0.1, eps 1e-5
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(mine[0], theirs[0])  # running statistics updated in place, as PyTorch's
    torch.testing.assert_close(mine[1], theirs[1])


def test_two_values_per_channel_are_enough_to_train_on():
    norm = BatchNorm(3).train()
    assert norm(torch.randn(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"needs more than one value per channel in training mode, got input of shape \(1, 3\)"):
        norm(torch.randn(1, 3))


def test_running_statistics_are_used_and_updated_only_as_a_pair():
    x = torch.randn(8, 3)
    running_mean = torch.randn(3)
    before = running_mean.clone()
    batchnorm_forward(x, torch.ones(3), torch.zeros(3), running_mean, None, training=True)
    assert torch.equal(running_mean, before)  # no variance to update alongside: neither is
    with pytest.raises(ValueError, match="eval mode needs running_mean and running_var"):
        batchnorm_forward(x, torch.ones(3), torch.zeros(3), running_mean, None, training=False)


def test_the_module_passes_its_own_eps_to_the_hand_written_passes():
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(BatchNorm(3, eps=0.5)(x), nn.BatchNorm2d(3, eps=0.5)(x))


def test_the_graph_backward_refuses_an_eval_mode_cache():
    t = tensors((6, 4))
    _, cache = batchnorm_forward(t["x"], t["gamma"], t["beta"], t["running_mean"], t["running_var"], training=False)
    with pytest.raises(ValueError) as refused:
        batchnorm_backward_graph(t["dy"], cache)
    assert str(refused.value) == ("batchnorm_backward_graph follows the training-mode graph; use "
                                  "batchnorm_backward")
