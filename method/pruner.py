"""The `s2hpruner` method: S2HPruner driven by the suite's training engine.

    python -m core run prune.method=s2hpruner prune.flops_target=0.15 model.name=resnet50 ...

Every step is `S2HState.gradients` (Algorithm 1, or `prune.options.formulation` alt1 / alt2 /
soft_only) followed by one update of the weights (the run's optimizer and schedule) and one of
the mask logits (SGD with `mask_lr`, `mask_momentum`, `mask_schedule`). Fine-tuning a finished
run (Table 7) is `prune.options.init_from=<its run folder>` with the learning rate you want.

Evaluation: "hard" is the physically slimmed network (what `pruned.pt` will be), "soft" the
network under the soft masks, both with BatchNorm statistics recalibrated on training
batches (`recalibrate_bn`). The exported network is the one last evaluated, so the record's
top-1 is the last hard accuracy of the log.

Files in the run folder, besides the engine's:
- `log.jsonl` lines also carry `flops_ratio` (the hard network's, whole network),
  `flops_ratio_prunable`, `flops_ratio_soft` (expected widths, the regularised quantity),
  `widths` (kept units per group), `loss_soft`/`resource`/`gap` (epoch means) and, when
  evaluated, `gap_js` and `gap_l2` (Table 6).
- `widths.jsonl`: every `widths_every` steps, {"step", "epoch", "widths", "flops_ratio"}
  (Figs. 5-9).
- `architecture.json`: at the end, per group {"name", "kind", "size", "kept"} and the FLOPs
  ratios (Fig. 4, and the input of the `scratch` method, Table 8).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from core.checkpoint import write_json
from core.config import RunConfig, is_pending_run
from core.errors import ConfigError
from core.groups import GroupMasks, groups_for_run, slim, strip_mask_hooks
from core.optim import build_optimizer, build_scheduler
from core.pruner import PRUNERS, StepResult, SubstratePruner, TrainContext, check_pruning_target
from method.algorithm import S2HState
from method.evaluation import gap_sums, recalibrate_bn, soft_targets
from method.options import S2HOptions


def read_architecture(run_folder: str | Path) -> dict[str, Any]:
    """The `architecture.json` of a finished S2HPruner run, or a one-line error."""
    path = Path(run_folder).expanduser() / "architecture.json"
    if not path.exists():
        raise ConfigError(f"{path} does not exist: give the folder of a finished s2hpruner run")
    return json.loads(path.read_text())


@PRUNERS.register("s2hpruner", options=S2HOptions, summary="S2HPruner, Algorithm 1 (and Alt1, Alt2, soft-only)")
class S2HPruner(SubstratePruner):
    """Soft-to-hard pruning (see the module docstring)."""

    def __init__(self, model: nn.Module, ctx: TrainContext) -> None:
        super().__init__(model, ctx)
        cfg = self.cfg
        self.options = S2HOptions(**cfg.prune.options)
        model = model.to(ctx.device)
        groups = groups_for_run(model, cfg.prune, ctx.image_size)
        self.state = S2HState(model, groups, self.options, cfg.prune.flops_target, cfg.prune.flops_scope,
                              cfg.train.label_smoothing).to(ctx.device)
        self.model, self.flops = model, self.state.flops
        self.optimizer = build_optimizer(self.state.weights(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, ctx.steps_per_epoch)
        o = self.options
        self.mask_optimizer = torch.optim.SGD(self.state.logits_params(), lr=o.mask_lr, momentum=o.mask_momentum)
        self.mask_scheduler = None
        if o.mask_schedule == "follow":
            shape = dataclasses.replace(cfg.train, lr=o.mask_lr, min_lr=cfg.train.min_lr * o.mask_lr / cfg.train.lr,
                                        warmup_lr=cfg.train.warmup_lr * o.mask_lr / cfg.train.lr)
            self.mask_scheduler = build_scheduler(self.mask_optimizer, shape, ctx.steps_per_epoch)
        self.steps_done = 0
        self.sums: dict[str, float] = {}
        self.seen = 0
        self._evaluated: dict[str, Any] = {}
        if o.init_from:
            self._init_from(Path(o.init_from).expanduser())

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        options = S2HOptions(**cfg.prune.options)
        check_pruning_target(cfg)
        if options.init_from and is_pending_run(options.init_from):
            return  # queued before this run in the same submission
        if options.init_from and not (Path(options.init_from).expanduser() / "checkpoint.pt").exists():
            raise ConfigError(f"prune.options.init_from: no checkpoint.pt in {options.init_from}")

    def _init_from(self, folder: Path) -> None:
        state = torch.load(folder / "checkpoint.pt", map_location=self.ctx.device, weights_only=True)["pruner"]
        if "masks" not in state:
            raise ConfigError(f"prune.options.init_from: {folder} is not an s2hpruner run")
        try:
            self.model.load_state_dict(state["model"])
            self.state.masks.load_state_dict(state["masks"])
        except RuntimeError as exc:
            raise ConfigError(f"prune.options.init_from: {folder} holds a different network ({str(exc).splitlines()[0]})") from None
        self.state.masks.set_orders(state["orders"])

    # ----------------------------------------------------------------------------- training

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> StepResult:
        self.model.train()
        grads = self.state.gradients(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.mask_optimizer.zero_grad(set_to_none=True)
        self.state.apply(grads)
        self.optimizer.step()
        self.mask_optimizer.step()
        self.scheduler.step_update(step + 1)
        if self.mask_scheduler is not None:
            self.mask_scheduler.step_update(step + 1)
        self.steps_done = step + 1
        for key, value in grads.parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.seen += 1
        every = self.options.widths_every
        if every and self.steps_done % every == 0:
            self._log_widths(epoch)
        return StepResult(grads.loss, grads.logits)

    def _log_widths(self, epoch: int) -> None:
        if self.ctx.run_dir is None:
            return
        line = {"step": self.steps_done, "epoch": epoch + 1, "widths": self.state.masks.hard_widths(),
                "flops_ratio": self.state.hard_flops_ratio()}
        with open(self.ctx.run_dir / "widths.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        self._evaluated = {}
        if self.options.widths_every == 0:
            self._log_widths(epoch)
        o = self.options
        if o.reorder_every and (epoch + 1) % o.reorder_every == 0:
            self.state.reorder()
        with torch.no_grad():
            soft_ratio = float(self.state.flops.ratio(self.state.masks.expected_widths(), "network"))
        extra = {
            "flops_ratio": self.state.hard_flops_ratio(),
            "flops_ratio_prunable": self.state.hard_flops_ratio("prunable"),
            "flops_ratio_soft": soft_ratio,
            "widths": self.state.masks.hard_widths(),
            "mask_lr": float(self.mask_optimizer.param_groups[0]["lr"]),
        }
        extra.update({k: v / max(self.seen, 1) for k, v in self.sums.items()})
        self.sums, self.seen = {}, 0
        return extra

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
        net = copy.deepcopy(self.model)
        strip_mask_hooks(net)
        if masks is not None:
            GroupMasks(net, self.state.groups).set(masks)
        return self._recalibrated(net)

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
        return {
            "model": self.model.state_dict(),
            "masks": self.state.masks.state_dict(),
            "orders": list(self.state.masks.orders),
            "optimizer": self.optimizer.state_dict(),
            "mask_optimizer": self.mask_optimizer.state_dict(),
            "steps_done": self.steps_done,
            "sums": dict(self.sums),
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.state.masks.load_state_dict(state["masks"])
        self.state.masks.set_orders(state["orders"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.mask_optimizer.load_state_dict(state["mask_optimizer"])
        self.steps_done, self.sums, self.seen = state["steps_done"], dict(state["sums"]), state["seen"]
        self._truncate_widths()

    def _truncate_widths(self) -> None:
        """Drop widths.jsonl lines written after the checkpoint (a resumed run rewrites them)."""
        path = None if self.ctx.run_dir is None else self.ctx.run_dir / "widths.jsonl"
        if path is None or not path.exists():
            return
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.steps_done]
        path.write_text("".join(line + "\n" for line in lines))
