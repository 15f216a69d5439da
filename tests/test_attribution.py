"""Integrated gradients on toy models whose answer depends on one known pixel region or one known token."""

import pytest
import torch
from torch import nn

from common.attribution import integrated_gradients


def test_the_pixel_region_that_decides_ranks_first_and_attributions_add_up():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 8, 8)

    def score(x: torch.Tensor) -> torch.Tensor:  # only rows 2-3, columns 5-6 matter, and non-linearly
        return torch.tanh(x[:, :, 2:4, 5:7].sum(dim=(1, 2, 3)) - 3) * 2

    attributions = integrated_gradients(score, images, steps=64)
    assert attributions.shape == images.shape
    per_pixel = attributions.abs().sum(dim=1)  # (N, 8, 8)
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:4, 5:7] = True
    assert (per_pixel[:, ~region] == 0).all() and (per_pixel[:, region] > 0).all()
    difference = score(images) - score(torch.zeros_like(images))
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), difference, rtol=1e-3, atol=1e-4)


def test_the_token_that_decides_ranks_first_over_embeddings():
    torch.manual_seed(0)
    embed = nn.Embedding(20, 8)
    direction = torch.randn(8)
    decisive = 7

    def score(vectors: torch.Tensor) -> torch.Tensor:  # the mean over positions of each token's vote
        votes = torch.sigmoid(vectors @ direction) * (ids == decisive).float() * 5 + 0.01 * vectors.sum(-1)
        return votes.sum(dim=1)

    ids = torch.tensor([[3, 1, decisive, 4, 9], [decisive, 2, 2, 5, 11]])
    vectors = embed(ids).detach()
    per_token = integrated_gradients(score, vectors).sum(dim=-1)  # (N, T)
    assert per_token.abs().argmax(dim=1).tolist() == [2, 0]
    difference = score(vectors) - score(torch.zeros_like(vectors))
    torch.testing.assert_close(per_token.sum(dim=1), difference, rtol=1e-3, atol=1e-4)


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        integrated_gradients(lambda x: x.sum(dim=1), torch.ones(2, 3), steps=0)


@pytest.mark.parametrize("steps", [1, 3])
def test_the_midpoint_rule_is_exact_for_a_quadratic_score_from_any_baseline(steps):
    inputs, baseline = torch.tensor([[1.0, -2.0, 3.0]]), torch.tensor([0.5, 1.0, -1.0])

    def score(x: torch.Tensor) -> torch.Tensor:  # each element's attribution is x² - baseline², exactly
        return (x ** 2).sum(dim=1)
    attributions = integrated_gradients(score, inputs, baseline=baseline, steps=steps)
    torch.testing.assert_close(attributions, inputs ** 2 - baseline ** 2)
    assert attributions.dtype == torch.float32


def test_the_path_s_gradients_add_up_in_float32_and_32_steps_by_default():
    calls = []

    def score(x: torch.Tensor) -> torch.Tensor:  # the gradient is 1/3 rounded to bf16: 0.333984375
        calls.append(x)
        return (x * torch.tensor(1 / 3, dtype=x.dtype)).sum(dim=1)
    ones = torch.ones(1, 1, dtype=torch.bfloat16)
    attributions = integrated_gradients(score, ones, steps=3)
    assert attributions.item() == pytest.approx(0.333984375, abs=1e-7)  # a bf16 sum would round to 1/3
    calls.clear()
    integrated_gradients(score, ones)
    assert len(calls) == 32
