"""OTOv2 (DHSPG): the official score, lambda and stopping rule, zero groups removable."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from baselines.otov2 import OTOv2Options, dhspg_lambdas, redundancy_scores
from core.groups import slim

OTO = ["prune.method=otov2", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4",
       "train.momentum=0", "train.weight_decay=0"]  # plain SGD steps, to compare with


def _step(pruner, batch, step):
    return pruner.train_step(*batch, 0, step)


def test_partition_score_by_hand():
    # two groups: units of 2 values, then one unit of 3 values
    xs = [torch.tensor([[3.0, 4.0], [0.6, 0.8]]), torch.tensor([[1.0, 2.0, 2.0]])]
    ds = [torch.tensor([[3.0, 4.0], [-0.8, 0.6]]), torch.tensor([[-1.0, -2.0, -2.0]])]
    cos = [1.0, 0.0, -1.0]  # cos(-x, -d): aligned, orthogonal, opposite
    inverse = [1 / (5 / 2 + 1e-6), 1 / (1 / 2 + 1e-6), 1 / (3 / 3 + 1e-6)]  # 1 / (|x| / n_g + 1e-6)
    cos_norm = math.sqrt(sum(c * c for c in cos))
    inv_norm = math.sqrt(sum(v * v for v in inverse))
    expected = [0.5 * c / cos_norm + 0.5 * v / inv_norm for c, v in zip(cos, inverse)]
    got = torch.cat(redundancy_scores(xs, ds)).tolist()
    assert got == pytest.approx(expected, rel=1e-6)
    # the official magnitude term ranks a small unit (per value) as more redundant than a large one
    assert got[1] > got[2]


def test_lambda_by_hand():
    o = OTOv2Options()  # lmbda 1e-3, amplify 2, hat 10
    x = torch.tensor([[1.0, 0.0]] * 4)
    d = torch.tensor([
        [0.5, 0.0],  # <x, d> > 0: lmbda
        [-0.001, 0.1],  # lower 0.001 -> 2 * 0.001 = 0.002, under the bound 0.010001 / 0.001 = 10.001
        [-0.02, 1.0],  # lower 0.02 -> 0.04, clipped to 10 * lmbda = 0.01
        [-0.003, 0.0],  # lower 0.003 -> 0.006 >= bound 0.003^2 / 0.003 = 0.003: midpoint 0.003
    ])
    assert dhspg_lambdas(x, d, o).tolist() == pytest.approx([1e-3, 0.002, 0.01, 0.003])


def test_partition_and_a_projection_step_follow_the_rules(make_pruner, batch):
    pruner, cfg = make_pruner(*OTO)
    for step in range(pruner.phases.ends[0] + 1):  # warm-up, then the partition at the first projection step
        _step(pruner, batch, step)
    assert pruner.phase == "projection"  # this seeded config does not meet the target at the partition step
    removed = [(~r).float() for r in pruner.redundant]
    assert pruner.flops.exact(removed) / pruner.flops.dense() <= 0.35
    assert all(not r.all() for r in pruner.redundant)  # every group keeps a unit out of G_p
    # G_p: the fewest units that meet the target, plus 5 % of all units (the official tolerance)
    extra = int(0.05 * sum(g.size for g in pruner.groups))
    assert sum(int(r.sum()) for r in pruner.redundant) > extra
    # One projection step, checked against the rule computed independently.
    x, y = batch
    before = [pruner.zig.gather(g).clone() for g in range(len(pruner.groups))]
    zeroed_before = [z.clone() for z in pruner.zeroed]
    pruner.model.train()
    pruner.optimizer.zero_grad()
    F.cross_entropy(pruner.model(x), y).backward()
    lr = pruner.optimizer.param_groups[0]["lr"]
    grads = [pruner.zig.gather(g, grad=True).clone() for g in range(len(pruner.groups))]
    pruner.optimizer.step()
    stepped = [pruner.zig.gather(g).clone() for g in range(len(pruner.groups))]
    pruner.project(before, grads, lr)  # plain SGD: the step direction is the gradient
    o = pruner.options
    proposed = []
    for g in range(len(pruner.groups)):
        active = pruner.redundant[g] & ~zeroed_before[g]
        b, d = before[g], grads[g]
        norm = b.norm(dim=1)
        inner = (b * d).sum(1)
        lam = torch.full_like(norm, o.lmbda)
        for u in range(len(norm)):
            if inner[u] < 0:
                lower, bound = float(-inner[u] / norm[u]), float(d[u].square().sum() * norm[u] / -inner[u])
                chosen = min(max(2 * lower, 1e-3), 1e-2)
                lam[u] = (lower + bound) / 2 if chosen >= bound else chosen
        x_hat = stepped[g] - lr * lam[:, None] * b / norm[:, None]
        rule = ((x_hat * b).sum(1) < o.epsilon * norm.square()) & active
        proposed.append(zeroed_before[g] | rule)
        now = pruner.zig.gather(g)
        assert torch.all(now[pruner.zeroed[g]] == 0)
        assert torch.all(pruner.zeroed[g] <= proposed[g])  # nothing zeroed outside the half-space rule
        kept = active & ~pruner.zeroed[g]
        assert torch.allclose(now[kept], x_hat[kept], atol=1e-6)  # the lasso step on G_p
        outside = ~pruner.redundant[g]
        assert torch.allclose(now[outside], stepped[g][outside])  # exactly the optimizer's step
    if pruner.reached():  # the cap: the fewest half-space units that meet the target
        assert pruner.flops.exact(pruner.keep_masks()) <= pruner.target_flops
    else:
        assert all(torch.equal(z, p) for z, p in zip(pruner.zeroed, proposed))
    # zero groups stay zero through later steps
    zeroed = [z.clone() for z in pruner.zeroed]
    for step in range(pruner.phases.ends[0] + 1, pruner.phases.ends[0] + 4):
        _step(pruner, batch, step)
    for g, z in enumerate(zeroed):
        assert torch.all(pruner.zig.gather(g)[z] == 0)


def test_projection_stops_at_the_target_and_g_p_trains_on(make_pruner, batch):
    pruner, _ = make_pruner(*OTO)
    for step in range(pruner.phases.ends[0] + 1):
        _step(pruner, batch, step)
    if pruner.phase == "projection":  # meet the target (the fallback's way) well before the deadline
        pruner.phases.advance(pruner.phases.ends[0] + 1)  # its leave hook: the fallback
    assert pruner.reached() and pruner.phase == "train"
    zeroed = [z.clone() for z in pruner.zeroed]
    left = [r & ~z for r, z in zip(pruner.redundant, zeroed)]
    assert any(lf.any() for lf in left)  # G_p is larger than the target needs: the rest trains on
    x, y = batch
    pruner.model.train()
    pruner.model.zero_grad()
    F.cross_entropy(pruner.model(x), y).backward()
    grads = [pruner.zig.gather(g, grad=True).clone() for g in range(len(pruner.groups))]
    before = [pruner.zig.gather(g).clone() for g in range(len(pruner.groups))]
    lr = pruner.optimizer.param_groups[0]["lr"]
    _step(pruner, batch, pruner.phases.ends[0] + 1)
    assert pruner.phase == "train" and all(torch.equal(a, b) for a, b in zip(zeroed, pruner.zeroed))
    for g in range(len(pruner.groups)):  # plain SGD on the rest of G_p: no lasso once the target is met
        plain = before[g][left[g]] - lr * grads[g][left[g]]
        assert torch.allclose(pruner.zig.gather(g)[left[g]], plain, atol=1e-6)


def test_fallback_zeroes_only_what_the_target_needs(make_pruner, batch):
    pruner, _ = make_pruner(*OTO)
    for step in range(pruner.phases.ends[0] + 1):
        _step(pruner, batch, step)
    pruner.zeroed = [torch.zeros_like(z) for z in pruner.zeroed]  # as if no half-space step had hit
    norms = {(g, u): float(pruner.zig.gather(g)[u].norm()) for g in range(len(pruner.groups))
             for u in range(pruner.groups[g].size)}
    pruner._fallback()
    assert pruner.reached() and pruner.fallback_zero == sum(int(z.sum()) for z in pruner.zeroed)
    chosen = [(g, u) for g, z in enumerate(pruner.zeroed) for u in z.nonzero().flatten().tolist()]
    assert all(pruner.redundant[g][u] for g, u in chosen)  # from G_p only...
    largest = max(norms[c] for c in chosen)
    left = [norms[(g, u)] for g in range(len(pruner.groups))
            for u in (pruner.redundant[g] & ~pruner.zeroed[g]).nonzero().flatten().tolist()]
    assert all(n >= largest for n in left)  # ...smallest |x| first
    assert all(float(pruner.zig.gather(g)[u].norm()) == 0 for g, u in chosen)  # zero in the model too
    g, u = max(chosen, key=lambda c: norms[c])  # the last one it took was needed
    fewer = [z.clone() for z in pruner.zeroed]
    fewer[g][u] = False
    assert pruner._flops_without(fewer) > pruner.target_flops


def test_zero_groups_are_removed_without_changing_outputs(make_pruner, batch):
    pruner, _ = make_pruner(*OTO)
    model = pruner.model.eval()
    generator = torch.Generator().manual_seed(0)
    for g, group in enumerate(pruner.groups):
        units = torch.randperm(group.size, generator=generator)[: group.size // 2]
        pruner.zig.zero(g, units)
        pruner.zeroed[g][units] = True
    with torch.no_grad():
        before = model(batch[0])
        after = slim(model, pruner.groups, pruner.keep_masks())(batch[0])
    assert torch.allclose(before, after, atol=1e-5)
    assert sum(p.numel() for p in pruner.export().parameters()) < sum(p.numel() for p in copy.deepcopy(model).parameters())
