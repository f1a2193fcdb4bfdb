"""The `s2hpruner` method: S2HPruner driven by the suite's training engine.

    python -m core run prune.method=s2hpruner prune.flops_target=0.15 model.name=resnet50 ...

The step, the phases and the mask optimizer are `method.training.S2HTraining`, the same code
the own-model API (`method.api`) runs: per epoch a phase (`warmup`: the unmasked network's
cross-entropy, masks untouched; `prune`: `S2HState.gradients`, i.e. Algorithm 1 or
`prune.options.formulation` alt1 / alt2 / soft_only, then one update of the weights and one
of the mask logits; `hard_ft`: the hard network's cross-entropy, masks frozen), chosen by
`prune.options.warmup_epochs` and `hard_ft_epoch`. The weights use the run's optimizer and
schedule; the mask logits SGD with `mask_lr` (`mask_schedule`), the weights' optimizer's
momentum and Nesterov unless `mask_momentum` / `mask_nesterov` say otherwise, and
`mask_weight_decay`. `warmup_epochs` must be below `train.epochs`. Fine-tuning a finished
run (Table 7) is `prune.options.init_from=<its run folder, or run:<experiment>/<run id>>` with the learning rate you want.

Evaluation: "hard" is the physically slimmed network (what `pruned.pt` will be), "soft" the
network under the soft masks, both with BatchNorm statistics recalibrated on training
batches (`recalibrate_bn`). The exported network is the one last evaluated, so the record's
top-1 is the last hard accuracy of the log.

Files in the run folder, besides the engine's:
- `log.jsonl` lines also carry `phase` (warmup / prune / hard_ft), `flops_ratio` (the hard
  network's, whole network), `flops_ratio_prunable`, `flops_ratio_soft` (expected widths),
  `widths` (kept units per group), `mask_lr`, the epoch means of the step's scalars
  (`loss_soft`/`resource`/`gap` when pruning, `loss_dense` in warm-up, `loss_hard` in hard
  fine-tuning) and, when evaluated, `gap_js` and `gap_l2` (Table 6).
- `widths.jsonl`: every `widths_every` steps (0: at each epoch's end), {"step", "epoch",
  "widths", "flops_ratio"} (Figs. 5-9).
- `architecture.json`: at the end, per group {"name", "kind", "size", "kept"} and the FLOPs
  ratios (Fig. 4, and the input of the `scratch` method, Table 8).

`checkpoint.pt`'s pruner state: the model, the weights' optimizer and `S2HTraining`'s state
(masks, orders, mask optimizer, step and epoch counters, phase, the epoch's running sums),
tensors and primitives only; the schedule is a function of the step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from core.config import RunConfig
from core.errors import ConfigError
from core.files import append_jsonl, read_jsonl, rewrite_jsonl, write_json
from core.groups import groups_for_run, slim
from core.optim import build_optimizer, build_scheduler
from core.pruner import PRUNERS, Flight, StepResult, SubstratePruner, TrainContext, check_pruning_target
from core.records import resolve_run
from core.regime import PlannedDecision
from method.algorithm import S2HState
from method.evaluation import gap_sums, recalibrate_bn, soft_targets
from method.options import S2HOptions
from method.training import S2HTraining, masked_copy


# An architecture change smaller than this share of the prunable units (a bucket flipping back
# and forth at the ceiling of its expected width while the masks' rate anneals) is not a decision.
ARCHITECTURE_TOLERANCE = 0.01


def architecture_moved(anchor: list[int], widths: list[int], sizes: list[int]) -> bool:
    """Whether the hard widths moved from `anchor` by more than ARCHITECTURE_TOLERANCE of the
    units, counted as kept units gained or lost in each group."""
    moved = sum(abs(a - w) for a, w in zip(anchor, widths))
    return moved > ARCHITECTURE_TOLERANCE * sum(sizes)


def read_architecture(run_folder: str | Path) -> dict[str, Any]:
    """The `architecture.json` of a finished S2HPruner run, or a one-line error."""
    path = Path(run_folder).expanduser() / "architecture.json"
    if not path.exists():
        raise ConfigError(f"{path} does not exist: give the folder of a finished s2hpruner run")
    return json.loads(path.read_text())


@PRUNERS.register("s2hpruner", options=S2HOptions,
                  summary="S2HPruner, Algorithm 1 (and Alt1, Alt2, soft-only); official-code defaults, "
                          "paper-text options: method/README.md")
class S2HPruner(SubstratePruner):
    """Soft-to-hard pruning (see the module docstring): the engine's side of `S2HTraining`."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        cfg = self.cfg
        self.options = S2HOptions(**cfg.prune.options)
        model = model.to(ctx.device)
        groups = groups_for_run(model, cfg.prune, ctx.image_size)
        self.state = S2HState(model, groups, self.options, cfg.prune.flops_target, cfg.prune.flops_scope,
                              cfg.train.label_smoothing, model_name=cfg.model.name, width=cfg.model.width).to(ctx.device)
        self.model, self.flops = model, self.state.flops
        self.optimizer = build_optimizer(self.state.weights(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, ctx.steps_per_epoch)
        self.training = S2HTraining(self.state, self.options, self.optimizer, on_widths=self._write_widths)
        self._evaluated: dict[str, Any] = {}
        # the hard widths when the architecture was last announced as decided (None: no step yet)
        self._widths: list[int] | None = None
        if self.options.init_from:
            self.training.init_from(resolve_run(self.options.init_from, ctx.cfg.output_root), ctx.device)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        options = S2HOptions(**cfg.prune.options)
        check_pruning_target(cfg)
        if options.warmup_epochs >= cfg.train.epochs:
            raise ConfigError(f"prune.options.warmup_epochs ({options.warmup_epochs}) must be below train.epochs "
                              f"({cfg.train.epochs}): the masks would never train")

    @classmethod
    def preflight(cls, cfg: RunConfig, flight: Flight) -> None:
        """`init_from` (Table 7's fine-tuning) must name a run with a checkpoint, or one queued
        before this run in the same submission."""
        init_from = S2HOptions(**cfg.prune.options).init_from
        source = resolve_run(init_from, cfg.output_root) if init_from else None
        if source is not None and not flight.is_queued(source) and not (source / "checkpoint.pt").exists():
            raise ConfigError(f"prune.options.init_from: no checkpoint.pt in {source}")

    @classmethod
    def planned_decisions(cls, cfg: RunConfig) -> list[PlannedDecision]:
        """The masks stay learnable until the export, so the architecture is decided when it last
        changes, which no plan knows; with `hard_ft_epoch` it is fixed when that epoch begins."""
        options = S2HOptions(**cfg.prune.options)
        if options.hard_ft_epoch is None or options.hard_ft_epoch >= cfg.train.epochs:
            return []
        return [PlannedDecision("architecture", options.hard_ft_epoch / cfg.train.epochs)]

    @property
    def mask_optimizer(self) -> torch.optim.Optimizer:
        return self.training.mask_optimizer

    # ----------------------------------------------------------------------------- training

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        result = self.training.step(inputs, targets, self.optimizer, epoch)
        self.scheduler.step_update(step + 1)
        widths = self.state.masks.hard_widths()
        if self._widths is None or architecture_moved(self._widths, widths, self.state.groups.sizes):
            self.decide("architecture", step + 1, supersedes=True,
                        exempt="S2HPruner's masks stay learnable until the export: its final loss and the steps "
                               "after the architecture's last change are what the rule checks")
            self._widths = widths
        return result

    def _write_widths(self, line: dict[str, Any]) -> None:
        if self.ctx.run_dir is not None:
            append_jsonl(self.ctx.run_dir / "widths.jsonl", line)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        self._evaluated = {}
        return self.training.end_epoch(epoch)

    # ----------------------------------------------------------------------------- networks

    def _recalibrated(self, net: nn.Module) -> nn.Module:
        if self.options.recalibrate_bn and self.ctx.train_batches is not None:
            return recalibrate_bn(net, self.ctx.train_batches(self.options.recalibrate_batches))
        return net.eval()

    def hard_network(self) -> nn.Module:
        """The slimmed hard network (cached until the next epoch's training)."""
        if "hard" not in self._evaluated:
            self._evaluated["hard"] = self._recalibrated(slim(self.model, self.state.groups, self.state.hard_masks()))
        return self._evaluated["hard"]

    def _masked_copy(self, masks: list[torch.Tensor] | None) -> nn.Module:
        return self._recalibrated(masked_copy(self.state, masks))

    def soft_network(self) -> nn.Module:
        if "soft" not in self._evaluated:
            self._evaluated["soft"] = self._masked_copy(self.state.soft_masks())
        return self._evaluated["soft"]

    def original_network(self) -> nn.Module:
        """The unmasked network: Alt 2's teacher, whose top-1 is Table 6's θ column."""
        if "original" not in self._evaluated:
            self._evaluated["original"] = self._masked_copy(None)
        return self._evaluated["original"]

    def eval_networks(self) -> dict[str, nn.Module]:
        networks = {"hard": self.hard_network(), "soft": self.soft_network()}
        if self.options.formulation == "alt2":
            networks["original"] = self.original_network()
        return networks

    def eval_extras(self) -> dict[str, Any]:
        """Table 6's gap between the hard network and its direct supervision."""
        if self.ctx.test_batches is None:
            return {}
        hard = self.hard_network()
        formulation = self.options.formulation
        teacher = None
        if formulation == "alt2":
            teacher = self.original_network()
        elif formulation != "alt1":
            teacher = self.soft_network()
        js = l2 = 0.0
        count = classes = 0
        for images, labels in self.ctx.test_batches():
            p = torch.softmax(hard(images).float(), -1)
            if teacher is None:
                q = soft_targets(labels, p.shape[-1], 0.1)
            else:
                q = torch.softmax(teacher(images).float(), -1)
            batch_js, batch_l2 = gap_sums(p, q)
            js, l2, count, classes = js + batch_js, l2 + batch_l2, count + p.shape[0], p.shape[-1]
        self._evaluated["gaps"] = {"gap_js": js / max(count, 1), "gap_l2": l2 / max(count * classes, 1)}
        return dict(self._evaluated["gaps"])

    def export(self) -> nn.Module:
        hard = self.hard_network()
        if self.ctx.run_dir is not None:
            widths = self.state.masks.hard_widths()
            write_json(self.ctx.run_dir / "architecture.json", {
                "model": self.cfg.model.name,
                "flops_target": self.cfg.prune.flops_target,
                "flops_ratio": self.state.hard_flops_ratio(),
                "flops_ratio_prunable": self.state.hard_flops_ratio("prunable"),
                "groups": [{"name": g.name, "kind": g.kind, "size": g.size, "kept": k}
                           for g, k in zip(self.state.groups, widths)],
            })
        return hard

    def final_metrics(self) -> dict[str, Any]:
        return dict(self._evaluated.get("gaps", {}))

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """The model, both optimizers, masks, orders, counters and phase (`S2HTraining.state_dict`)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), **self.training.state_dict(),
                "architecture_anchor": self._widths}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.training.load_state_dict(state)
        self._widths = state["architecture_anchor"]
        self._truncate_widths()

    def _truncate_widths(self) -> None:
        """Drop widths.jsonl lines written after the checkpoint (a resumed run rewrites them)."""
        path = None if self.ctx.run_dir is None else self.ctx.run_dir / "widths.jsonl"
        if path is None or not path.exists():
            return
        steps = self.training.steps_done
        rewrite_jsonl(path, [line for line in read_jsonl(path) if line["step"] <= steps])
