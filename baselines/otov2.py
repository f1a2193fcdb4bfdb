"""OTOv2: DHSPG, the dual half-space projected gradient (Chen et al., ICLR 2023, "OTOv2:
Automatic, Generic, User-Friendly"; official legacy code tianyic/only_train_once, branch
otov2_legacy_backup, `only_train_once/optimizer/dhspg.py`). The `only-train-once` 3.x package
on PyPI no longer contains DHSPG, so this is a port of the algorithm onto our substrate.

Training from scratch with one optimizer and schedule (the run's), in three phases that split
the run's budget (`budget_split`):
1. warm-up: plain training;
2. at the first step of phase 2, one partition (official `partition_groups`): with x a unit's
   zero-invariant group (`zig.py`, n_g values) and d the step the optimizer takes for it per
   unit of lr (official `grad_variant`: the gradient plus weight decay, through momentum), the
   score is 0.5 * normalize(cos(-x, -d)) + 0.5 * normalize(1 / (|x| / n_g + 1e-6)), each term
   L2-normalised over all units. The highest-scoring units form the redundant set G_p: as many
   as our exact FLOPs counter says must go to meet the target (bisection over the count), plus
   `tolerance` (official 0.05) of all units, every group keeping its lowest-scoring unit.
   Then every step, units of G_p take a group-lasso step lambda x / |x| on top of the
   optimizer's, lambda recomputed each step (official): `lmbda`, or where <x, d> < 0,
   clip(lmbda_amplify * (-<x, d> / |x|), lmbda, hat_lmbda_coeff * lmbda), replaced by the
   midpoint of that lower bound and the descent bound |d|^2 |x| / |<x, d>| where it reaches
   the latter. A unit whose new value x_hat has <x_hat, x> < epsilon |x|^2 is projected to
   zero (the half-space step) and stays zero, but no more units than the FLOPs target needs
   (official: no more than its group-sparsity bound, which at its default 1.0 never binds);
   once the zero units meet the target, the penalty and projection stop and the rest of G_p
   trains on (official stopping rule);
3. plain training with the zero units held at zero. Should phase 2 end before the half-space
   steps met the target, the units of G_p with the smallest |x| are zeroed until it is met
   (a fallback the official code, which has no deadline, never needs); the record counts the
   units each way (`halfspace_zero`, `fallback_zero`).
The exported network is the model with its zero units removed physically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.budget import check_split, phase_optimizer, regime_split, split_points
from baselines.checks import require_cnn
from baselines.phases import Phase, PhasedPruner, Phases
from baselines.zig import ZeroInvariantGroups
from core.config import RunConfig
from core.errors import ConfigError
from core.groups import FlopsModel, groups_for_run, slim
from core.pruner import PRUNERS, Flight, StepResult, TrainContext, check_pruning_target, supervised_backward
from core.regime import PlannedDecision

@dataclass
class OTOv2Options:
    lmbda: float = 1e-3  # official (hyperparameter.py, the sgd variant)
    lmbda_amplify: float = 2.0  # official
    hat_lmbda_coeff: float = 10.0  # official
    epsilon: float = 0.95  # half-space threshold (official tutorials 01 and 02: epsilon=0.95)
    tolerance: float = 0.05  # share of all units added to G_p beyond the target (official tolerance_group_sparsity)
    # warm-up, projection deadline, training: pruning starts after a sixth of the run, as official
    # tutorial 01 starts it after 50 of its 300 epochs; the deadline at half the run is ours
    budget_split: list[float] = field(default_factory=lambda: [1 / 6, 1 / 3, 1 / 2])

    def validate(self) -> None:
        check_split(self.budget_split, 3)
        if self.lmbda <= 0 or self.lmbda_amplify < 1 or self.hat_lmbda_coeff < 1 or not 0 <= self.epsilon < 1:
            raise ConfigError("prune.options: lmbda > 0, lmbda_amplify >= 1, hat_lmbda_coeff >= 1, epsilon in [0, 1)")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"prune.options.tolerance must be in [0, 1), got {self.tolerance}")


def redundancy_scores(xs: list[torch.Tensor], ds: list[torch.Tensor]) -> list[torch.Tensor]:
    """Official partition score per unit (rows) of every group; higher is more redundant."""
    cos = torch.cat([F.cosine_similarity(-x, -d, dim=1) for x, d in zip(xs, ds)])
    magnitude = torch.cat([x.norm(dim=1) / x.shape[1] for x in xs])
    scores = 0.5 * F.normalize(cos, dim=0) + 0.5 * F.normalize(1.0 / (magnitude + 1e-6), dim=0)
    return list(scores.split([x.shape[0] for x in xs]))


def dhspg_lambdas(x: torch.Tensor, d: torch.Tensor, o: OTOv2Options) -> torch.Tensor:
    """Official per-step lambda of each unit (rows of x) from its step direction d."""
    norms = x.norm(dim=1)
    inner = (x * d).sum(1)
    lambdas = torch.full_like(norms, o.lmbda)
    adjust = inner < 0
    lower = -inner[adjust] / norms[adjust]
    upper = d[adjust].square().sum(1) * norms[adjust] / -inner[adjust]
    chosen = torch.clamp(o.lmbda_amplify * lower, min=o.lmbda, max=o.lmbda * o.hat_lmbda_coeff)
    lambdas[adjust] = torch.where(chosen >= upper, (upper + lower) / 2, chosen)
    return lambdas


@PRUNERS.register("otov2", options=OTOv2Options, summary="OTOv2 (DHSPG), ported onto the suite's groups")
class OTOv2Pruner(PhasedPruner):
    """See the module docstring."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        self.options = OTOv2Options(**self.cfg.prune.options)
        self.model = model.to(ctx.device)
        self.groups = groups_for_run(self.model, self.cfg.prune, ctx.image_size)
        self.zig = ZeroInvariantGroups(self.model, self.groups)
        self.flops = FlopsModel(self.model, self.groups)
        self.target_flops = self.cfg.prune.flops_target * self.flops.dense()
        self.redundant = [torch.zeros(g.size, dtype=torch.bool) for g in self.groups]  # G_p
        self.zeroed = [torch.zeros(g.size, dtype=torch.bool) for g in self.groups]
        self.halfspace_zero = 0
        self.fallback_zero = 0
        warmup, projection, train = regime_split(self.options.budget_split, self.cfg)
        self.phases = Phases([  # one optimizer and schedule for the whole run
            Phase("warmup", warmup, optimizer=lambda steps: phase_optimizer(self.model.parameters(), self.cfg.train, steps)),
            Phase("projection", projection, leave=self._end_projection),
            Phase("train", train),
        ], self.total_steps())

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check_pruning_target(cfg)
        cls.planned_decisions(cfg)  # a warm-up stretched past the budget says so now

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        require_cnn(cfg, flight, "otov2")

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """The partition when the warm-up ends; zeroings until the projection's deadline at the
        latest."""
        warmup_end, deadline, _ = split_points(regime_split(OTOv2Options(**cfg.prune.options).budget_split, cfg))
        return [PlannedDecision("partition", warmup_end), PlannedDecision("zero", deadline)]

    # ----------------------------------------------------------------------------- DHSPG

    def _flops_without(self, zeroed: list[torch.Tensor]) -> float:
        return self.flops.exact_widths([g.size - int(z.sum()) for g, z in zip(self.groups, zeroed)])

    def _fewest(self, order: list[tuple[int, int]], base: list[torch.Tensor]) -> int:
        """How many units of `order` ((group, unit), first first), removed on top of `base`,
        meet the FLOPs target; len(order) + 1 when even all of them do not."""
        def removed(count: int) -> list[torch.Tensor]:
            out = [b.clone() for b in base]
            for g, u in order[:count]:
                out[g][u] = True
            return out

        if self._flops_without(removed(len(order))) > self.target_flops:
            return len(order) + 1
        low, high = 0, len(order)
        while low < high:
            mid = (low + high) // 2
            if self._flops_without(removed(mid)) <= self.target_flops:
                high = mid
            else:
                low = mid + 1
        return low

    def partition(self, xs: list[torch.Tensor], ds: list[torch.Tensor]) -> None:
        """Choose G_p from the units' scores (see the module docstring)."""
        scores = [s.cpu() for s in redundancy_scores(xs, ds)]
        candidates = []  # every group keeps its lowest-scoring unit out of G_p
        for g, s in enumerate(scores):
            order = torch.argsort(s, descending=True, stable=True)
            candidates += [(float(s[u]), g, int(u)) for u in order[:-1]]
        candidates.sort(key=lambda c: -c[0])
        order = [(g, u) for _, g, u in candidates]
        needed = self._fewest(order, [torch.zeros_like(z) for z in self.zeroed])
        if needed > len(order):
            raise ConfigError(f"OTOv2 cannot reach a FLOPs ratio of {self.cfg.prune.flops_target} on these groups")
        extra = int(self.options.tolerance * sum(self.groups.sizes))
        for g, u in order[:needed + extra]:
            self.redundant[g][u] = True

    def project(self, xs: list[torch.Tensor], ds: list[torch.Tensor], lr: float) -> int:
        """After the optimizer's step: the group-lasso step on G_p, then the half-space
        projection, zeroing no more units than the target needs (xs, ds: before the step); how
        many units it zeroed."""
        o = self.options
        proposals: list[tuple[float, int, int]] = []
        for g in range(len(self.groups)):
            active = (self.redundant[g] & ~self.zeroed[g]).to(xs[g].device)
            if not active.any():
                continue
            x, d, x_hat = xs[g][active], ds[g][active], self.zig.gather(g)
            norms = x.norm(dim=1, keepdim=True)
            lasso = torch.where(norms > 0, x / (norms + 1e-8), torch.zeros_like(x))
            x_hat[active] = x_hat[active] - lr * dhspg_lambdas(x, d, o)[:, None] * lasso
            self.zig.scatter(g, x_hat)
            ratio = (x_hat[active] * x).sum(1) / norms.squeeze(1).square().clamp_min(1e-30)
            units = active.nonzero().flatten().tolist()
            proposals += [(float(r), g, u) for r, u in zip(ratio.cpu(), units) if r < o.epsilon]
        zeroed = self._zero_first(proposals)  # the deepest into the half-space first
        self.halfspace_zero += zeroed
        return zeroed

    def reached(self) -> bool:
        return self._flops_without(self.zeroed) <= self.target_flops

    def _fallback(self) -> None:
        """Phase 2 ended short of the target: zero G_p's smallest units until it is met."""
        left = [(float(self.zig.gather(g)[u].norm()), g, u) for g in range(len(self.groups))
                for u in (self.redundant[g] & ~self.zeroed[g]).nonzero().flatten().tolist()]
        self.fallback_zero += self._zero_first(left)

    def _zero_first(self, ranked: list[tuple[float, int, int]]) -> int:
        """Zero the (key, group, unit) entries in increasing key, no more than the target needs;
        how many were zeroed."""
        if not ranked:  # most projection steps propose nothing: no FLOPs count, no rewrite
            return 0
        order = [(g, u) for _, g, u in sorted(ranked)]
        take = min(len(order), self._fewest(order, self.zeroed))
        for g, u in order[:take]:
            self.zeroed[g][u] = True
        self._hold_zeros()
        return take

    def _hold_zeros(self) -> None:
        for g, zeroed in enumerate(self.zeroed):
            self.zig.zero(g, zeroed.nonzero().flatten())

    # ----------------------------------------------------------------------------- training

    def partitioned(self) -> bool:
        return any(bool(r.any()) for r in self.redundant)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        projecting = self.phase == "projection"
        xs = [self.zig.gather(g) for g in range(len(self.groups))] if projecting else None
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if projecting:
            # the optimizer's step per unit of lr: the official gradient variant (the raw
            # gradient where the schedule's lr is 0 and the step says nothing)
            ds = ([(x - self.zig.gather(g)) / lr for g, x in enumerate(xs)] if lr > 0
                  else [self.zig.gather(g, grad=True) for g in range(len(self.groups))])
            if not self.partitioned():  # the first step of phase 2
                self.partition(xs, ds)
                self.decide("partition", step + 1)
            if lr > 0 and self.project(xs, ds, lr):
                self.decide("zero", step + 1)
        self._hold_zeros()
        if projecting and self.reached():  # the official stopping rule
            self.phases.advance(step + 1)
        return StepResult(loss, logits)

    def _end_projection(self, done: int) -> None:
        """Phase 2 ends: at the target, or at its deadline short of it (the fallback)."""
        if not self.reached():
            self._fallback()
            self.decide("zero (deadline fallback)", done)

    def keep_masks(self) -> list[torch.Tensor]:
        return [(~z).float() for z in self.zeroed]

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"flops_ratio": self.flops.exact(self.keep_masks()) / self.flops.dense(), "phase": self.phase,
                "zeroed": sum(int(z.sum()) for z in self.zeroed), "redundant": sum(int(r.sum()) for r in self.redundant)}

    def eval_networks(self) -> dict[str, nn.Module]:
        return {"hard": self.export()}

    def export(self) -> nn.Module:
        return slim(self.model, self.groups, self.keep_masks()).eval()

    def final_metrics(self) -> dict[str, Any]:
        return {"halfspace_zero": self.halfspace_zero, "fallback_zero": self.fallback_zero}

    def method_state(self) -> dict[str, Any]:
        return {"redundant": list(self.redundant), "zeroed": list(self.zeroed),
                "halfspace_zero": self.halfspace_zero, "fallback_zero": self.fallback_zero}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.halfspace_zero, self.fallback_zero = state["halfspace_zero"], state["fallback_zero"]
        self.redundant, self.zeroed = list(state["redundant"]), list(state["zeroed"])
