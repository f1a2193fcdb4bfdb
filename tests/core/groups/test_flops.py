"""The FLOPs counters agree with FlopCounterMode on the physically slimmed network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from core.groups import slim
from core.measure import count_flops


def test_exact_counter_matches_flop_counter_mode(arch, fraction, masks_for):
    masks = masks_for(arch.groups, fraction, seed=3)
    slimmed = slim(arch.model, arch.groups, masks)
    for scope in ("network", "prunable"):
        measured = arch.flops.measure(slimmed, scope)
        assert arch.flops.exact(masks, scope) == pytest.approx(measured, rel=5e-3)
    # The network scope is the run record's `flops`: FlopCounterMode on the whole module.
    assert arch.flops.measure(slimmed) == count_flops(slimmed, arch.size)
    assert arch.flops.exact(masks) < arch.flops.dense()


def test_dense_counts(arch):
    full = arch.groups.full_masks()
    assert arch.flops.exact(full) == count_flops(arch.model, arch.size)
    assert arch.flops.exact(full, "prunable") == arch.flops.dense("prunable") > 0
    assert arch.flops.dense("prunable") <= arch.flops.dense("network")


def test_differentiable_counter_at_hard_widths(arch, fraction, masks_for):
    """Expected widths equal to the hard widths give the exact count, through autograd."""
    masks = masks_for(arch.groups, fraction, seed=5)
    widths = [m.sum().double().requires_grad_() for m in masks]
    value = arch.flops.count(widths)
    assert value.item() == arch.flops.exact(masks)
    value.backward()
    assert all(w.grad is not None for w in widths)


def test_gradient_matches_finite_differences(arch):
    generator = torch.Generator().manual_seed(0)
    widths = tuple(
        (1 + (g.size - 1) * torch.rand((), generator=generator, dtype=torch.float64)).requires_grad_()
        for g in arch.groups
    )
    for scope in ("network", "prunable"):
        assert torch.autograd.gradcheck(lambda *w: arch.flops.count(w, scope) / 1e6, widths, eps=1e-3, atol=1e-6)


def test_cpu_attention_products_are_counted():
    """FlopCounterMode counts fused attention on a CPU as it does on a GPU (see core.measure)."""
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 2 * (2 * 2 * 3 * 5 * 5 * 4)
