"""OTOv2 (DHSPG): half-space projection, plain SGD outside G_p, zero groups removable."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from core.groups import slim

OTO = ["prune.method=otov2", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4",
       "train.momentum=0", "train.weight_decay=0"]  # plain SGD steps, to compare with


def _step(pruner, batch, step):
    return pruner.train_step(*batch, 0, step)


def test_partition_meets_the_target_and_the_half_space_rule(make_pruner, batch):
    pruner, cfg = make_pruner(*OTO)
    for step in range(pruner.ends[0] + 1):  # warm-up, then the partition at the first projection step
        _step(pruner, batch, step)
    assert pruner.phase == "projection"
    removed = [(~r).float() for r in pruner.redundant]
    assert pruner.flops.exact(removed) / pruner.flops.dense() <= 0.35
    # One projection step, checked against the rule computed independently.
    x, y = batch
    before = [pruner.zig.gather(g).clone() for g in range(len(pruner.groups))]
    zeroed_before = [z.clone() for z in pruner.zeroed]
    pruner.model.train()
    pruner.optimizer.zero_grad()
    F.cross_entropy(pruner.model(x), y).backward()
    lr = pruner.optimizer.param_groups[0]["lr"]
    pruner.optimizer.step()
    stepped = [pruner.zig.gather(g).clone() for g in range(len(pruner.groups))]
    lmbda_before = [l.clone() for l in pruner.lmbda]
    pruner.project(before, lr)
    o = pruner.options
    for g in range(len(pruner.groups)):
        active = pruner.redundant[g] & ~zeroed_before[g]
        grad = pruner.zig.gather(g, grad=True)
        away = (grad * before[g]).sum(1) < 0
        lmbda = torch.where(away & active, torch.clamp(lmbda_before[g] * o.lmbda_amplify, max=o.hat_lmbda_coeff * o.lmbda), lmbda_before[g])
        x_hat = stepped[g] - lr * lmbda[:, None] * before[g] / before[g].norm(dim=1, keepdim=True)
        rule = ((x_hat * before[g]).sum(1) < o.epsilon * before[g].square().sum(1)) & active
        assert torch.equal(pruner.zeroed[g], zeroed_before[g] | rule)
        now = pruner.zig.gather(g)
        assert torch.all(now[pruner.zeroed[g]] == 0)
        # units outside G_p: exactly the optimizer's (plain SGD) step
        outside = ~pruner.redundant[g]
        assert torch.allclose(now[outside], stepped[g][outside])
    # zero groups stay zero through later steps
    zeroed = [z.clone() for z in pruner.zeroed]
    for step in range(pruner.ends[0] + 1, pruner.ends[0] + 4):
        _step(pruner, batch, step)
    for g, z in enumerate(zeroed):
        assert torch.all(pruner.zig.gather(g)[z] == 0)


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
