"""Slimming functions torch-pruning lacks or gets wrong.

- LayerNorm: torch-pruning 1.6.1's LayerNorm pruner keeps the surviving channels in the
  iteration order of a Python set (it calls `Tensor.sort()`, which does not sort in place),
  which scrambles the weights of large LayerNorms; this one keeps them in order.
- Free parameters (position embeddings, class tokens): indexed along their channel dim.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def _kept(total: int, drop: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(sorted(set(range(total)) - set(drop)), dtype=torch.long, device=device)


def prune_layernorm(layer: nn.LayerNorm, drop: Sequence[int]) -> nn.LayerNorm:
    """Remove channels `drop` of a LayerNorm over its last dimension."""
    keep = _kept(layer.normalized_shape[-1], drop, layer.weight.device if layer.weight is not None else None)
    for attr in ("weight", "bias"):
        param = getattr(layer, attr)
        if param is not None:
            setattr(layer, attr, nn.Parameter(param.data.index_select(-1, keep).clone(), requires_grad=param.requires_grad))
    layer.normalized_shape = tuple(layer.normalized_shape[:-1]) + (keep.numel(),)
    return layer


def prune_parameter(model: nn.Module, name: str, dim: int, drop: Sequence[int]) -> None:
    """Remove indices `drop` along `dim` of the parameter called `name` in `model`."""
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    param = getattr(owner, attr)
    keep = _kept(param.shape[dim], drop, param.device)
    setattr(owner, attr, nn.Parameter(param.data.index_select(dim, keep).clone(), requires_grad=param.requires_grad))
