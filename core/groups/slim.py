"""Physical slimming: a masked network becomes a plain, smaller `nn.Module`.

Removal of channels is torch-pruning's (its per-layer pruning functions, which also fix
BatchNorm statistics, depthwise groups and `in_features`/`out_channels` attributes; LayerNorms
and free parameters go through `prune_fns.py`); which indices go comes from the groups. Each layer dimension is pruned once, with all groups'
indices together, so no index shifts between groups. Attention modules then get their head
counts (and, for head-dim pruning, the dense network's softmax scale) through their adapter. The
result is a deep copy with no mask hooks or suite state; the source network is untouched.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from core.groups.adapters import AttentionAdapter
from core.groups.masks import strip_mask_hooks
from core.groups.prune_fns import prune_layernorm, prune_parameter
from core.groups.structure import GroupSet


def slim(model: nn.Module, groups: GroupSet, masks: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of `model` with the units that `masks` (0/1, one per group) zero removed."""
    masks = [torch.as_tensor(m).detach().cpu() for m in masks]
    groups.check_masks(masks)
    drops: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    for group, mask in zip(groups, masks):
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"slimming needs 0/1 masks; group {group.name} has other values")
        if mask.sum() < 1:
            raise ValueError(f"group {group.name}: a mask may not remove every unit")
        dropped = (mask == 0).nonzero().flatten()
        if dropped.numel() == 0:
            continue
        for member in group.members:
            drops[(member.layer, member.role, member.dim)].update(member.index[dropped].flatten().tolist())
    slimmed = copy.deepcopy(model)
    strip_mask_hooks(slimmed)
    for (layer, role, dim), idxs in drops.items():
        idxs_sorted = sorted(idxs)
        if role == "param":
            prune_parameter(slimmed, layer, dim, idxs_sorted)
            continue
        module = slimmed.get_submodule(layer)
        if isinstance(module, nn.LayerNorm):
            prune_layernorm(module, idxs_sorted)
            continue
        pruner = tp.pruner.function.PrunerBox[tp.ops.module2type(module)]
        if role == "out":
            pruner.prune_out_channels(module, idxs_sorted)
        else:
            pruner.prune_in_channels(module, idxs_sorted)
    for group, mask in zip(groups, masks):
        if group.attention is not None and not torch.all(mask == 1):
            AttentionAdapter.after_slim(slimmed.get_submodule(group.attention), group, mask)
    return slimmed
