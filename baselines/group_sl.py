"""Group-SL: DepGraph's sparse learning with group-norm regularisation, then pruning
(Fang et al., CVPR 2023; official library torch-pruning, whose GroupNormPruner and group
importance this uses).

Phases, splitting the run's budget (`budget_split`, see baselines/README.md):
1. pre-train the dense network with the run's recipe;
2. sparse learning on its own official recipe (reproduce/main.py: SGD, momentum 0.9, lr 0.01,
   x0.1 at 60 % and 80 % of the phase, weight decay 0) with, after every backward pass, the
   group regulariser (`GroupNormPruner.regularize`: reg 5e-4 times each group's L2 group norm
   gradient, scaled per group by a factor in [1, alpha=16] that grows as the group's
   importance falls);
3. pruning, up to `max_prune_steps` (400) global steps of torch-pruning's linear schedule
   (each removes `pruning_ratio` / `max_prune_steps` of the channels; official 1.0 / 400),
   ranked by the L2 group magnitude normalised by its maximum, stopping as soon as the
   suite's FLOPs counter (FlopCounterMode) says the target is met; then fine-tuning with the
   run's recipe.

Groups: torch-pruning's own DependencyGraph groups, with the layers our substrate keeps
(stem, classifier, `prune.keep`) ignored, so every method prunes the same channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn
import torch_pruning as tp

from baselines.budget import check_split, phase_optimizer, regime_split, split_points
from baselines.checks import require_cnn
from baselines.phases import Phase, PhasedPruner, Phases
from core.config import RunConfig, TrainConfig
from core.errors import ConfigError
from core.groups import FlopsModel, groups_for_run
from core.measure import count_flops, device_of
from core.pruner import PRUNERS, Flight, StepResult, TrainContext, check_pruning_target, supervised_backward
from core.regime import PlannedDecision

# Module attributes that pruning changes (with the tensors' shapes): what a checkpoint of a
# pruned network must hold to rebuild it on the dense model (tensors and primitives only).
STRUCTURE = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
             "normalized_shape")


def structure_of(model: nn.Module) -> dict[str, Any]:
    """The widths of a (possibly pruned) network: module attributes and tensor shapes."""
    modules = {name: {k: getattr(m, k) for k in STRUCTURE if hasattr(m, k)}
               for name, m in model.named_modules() if any(hasattr(m, k) for k in STRUCTURE)}
    return {"modules": modules, "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}}


def restore_structure(model: nn.Module, structure: dict[str, Any]) -> None:
    """Give `model` (same architecture, any widths) the widths of `structure`, with
    uninitialised tensors of those shapes for `load_state_dict` to fill."""
    for name, attrs in structure["modules"].items():
        module = model.get_submodule(name)
        for key, value in attrs.items():
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
    for key, shape in structure["shapes"].items():
        owner_name, _, attr = key.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if attr in owner._parameters:
            old = owner._parameters[attr]
            owner._parameters[attr] = nn.Parameter(old.new_empty(shape), requires_grad=old.requires_grad)
        elif owner._buffers.get(attr) is not None:
            owner._buffers[attr] = owner._buffers[attr].new_empty(shape)


@dataclass
class GroupSLOptions:
    reg: float = 5e-4  # official --reg
    alpha: float = 16.0  # per-group scaling in [1, alpha] (official regularize(alpha=2**4))
    max_prune_steps: int = 400  # official --iterative-steps
    # torch-pruning's `pruning_ratio`: the global channel sparsity its linear schedule reaches at
    # the last of max_prune_steps steps, so each step removes pruning_ratio / max_prune_steps of
    # the prunable channels (official 1.0: a quarter of a percent per step)
    pruning_ratio: float = 1.0
    max_pruning_ratio: float = 1.0  # torch-pruning's cap on any one layer's pruned share (official 1.0)
    # the sparse-learning phase's own recipe (official --sl-lr 0.01, --sl-lr-decay-milestones 60,80
    # of --sl-total-epochs 100, gamma 0.1, SGD momentum 0.9, weight decay 0), its milestones as
    # fractions of the phase; sparse_lr null runs the phase on the run's own lr and schedule
    sparse_lr: Optional[float] = 0.01
    sparse_milestones: list[float] = field(default_factory=lambda: [0.6, 0.8])
    sparse_gamma: float = 0.1
    budget_split: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])  # pretrain, sparse, fine-tune

    def validate(self) -> None:
        check_split(self.budget_split, 3)
        if self.reg < 0 or self.alpha < 1 or self.max_prune_steps < 1:
            raise ConfigError("prune.options: reg >= 0, alpha >= 1, max_prune_steps >= 1")
        for key in ("pruning_ratio", "max_pruning_ratio"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"prune.options.{key} must be in (0, 1], got {getattr(self, key)}")
        if self.sparse_lr is not None and self.sparse_lr <= 0:
            raise ConfigError(f"prune.options.sparse_lr must be > 0 or null, got {self.sparse_lr}")
        if any(not 0 < m < 1 for m in self.sparse_milestones) or not 0 < self.sparse_gamma <= 1:
            raise ConfigError("prune.options: sparse_milestones in (0, 1) (fractions of the phase), sparse_gamma in (0, 1]")


@PRUNERS.register("group_sl", options=GroupSLOptions, summary="Group-SL (DepGraph): group sparse learning, prune, fine-tune")
class GroupSLPruner(PhasedPruner):
    """See the module docstring."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        self.options = GroupSLOptions(**self.cfg.prune.options)
        self.model = model.to(ctx.device)
        groups = groups_for_run(self.model, self.cfg.prune, ctx.image_size)
        self.flops = FlopsModel(self.model, groups)
        self.dense_flops = self.flops.dense()
        modules = dict(self.model.named_modules())
        self.ignored = [modules[m.layer] for g in groups.excluded for m in g.producers()]
        self.pruned_at: int | None = None
        self.regulariser: tp.pruner.GroupNormPruner | None = None  # alive during sparse learning
        pretrain, sparse, finetune = regime_split(self.options.budget_split, self.cfg)
        run_recipe = lambda steps: phase_optimizer(self.model.parameters(), self.cfg.train, steps)  # noqa: E731
        self.phases = Phases([
            Phase("pretrain", pretrain, optimizer=run_recipe),
            Phase("sparse", sparse, optimizer=lambda steps: phase_optimizer(self.model.parameters(), self._sparse_recipe(steps), steps),
                  setup=self._bind_regulariser),
            Phase("finetune", finetune, optimizer=run_recipe, enter=self._prune, setup=self._drop_regulariser),
        ], self.total_steps())

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check_pruning_target(cfg)
        cls.planned_decisions(cfg)  # a pre-training stretched past the budget says so now

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        require_cnn(cfg, flight, "group_sl")

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """The pruning at the end of sparse learning."""
        return [PlannedDecision("prune", split_points(regime_split(GroupSLOptions(**cfg.prune.options).budget_split, cfg))[1])]

    def _example(self) -> torch.Tensor:
        size = self.ctx.image_size
        return torch.zeros(1, 3, size, size, device=device_of(self.model))

    def _tp_pruner(self) -> tp.pruner.GroupNormPruner:
        o = self.options
        return tp.pruner.GroupNormPruner(
            self.model, self._example(),
            importance=tp.importance.GroupMagnitudeImportance(p=2, normalizer="max"),
            reg=o.reg, global_pruning=True, pruning_ratio=o.pruning_ratio, max_pruning_ratio=o.max_pruning_ratio,
            iterative_steps=o.max_prune_steps, ignored_layers=self.ignored,
        )

    def _bind_regulariser(self) -> None:
        self.regulariser = self._tp_pruner()

    def _drop_regulariser(self) -> None:
        self.regulariser = None

    def _sparse_recipe(self, steps: int) -> TrainConfig:
        """The sparse-learning phase's recipe over its `steps` (see GroupSLOptions): weight decay
        0 in any case (official), the official lr and step schedule unless sparse_lr is null."""
        o, train = self.options, dataclasses.replace(self.cfg.train, weight_decay=0.0)
        if o.sparse_lr is None:
            return train
        return dataclasses.replace(
            train, epochs=steps, optimizer="sgd", lr=o.sparse_lr, momentum=0.9, nesterov=False,
            schedule="step", milestones=[max(1, round(m * steps)) for m in o.sparse_milestones],
            gamma=o.sparse_gamma, warmup_epochs=0,
        )

    def _prune(self, done: int) -> None:
        """Global pruning steps until the counter meets the target (or the steps run out)."""
        self.decide("prune", done)
        pruner = self.regulariser if self.regulariser is not None else self._tp_pruner()
        target = self.cfg.prune.flops_target * self.dense_flops
        steps = 0
        while count_flops(self.model, self.ctx.image_size) > target:
            if steps == self.options.max_prune_steps:
                ratio = count_flops(self.model, self.ctx.image_size) / self.dense_flops
                raise RuntimeError(f"Group-SL reached only a FLOPs ratio of {ratio:.3f} in {steps} pruning steps "
                                   f"(target {self.cfg.prune.flops_target}); raise pruning_ratio or max_prune_steps")
            pruner.step()
            steps += 1
        self.pruned_at = steps

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        if self.phase == "sparse":
            self.regulariser.regularize(self.model, alpha=self.options.alpha)
        self.optimizer.step()
        return StepResult(loss, logits)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"flops_ratio": count_flops(self.model, self.ctx.image_size) / self.dense_flops, "phase": self.phase}

    def eval_networks(self) -> dict[str, nn.Module]:
        return {"hard": self.model}

    def export(self) -> nn.Module:
        return self.model

    def final_metrics(self) -> dict[str, Any]:
        return {"prune_steps": self.pruned_at}

    def method_state(self) -> dict[str, Any]:
        return {"pruned_at": self.pruned_at, "structure": structure_of(self.model)}

    def load_method_state(self, state: dict[str, Any]) -> None:
        restore_structure(self.model, state["structure"])
        self.pruned_at = state["pruned_at"]
