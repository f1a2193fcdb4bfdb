"""The pruning substrate: channel groups, masks, FLOPs and physical slimming.

    groups = discover_groups(model, example_input)     # what can be pruned together
    order = channel_order(model, groups)               # most important unit first, per group
    masker = GroupMasks(model, groups)                 # hooks; inert until masks are given
    with masker.use(masks): logits = model(x)          # soft (real) or hard (0/1) masks
    flops = FlopsModel(model, groups)                  # flops.count(widths) / flops.exact(masks)
    pruned = slim(model, groups, hard_masks)           # a plain, smaller nn.Module
    hard = SlicedNetwork(model, groups)                # the hard network at its kept widths,
    logits = hard(x, hard_masks)                       # trained through model's own weights

`python -m core.groups MODEL` prints a model's group inventory (see `cli.py`).
"""

from core.groups.discover import UnsupportedLayer, discover_groups, groups_for_run
from core.groups.flops import SCOPES, FlopsModel, module_flops
from core.groups.importance import channel_order, unit_scores
from core.groups.masks import GroupMasks, masked_layer_norm, strip_mask_hooks
from core.groups.slim import slim
from core.groups.sliced import SlicedNetwork
from core.groups.structure import KINDS, Group, GroupSet, MaskPoint, Member, expand_mask, prefix_mask

__all__ = [
    "KINDS", "SCOPES", "FlopsModel", "Group", "GroupMasks", "GroupSet", "MaskPoint", "Member",
    "SlicedNetwork", "UnsupportedLayer", "channel_order", "discover_groups", "expand_mask", "masked_layer_norm",
    "groups_for_run", "module_flops", "prefix_mask", "slim", "strip_mask_hooks", "unit_scores",
]
