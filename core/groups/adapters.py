"""Modules whose channel layout torch-pruning's tracer cannot follow, described by hand.

torch-pruning couples layers by tracing autograd and mapping indices through each operation.
Two layouts defeat that mapping (both checked in the tests):

- Attention (`qkv` -> reshape to (3, heads, head_dim) -> attention -> `proj`): the tracer maps
  only the v rows of `qkv` onto `proj`'s inputs, so q and k would be left unpruned.
- Swin's patch merging (a 2x2 neighbourhood concatenated to 4C channels, then LayerNorm and a
  linear reduction): the tracer maps C channels onto the first C of the 4C.

For such a module an adapter gives torch-pruning a customized pruner, so the tracer treats the
module as one layer with input and output channels (its coupling to the rest of the network is
still discovered by the DependencyGraph), and then expands the module's share of a group into
its real sub-layers with exact index maps. The attention adapter also creates the groups that
live inside an attention module: its heads, or its per-head feature dimensions.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from core.groups.prune_fns import prune_layernorm
from core.groups.structure import Group, MaskPoint, Member

ATTENTION_UNITS = ("auto", "heads", "head_dims")


class AttentionAdapter:
    """Multi-head self-attention with a fused `qkv` linear and an output `proj` (timm's ViT
    `Attention` and Swin's `WindowAttention`, or any module shaped like them)."""

    @staticmethod
    def matches(module: nn.Module) -> bool:
        qkv, proj, heads = getattr(module, "qkv", None), getattr(module, "proj", None), getattr(module, "num_heads", None)
        if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int)):
            return False
        return qkv.out_features == 3 * proj.in_features and proj.in_features % heads == 0

    @staticmethod
    def windowed(module: nn.Module) -> bool:
        return hasattr(module, "relative_position_bias_table")

    class Pruner(tp.pruner.function.BasePruningFunc):
        """Input channels are `qkv`'s, output channels are `proj`'s."""

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            tp.prune_linear_in_channels(layer.qkv, list(idxs))
            return layer

        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            tp.prune_linear_out_channels(layer.proj, list(idxs))
            return layer

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.qkv.in_features

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.proj.out_features

    @staticmethod
    def expand(name: str, module: nn.Module, role: str, index: torch.Tensor) -> tuple[list[Member], list[MaskPoint]]:
        if role == "in":
            return [Member(f"{name}.qkv", "in", "linear", index)], []
        member = Member(f"{name}.proj", "out", "linear", index)
        return [member], [MaskPoint(member.layer, "output", index, -1)]

    @staticmethod
    def inner_group(name: str, module: nn.Module, unit: str) -> Group:
        """The group of heads (`heads`) or of per-head feature dimensions (`head_dims`)."""
        heads = module.num_heads
        dim = module.proj.in_features
        head_dim = dim // heads
        qkv, proj = f"{name}.qkv", f"{name}.proj"
        if unit == "auto":
            unit = "head_dims" if AttentionAdapter.windowed(module) else "heads"
        if unit == "heads":
            # Unit h owns q, k and v rows h*hd .. (h+1)*hd of qkv and the same columns of proj.
            rows = (torch.arange(heads)[:, None, None] * head_dim + torch.arange(head_dim)[None, None, :]
                    + dim * torch.arange(3)[None, :, None]).reshape(heads, -1)
            cols = torch.arange(heads)[:, None] * head_dim + torch.arange(head_dim)[None, :]
            members = (Member(qkv, "out", "linear", rows), Member(proj, "in", "linear", cols))
            # The heads' outputs are masked where proj reads them.
            points = (MaskPoint(proj, "input", cols, -1),)
            return Group(f"{name}:heads", "head", heads, members, points, attention=name)
        if unit != "head_dims":
            raise ValueError(f"attention unit must be one of {', '.join(ATTENTION_UNITS)}, got {unit!r}")
        if not isinstance(getattr(module, "q_norm", nn.Identity()), nn.Identity):
            raise ValueError(f"{name}: pruning head dimensions under q/k normalisation is not supported")
        # Unit d owns dimension d of every head of q, k and v, and of proj's input.
        rows = (torch.arange(head_dim)[:, None, None] + head_dim * torch.arange(heads)[None, None, :]
                + dim * torch.arange(3)[None, :, None]).reshape(head_dim, -1)
        cols = torch.arange(head_dim)[:, None] + head_dim * torch.arange(heads)[None, :]
        members = (Member(qkv, "out", "linear", rows), Member(proj, "in", "linear", cols))
        # q and k must lose the dimension for the attention scores to change as in the slim net.
        points = (MaskPoint(qkv, "output", rows, -1),)
        return Group(f"{name}:head_dims", "head-dim", head_dim, members, points, attention=name)

    @staticmethod
    def after_slim(module: nn.Module, group: Group, kept: torch.Tensor) -> None:
        """Bring the module's attributes in line with its slimmed weights.

        Heads: `num_heads` (and `attn_dim`, and a per-head relative position bias table, where
        present). Head dims: `head_dim` (and `attn_dim`), and the softmax scale stays the dense network's
        (1/sqrt of the original head dim), as in the masked network. PyTorch's fused kernel
        would take 1/sqrt of the new head dim, so the module is switched to its explicit
        path, which uses `scale`. (Folding the change into q's weights would give the same
        outputs but different gradients, so fine-tuning would diverge from the masked net.)
        """
        kept_units = int(kept.sum())
        if hasattr(module, "attn_dim"):
            module.attn_dim = module.proj.in_features
        if group.kind == "head":
            module.num_heads = kept_units
            table = getattr(module, "relative_position_bias_table", None)
            if isinstance(table, nn.Parameter):
                module.relative_position_bias_table = nn.Parameter(table.data[..., kept.bool()].clone())
            return
        if hasattr(module, "head_dim"):
            module.head_dim = kept_units
        if not hasattr(module, "scale"):
            raise ValueError(f"{type(module).__name__} has no `scale`: cannot keep its softmax scale")
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


class PatchMergingAdapter:
    """Swin's patch merging: 2x2 neighbours concatenated (4C), LayerNorm(4C), Linear(4C -> C')."""

    @staticmethod
    def matches(module: nn.Module) -> bool:
        norm, reduction = getattr(module, "norm", None), getattr(module, "reduction", None)
        return (type(module).__name__ == "PatchMerging" and isinstance(norm, nn.LayerNorm)
                and isinstance(reduction, nn.Linear) and reduction.in_features % 4 == 0)

    @staticmethod
    def _spread(layer: nn.Module, idxs: Sequence[int]) -> list[int]:
        c = layer.reduction.in_features // 4
        return [k * c + i for k in range(4) for i in idxs]

    class Pruner(tp.pruner.function.BasePruningFunc):
        """Input channels are the C channels before the 2x2 concatenation."""

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            spread = PatchMergingAdapter._spread(layer, idxs)
            prune_layernorm(layer.norm, spread)
            tp.prune_linear_in_channels(layer.reduction, spread)
            return layer

        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            tp.prune_linear_out_channels(layer.reduction, list(idxs))
            return layer

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.reduction.in_features // 4

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.reduction.out_features

    @staticmethod
    def expand(name: str, module: nn.Module, role: str, index: torch.Tensor) -> tuple[list[Member], list[MaskPoint]]:
        if role == "out":
            member = Member(f"{name}.reduction", "out", "linear", index)
            return [member], [MaskPoint(member.layer, "output", index, -1)]
        c = module.reduction.in_features // 4
        # Channel i of the stage appears at i, C+i, 2C+i and 3C+i of the concatenation.
        spread = (index[:, :, None] + c * torch.arange(4)[None, None, :]).reshape(index.shape[0], -1)
        norm = Member(f"{name}.norm", "out", "layernorm", spread)
        return [norm, Member(f"{name}.reduction", "in", "linear", spread)], [MaskPoint(norm.layer, "norm", spread, -1)]

    @staticmethod
    def after_slim(module: nn.Module, group: Group, kept: torch.Tensor) -> None:
        """Patch merging reads its widths from its input; nothing to update."""


ADAPTERS: tuple[type, ...] = (AttentionAdapter, PatchMergingAdapter)


def adapter_for(module: nn.Module) -> type | None:
    for adapter in ADAPTERS:
        if adapter.matches(module):
            return adapter
    return None
