"""OTOv2: DHSPG, the dual half-space projected gradient (Chen et al., ICLR 2023, "OTOv2:
Automatic, Generic, User-Friendly"; official legacy code tianyic/only_train_once, OTOv2
branch). The `only-train-once` 3.x package on PyPI no longer contains DHSPG, so this is a port
of the algorithm onto our substrate.

Training from scratch, in three phases that split the run's budget (`budget_split`):
1. warm-up: plain SGD (the run's optimizer and schedule);
2. at the first step of phase 2, one partition: every unit's zero-invariant group (`zig.py`)
   is scored by the cosine between -x and -grad plus its inverse normalised magnitude
   (1 - |x| / max |x|), equally weighted; the highest-scoring units form the redundant set
   G_p, as many as our exact FLOPs counter says must go to meet the target (bisection over
   the count; every group keeps at least one unit);
   then, every step, units of G_p take a group-lasso subgradient step lambda_g x / |x| on top
   of the optimizer's step, with lambda_g starting at `lmbda` and multiplied by
   `lmbda_amplify` (up to `hat_lmbda_coeff` x `lmbda`) whenever the loss gradient points away
   from zero (<grad, x> < 0); a unit whose new value x_hat satisfies <x_hat, x> < epsilon |x|^2
   is projected to zero (the half-space step) and stays zero;
3. once G_p is all zero (units of G_p still non-zero when phase 2 ends are zeroed then, and
   counted in the record as `forced_zero`), plain SGD with the zero units held at zero.
The exported network is the model with its zero units removed physically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from baselines.budget import check_split, phase_ends, phase_optimizer
from baselines.checks import require_cnn
from baselines.zig import ZeroInvariantGroups
from core.config import RunConfig
from core.errors import ConfigError
from core.groups import FlopsModel, groups_for_run, slim
from core.pruner import PRUNERS, StepResult, SubstratePruner, TrainContext, check_pruning_target, supervised_backward

PHASES = ("warmup", "projection", "train")


@dataclass
class OTOv2Options:
    lmbda: float = 1e-3  # official
    lmbda_amplify: float = 2.0  # official
    hat_lmbda_coeff: float = 10.0  # official
    epsilon: float = 0.95  # half-space threshold, from the official tutorials
    budget_split: list[float] = field(default_factory=lambda: [0.1, 0.4, 0.5])  # warm-up, projection, training

    def validate(self) -> None:
        check_split(self.budget_split, 3)
        if self.lmbda <= 0 or self.lmbda_amplify < 1 or self.hat_lmbda_coeff < 1 or not 0 <= self.epsilon < 1:
            raise ConfigError("prune.options: lmbda > 0, lmbda_amplify >= 1, hat_lmbda_coeff >= 1, epsilon in [0, 1)")


def redundancy_scores(x: torch.Tensor, grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per unit (rows of x): cos(-x, -grad) + (1 - |x| / max |x|); higher is more redundant."""
    norms = x.norm(dim=1)
    cos = (x * grad).sum(1) / (norms * grad.norm(dim=1)).clamp_min(1e-12)
    return 0.5 * cos + 0.5 * (1 - norms / max(max_norm, 1e-12))


@PRUNERS.register("otov2", options=OTOv2Options, summary="OTOv2 (DHSPG), ported onto the suite's groups")
class OTOv2Pruner(SubstratePruner):
    """See the module docstring."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        self.options = OTOv2Options(**self.cfg.prune.options)
        self.model = model.to(ctx.device)
        self.groups = groups_for_run(self.model, self.cfg.prune, ctx.image_size)
        self.zig = ZeroInvariantGroups(self.model, self.groups)
        self.flops = FlopsModel(self.model, self.groups)
        self.ends = phase_ends(self.cfg.train.epochs * ctx.steps_per_epoch, self.options.budget_split)
        self.redundant = [torch.zeros(g.size, dtype=torch.bool) for g in self.groups]  # G_p
        self.zeroed = [torch.zeros(g.size, dtype=torch.bool) for g in self.groups]
        self.lmbda = [torch.full((g.size,), self.options.lmbda) for g in self.groups]
        self.forced_zero = 0
        self.phase = "warmup"
        self._optimizer_for(0, self.ends[-1])

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check_pruning_target(cfg)
        require_cnn(cfg, "otov2")

    def _optimizer_for(self, start: int, end: int) -> None:
        self.optimizer, self.scheduler = phase_optimizer(self.model.parameters(), self.cfg.train, end - start)
        self.phase_start = start

    # ----------------------------------------------------------------------------- DHSPG

    def partition(self) -> None:
        """Score every unit and choose G_p so that removing it meets the FLOPs target."""
        xs = [self.zig.gather(g) for g in range(len(self.groups))]
        max_norm = max(float(x.norm(dim=1).max()) for x in xs)
        scores = [redundancy_scores(x, self.zig.gather(g, grad=True), max_norm).cpu() for g, x in enumerate(xs)]
        # Candidates in decreasing score; the best unit of each group is never a candidate.
        candidates = []
        for g, s in enumerate(scores):
            order = torch.argsort(s, descending=True)
            candidates += [(float(s[u]), g, int(u)) for u in order[:-1]]
        candidates.sort(key=lambda c: -c[0])
        sizes = self.groups.sizes

        def kept(count: int) -> list[int]:
            widths = list(sizes)
            for _, g, _ in candidates[:count]:
                widths[g] -= 1
            return widths

        target = self.cfg.prune.flops_target * self.flops.dense()
        low, high = 0, len(candidates)
        if self.flops.exact_widths(kept(high)) > target:
            raise ConfigError(f"OTOv2 cannot reach a FLOPs ratio of {self.cfg.prune.flops_target} on these groups")
        while low < high:  # the fewest removals that meet the target
            mid = (low + high) // 2
            if self.flops.exact_widths(kept(mid)) <= target:
                high = mid
            else:
                low = mid + 1
        for _, g, u in candidates[:low]:
            self.redundant[g][u] = True

    def project(self, before: list[torch.Tensor], lr: float) -> None:
        """Group-lasso step and half-space projection on G_p (after the optimizer's step)."""
        o = self.options
        for g in range(len(self.groups)):
            active = self.redundant[g] & ~self.zeroed[g]
            if not active.any():
                continue
            x, grad = before[g], self.zig.gather(g, grad=True)
            x_hat = self.zig.gather(g)
            norms = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            away = (grad * x).sum(1) < 0  # the loss pushes this unit away from zero
            lmbda = self.lmbda[g].to(x.device)
            lmbda = torch.where(away.cpu().to(lmbda.device) & active.to(lmbda.device),
                                torch.clamp(lmbda * o.lmbda_amplify, max=o.hat_lmbda_coeff * o.lmbda), lmbda)
            self.lmbda[g] = lmbda.cpu()
            rows = active.to(x.device)
            x_hat[rows] = x_hat[rows] - lr * lmbda.to(x.device)[rows, None] * x[rows] / norms[rows]
            self.zig.scatter(g, x_hat)
            halfspace = ((x_hat * x).sum(1) < o.epsilon * x.square().sum(1)).cpu() & active
            self.zeroed[g] |= halfspace
            self.zig.zero(g, halfspace.nonzero().flatten())

    def _hold_zeros(self) -> None:
        for g, zeroed in enumerate(self.zeroed):
            self.zig.zero(g, zeroed.nonzero().flatten())

    # ----------------------------------------------------------------------------- training

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        loss, logits = supervised_backward(self.model, self.optimizer, inputs, targets, self.cfg.train.label_smoothing)
        if self.phase == "warmup" and step >= self.ends[0]:
            self.partition()
            self.phase = "projection"
        before = [self.zig.gather(g) for g in range(len(self.groups))] if self.phase == "projection" else None
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if before is not None:
            self.project(before, lr)
        self._hold_zeros()
        self.scheduler.step_update(step + 1 - self.phase_start)
        if self.phase == "projection" and (step + 1 == self.ends[1] or all(
                bool((z | ~r).all()) for z, r in zip(self.zeroed, self.redundant))):
            self._finish_projection()
        return StepResult(loss, logits)

    def _finish_projection(self) -> None:
        for g in range(len(self.groups)):
            left = self.redundant[g] & ~self.zeroed[g]
            self.forced_zero += int(left.sum())
            self.zeroed[g] |= left
        self._hold_zeros()
        self.phase = "train"

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
        return {"forced_zero": self.forced_zero}

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "redundant": list(self.redundant), "zeroed": list(self.zeroed), "lmbda": list(self.lmbda),
                "forced_zero": self.forced_zero}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.phase, self.forced_zero = state["phase"], state["forced_zero"]
        self.redundant, self.zeroed, self.lmbda = list(state["redundant"]), list(state["zeroed"]), list(state["lmbda"])
