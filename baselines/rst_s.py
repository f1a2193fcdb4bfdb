"""RST-S: structured random sparse network transformation (Bai et al., ICLR 2022, "Dual
Lottery Ticket Hypothesis"; official code yueb17/DLTH, filter granularity).

From the randomly initialised dense network:
1. choose the units to remove in every prunable group except residual streams (the stem is
   never prunable here), at one uniform ratio found by bisection so that the hard network
   meets the FLOPs target: at random (`selection=rand`, as the paper describes) or those with
   the smallest L1 producer rows (`l1_min`, the official code's default);
2. transformation phase: train with a growing L2 penalty on the producer weight rows of those
   units only (official: +1e-4 every 5 iterations up to 1.0, or until every penalised layer's
   kept rows are on average `mag_ratio_limit` (1000) times larger than its removed ones, then
   held while the network stabilises; SGD lr 0.001, momentum 0.9, weight decay 5e-4);
3. remove them physically and train the slimmed network with the run's optimizer and schedule.

Phases split the run's budget (`budget_split`, see baselines/README.md). The penalty's growth
is scaled with the phase: it reaches the ceiling after `growth_fraction` of the phase (the
official 50,000 of 90,000 iterations), unless `reg_increment` fixes the increment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from baselines.budget import check_split, phase_optimizer, split_points
from baselines.phases import Phase, PhasedPruner, Phases
from core.config import RunConfig
from core.errors import ConfigError
from core.groups import FlopsModel, GroupSet, groups_for_run, prefix_mask, slim, unit_scores
from core.pruner import PRUNERS, Flight, StepResult, TrainContext, check_pruning_target, supervised_backward
from core.regime import PlannedDecision
from core.seeding import PRUNE_SELECTION, derive_seed

SELECTIONS = ("rand", "l1_min")


@dataclass
class RSTOptions:
    selection: str = "rand"  # rand (paper) | l1_min (official code's default)
    reg_interval: int = 5  # iterations between penalty increments (official 5)
    reg_ceiling: float = 1.0  # the penalty's upper limit (official 1.0)
    reg_increment: Optional[float] = None  # null: scaled to the phase; official 1e-4
    growth_fraction: float = 50000 / 90000  # share of the phase spent growing (official 50k of 90k)
    transform_lr: float = 0.001  # official --lr_prune
    transform_momentum: float = 0.9  # official --momentum
    # the transformation phase's SGD weight decay: official --wd, 0.0005 in DLTH's CIFAR commands
    # (README.md), whatever the run's own (AdamW's 0.05 for ViT/Swin would be coupled L2 here)
    transform_weight_decay: float = 5e-4
    # the penalty stops growing once every penalised layer's kept/removed mean |row| ratio (an
    # exponential average, 0.9 old + 0.1 new, at each increment) reaches this (official 1000)
    mag_ratio_limit: float = 1000.0
    budget_split: list[float] = field(default_factory=lambda: [0.35, 0.65])  # transformation, training

    def validate(self) -> None:
        if self.selection not in SELECTIONS:
            raise ConfigError(f"prune.options.selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        check_split(self.budget_split, 2)
        if self.reg_interval < 1 or self.reg_ceiling <= 0 or not 0 < self.growth_fraction <= 1:
            raise ConfigError("prune.options: reg_interval >= 1, reg_ceiling > 0 and growth_fraction in (0, 1] are needed")
        if self.transform_weight_decay < 0 or self.mag_ratio_limit <= 1:
            raise ConfigError("prune.options: transform_weight_decay >= 0 and mag_ratio_limit > 1 are needed")


def eligible(groups: GroupSet) -> list[bool]:
    """RST-S prunes interior units (heads, MLP hidden units...), never a residual stream."""
    return [g.kind != "residual" for g in groups]


def _at_ratio(groups: GroupSet, ratio: float) -> list[int]:
    """Keep counts with `ratio` of each eligible group's units removed (at least one kept)."""
    return [max(1, round((1 - ratio) * g.size)) if ok else g.size for g, ok in zip(groups, eligible(groups))]


def lowest_ratio(groups: GroupSet, flops: FlopsModel) -> float:
    """The FLOPs ratio with one unit left in every eligible group: RST-S reaches no lower."""
    return flops.exact_widths(_at_ratio(groups, 1.0)) / flops.dense()


def check_reachable(floor: float, target: float) -> None:
    """Refuse a FLOPs target below RST-S's `lowest_ratio`."""
    if target < floor:
        raise ConfigError(f"RST-S prunes interior groups only: its lowest FLOPs ratio here is {floor:.3f}, "
                          f"above the target {target}")


def uniform_widths(groups: GroupSet, flops: FlopsModel, target: float) -> list[int]:
    """Keep counts at one removal ratio across eligible groups, by bisection on the ratio."""
    mask = eligible(groups)
    check_reachable(lowest_ratio(groups, flops), target)
    low, high = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (low + high)
        if flops.exact_widths(_at_ratio(groups, mid)) / flops.dense() > target:
            low = mid
        else:
            high = mid
    # Rounding makes the ratio a staircase. From the widest set at or below the target, give
    # units back one at a time to the groups whose rounding cut deepest, while the target
    # holds: still one ratio up to rounding, and as close to the target as units allow.
    chosen = _at_ratio(groups, high)
    residue = sorted((i for i, ok in enumerate(mask) if ok), key=lambda i: chosen[i] - (1 - high) * groups[i].size)
    for i in residue:
        if chosen[i] < groups[i].size:
            trial = chosen[:i] + [chosen[i] + 1] + chosen[i + 1:]
            if flops.exact_widths(trial) / flops.dense() <= target:
                chosen = trial
    return chosen


@PRUNERS.register("rst_s", options=RSTOptions, summary="RST-S (Dual Lottery Ticket Hypothesis), filter granularity")
class RSTPruner(PhasedPruner):
    """See the module docstring."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        cfg = self.cfg
        self.options = o = RSTOptions(**cfg.prune.options)
        self.model = model.to(ctx.device)
        self.groups = groups_for_run(self.model, cfg.prune, ctx.image_size)
        self.flops = FlopsModel(self.model, self.groups)
        widths = uniform_widths(self.groups, self.flops, cfg.prune.flops_target)
        self.keep = self._choose(widths)
        self.reg = 0.0
        self.growing = True  # the penalty still grows (until the ceiling or the magnitude-ratio stop)
        self.grown_until: int | None = None  # the step at which the magnitude ratios stopped it
        self.mag_ratio: dict[str, float] = {}  # per penalised layer, the averaged kept/removed ratio
        transform, train = o.budget_split
        self.phases = Phases([
            Phase("transform", transform, optimizer=self._transform_optimizer),
            Phase("train", train, enter=self._enter_training,
                  optimizer=lambda steps: phase_optimizer(self.model.parameters(), self.cfg.train, steps)),
        ], self.total_steps())
        self.transform_end = self.phases.ends[0]
        growth_steps = max(1, round(o.growth_fraction * self.transform_end))
        self.increment = o.reg_increment if o.reg_increment is not None else o.reg_ceiling * o.reg_interval / growth_steps
        self.penalised = self._penalised_rows(self.keep)

    def _transform_optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, None]:
        """The transformation phase's official SGD at a constant learning rate."""
        o = self.options
        return torch.optim.SGD(self.model.parameters(), lr=o.transform_lr, momentum=o.transform_momentum,
                               weight_decay=o.transform_weight_decay), None

    def _penalised_rows(self, keep: list[torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """(layer, rows) of every producer row under the penalty: the units `keep` removes."""
        return [(m.layer, m.index[(k == 0).nonzero().flatten()].flatten())
                for g, k in zip(self.groups, keep) for m in g.producers() if (k == 0).any()]

    def _choose(self, widths: list[int]) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, PRUNE_SELECTION))
        keep = []
        for group, width in zip(self.groups, widths):
            if self.options.selection == "rand":
                order = torch.randperm(group.size, generator=generator)
            else:  # keep the largest-L1 units, remove the smallest
                order = torch.sort(unit_scores(self.model, group), descending=True, stable=True).indices
            keep.append(prefix_mask(order, width))
        return keep

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """The removal at the end of the transformation phase. The random choice of the units at
        initialisation is the method (the dual lottery ticket is a random subnetwork, chosen
        before any training by design), not a decision on what training has shown."""
        return [PlannedDecision("remove", split_points(RSTOptions(**cfg.prune.options).budget_split)[0], exempt=True)]

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check_pruning_target(cfg)

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        """The target must be above the lowest ratio removing interior units can reach (the
        pre-flight's network and groups: traced on the meta device, as on the real one)."""
        check_reachable(lowest_ratio(flight.groups(cfg), flight.flops(cfg)), cfg.prune.flops_target)

    # ----------------------------------------------------------------------------- training

    def _penalise(self) -> None:
        """Add reg * w to the gradient of every chosen row (the gradient of reg/2 * |w|^2)."""
        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for layer, rows in self.penalised:
                weight = modules[layer].weight
                rows = rows.to(weight.device)
                if weight.grad is None:
                    weight.grad = torch.zeros_like(weight)
                weight.grad[rows] += self.reg * weight[rows]

    def _magnitudes_separated(self) -> bool:
        """Update each penalised layer's averaged ratio of its kept rows' mean |w| to its removed
        rows' (official `_update_mag_ratio`); True once every one reaches mag_ratio_limit."""
        modules = dict(self.model.named_modules())
        removed: dict[str, torch.Tensor] = {}
        for layer, rows in self.penalised:
            removed[layer] = torch.cat([removed[layer], rows]) if layer in removed else rows
        with torch.no_grad():
            for layer, rows in removed.items():
                row_mag = modules[layer].weight.abs().flatten(1).mean(1)
                gone = torch.zeros(len(row_mag), dtype=torch.bool, device=row_mag.device)
                gone[rows.to(row_mag.device)] = True
                ratio = float(row_mag[~gone].mean() / row_mag[gone].mean())
                old = self.mag_ratio.get(layer)
                self.mag_ratio[layer] = ratio if old is None else 0.9 * old + 0.1 * ratio
        return all(r >= self.options.mag_ratio_limit for r in self.mag_ratio.values())

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        if self.phase == "transform":
            self._penalise()
        self.optimizer.step()
        if self.phase == "transform" and self.growing and (step + 1) % self.options.reg_interval == 0:
            self.reg = min(self.options.reg_ceiling, self.reg + self.increment)
            if self._magnitudes_separated():
                self.growing, self.grown_until = False, step + 1
        return StepResult(loss, logits)

    def _enter_training(self, done: int) -> None:
        self._remove()
        self.decide("remove", done, exempt="RST-S removes the units it chose at random at initialisation (DLTH)")

    def _remove(self) -> None:
        """End of the transformation: slim physically (then the run's recipe trains it)."""
        self.model = slim(self.model, self.groups, self.keep)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        widths = [int(k.sum()) for k in self.keep]
        return {"flops_ratio": self.flops.exact(self.keep) / self.flops.dense(), "widths": widths,
                "phase": self.phase, "reg": self.reg, "reg_grown_until": self.grown_until}

    def eval_networks(self) -> dict[str, nn.Module]:
        return {"hard": self.export()}

    def export(self) -> nn.Module:
        return self.model if self.phase == "train" else slim(self.model, self.groups, self.keep)

    def final_metrics(self) -> dict[str, Any]:
        """When the magnitude ratios stopped the penalty's growth (null: it grew to the ceiling or the
        phase's end)."""
        return {"reg_grown_until": self.grown_until}

    def method_state(self) -> dict[str, Any]:
        return {"reg": self.reg, "keep": list(self.keep), "growing": self.growing, "grown_until": self.grown_until,
                "mag_ratio": dict(self.mag_ratio)}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.keep = list(state["keep"])
        self.penalised = self._penalised_rows(self.keep)  # the checkpoint's rows, not a fresh selection
        self.reg = state["reg"]
        self.growing, self.grown_until = state["growing"], state["grown_until"]
        self.mag_ratio = dict(state["mag_ratio"])
        if self.phase == "train":
            self._remove()
