"""Zero-invariant groups: the producer parameters of every unit of our channel groups.

A unit's zero-invariant group is every parameter slice that produces it: the rows of the
convolutions (or linear layers) whose output the group owns, their biases, and the weight and
bias of the BatchNorms after them. If all of them are zero, the unit outputs zero whatever
its input, so removing it physically leaves the network's outputs unchanged. OTOv2 works on
these groups; `ZeroInvariantGroups` gathers them per channel group as [units, values]
matrices and writes them back.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.groups import GroupSet


class ZeroInvariantGroups:
    def __init__(self, model: nn.Module, groups: GroupSet) -> None:
        modules = dict(model.named_modules())
        self.groups = groups
        self.slices: list[list[tuple[nn.Parameter, torch.Tensor]]] = []
        for group in groups:
            slices = []
            for member in group.members:
                if member.role != "out" or member.op not in ("conv", "depthwise", "linear", "batchnorm"):
                    continue
                module = modules[member.layer]
                for param in (module.weight, module.bias):
                    if param is not None:
                        slices.append((param, member.index))
            self.slices.append(slices)

    def gather(self, g: int, grad: bool = False) -> torch.Tensor:
        """[units, values] of group g's parameters (or of their gradients)."""
        parts = []
        for param, index in self.slices[g]:
            source = param.grad if grad else param.data
            if source is None:
                source = torch.zeros_like(param)
            rows = source[index.to(param.device)]  # [units, per_unit, ...]
            parts.append(rows.reshape(index.shape[0], -1))
        return torch.cat(parts, dim=1)

    def scatter(self, g: int, values: torch.Tensor) -> None:
        """Write [units, values] back into group g's parameters."""
        offset = 0
        with torch.no_grad():
            for param, index in self.slices[g]:
                rows = param.data[index.to(param.device)]
                width = rows[0].numel()
                param.data[index.to(param.device)] = values[:, offset:offset + width].reshape(rows.shape).to(param.dtype)
                offset += width

    def zero(self, g: int, units: torch.Tensor) -> None:
        """Set the given units of group g to zero."""
        if units.numel() == 0:
            return
        with torch.no_grad():
            for param, index in self.slices[g]:
                param.data[index[units.cpu()].reshape(-1).to(param.device)] = 0
