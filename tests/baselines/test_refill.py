"""IMP-Refill: 20 % per round, rewinding, the refill count, the union rule within groups."""

from __future__ import annotations

import torch

from baselines.refill import global_magnitude_masks, refill_channels

REFILL = ["prune.method=refill", "prune.flops_target=0.35", "model.width=0.25", "train.epochs=4"]


def test_each_round_removes_a_fifth_of_the_remaining_weights():
    generator = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(8, 4, 3, 3, generator=generator), "b": torch.randn(16, 8, 1, 1, generator=generator)}
    masks = {k: torch.ones_like(w) for k, w in weights.items()}
    alive = sum(int(m.sum()) for m in masks.values())
    for _ in range(3):
        new = global_magnitude_masks(weights, masks, 0.2)
        now = sum(int(m.sum()) for m in new.values())
        assert now == alive - round(0.2 * alive)
        assert all(torch.all(new[k] <= masks[k]) for k in masks)  # never revives a weight
        removed = torch.cat([weights[k][(masks[k] - new[k]).bool()].abs() for k in masks])
        kept = torch.cat([weights[k][new[k].bool()].abs() for k in masks])
        assert removed.max() <= kept.min()  # global magnitude
        masks, alive = new, now


def test_refill_keeps_the_stated_number_of_channels():
    mask = torch.zeros(10, 4, 3, 3)
    mask[:3] = 1  # three full channels
    mask[5, :2] = 1  # 18 more weights scattered over channels 5 and 7
    mask[7, :, :1] = 1
    n = int(mask.sum()) // 36
    assert n == 3
    assert int(refill_channels(mask, 0.0).sum()) == 3
    assert set(refill_channels(mask, 0.0).nonzero().flatten().tolist()) == {0, 1, 2}
    assert int(refill_channels(mask, 0.5).sum()) == int(3 + 7 * 0.5)  # Refill+


def test_round_rewinds_and_the_union_rule(make_pruner, batch):
    pruner, _ = make_pruner(*REFILL)
    for step in range(pruner.round_ends[0]):
        pruner.train_step(*batch, 0, step)
    assert pruner.round == 1 or pruner.keep is not None
    modules = dict(pruner.model.named_modules())
    if pruner.keep is None:  # rewound to the saved weights, under the new mask
        for name, mask in pruner.masks.items():
            assert torch.equal(modules[name].weight.detach(), pruner.rewind_state[f"{name}.weight"] * mask)
    # union within a group whose producers disagree (a residual stream)
    group_index = next(i for i, g in enumerate(pruner.groups) if g.kind == "residual")
    group = pruner.groups[group_index]
    producers = [m for m in group.producers() if m.layer in pruner.masks]
    masks = {n: torch.ones_like(m) for n, m in pruner.masks.items()}
    for i, member in enumerate(producers):
        layer = masks[member.layer]
        layer.zero_()
        layer[member.index[i % group.size, 0]] = 1  # producer i keeps only unit i's channel
    keep = pruner.refill(masks)[group_index]
    assert set(keep.nonzero().flatten().tolist()) == {i % group.size for i in range(len(producers))}
    pruner.options.reconcile = "intersection"  # the alternative: only what every producer keeps
    assert int(pruner.refill(masks)[group_index].sum()) == 1  # (never empty: the most-voted unit)
