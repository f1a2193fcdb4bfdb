"""The sliced hard pass computes what the 0/1-masked full-width pass computes, gradients included.

In float64, so that the two summation orders (zeros multiplied in, or not there) agree to
far below the 1e-5 the method's tests ask of float32 steps.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.groups import GroupMasks
from core.groups import sliced as sliced_module
from core.groups.sliced import SlicedNetwork


def _pair(arch):
    """Two float64 training-mode copies of the architecture: one masked, one sliced. Dropout
    off: it draws one number per channel, so a pruned width draws fewer (module docstring)."""
    masked_model = copy.deepcopy(arch.model).double().train()
    for module in masked_model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    sliced_model = copy.deepcopy(masked_model)
    return masked_model, GroupMasks(masked_model, arch.groups), sliced_model, SlicedNetwork(sliced_model, arch.groups)


def _step(model: nn.Module, run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(3)  # drop-path draws one number per sample: alike in both passes
    out = run(x)
    grads = torch.autograd.grad(F.cross_entropy(out, y), list(model.parameters()), allow_unused=True)
    return out.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), grads)]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-9, atol=1e-11 * max(1.0, float(b.abs().max())))


def test_outputs_gradients_and_statistics_equal_the_masked_pass(arch, masks_for):
    masked_model, masker, sliced_model, sliced = _pair(arch)
    assert sliced.usable, sliced.reason
    x = torch.randn(4, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.arange(4) % 10
    for seed in (35, 36):  # the same widths with other units kept: new indices, no new structure
        masks = masks_for(arch.groups, 0.35, seed=seed)
        before = {name: b.clone() for name, b in sliced_model.named_buffers()}
        with masker.use([m.double() for m in masks]):
            want, want_grads = _step(masked_model, masked_model, x, y)
        have, have_grads = _step(sliced_model, lambda inputs: sliced(inputs, masks), x, y)
        assert _close(have, want)
        for (name, _), g_want, g_have in zip(masked_model.named_parameters(), want_grads, have_grads):
            assert _close(g_have, g_want), name
        if seed == 35:
            _statistics_as_documented(masked_model, sliced_model, sliced.slices([m > 0.5 for m in masks]), before)
    assert sliced._widths == tuple(int(m.sum()) for m in masks)


def _statistics_as_documented(masked_model, sliced_model, slices, before) -> None:
    """BatchNorm running statistics: the kept channels' are the masked pass's; the removed
    channels' skip this batch's update (nothing reads them before recalibration)."""
    have = dict(sliced_model.named_buffers())
    for name, b_want in masked_model.named_buffers():
        spec = slices.get(name)
        if spec is None:
            assert _close(have[name], b_want) if b_want.is_floating_point() else torch.equal(have[name], b_want), name
            continue
        (dim, kept), = spec
        removed = torch.ones(b_want.shape[dim], dtype=torch.bool)
        removed[kept] = False
        assert _close(have[name][kept], b_want[kept]), name
        assert torch.equal(have[name][removed], before[name][removed]), name


def test_the_sliced_pass_runs_fewer_flops(arch_builder, masks_for):
    from torch.utils.flop_counter import FlopCounterMode

    arch = arch_builder("resnet50_cifar")
    net = SlicedNetwork(arch.model, arch.groups)
    masks = masks_for(arch.groups, 0.35, seed=1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as dense:
        arch.model(x)
    with torch.no_grad(), FlopCounterMode(display=False) as hard:
        net(x, masks)
    ratio = hard.get_total_flops() / dense.get_total_flops()
    assert ratio == pytest.approx(arch.flops.exact(masks) / arch.flops.dense(), rel=1e-6)
    assert ratio < 0.2


def test_a_model_the_rules_do_not_cover_is_refused_with_a_reason(arch_builder, monkeypatch):
    arch = arch_builder("resnet50_cifar")
    rules = {key: dims for key, dims in sliced_module._DIMS.items() if key[0] != "batchnorm"}
    rules[("batchnorm", "out")] = rules[("batchnorm", "in")] = (("weight", 0), ("bias", 0))  # statistics forgotten
    monkeypatch.setattr(sliced_module, "_DIMS", rules)
    net = SlicedNetwork(arch.model, arch.groups)
    assert not net.usable and "running_mean" in net.reason


def test_s2hpruner_falls_back_to_the_masked_pass_with_one_line(arch_builder, monkeypatch, capsys):
    from method.algorithm import S2HState
    from method.options import S2HOptions

    arch = arch_builder("resnet50_cifar")
    monkeypatch.setattr(sliced_module.SlicedNetwork, "_check", lambda self: (False, "a reason"))
    state = S2HState(arch.model, arch.groups, S2HOptions(), flops_target=0.3)
    err = capsys.readouterr().err
    assert state.sliced is None and err.count("\n") == 1 and "a reason" in err and "masked at full width" in err
    assert S2HState(arch.model, arch.groups, S2HOptions(hard_pass="masked"), flops_target=0.3).sliced is None
