"""Channel importance within a group, for prefix masks.

A pruner that keeps "the first k units" of a group needs an order. Ours is the L1 magnitude
of the weights that produce each unit (the rows of every conv/linear layer whose output the
group owns), taken as a mean absolute value per member so that layers of different fan-in
weigh alike, and averaged across those members. Most important first; ties keep index order.

`l1_order` is the official S2HPruner code's order (`big_resnet_ddp.py` 5239-5256), which that
code recomputes before every forward pass: the L1 norm (a sum, not a mean) of each unit's
rows, averaged across the producing layers. It runs on the weights' device, without a copy.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.groups.structure import Group, GroupSet


def unit_scores(model: nn.Module, group: Group) -> torch.Tensor:
    """Mean over producing layers of each unit's mean absolute weight."""
    scores = torch.zeros(group.size, dtype=torch.float64)
    producers = group.producers()
    for member in producers:
        weight = model.get_submodule(member.layer).weight.detach().double().cpu()
        rows = weight.abs().reshape(weight.shape[0], -1).mean(1)
        scores += rows[member.index].mean(1)
    return scores / max(len(producers), 1)


def channel_order(model: nn.Module, groups: GroupSet) -> list[torch.Tensor]:
    """Per group, unit indices from most to least important."""
    return [torch.sort(unit_scores(model, g), descending=True, stable=True).indices for g in groups]


def l1_order(model: nn.Module, groups: GroupSet) -> list[torch.Tensor]:
    """Per group, units by the mean over producers of their rows' L1 norm, largest first."""
    orders = []
    with torch.no_grad():
        for group in groups:
            producers = group.producers()
            scores = None
            for member in producers:
                weight = model.get_submodule(member.layer).weight
                rows = weight.abs().reshape(weight.shape[0], -1).sum(1)
                unit = rows[member.index.to(rows.device)].sum(1)
                scores = unit if scores is None else scores + unit
            if scores is None:
                orders.append(torch.arange(group.size))
                continue
            orders.append(torch.sort(scores / len(producers), descending=True, stable=True).indices.cpu())
    return orders
