"""Pruning your own model with S2HPruner, inside your own training loop.

    import torch, torchvision
    from method.api import S2HPruning

    model = torchvision.models.resnet18(num_classes=10)
    pruning = S2HPruning(model, torch.zeros(1, 3, 32, 32), flops_target=0.35)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for images, labels in loader:                      # your data, your schedule
        loss = pruning.step(images, labels, optimizer)  # Algorithm 1: weights and masks
    pruned = pruning.export(calibration=loader)        # a plain, smaller nn.Module

`step` computes one step of Algorithm 1 (soft and hard passes, the routed gradients), writes
the weights' gradients and calls your `optimizer.step()`, and updates the mask logits with
their own SGD (`mask_lr`). Every option of `prune.options` for the `s2hpruner` method is a
keyword argument (`S2HOptions`). `export` slims the hard network and, given a few
training batches, recomputes its BatchNorm statistics.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import torch
import torch.nn as nn

from core.groups import discover_groups, slim
from method.algorithm import S2HState
from method.evaluation import recalibrate_bn
from method.options import S2HOptions


class S2HPruning:
    """S2HPruner attached to `model` (channel groups found from `example_input`)."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, flops_target: float, *,
                 flops_scope: str = "network", label_smoothing: float = 0.0, include_stem: bool = False,
                 keep: Iterable[str] = (), attention: str = "auto", **options: Any) -> None:
        if not 0 < flops_target < 1:
            raise ValueError(f"flops_target must be in (0, 1), got {flops_target}")
        self.options = S2HOptions(**options)
        self.options.validate()
        self.model = model
        device = next(model.parameters()).device
        groups = discover_groups(model, example_input.to(device), include_stem=include_stem, keep=keep, attention=attention)
        self.state = S2HState(model, groups, self.options, flops_target, flops_scope, label_smoothing).to(device)
        self.mask_optimizer = torch.optim.SGD(self.state.logits_params(), lr=self.options.mask_lr,
                                              momentum=self.options.mask_momentum)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One training step; returns the soft network's cross-entropy."""
        self.model.train()
        grads = self.state.gradients(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        self.mask_optimizer.zero_grad(set_to_none=True)
        self.state.apply(grads)
        optimizer.step()
        self.mask_optimizer.step()
        return grads.loss.item()

    @property
    def flops_ratio(self) -> float:
        """FLOPs of the current hard network over the dense network's."""
        return self.state.hard_flops_ratio()

    @property
    def widths(self) -> list[int]:
        """Kept units per group of the current hard network."""
        return self.state.masks.hard_widths()

    def export(self, calibration: Iterable | None = None, batches: int = 20) -> nn.Module:
        """The hard network as a plain module; BN statistics from `calibration` batches if given."""
        pruned = slim(self.model, self.state.groups, self.state.hard_masks())
        if calibration is not None:
            device = next(pruned.parameters()).device
            images = ((batch[0] if isinstance(batch, (tuple, list)) else batch).to(device) for batch in calibration)
            recalibrate_bn(pruned, ((x, None) for x in itertools.islice(images, batches)))
        return pruned.eval()
