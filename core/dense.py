"""The `dense` pruner: plain supervised training of the unpruned network.

It gives the dense accuracies of the paper's tables and is the simplest complete pruner:
its hard network is the whole model, its FLOPs ratio is 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from core.config import RunConfig
from core.errors import ConfigError
from core.optim import build_optimizer, build_scheduler
from core.pruner import PRUNERS, Pruner, StepResult, TrainContext, supervised_backward


@PRUNERS.register("dense")
class DensePruner(Pruner):
    """No pruning: train the dense network (the 'unpruned' accuracy of each table)."""

    prunes = False  # (`scratch`, which trains a given architecture, inherits this)

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        self.model = model.to(ctx.device)
        self.optimizer = build_optimizer(self.model.parameters(), self.cfg.train)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.train, ctx.steps_per_epoch)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        if cfg.prune.flops_target != 1.0:
            raise ConfigError(
                f"prune.method=dense keeps every FLOP, so prune.flops_target must be 1.0, "
                f"got {cfg.prune.flops_target}; choose a pruning method for other targets"
            )

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        self.optimizer.step()
        self.scheduler.step_update(step + 1)
        return StepResult(loss, logits)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"flops_ratio": 1.0}

    def eval_networks(self) -> dict[str, nn.Module]:
        return {"hard": self.model}

    def export(self) -> nn.Module:
        return self.model

    def flops_ratio_prunable(self, exported: nn.Module) -> float:
        return 1.0  # nothing was removed

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
