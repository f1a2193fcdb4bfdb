"""The pruner protocol: how the training engine drives a pruning method.

A pruner owns the network being trained, its optimizers and its phases. The engine builds
the dense model and the data, hands the model to the pruner and then, for every batch, calls
`train_step`; after every epoch `end_epoch` (whose dict is added to the epoch's log line:
`flops_ratio` of the current hard network, per-group `widths`, ...); for evaluation
`eval_networks` (named networks: "hard" is the one that will be exported, "soft" where the
method has one); and at the end `export` for the plain, physically slimmed network.
A pruner announces each irreversible pruning decision with `decide` during a step; the engine
stamps it with the running train loss (`core.decisions`), and `planned_decisions` says before
a run where a config's decisions will fall (`core.regime`: the working-regime rule).
Checkpointing goes through `state_dict`/`load_state_dict`, which must hold tensors and
primitives only. Before any run, `check_config` refuses a config from its values alone (it
builds nothing) and `preflight` refuses one on its network or the files on disk (`core.preflight`
builds each network once for a whole submission).

`PRUNERS` maps the names used in configs to pruner classes. `core.dense` registers `dense`,
the `method` and `baselines` packages theirs, each when imported: the registry imports them
on first lookup, so none of them is imported by this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import RunConfig, flops_target_problem
from core.decisions import Decision
from core.errors import ConfigError
from core.groups import FlopsModel, GroupSet
from core.regime import PlannedDecision, plan_breaks
from core.registry import Registry

# `core.dense` registers `dense` (it builds on this module, so it is loaded like the plugins)
PRUNERS: Registry = Registry("pruner", plugins=("core.dense", "method", "baselines"))


@dataclass
class TrainContext:
    """What a pruner knows of the run it is part of."""

    cfg: RunConfig
    device: torch.device
    steps_per_epoch: int
    num_classes: int
    image_size: int
    run_dir: Path | None = None  # where a pruner may keep files of its own (documented by it)
    # `train_batches(n)`: n training batches (images, labels) on the device, the same ones at
    # every call and without touching the training RNG (e.g. for BN recalibration).
    train_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None
    # `test_batches()`: the test split, batch by batch, on the device.
    test_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None


@dataclass
class StepResult:
    """One training step's loss (a detached scalar) and the logits its accuracy is read from."""

    loss: torch.Tensor
    logits: torch.Tensor


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against class indices, or against class probabilities (MixUp/CutMix)."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def check_pruning_target(cfg: RunConfig) -> None:
    """A pruning method needs something to prune: a FLOPs target below 1 (one rule and message:
    `core.config.flops_target_problem`)."""
    problem = flops_target_problem("prune.flops_target", cfg.prune.flops_target, pruning=True)
    if problem is not None:
        raise ConfigError(problem)


def supervised_backward(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-mode forward, classification loss, fresh gradients: (loss, logits), both detached.

    The caller adds what its method needs to the gradients, then steps its optimizer.
    """
    model.train()
    logits = model(inputs)
    loss = classification_loss(logits, targets, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), logits.detach()


class Flight(Protocol):
    """What a method's `preflight` hook may ask of the pre-flight (`core.preflight.Preflight`):
    the network, its channel groups and their FLOPs, built once for the whole submission, and
    which runs the submission queues before their readers."""

    def network(self, cfg: RunConfig) -> nn.Module: ...

    def groups(self, cfg: RunConfig) -> GroupSet: ...

    def flops(self, cfg: RunConfig) -> FlopsModel: ...

    def is_queued(self, folder: str | Path) -> bool: ...


class Pruner(ABC):
    """Base class of every method: see the module docstring for the protocol."""

    prunes = True  # whether the method removes anything (its FLOPs target must then be below 1)

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self._announced: list[Decision] = []

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Reject configs the method cannot run, from their values alone (called by `resolve`,
        which builds nothing)."""

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        """Reject configs the method cannot run on their network or with the files on disk
        (called by `core.preflight` once `resolve` passed, before anything is queued; `flight`
        holds the network and its channel groups, built once for the whole submission)."""

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """Where this method plans its irreversible decisions for `cfg`, in shares of the run's
        budget, from the config alone (no network is built): the working-regime check of a grid
        before it runs. None by default (dense training decides nothing)."""
        return []

    def decide(self, what: str, step: int, supersedes: bool = False, exempt: str | None = None) -> None:
        """Announce a decision made in the step that is the `step`-th (1-based) of the run;
        `supersedes`: it replaces the earlier one of its kind (an architecture that may still
        change until the export); `exempt`: why the method takes it whatever the training
        (the rule then checks only what follows it)."""
        self._announced.append(Decision(what, step, supersedes, exempt))

    def take_decisions(self) -> list[Decision]:
        """The decisions announced since the last call (the engine asks after every step)."""
        announced, self._announced = self._announced, []
        return announced

    @abstractmethod
    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        """One optimisation step on one batch; `step` counts updates since the run began."""

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Per-epoch work and the extra fields of the epoch's log line."""
        return {}

    @abstractmethod
    def eval_networks(self) -> dict[str, nn.Module]:
        """Networks to evaluate, by name: 'hard' (always), 'soft' (where there is one)."""

    def replicated_modules(self) -> list[nn.Module]:
        """Modules whose buffers rank 0 broadcasts after each step in data-parallel runs."""
        model = getattr(self, "model", None)
        return [model] if isinstance(model, nn.Module) else []

    def eval_extras(self) -> dict[str, Any]:
        """Extra test-set measurements for an evaluated epoch's log line (e.g. gap metrics)."""
        return {}

    def final_metrics(self) -> dict[str, Any]:
        """Extra entries for the record's metrics, asked for after `export`."""
        return {}

    @abstractmethod
    def export(self) -> nn.Module:
        """The final network as a plain module, with no masks, hooks or suite state."""

    @abstractmethod
    def flops_ratio_prunable(self, exported: nn.Module) -> float:
        """FLOPs of the prunable layers of `exported` over those of the dense model."""

    @abstractmethod
    def lr(self) -> float:
        """The current learning rate of the network weights (for the log)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SubstratePruner(Pruner, ABC):
    """A pruner with one weight optimizer (`self.optimizer`) and a `core.groups.FlopsModel` of
    the dense network (`self.flops`): the learning rate and prunable-FLOPs ratio come from them."""

    def flops_ratio_prunable(self, exported: nn.Module) -> float:
        return self.flops.measure(exported, "prunable") / self.flops.dense("prunable")

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def planned_breaks(cfg: RunConfig) -> list[str]:
    """Why `cfg`'s planned decisions would break the working-regime rule (`core.regime`), from
    its method's plan and `prune.decide_after_epochs`; [] when they keep it."""
    planned = PRUNERS.get(cfg.prune.method).factory.planned_decisions(cfg)
    return plan_breaks(planned, cfg.train.epochs, cfg.prune.decide_after_epochs)

