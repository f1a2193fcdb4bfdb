"""IMP-Refill: 20 % per round, rewinding, the refill count, the union rule within groups."""

from __future__ import annotations

import pytest
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


def test_refill_keeps_the_official_number_of_channels():
    mask = torch.zeros(10, 4, 3, 3)
    mask[:3] = 1  # three full channels
    mask[5, :2] = 1  # 18 more weights on channel 5, 12 on channel 7
    mask[7, :, :1] = 1
    # survivors per channel [36, 36, 36, 0, 0, 18, 0, 12, 0, 0]: n = 138 / 36 = 3.83, m = int(n) = 3;
    # official: the threshold is the 7th smallest count, 18: the channels above it (0, 1, 2) and
    # the one at it (5), m + 1 = 4 channels
    assert refill_channels(mask, 0.0).nonzero().flatten().tolist() == [0, 1, 2, 5]
    # Refill+ at rate 0.5: m = int(3.83 + 6.17 * 0.5) = 6, so 7 channels: the five with survivors
    # and the first two empty ones (the official rule would keep one of the tied empty channels)
    assert refill_channels(mask, 0.5).nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 7]
    # a layer IMP left whole keeps every channel (m + 1 capped at C)
    assert int(refill_channels(torch.ones(6, 2, 1, 1), 0.0).sum()) == 6


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


def _round_one(make_pruner, batch, *extra):
    pruner, _ = make_pruner(*REFILL, "prune.flops_target=0.15", *extra)  # a 15 % target takes several rounds
    seen = {}
    original = pruner._prune_round

    def spy():
        modules = dict(pruner.model.named_modules())
        seen.update({n: modules[n].weight.detach().clone() for n in pruner.convs})
        original()

    pruner._prune_round = spy
    for step in range(pruner.round_ends[0]):
        pruner.train_step(*batch, 0, step)
    assert pruner.round == 1 and pruner.keep is None and pruner.rounds >= 2
    ones = {n: torch.ones_like(w) for n, w in seen.items()}
    return pruner, global_magnitude_masks(seen, ones, pruner.fraction)


def test_every_round_refills_whole_channels_and_the_next_round_prunes_inside(make_pruner, batch):
    pruner, candidate = _round_one(make_pruner, batch, "prune.options.refill=every_round")
    keep = pruner.refill(candidate)  # the official rule on this round's magnitude mask
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    for group, unit in zip(pruner.groups, keep):
        for member in group.producers():
            if member.layer in masks:
                rows = masks[member.layer][member.index[:, 0]].reshape(group.size, -1)
                assert torch.equal(rows.amin(1), unit) and torch.equal(rows.amax(1), unit)  # whole channels
    revived = sum(int((masks[n].bool() & ~candidate[n].bool()).sum()) for n in masks)
    assert revived > 0  # refilled weights IMP had removed...
    modules = dict(pruner.model.named_modules())
    for name, mask in masks.items():  # ...come back at their rewound values
        assert torch.equal(modules[name].weight.detach(), pruner.rewind_state[f"{name}.weight"] * mask)
    for step in range(pruner.round_ends[0], pruner.round_ends[1]):
        pruner.train_step(*batch, 0, step)
    assert all(torch.all(pruner.masks[n] <= masks[n]) for n in masks)  # round 2 pruned inside them


def test_refill_once_keeps_the_unstructured_mask_between_rounds(make_pruner, batch):
    pruner, candidate = _round_one(make_pruner, batch)  # the default
    assert all(torch.equal(pruner.masks[n], candidate[n]) for n in candidate)


def test_rounds_are_planned_on_the_refilled_flops(make_pruner):
    pruner, _ = make_pruner(*REFILL, "train.epochs=40", "prune.options.refill=every_round")  # 240 steps: no cap binds
    modules = dict(pruner.model.named_modules())  # still the initial weights
    weights = {n: modules[n].weight.detach().clone() for n in pruner.convs}
    masks = {n: torch.ones_like(w) for n, w in weights.items()}
    ratios = []
    for _ in range(pruner.rounds):  # 20 % rounds, each refilled to whole channels (every_round)
        candidate = global_magnitude_masks(weights, masks, 0.2)
        keep = pruner.refill(candidate)
        ratios.append(pruner.flops.exact(keep) / pruner.flops.dense())
        masks = {n: torch.zeros_like(m) for n, m in masks.items()}
        for group, unit in zip(pruner.groups, keep):
            for member in group.producers():
                if member.layer in masks:
                    masks[member.layer][member.index[unit.bool()].flatten()] = 1
    assert pruner.rounds_plan == "refilled"
    assert ratios[-1] <= 0.35 < ratios[-2]  # the first round whose refilled FLOPs meet the target
    # more rounds than the weight density alone would take (0.8^5 < 0.35): the refill slows them
    assert pruner.rounds > 5
    assert pruner.phases.ends[:pruner.rounds] == pruner.round_ends and len(pruner.phases.ends) == pruner.rounds + 1


def test_rounds_fall_back_to_the_density_where_the_refilled_flops_stall(make_pruner):
    # MobileNetV3: each expansion group's depthwise convolution keeps nearly every channel
    pruner, _ = make_pruner(*REFILL, "model.name=mobilenetv3", "train.epochs=40", "prune.options.refill=every_round")
    assert pruner.rounds_plan == "density" and pruner.rounds == 5  # 0.8^5 = 0.33 <= 0.35 < 0.8^4


def test_rounds_are_capped_to_train_each_for_the_regimes_epochs_with_larger_fractions(make_pruner):
    free, _ = make_pruner(*REFILL, "train.epochs=40", "prune.flops_target=0.15")
    # 0.65 of 40 epochs holds 5 rounds of 5 epochs: fewer than the 20 % rounds the target needs
    capped, _ = make_pruner(*REFILL, "train.epochs=40", "prune.flops_target=0.15", "prune.decide_after_epochs=5")
    assert free.rounds > 5 and free.fraction == 0.2
    assert capped.rounds == 5 and capped.rounds_plan == "capped" and 0.2 < capped.fraction < 1
    assert min(b - a for a, b in zip([0, *capped.round_ends], capped.round_ends)) >= 5 * 6  # 6 steps an epoch
    # the capped plan's fraction reaches the target in those rounds, simulated on the initial weights
    assert capped._simulate(capped.fraction, 5)[-1] <= 0.15 < capped._simulate(0.99 * capped.fraction, 5)[-1]
    planned = type(capped).planned_decisions(capped.cfg)
    assert [round(d.at * 40, 6) for d in planned] == [round(5.2 * k, 6) for k in range(1, 6)]
    assert planned[0].trained == pytest.approx(0.13)
