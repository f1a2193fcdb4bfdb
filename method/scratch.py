"""The `scratch` method (Table 8): train a pruned architecture from scratch.

    python -m core run prune.method=scratch prune.flops_target=0.15 \
        prune.options.architecture_from=results/runs/<exp>/<run_id>            # ours
    python -m core run prune.method=scratch ... prune.options.random=true prune.options.random_seed=1

The architecture is the kept width of every group in the source run's `architecture.json`
(written by `s2hpruner`). With `random=true` the widths are drawn at random instead, under the
constraint that the network's FLOPs are within `tolerance` (relative) of the source
architecture's. Either way the network is the zoo's freshly initialised model (this run's
seed) slimmed to those widths, then trained like `dense`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn as nn

from core.config import RunConfig
from core.dense import DensePruner
from core.errors import ConfigError
from core.groups import FlopsModel, GroupSet, groups_for_run, prefix_mask, slim
from core.pruner import PRUNERS, Flight, TrainContext
from core.records import resolve_run
from method.pruner import read_architecture


@dataclass
class ScratchOptions:
    architecture_from: Optional[str] = None  # folder of a finished s2hpruner run
    random: bool = False  # draw random widths with the same FLOPs instead
    random_seed: int = 0
    tolerance: float = 0.01  # relative FLOPs tolerance of random architectures

    def validate(self) -> None:
        if not self.architecture_from:
            raise ConfigError("prune.method=scratch needs prune.options.architecture_from=<an s2hpruner run folder>")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"prune.options.tolerance must be in (0, 1), got {self.tolerance}")


def random_widths(groups: GroupSet, flops: FlopsModel, target: float, tolerance: float, seed: int,
                  tries: int = 200) -> list[int]:
    """Random kept widths whose FLOPs are within `tolerance` of `target` FLOPs.

    Each try draws a random keep fraction per group, then scales all fractions by a common
    factor found by bisection (FLOPs grow with it) and rounds to whole units.
    """
    generator = torch.Generator().manual_seed(seed)
    sizes = groups.sizes
    for _ in range(tries):
        base = 0.05 + 0.95 * torch.rand(len(sizes), generator=generator, dtype=torch.float64)

        def widths(scale: float) -> list[int]:
            return [int(min(size, max(1, round(float(f) * scale * size)))) for f, size in zip(base, sizes)]

        low, high = 0.0, 1.0 / float(base.min())
        for _ in range(60):
            mid = 0.5 * (low + high)
            if flops.count(widths(mid)) < target:
                low = mid
            else:
                high = mid
        for scale in (low, high):
            candidate = widths(scale)
            if abs(float(flops.count(candidate)) / target - 1) <= tolerance:
                return candidate
    raise ConfigError(f"no random architecture within {tolerance:.0%} of {target:.4g} FLOPs in {tries} tries")


@PRUNERS.register("scratch", options=ScratchOptions, summary="train a pruned architecture (ours or random) from scratch")
class ScratchPruner(DensePruner):
    """A fixed pruned architecture trained from fresh weights (see the module docstring)."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        options = ScratchOptions(**ctx.cfg.prune.options)
        architecture = read_architecture(resolve_run(options.architecture_from, ctx.cfg.output_root))
        groups = groups_for_run(model, ctx.cfg.prune, ctx.image_size)
        listed = [(g["name"], g["size"]) for g in architecture["groups"]]
        if listed != [(g.name, g.size) for g in groups]:
            raise ConfigError(f"{options.architecture_from}: its groups do not match this model's (another model or width?)")
        self.flops = FlopsModel(model, groups)
        kept = [g["kept"] for g in architecture["groups"]]
        if options.random:
            kept = random_widths(groups, self.flops, float(self.flops.count(kept)), options.tolerance, options.random_seed)
        self.widths = kept
        # Fresh weights: which units are kept does not matter, so keep the first ones.
        masks = [prefix_mask(torch.arange(g.size), k) for g, k in zip(groups, kept)]
        super().__init__(slim(model, groups, masks), ctx)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Any FLOPs target (dense training's rule does not apply): the architecture read from
        `architecture_from` sets the FLOPs, and the target only labels the cell."""

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        source = resolve_run(ScratchOptions(**cfg.prune.options).architecture_from, cfg.output_root)
        if not flight.is_queued(source):  # a source queued earlier in the same submission is read when the run starts
            read_architecture(source)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"flops_ratio": self.flops.count(self.widths).item() / self.flops.dense(), "widths": list(self.widths)}

    def flops_ratio_prunable(self, exported: nn.Module) -> float:
        return self.flops.measure(exported, "prunable") / self.flops.dense("prunable")
