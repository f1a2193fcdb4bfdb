"""IMP-Refill: iterative magnitude pruning with rewinding, then refilling whole channels
(Chen et al., ICML 2022, "Coarsening the Granularity: Towards Structurally Sparse Lottery
Tickets"; official code VITA-Group/Structure-LTH).

Phases, splitting the run's budget (`budget_split`: IMP rounds, retraining):
1. the first IMP round trains the dense network on one schedule and saves the weights at
   `rewind_fraction` (10 %) of it, the rewind point (official: epoch 16 of 160);
2. IMP rounds, each training for an equal share of the rounds' budget (after the first, from
   the rewound weights under the current mask), then removing `prune_fraction` (20 %) of the
   remaining conv weights by global magnitude (the stem is never pruned) and rewinding. The
   number of rounds is planned on the refilled FLOPs (`plan_rounds`: 20 % rounds and refills
   simulated on the initial weights until the target is met) and IMP stops early when the
   refilled network meets the target; where a full round would overshoot, or the last planned
   round fall short, that round prunes only the fraction that lands on the target
   (bisection). After every round the weight mask is refilled (step 3)
   to whole channels and the next round prunes inside them (`refill=every_round`, the
   paper's method and main_imp_fillback.py; `refill=once` refills after the last round only);
3. refill: for every pruned conv, n = how many whole output channels its surviving weights
   could fill; keep the int(n + (C - n) * refill_rate) + 1 channels with the most survivors,
   the official count (`refill_channels`; rate 0: "Refill", > 0: "Refill+"); within each of our channel groups, the kept channels of its convs are
   reconciled by union (`reconcile=union`; `intersection` keeps only the channels every
   producer keeps). Channel groups produced by linear layers are not pruned (IMP prunes
   convolutions). Then rewind, slim physically and retrain with the run's recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from baselines.budget import check_split, phase_ends, phase_optimizer, split_points
from baselines.checks import require_cnn
from baselines.phases import Phase, PhasedPruner, Phases
from core.config import RunConfig
from core.errors import ConfigError
from core.groups import FlopsModel, GroupSet, groups_for_run, slim
from core.pruner import PRUNERS, Flight, StepResult, TrainContext, check_pruning_target, supervised_backward
from core.regime import PlannedDecision

RECONCILE = ("union", "intersection")
REFILLS = ("every_round", "once")
MAX_ROUNDS = 100  # 0.8^100: far below any FLOPs target; a cap on the planning loop
# the simulated refilled FLOPs stall when 5 rounds gain less than 0.001 of the dense FLOPs
PLATEAU_ROUNDS, PLATEAU_GAIN = 5, 1e-3


@dataclass
class RefillOptions:
    prune_fraction: float = 0.2  # official: 20 % of the remaining weights per round
    refill_rate: float = 0.0  # 0: Refill, > 0: Refill+
    reconcile: str = "union"
    # once (the documented pipeline, main_imp.py then main_eval_fillback.py: IMP rounds, then one
    # refill) | every_round (the repository's overview and main_imp_fillback.py: each round's
    # weight mask refilled to whole channels before the next round prunes inside it); neither runs
    # as shipped (baselines/README.md)
    refill: str = "once"
    # the rewind snapshot, as a fraction of the first round's schedule (official: epoch 16 of its
    # 160, while the learning rate is still high: the README's main_imp.py command, README.md:57)
    rewind_fraction: float = 0.1
    budget_split: list[float] = field(default_factory=lambda: [0.65, 0.35])  # IMP rounds, retraining

    def validate(self) -> None:
        check_split(self.budget_split, 2)
        if not 0 <= self.rewind_fraction < 1:
            raise ConfigError(f"prune.options.rewind_fraction must be in [0, 1), got {self.rewind_fraction}")
        if not 0 < self.prune_fraction < 1 or not 0 <= self.refill_rate <= 1:
            raise ConfigError("prune.options: prune_fraction in (0, 1) and refill_rate in [0, 1] are needed")
        if self.reconcile not in RECONCILE:
            raise ConfigError(f"prune.options.reconcile must be one of {', '.join(RECONCILE)}, got {self.reconcile!r}")
        if self.refill not in REFILLS:
            raise ConfigError(f"prune.options.refill must be one of {', '.join(REFILLS)}, got {self.refill!r}")


def round_cap(cfg: RunConfig) -> int:
    """The most IMP rounds the rounds' share of the budget holds when each must train for at
    least `prune.decide_after_epochs` (`core.regime`); MAX_ROUNDS when that is null."""
    after = cfg.prune.decide_after_epochs
    if not after:
        return MAX_ROUNDS
    rounds_share = split_points(RefillOptions(**cfg.prune.options).budget_split)[0]
    return max(1, min(MAX_ROUNDS, math.floor(rounds_share * cfg.train.epochs / after + 1e-9)))


def prunable_convs(model: nn.Module, groups: GroupSet) -> list[str]:
    """Convolutions IMP prunes: producers of our (prunable) groups; the stem is excluded there."""
    modules = dict(model.named_modules())
    names = {m.layer for g in groups for m in g.producers() if isinstance(modules[m.layer], nn.Conv2d)}
    return [n for n, m in modules.items() if n in names]


def global_magnitude_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Remove `fraction` of the surviving weights with the smallest |w|, over all layers at once."""
    alive = torch.cat([w.detach().abs()[m.bool()].flatten().cpu() for w, m in zip(weights.values(), masks.values())])
    count = int(round(fraction * alive.numel()))
    if count == 0:
        return {k: m.clone() for k, m in masks.items()}
    threshold = torch.kthvalue(alive, count).values
    out = {}
    for name, w in weights.items():
        keep = masks[name].bool() & (w.detach().abs().cpu() > threshold)
        out[name] = keep.to(masks[name].dtype)
    return out


def refill_channels(mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean [out channels]: the min(C, m + 1) channels with the most survivors (ties by
    index), with n = surviving weights / weights per channel (a float) and
    m = int(n + (C - n) * rate): the count of the official `remain` rule (pruning_utils.py,
    `prune_model_custom_fillback`: the channels above the max(C - m, 1)-th smallest survivor
    count, plus one at it). Where several channels tie at that threshold the official rule
    refills one of them, chosen at random, and leaves the other tied channels with their
    unstructured rows, which a slimmed network cannot express; we keep the count of whole
    channels, ties broken by index (baselines/README.md)."""
    per_channel = mask.reshape(mask.shape[0], -1).sum(1)
    c, weights_per_channel = mask.shape[0], mask[0].numel()
    n = float(mask.sum()) / weights_per_channel
    keep = min(c, int(n + (c - n) * rate) + 1)
    chosen = torch.zeros(c, dtype=torch.bool)
    chosen[torch.argsort(per_channel.cpu(), descending=True, stable=True)[:keep]] = True
    return chosen


@PRUNERS.register("refill", options=RefillOptions, summary="IMP-Refill (Structure-LTH): IMP with rewinding, then refilled channels")
class RefillPruner(PhasedPruner):
    """See the module docstring."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        self.options = o = RefillOptions(**self.cfg.prune.options)
        self.model = model.to(ctx.device)
        self.groups = groups_for_run(self.model, self.cfg.prune, ctx.image_size)
        self.flops = FlopsModel(self.model, self.groups)
        self.convs = prunable_convs(self.model, self.groups)
        if not self.convs:
            raise ConfigError("prune.method=refill found no convolution to prune")
        modules = dict(self.model.named_modules())
        self.masks = {n: torch.ones_like(modules[n].weight, device="cpu") for n in self.convs}
        self.round = 0
        self.keep: list[torch.Tensor] | None = None  # the refilled channel masks, once chosen
        self.last_fraction: float | None = None
        rounds_share, retrain_share = o.budget_split
        rounds_steps = phase_ends(self.total_steps(), o.budget_split)[0]
        # a round needs at least one step, and decide_after_epochs of them where it is set
        self.fraction = o.prune_fraction  # per round; raised where fewer rounds must reach the target
        self.rounds, self.rounds_plan = self.plan_rounds(min(rounds_steps, MAX_ROUNDS, round_cap(self.cfg)))
        run_recipe = lambda steps: phase_optimizer(self.model.parameters(), self.cfg.train, steps)  # noqa: E731
        self.phases = Phases(
            [Phase(f"round{r + 1}", rounds_share / self.rounds, optimizer=run_recipe, leave=self._end_round)
             for r in range(self.rounds)]
            + [Phase("retrain", retrain_share, optimizer=run_recipe, enter=lambda done: self._slim())],
            self.total_steps())
        self.round_ends = self.phases.ends[:self.rounds]
        # the snapshot inside the first round, on that round's one schedule (0: the initial weights)
        self.rewind_end = min(round(o.rewind_fraction * self.round_ends[0]), self.round_ends[0] - 1)
        self.rewind_state: dict[str, torch.Tensor] | None = None
        if self.rewind_end == 0:
            self._snapshot()

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check_pruning_target(cfg)

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        require_cnn(cfg, flight, "refill")

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """Each round's pruning (and rewind), for the most rounds the plan may make (`round_cap`,
        else `MAX_ROUNDS`: the shortest rounds); each round trains for its share from the rewound
        weights, which a round past the first counts from."""
        o = RefillOptions(**cfg.prune.options)
        rounds_end = split_points(o.budget_split)[0]
        rounds = min(MAX_ROUNDS, round_cap(cfg))
        length = rounds_end / rounds
        return [PlannedDecision(f"IMP round {k}", k * length, length) for k in range(1, rounds + 1)]

    # ----------------------------------------------------------------------------- refill

    def refill(self, masks: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Channel keep-masks per group from unstructured conv masks (see the docstring)."""
        chosen = {n: refill_channels(m, self.options.refill_rate) for n, m in masks.items()}
        keep = []
        for group in self.groups:
            votes = [chosen[m.layer][m.index[:, 0]] for m in group.producers() if m.layer in chosen]
            if not votes:
                keep.append(torch.ones(group.size))
                continue
            stacked = torch.stack(votes)
            unit = stacked.any(0) if self.options.reconcile == "union" else stacked.all(0)
            if not unit.any():  # never remove a whole group
                unit[int(torch.stack(votes).float().sum(0).argmax())] = True
            keep.append(unit.float())
        return keep

    def refilled_ratio(self, masks: dict[str, torch.Tensor]) -> float:
        return self.flops.exact(self.refill(masks)) / self.flops.dense()

    def _prune_round(self) -> None:
        modules = dict(self.model.named_modules())
        weights = {n: modules[n].weight for n in self.convs}
        target = self.cfg.prune.flops_target
        candidate = global_magnitude_masks(weights, self.masks, self.fraction)
        reaches = self.refilled_ratio(candidate) <= target
        if reaches or self.round + 1 == self.rounds:
            # The round that reaches the target: prune only as much as lands on it.
            low, high = 0.0, self.fraction if reaches else 1.0
            for _ in range(30):
                mid = 0.5 * (low + high)
                if self.refilled_ratio(global_magnitude_masks(weights, self.masks, mid)) <= target:
                    high = mid
                else:
                    low = mid
            candidate = global_magnitude_masks(weights, self.masks, high)
            self.last_fraction = high
            self.keep = self.refill(candidate)
        self.masks = self.next_masks(candidate, self.keep)
        self.round += 1

    def next_masks(self, candidate: dict[str, torch.Tensor], keep: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weight masks the next round prunes inside: the round's refilled channels whole
        (`refill=every_round`; `keep`, the refill of `candidate` where already computed), or its
        unstructured masks (`once`)."""
        if self.options.refill != "every_round":
            return candidate
        return self.channel_masks(keep if keep is not None else self.refill(candidate))

    def _simulate(self, fraction: float, limit: int) -> list[float]:
        """The refilled FLOPs ratio after each of up to `limit` rounds pruning `fraction`,
        simulated on the initial weights' magnitudes, stopping at the target or on a plateau."""
        modules = dict(self.model.named_modules())
        weights = {n: modules[n].weight for n in self.convs}
        masks, history = self.masks, []
        for _ in range(limit):
            candidate = global_magnitude_masks(weights, masks, fraction)
            keep = self.refill(candidate)  # once per round: the ratio and the next masks both need it
            history.append(self.flops.exact(keep) / self.flops.dense())
            if history[-1] <= self.cfg.prune.flops_target:
                break
            if len(history) > PLATEAU_ROUNDS and history[-PLATEAU_ROUNDS - 1] - history[-1] < PLATEAU_GAIN:
                break
            masks = self.next_masks(candidate, keep)
        return history

    def plan_rounds(self, limit: int) -> tuple[int, str]:
        """(rounds, how they were planned): how many rounds of `prune_fraction` the refilled FLOPs
        need to meet the target, simulated on the initial weights' magnitudes (at most `limit`;
        "refilled"). Where `limit` rounds of `prune_fraction` fall short (the budget holds fewer
        rounds of `decide_after_epochs`, `round_cap`), `limit` rounds of the smallest larger
        fraction that reaches the target in the simulation ("capped": fewer, larger rounds, as
        the official `--rate` allows). Where the simulated refilled FLOPs stall above the target
        (MobileNetV3 under `refill=every_round`: the refill brings back what each round prunes, a
        plateau at 0.842 of the FLOPs at full width), as many rounds as a weight density equal to
        the target takes ("density"), and the last round prunes the rest. Training moves the
        magnitudes, so a real run may meet the target a round early (it stops there) or late
        (`last_round_fraction`, baselines/README.md)."""
        target = self.cfg.prune.flops_target
        history = self._simulate(self.options.prune_fraction, limit)
        if history[-1] <= target:
            return len(history), "refilled"
        stalled = len(history) < limit
        if not stalled and limit < MAX_ROUNDS and self._simulate(0.999, limit)[-1] <= target:
            low, high = self.options.prune_fraction, 0.999
            for _ in range(20):
                mid = 0.5 * (low + high)
                reached = self._simulate(mid, limit)[-1] <= target
                low, high = (low, mid) if reached else (mid, high)
            self.fraction = high
            return limit, "capped"
        density = math.ceil(math.log(target) / math.log(1 - self.options.prune_fraction))
        return max(1, min(density, limit)), "density"

    def channel_masks(self, keep: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weight masks of the pruned convs from per-group channel keep-masks: a kept channel's
        rows whole (weights IMP had removed come back, at their rewound values), the rest 0."""
        masks = {n: torch.zeros_like(m) for n, m in self.masks.items()}
        for group, unit in zip(self.groups, keep):
            for member in group.producers():
                if member.layer in masks:
                    masks[member.layer][member.index[unit.bool()].flatten()] = 1
        return masks

    def _apply_masks(self) -> None:
        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for n, m in self.masks.items():
                modules[n].weight.mul_(m.to(modules[n].weight.device))

    def _snapshot(self) -> None:
        self.rewind_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _rewind(self) -> None:
        self.model.load_state_dict(self.rewind_state)

    # ----------------------------------------------------------------------------- training

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        self.optimizer.step()
        if self.phase != "retrain":
            self._apply_masks()
        if self.phase == "round1" and step + 1 == self.rewind_end:
            self._snapshot()
        return StepResult(loss, logits)

    def _end_round(self, done: int) -> str | None:
        """A round ends: prune, rewind; retrain once the refilled channels are chosen."""
        self._prune_round()
        self.decide(f"IMP round {self.round}: prune, refill, rewind", done)
        self._rewind()
        if self.keep is not None:
            return "retrain"
        self._apply_masks()
        return None

    def _slim(self) -> None:
        """Rewound weights, refilled channels kept (dense inside them), for the run's recipe."""
        self.model = slim(self.model, self.groups, self.keep)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        keep = self.keep if self.keep is not None else self.refill(self.masks)
        density = sum(float(m.sum()) for m in self.masks.values()) / sum(m.numel() for m in self.masks.values())
        return {"flops_ratio": self.flops.exact(keep) / self.flops.dense(), "phase": self.phase,
                "round": self.round, "weight_density": density}

    def eval_networks(self) -> dict[str, nn.Module]:
        return {"hard": self.export()}

    def export(self) -> nn.Module:
        if self.phase == "retrain":
            return self.model
        return slim(self.model, self.groups, self.refill(self.masks)).eval()

    def final_metrics(self) -> dict[str, Any]:
        # the share of the surviving weights the last round removed (0.2 or less unless the
        # planned rounds fell short of the target: see baselines/README.md)
        return {"imp_rounds": self.round, "imp_rounds_planned": self.rounds, "rounds_plan": self.rounds_plan,
                "round_fraction": self.fraction, "last_round_fraction": self.last_fraction}

    def method_state(self) -> dict[str, Any]:
        return {"round": self.round, "masks": dict(self.masks), "keep": self.keep, "last_fraction": self.last_fraction,
                "rewind_state": self.rewind_state}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.round, self.masks, self.keep = state["round"], dict(state["masks"]), state["keep"]
        self.last_fraction = state["last_fraction"]
        self.rewind_state = state["rewind_state"]
        if self.phase == "retrain":
            self._slim()
