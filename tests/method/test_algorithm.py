"""Algorithm 1's gradient routing, checked against an independent computation of each term.

The independent computation is the paper's text (mean-threshold rule, one logit per channel,
a mask on each BN output, R on expected widths over the whole network, a fixed order), so the
`PAPER_TEXT` options must reproduce it exactly; the official defaults are checked item by item
in test_official.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.groups import discover_groups
from method.algorithm import S2HState
from method.options import PAPER_TEXT, S2HOptions

TERMS = ("g_l_theta", "g_g_hard_theta", "g_g_soft_theta", "g_l_w", "g_g_w")


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    # KL(teacher || student), batch mean, written out independently of the implementation.
    p_t = torch.softmax(teacher, -1)
    return (p_t * (torch.log_softmax(teacher, -1) - torch.log_softmax(student, -1))).sum(-1).mean()


def _soft_masks(state: S2HState, u: list[torch.Tensor]) -> list[torch.Tensor]:
    """w_i = sum_{k >= i} softmax(u)_k per position, placed at unit order[i] (divisor 1)."""
    masks = []
    for logits, order in zip(u, state.masks.orders):
        p = torch.softmax(logits, 0)
        w = torch.stack([p[i:].sum() for i in range(p.numel())])
        masks.append(torch.zeros_like(w).scatter(0, order, w))
    return masks


def _hard_masks(state: S2HState, u: list[torch.Tensor]) -> list[torch.Tensor]:
    """Paper rule: keep positions with w_i >= mean(w)."""
    masks = []
    for logits, order in zip(u, state.masks.orders):
        p = torch.softmax(logits.detach(), 0)
        w = torch.stack([p[i:].sum() for i in range(p.numel())])
        keep = (w >= w.mean() - 1e-6).to(w.dtype)
        masks.append(torch.zeros_like(w).scatter(0, order, keep))
    return masks


def _expected_update(state: S2HState, x, y, switches: dict[str, bool], coef_l: float, coef_g: float):
    """Algorithm 1 + A4 (per-group balancing) from one autograd.grad call per term."""
    theta = state.weights()
    u = [p for p in state.masks.logits]
    soft, hard = _soft_masks(state, u), _hard_masks(state, u)
    y_s = state.forward_masked(x, soft)
    y_h = state.forward_masked(x, hard)
    loss = F.cross_entropy(y_s, y)
    widths = [sum(torch.softmax(l, 0)[k] * (k + 1) for k in range(l.numel())) for l in u]
    r = (state.flops.count(widths) / state.flops.dense() - state.target) ** 2

    def grad(out, inputs):
        return [g if g is not None else torch.zeros_like(i)
                for g, i in zip(torch.autograd.grad(out, inputs, retain_graph=True, allow_unused=True), inputs)]

    g_l_theta, g_l_u = grad(loss, theta), grad(loss, u)
    g_d1_theta = grad(_kl(y_h, y_s.detach()), theta)
    d2 = _kl(y_h.detach(), y_s)
    g_d2_theta, g_d2_u = grad(d2, theta), grad(d2, u)
    g_r = grad(r, u)

    d_theta = [-(coef_l * a * switches["g_l_theta"] + coef_g * b * switches["g_g_hard_theta"]
                 + coef_g * c * switches["g_g_soft_theta"]) for a, b, c in zip(g_l_theta, g_d1_theta, g_d2_theta)]
    d_u = []
    for gl, gg, gr in zip(g_l_u, g_d2_u, g_r):
        combined = torch.zeros_like(gr)
        if switches["g_l_w"] and gl.norm() > 0:
            combined = combined + gl / gl.norm()
        if switches["g_g_w"] and gg.norm() > 0:
            combined = combined + gg / gg.norm()
        if combined.norm() > 0:
            combined = combined * gr.norm() / combined.norm()
        d_u.append(-(combined + 5.0 * gr))
    return d_theta, d_u


def _applied_update(state: S2HState, x, y):
    """One step of the implementation with plain SGD at lr 1: the parameter changes."""
    theta, u = state.weights(), list(state.masks.logits)
    before = [p.detach().clone() for p in theta + u]
    grads = state.gradients(x, y)
    state.apply(grads)
    with torch.no_grad():
        for p in theta + u:
            if p.grad is not None:
                p -= p.grad
    after = [p.detach() for p in theta + u]
    changes = [a - b for a, b in zip(after, before)]
    return changes[: len(theta)], changes[len(theta):]


def _state(model, size: int, switches: dict[str, bool]) -> S2HState:
    """S2HPruner on `model` in float64 with random mask logits (seeded: call twice, get twins)."""
    model = model.double()
    groups = discover_groups(model, torch.zeros(1, 3, size, size, dtype=torch.float64))
    state = S2HState(model, groups, S2HOptions(**PAPER_TEXT, **switches), flops_target=0.3).double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-uniform masks, so that every term is non-trivial
        for logits in state.masks.logits:
            logits.copy_(torch.randn(logits.shape, dtype=torch.float64, generator=generator))
    return state


@pytest.mark.parametrize("arch", ["cnn", "vit"])
@pytest.mark.parametrize("off", [None, *TERMS])
def test_updates_match_independent_gradients(arch, off, small_cnn, vit_factory):
    switches = {t: t != "g_g_soft_theta" for t in TERMS}
    if off == "g_g_soft_theta":
        switches["g_g_soft_theta"] = True  # the ablation term is off by default: test turning it on
    elif off is not None:
        switches[off] = False
    factory, size = (small_cnn, 8) if arch == "cnn" else (vit_factory, 16)
    # Two identical set-ups (same seeds); a deep copy would share the mask hooks.
    torch.manual_seed(0)
    state = _state(factory(), size, switches)
    torch.manual_seed(0)
    reference = _state(factory(), size, switches)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, size, size, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=generator)
    state.model.train()
    reference.model.train()
    coef_l, coef_g = (0.5, 5.0) if arch == "cnn" else (1.0, 1.0)
    assert (state.coef_l, state.coef_g) == (coef_l, coef_g)
    if off is None:
        state.phase_times = {}  # timing the phases (make bench) must leave the step as it is
    expected_theta, expected_u = _expected_update(reference, x, y, switches, coef_l, coef_g)
    got_theta, got_u = _applied_update(state, x, y)
    for got, want in zip(got_theta + got_u, expected_theta + expected_u):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), float((got - want).abs().max())
    if off is None:
        assert set(state.phase_times) == {"soft_forward", "resource", "hard_forward", "backward_soft_loss",
                                          "backward_gap_hard", "backward_gap_soft", "combine"}
        assert all(seconds > 0 for seconds in state.phase_times.values())
    assert any(float(d.abs().max()) > 1e-6 for d in got_theta) and any(float(d.abs().max()) > 1e-6 for d in got_u)


def test_each_switch_changes_the_update(small_cnn):
    """Switching a term changes the step (so none of the switches is dead)."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=generator)
    default = {t: t != "g_g_soft_theta" for t in TERMS}
    torch.manual_seed(0)
    base_theta, base_u = _applied_update(_state(small_cnn(), 8, default), x, y)
    for term in TERMS:
        switched = dict(default, **{term: not default[term]})
        torch.manual_seed(0)
        theta, u = _applied_update(_state(small_cnn(), 8, switched), x, y)
        moved_theta = max(float((a - b).abs().max()) for a, b in zip(theta, base_theta))
        moved_u = max(float((a - b).abs().max()) for a, b in zip(u, base_u))
        if term in ("g_l_theta", "g_g_hard_theta", "g_g_soft_theta"):
            assert moved_theta > 1e-6 and moved_u == 0, term
        else:
            assert moved_u > 1e-6 and moved_theta == 0, term
