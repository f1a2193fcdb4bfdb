"""What a channel group is, as plain data.

A group is a set of units (channels, attention heads or head feature dimensions) that must be
kept or removed together. It is described by its members: for every layer (or parameter) the
group touches, which dimension (`role`) and which of the layer's indices belong to each unit
(`index`, one row per unit). Everything else in the substrate is derived from this
description: where masks go (`mask_points`), what the FLOPs depend on, what physical slimming
removes. Being plain data (module names and index tensors, no references to the model), a
group set describes any copy of the model it was discovered on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch

Role = Literal["out", "in", "param"]
MaskWhere = Literal["output", "input", "norm"]

KINDS: tuple[str, ...] = ("residual", "interior", "mlp", "head", "head-dim")


@dataclass(frozen=True)
class Member:
    """One layer's share of a group.

    `role` "out": the layer produces the group's channels (its output channels, or the rows
    of a conv/linear weight); "in": it consumes them (its input channels); "param": a free
    parameter (a position embedding, a class token) indexed along `dim`.
    `index[u]` lists the layer's channel indices that belong to unit `u`.
    """

    layer: str
    role: Role
    op: str  # conv | depthwise | linear | batchnorm | layernorm | param | other
    index: torch.Tensor
    dim: int = -1

    @property
    def per_unit(self) -> int:
        return int(self.index.shape[1])


@dataclass(frozen=True)
class MaskPoint:
    """Where a group's mask multiplies activations.

    "output": the layer's output is multiplied; "input": the layer's input is multiplied (an
    attention projection receiving the heads); "norm": a LayerNorm whose statistics are taken
    over the kept channels only and whose output is masked. `dim` is the channel dimension of
    the tensor, `index` maps units to its channels as in `Member`.
    """

    layer: str
    where: MaskWhere
    index: torch.Tensor
    dim: int


@dataclass(frozen=True)
class Group:
    """A set of units pruned together; `members` say which layer indices each unit owns."""

    name: str
    kind: str
    size: int
    members: tuple[Member, ...]
    mask_points: tuple[MaskPoint, ...]
    attention: str | None = None  # the attention module whose heads / head dims this group holds

    def layers(self, role: Role | None = None) -> list[str]:
        """Member layer names, in discovery order, optionally of one role."""
        return [m.layer for m in self.members if role is None or m.role == role]

    def producers(self) -> list[Member]:
        """Members whose weights produce the group's units (conv/linear rows)."""
        return [m for m in self.members if m.role == "out" and m.op in ("conv", "depthwise", "linear")]


@dataclass
class GroupSet:
    """The prunable groups of one model, in a fixed order (the order masks are given in)."""

    groups: list[Group]
    excluded: list[Group] = field(default_factory=list)  # stem, classifier and kept layers' groups
    image_size: int = 0
    channels: int = 3

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __getitem__(self, i: int) -> Group:
        return self.groups[i]

    @property
    def sizes(self) -> list[int]:
        return [g.size for g in self.groups]

    def full_masks(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """All-ones masks (the dense network)."""
        return [torch.ones(g.size, dtype=dtype) for g in self.groups]

    def check_masks(self, masks: list[torch.Tensor]) -> None:
        """Raise a one-line error unless `masks` holds one vector of the right size per group."""
        if len(masks) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} group masks, got {len(masks)}")
        for g, m in zip(self.groups, masks):
            if m.shape != (g.size,):
                raise ValueError(f"mask of group {g.name} has shape {tuple(m.shape)}, expected ({g.size},)")


def expand_mask(mask: torch.Tensor, index: torch.Tensor, channels: int) -> torch.Tensor:
    """A per-channel vector of a layer from a per-unit mask: units' channels get the unit's
    value, channels outside the group get 1. Differentiable with respect to `mask`."""
    full = torch.ones(channels, dtype=mask.dtype, device=mask.device)
    flat = index.to(mask.device).reshape(-1)
    values = mask.repeat_interleave(index.shape[1])
    return full.scatter(0, flat, values)


def prefix_mask(order: torch.Tensor, keep: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0/1 mask keeping the first `keep` units of `order` (most important first)."""
    mask = torch.zeros(order.numel(), dtype=dtype)
    mask[order[:keep]] = 1
    return mask
