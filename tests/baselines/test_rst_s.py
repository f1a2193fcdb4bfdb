"""RST-S: what makes it RST-S (chosen rows penalised, growing penalty, bisection, floor)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError

RST = ["prune.method=rst_s", "prune.flops_target=0.35", "train.epochs=4", "model.width=0.25"]  # 24 steps: 8 + 16


def test_penalty_touches_only_the_chosen_rows(make_pruner, batch):
    pruner, _ = make_pruner(*RST)
    pruner.reg = 0.3
    reference = copy.deepcopy(pruner.model)
    x, y = batch
    pruner.model.train()
    reference.train()
    F.cross_entropy(reference(x), y).backward()
    logits = pruner.model(x)
    F.cross_entropy(logits, y).backward()
    pruner._penalise()
    chosen = {layer: rows for layer, rows in pruner.penalised}
    penalised_layers = 0
    for (name, p), (_, q) in zip(pruner.model.named_parameters(), reference.named_parameters()):
        layer = name.rsplit(".", 1)[0]
        expected = q.grad.clone()
        if name.endswith("weight") and layer in chosen:
            expected[chosen[layer]] += 0.3 * p.detach()[chosen[layer]]
            penalised_layers += 1
        assert torch.allclose(p.grad, expected, atol=1e-7), name
    # residual streams and the stem are never chosen
    residual_producers = {m.layer for g in pruner.groups if g.kind == "residual" for m in g.producers()}
    assert penalised_layers > 0 and not residual_producers & set(chosen)


def test_penalty_grows_on_the_schedule_then_holds(make_pruner, batch):
    pruner, _ = make_pruner(*RST, "prune.options.reg_interval=2", "prune.options.growth_fraction=0.5")
    assert pruner.transform_end == 8
    assert pruner.increment == pytest.approx(1.0 * 2 / 4)  # the ceiling after half of 8 steps
    regs = []
    for step in range(8):
        pruner.train_step(*batch, 0, step)
        regs.append(pruner.reg)
    assert regs[:6] == pytest.approx([0, 0.5, 0.5, 1.0, 1.0, 1.0])
    assert pruner.phase == "train"  # removed at the end of the transformation phase
    fixed, _ = make_pruner(*RST, "prune.options.reg_increment=1e-4")
    assert fixed.increment == 1e-4  # the official increment when asked for


def test_selection_and_bisection(make_pruner):
    a, cfg = make_pruner(*RST)
    b, _ = make_pruner(*RST, "seed=1")
    assert any(not torch.equal(x, y) for x, y in zip(a.keep, b.keep))  # random choices differ by seed
    ratio = a.flops.exact(a.keep) / a.flops.dense()
    assert abs(ratio - 0.35) <= 0.02
    residual = [k for g, k in zip(a.groups, a.keep) if g.kind == "residual"]
    assert all(bool(k.all()) for k in residual)
    widths = [int(k.sum()) for g, k in zip(a.groups, a.keep) if g.kind != "residual"]
    ratios = [w / g.size for w, g in zip(widths, [g for g in a.groups if g.kind != "residual"])]
    assert max(ratios) - min(ratios) < 0.2  # one uniform ratio (up to rounding of small groups)
    l1, _ = make_pruner(*RST, "prune.options.selection=l1_min")
    from core.groups import unit_scores
    for group, keep in zip(l1.groups, l1.keep):
        if not keep.all():
            scores = unit_scores(l1.model, group)
            assert scores[keep == 0].max() <= scores[keep == 1].min()


def test_target_below_the_floor_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="RST-S prunes interior groups only"):
        tiny("prune.method=rst_s", "prune.flops_target=0.01")
