"""S2HPruner's step with the sliced hard pass equals the step with the masked one.

Logits, losses, the gradients of theta and of the mask logits, on every architecture of the
zoo (narrowed for speed: the same topologies) and with both hard rules. In float64 the two
passes differ only by summation order, so they agree far inside 1e-5; in float32 (last test)
logits and loss agree within 1e-5 and the gradients' rounding error is the masked pass's own.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from core.config import ModelConfig
from core.groups import discover_groups
from core.models import build_model
from method.algorithm import S2HState
from method.options import S2HOptions

ZOO = {
    "resnet50": ("resnet50", 0.25, {}),
    "mobilenetv3": ("mobilenetv3", 0.5, {}),
    "wrn28_10": ("wrn28_10", 0.125, {}),
    "vit": ("vit", 0.25, {"depth": 3}),
    "swin": ("swin", 0.25, {"depths": [1, 2, 1]}),
}


def _states(name: str, rule: str, dtype: torch.dtype, memory: str = "low") -> tuple[S2HState, S2HState]:
    zoo_name, width, options = ZOO[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=zoo_name, width=width, options=options), 10, 32).to(dtype).train()
    for module in model.modules():  # element-wise dropout draws per channel (core.groups.sliced)
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    groups = discover_groups(model, torch.zeros(1, 3, 32, 32, dtype=dtype))
    states = []
    for hard_pass in ("masked", "sliced"):
        state = S2HState(copy.deepcopy(model), groups, S2HOptions(mask_rule=rule, hard_pass=hard_pass, step_memory=memory),
                         flops_target=0.3, model_name=zoo_name, width=width).to(dtype)
        generator = torch.Generator().manual_seed(5)  # hard widths well inside every group
        with torch.no_grad():
            for logits in state.masks.logits:
                logits.copy_(torch.randn(logits.shape, generator=generator).to(dtype))
        states.append(state)
    assert states[1].sliced is not None and states[0].sliced is None
    return states[0], states[1]


def _gradients(state: S2HState, x: torch.Tensor, y: torch.Tensor):
    torch.manual_seed(7)  # drop-path: one draw per sample, alike in both passes
    return state.gradients(x, y)


def _assert_equal_steps(masked: S2HState, sliced: S2HState, x: torch.Tensor, y: torch.Tensor, tol: float) -> None:
    want, have = _gradients(masked, x, y), _gradients(sliced, x, y)
    assert masked.masks.hard_widths() == sliced.masks.hard_widths()
    assert min(w / g.size for w, g in zip(sliced.masks.hard_widths(), sliced.groups)) < 1  # something is sliced
    scale = max(1.0, float(want.logits.abs().max()))
    assert torch.allclose(have.logits, want.logits, rtol=tol, atol=tol * scale)
    assert float(have.loss) == pytest.approx(float(want.loss), rel=tol, abs=tol)
    assert have.parts == pytest.approx(want.parts, rel=tol, abs=tol)
    for name, g_want, g_have in zip([n for n, p in masked.model.named_parameters() if p.requires_grad], want.theta, have.theta):
        if g_want is None or g_have is None:
            assert g_want is None and g_have is None or float((g_want if g_have is None else g_have).abs().max()) == 0
            continue
        assert torch.allclose(g_have, g_want, rtol=tol, atol=tol * max(1e-3, float(g_want.abs().max()))), name
    for g_want, g_have in zip(want.u, have.u):
        assert torch.allclose(g_have, g_want, rtol=tol, atol=tol * max(1e-3, float(g_want.abs().max())))


@pytest.mark.parametrize("rule", ["expected_width", "mean_threshold"])
@pytest.mark.parametrize("name", list(ZOO))
def test_sliced_step_equals_masked_step(name, rule):
    masked, sliced = _states(name, rule, torch.float64)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(4) % 10
    _assert_equal_steps(masked, sliced, x, y, 1e-9)


def test_float32_sliced_step_adds_no_error_beyond_float32_rounding():
    """In float32 both passes carry rounding error (against the float64 step, up to a few
    percent of some deep gradients); the sliced pass's must be no larger than the masked
    pass's own, and logits and loss agree within 1e-5."""
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(8) % 10
    reference = _gradients(_states("resnet50", "expected_width", torch.float64)[0], x, y)
    masked, sliced = (_gradients(state, x.float(), y) for state in _states("resnet50", "expected_width", torch.float32))
    scale = float(masked.logits.abs().max())
    assert torch.allclose(sliced.logits, masked.logits, rtol=1e-5, atol=1e-5 * scale)
    assert float(sliced.loss) == pytest.approx(float(masked.loss), rel=1e-5)
    pairs = [(r, m, s) for r, m, s in zip(reference.theta, masked.theta, sliced.theta) if r is not None] + \
        list(zip(reference.u, masked.u, sliced.u))
    for ref, m, s in pairs:
        error_masked = float((m.double() - ref).abs().max())
        error_sliced = float((s.double() - ref).abs().max())
        assert error_sliced <= 2 * error_masked + 1e-5 * float(ref.abs().max())


@pytest.mark.parametrize("name", ["vit", "resnet50"])
def test_low_memory_order_changes_nothing(name):
    """`step_memory=low` runs the hard network twice (once without a graph) after the soft
    graph is released: the same gradients bit for bit as `fast`, the same random draws
    (drop-path in the ViT) and BatchNorm statistics updated once."""
    fast = _states(name, "expected_width", torch.float32, memory="fast")[1]
    low = _states(name, "expected_width", torch.float32, memory="low")[1]
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4) % 10
    want = _gradients(fast, x, y)
    after_fast = torch.rand(3)
    have = _gradients(low, x, y)
    assert torch.equal(torch.rand(3), after_fast)  # the generator ends where one hard pass leaves it
    assert torch.equal(have.logits, want.logits) and have.parts == want.parts
    for g_want, g_have in zip(want.theta + want.u, have.theta + have.u):
        assert (g_want is None and g_have is None) or torch.equal(g_have, g_want)
    for b_want, b_have in zip(fast.model.buffers(), low.model.buffers()):
        assert torch.equal(b_have, b_want)
