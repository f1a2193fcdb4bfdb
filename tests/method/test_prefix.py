"""Prefix masks: hard masks are prefixes of the importance order; expected widths; STE."""

from __future__ import annotations

import pytest
import torch

from method.prefix import PrefixMasks


def _random_masks(rule: str, divisor: int = 1, seed: int = 0) -> PrefixMasks:
    generator = torch.Generator().manual_seed(seed)
    masks = PrefixMasks([7, 12, 30], divisor=divisor, rule=rule)
    with torch.no_grad():
        for logits in masks.logits:
            logits.copy_(3 * torch.randn(logits.shape, generator=generator))
    masks.set_orders([torch.randperm(n, generator=generator) for n in masks.sizes])
    return masks


@pytest.mark.parametrize("rule", ["mean_threshold", "expected_width"])
@pytest.mark.parametrize("divisor", [1, 4])
def test_hard_masks_are_prefixes_of_the_order(rule, divisor):
    for seed in range(20):
        masks = _random_masks(rule, divisor, seed)
        for hard, order, size in zip(masks.hard(), masks.orders, masks.sizes):
            kept = int(hard.sum())
            assert 1 <= kept <= size
            assert torch.equal(hard.detach(), torch.zeros(size).index_fill(0, order[:kept], 1.0))


def test_soft_masks_and_expected_width():
    masks = _random_masks("mean_threshold")
    with torch.no_grad():
        keeps, probabilities, widths = masks.position_keep(), masks.probabilities(), masks.expected_widths()
    for w, p, width in zip(keeps, probabilities, widths):
        assert torch.allclose(w, torch.stack([p[i:].sum() for i in range(p.numel())]))
        assert float(w[0]) == pytest.approx(1.0) and torch.all(w[1:] <= w[:-1] + 1e-7)
        assert float(width) == pytest.approx(float(w.sum()), rel=1e-5)  # sum_k p_k k = sum_i w_i
    for soft, w, order in zip(masks.soft(), masks.position_keep(), masks.orders):
        assert torch.equal(soft[order], w)


def test_rules_agree_with_their_definitions():
    masks = _random_masks("mean_threshold", seed=3)
    for hard, w in zip(masks.hard_positions(), masks.position_keep()):
        assert int(hard.sum()) == int((w >= w.mean() - 1e-6).sum())
    masks.rule = "expected_width"
    for hard, width in zip(masks.hard_positions(), masks.expected_widths()):
        assert int(hard.detach().sum()) == int(torch.ceil(width.detach() - 1e-6))


def test_expected_width_passes_gradients_straight_through():
    masks = _random_masks("expected_width", seed=5)
    weights = [torch.randn(n) for n in masks.sizes]
    hard = sum((m * c).sum() for m, c in zip(masks.hard(), weights))
    through_hard = torch.autograd.grad(hard, list(masks.logits))
    soft = sum((m * c).sum() for m, c in zip(masks.soft(), weights))
    through_soft = torch.autograd.grad(soft, list(masks.logits))
    for a, b in zip(through_hard, through_soft):
        assert torch.allclose(a, b) and a.abs().sum() > 0
    # The paper's rule is an indicator: no gradient reaches the logits through it.
    masks.rule = "mean_threshold"
    assert all(not m.requires_grad for m in masks.hard())


def test_buckets():
    masks = PrefixMasks([10], divisor=4)
    assert len(masks.logits[0]) == 3  # positions 0-3, 4-7, 8-9
    w = masks.position_keep()[0]
    assert torch.equal(w[:4], w[:1].expand(4)) and torch.equal(w[8:], w[8:9].expand(2))
    # uniform over "keep 4, 8 or 10 channels"
    assert masks.expected_widths()[0].item() == pytest.approx((4 + 8 + 10) / 3)
