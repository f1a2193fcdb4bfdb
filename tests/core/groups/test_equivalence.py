"""A 0/1-masked network computes exactly what its physically slimmed copy computes."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.groups import GroupMasks, slim


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_eval_outputs_match(arch, fraction, masks_for):
    masks = masks_for(arch.groups, fraction, seed=int(fraction * 100))
    x = torch.randn(4, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(2))
    masker = GroupMasks(arch.model, arch.groups)
    try:
        with torch.no_grad():
            dense = arch.model(x)
            with masker.use(masks):
                masked = arch.model(x)
            slimmed = slim(arch.model, arch.groups, masks)
            after = arch.model(x)  # hooks inert again: the dense network is back
    finally:
        masker.remove()
    with torch.no_grad():
        out = slimmed(x)
    assert _relative_error(masked, out) < 1e-4
    assert torch.equal(after, dense)
    assert _relative_error(masked, dense) > 1e-2  # the masks did remove something
    assert sum(p.numel() for p in slimmed.parameters()) < sum(p.numel() for p in arch.model.parameters())


def _no_dropout(model: nn.Module) -> None:
    # Dropout draws one number per channel, so masked and slim networks would draw different
    # patterns; drop-path (one draw per sample) stays on and is seeded alike in both.
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def test_train_step_matches(arch, fraction, masks_for):
    """Train mode (BN batch statistics), one SGD step on both, then eval outputs again.

    In float64: after a step, float32 rounding differences between the two summation orders
    grow to ~1e-4 through fifty layers, which would hide a real error of that size."""
    masks = masks_for(arch.groups, fraction, seed=7)
    model = copy.deepcopy(arch.model).double()
    _no_dropout(model)
    masker = GroupMasks(model, arch.groups)
    slimmed = slim(model, arch.groups, masks)
    x = torch.randn(4, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    outputs = []
    for net, active in ((model, masks), (slimmed, None)):
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
        torch.manual_seed(11)
        with masker.use(active):
            logits = net(x)
            F.cross_entropy(logits, y).backward()
        optimizer.step()
        net.eval()
        with torch.no_grad(), masker.use(active):
            outputs.append((logits.detach(), net(x)))
    (train_masked, eval_masked), (train_slim, eval_slim) = outputs
    assert _relative_error(train_masked, train_slim) < 1e-9
    assert _relative_error(eval_masked, eval_slim) < 1e-9


def test_soft_masks_are_differentiable(arch):
    """Real-valued masks pass gradients to every group's mask."""
    masks = [torch.full((g.size,), 0.7, requires_grad=True) for g in arch.groups]
    masker = GroupMasks(arch.model, arch.groups)
    try:
        x = torch.randn(2, 3, arch.size, arch.size)
        with masker.use(masks):
            arch.model(x).square().sum().backward()
    finally:
        masker.remove()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in masks)
