"""Channel importance within a group, for prefix masks.

A pruner that keeps "the first k units" of a group needs an order. Ours is the L1 magnitude
of the weights that produce each unit (the rows of every conv/linear layer whose output the
group owns), taken as a mean absolute value per member so that layers of different fan-in
weigh alike, and averaged across those members. Most important first; ties keep index order.

`reduce="sum"` is the official S2HPruner code's order (`big_resnet_ddp.py` 5239-5256), which
that code recomputes before every forward pass: the L1 norm (a sum, not a mean) of each unit's
rows, averaged across the producing layers. Scores are computed on the weights' device (no copy
to the host on a hot path) in float64, and returned on the host.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.groups.structure import Group, GroupSet


def unit_scores(model: nn.Module, group: Group, reduce: str = "mean") -> torch.Tensor:
    """Mean over producing layers of each unit's mean (or, `reduce="sum"`, summed) absolute weight."""
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be mean or sum, got {reduce!r}")
    producers = group.producers()
    scores = None
    with torch.no_grad():
        for member in producers:
            weight = model.get_submodule(member.layer).weight.detach().double()
            rows = weight.abs().reshape(weight.shape[0], -1)
            units = rows.mean(1) if reduce == "mean" else rows.sum(1)
            units = units[member.index.to(units.device)]
            units = units.mean(1) if reduce == "mean" else units.sum(1)
            scores = units if scores is None else scores + units
    if scores is None:
        return torch.zeros(group.size, dtype=torch.float64)
    return scores.cpu() / len(producers)


def channel_order(model: nn.Module, groups: GroupSet, reduce: str = "mean") -> list[torch.Tensor]:
    """Per group, unit indices from most to least important (`unit_scores` with `reduce`)."""
    return [torch.sort(unit_scores(model, g, reduce), descending=True, stable=True).indices for g in groups]
