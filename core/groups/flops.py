"""FLOPs of a masked network: exact for 0/1 masks, differentiable in expected widths.

`FlopsModel(model, groups)` counts the dense network once with FlopCounterMode (per module)
and writes every counted layer's FLOPs as a product of its input and output widths, each an
affine function of the kept unit counts of the groups it belongs to: a convolution or linear
layer is bilinear in the widths of the groups on either side, a depthwise convolution linear
in its group's width, and an attention module's own matrix products (QK^T and AV) linear in
its head (or head-dim) group. Everything FlopCounterMode counts that no group touches is a
constant. Two scopes: "network" (everything) and "prunable" (the layers some group touches,
the quantity the official code regularises).

Given kept counts (`widths`), `count` returns a tensor: with the 0/1 masks' sums it is the
exact FLOPs of the slimmed network; with expected widths (tensors with gradients) it is the
differentiable resource term of a pruner's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from core.groups.structure import GroupSet
from core.measure import device_of, eval_mode

SCOPES = ("network", "prunable")


def module_flops(model: nn.Module, image_size: int, channels: int = 3) -> dict[str, int]:
    """FlopCounterMode's FLOPs of one image, per module name ('' is the whole network)."""
    dtype = next(model.parameters()).dtype
    x = torch.zeros(1, channels, image_size, image_size, device=device_of(model), dtype=dtype)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    root = type(model).__name__
    flops: dict[str, int] = {"": int(counter.get_total_flops())}
    for key, per_op in counter.get_flop_counts().items():
        if key == root or key.startswith(root + "."):
            flops[key[len(root) + 1:]] = int(sum(per_op.values()))
    return flops


def own_flops(flops: dict[str, int], model: nn.Module, name: str) -> int:
    """FLOPs counted in module `name` itself, outside its submodules."""
    module = model.get_submodule(name)
    children = sum(flops.get(f"{name}.{child}", 0) for child, _ in module.named_children())
    return flops.get(name, 0) - children


@dataclass(frozen=True)
class _Side:
    """Channels on one side of a layer: `const` + sum of per_unit * kept(group)."""

    const: float
    terms: tuple[tuple[int, int], ...]  # (group, channels per unit)

    def value(self, widths: Sequence[torch.Tensor]) -> torch.Tensor | float:
        total: torch.Tensor | float = self.const
        for g, per_unit in self.terms:
            total = total + per_unit * widths[g]
        return total


@dataclass(frozen=True)
class _Term:
    name: str
    dense: float  # FLOPs at full width
    coef: float  # FLOPs per (input channel x output channel)
    inputs: _Side
    outputs: _Side

    @property
    def prunable(self) -> bool:
        return bool(self.inputs.terms or self.outputs.terms)


class FlopsModel:
    """Exact and differentiable FLOPs of `model` under `groups` (see module docstring)."""

    def __init__(self, model: nn.Module, groups: GroupSet) -> None:
        self.groups = groups
        flops = module_flops(model, groups.image_size, groups.channels)
        modules = dict(model.named_modules())
        touching: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for g, group in enumerate(groups):
            for member in group.members:
                if member.role in ("in", "out"):
                    touching.setdefault((member.layer, member.role), []).append((g, member.per_unit, group.size))
        terms: list[_Term] = []
        for name, module in modules.items():
            if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or flops.get(name, 0) == 0:
                continue
            if isinstance(module, nn.Linear):
                c_in, c_out = module.in_features, module.out_features
            else:
                c_in, c_out = module.in_channels, module.out_channels
            depthwise = not isinstance(module, nn.Linear) and module.groups > 1 and module.groups == c_in == c_out
            inputs = self._side(c_in, touching.get((name, "in"), []))
            outputs = self._side(c_out, touching.get((name, "out"), []))
            if depthwise:  # one input channel per output channel
                inputs = _Side(1.0, ())
                c_in = 1
            terms.append(_Term(name, float(flops[name]), flops[name] / (c_in * c_out), inputs, outputs))
        for g, group in enumerate(groups):
            if group.attention is not None:
                dense = own_flops(flops, model, group.attention)
                if dense:
                    terms.append(_Term(group.attention, float(dense), dense / group.size, _Side(1.0, ()), _Side(0.0, ((g, 1),))))
        self.terms = terms
        self.dense_network = float(flops[""])
        self.dense_prunable = sum(t.dense for t in terms if t.prunable)
        self.constant = self.dense_network - sum(t.dense for t in terms)
        # everything the network scope counts that no kept width changes
        self.fixed_network = self.constant + sum(t.dense for t in terms if not t.prunable)
        self.prunable_layers = tuple(t.name for t in terms if t.prunable and t.name in modules
                                     and not any(g.attention == t.name for g in groups))
        self.attention_modules = tuple(g.attention for g in groups if g.attention is not None)

    @staticmethod
    def _side(channels: int, touching: list[tuple[int, int, int]]) -> _Side:
        covered = sum(per_unit * size for _, per_unit, size in touching)
        if covered > channels:
            raise ValueError("groups cover more channels than the layer has")
        return _Side(float(channels - covered), tuple((g, per_unit) for g, per_unit, _ in touching))

    def dense(self, scope: str = "network") -> float:
        return self.dense_network if scope == "network" else self.dense_prunable

    def count(self, widths: Sequence[torch.Tensor | float], scope: str = "network") -> torch.Tensor:
        """FLOPs with `widths[g]` units kept in group g (floats or tensors, differentiable)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if len(widths) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} widths, got {len(widths)}")
        widths = [torch.as_tensor(w, dtype=torch.float64) for w in widths]
        total = torch.zeros((), dtype=torch.float64, device=widths[0].device if widths else None)
        for term in self.terms:
            if term.prunable:
                total = total + term.coef * term.inputs.value(widths) * term.outputs.value(widths)
        if scope == "network":
            total = total + self.fixed_network
        return total

    def ratio(self, widths: Sequence[torch.Tensor | float], scope: str = "network") -> torch.Tensor:
        """`count` over the dense network's FLOPs in the same scope."""
        return self.count(widths, scope) / self.dense(scope)

    def exact(self, masks: Sequence[torch.Tensor], scope: str = "network") -> float:
        """FLOPs of the network slimmed by 0/1 `masks`."""
        self.groups.check_masks(list(masks))
        return float(self.count([m.detach().double().cpu().round().sum() for m in masks], scope))

    def exact_widths(self, widths: Sequence[int], scope: str = "network") -> float:
        """FLOPs with `widths[g]` units kept in group g (any units: only the counts matter)."""
        return float(self.count([float(w) for w in widths], scope))

    def measure(self, slimmed: nn.Module, scope: str = "network") -> int:
        """FlopCounterMode's count of a slimmed network over one scope (names as in the dense model)."""
        flops = module_flops(slimmed, self.groups.image_size, self.groups.channels)
        if scope == "network":
            return flops[""]
        return sum(flops.get(n, 0) for n in self.prunable_layers) + sum(
            own_flops(flops, slimmed, n) for n in self.attention_modules
        )
