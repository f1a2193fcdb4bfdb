"""Pruning your own model with S2HPruner, inside your own training loop.

    import torch, torchvision
    from method.api import S2HPruning

    model = torchvision.models.resnet18(num_classes=10)
    pruning = S2HPruning(model, torch.zeros(1, 3, 32, 32), flops_target=0.35)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        for images, labels in loader:                      # your data, your schedule
            loss = pruning.step(images, labels, optimizer)  # the phase's step: weights and masks
        print(pruning.end_epoch())                         # phases, reorders; the epoch's log fields
    pruned = pruning.export(calibration=loader)            # a plain, smaller nn.Module

`step` is the engine's step (`method.training.S2HTraining`, shared with the `s2hpruner`
method): in the `prune` phase one step of Algorithm 1 (soft and hard passes, the routed
gradients) that writes the weights' gradients, calls your `optimizer.step()` and updates the
mask logits with their own SGD. Every option of `prune.options` for the `s2hpruner` method is
a keyword argument (`S2HOptions`); an unknown one is refused. Those the training loop acts on
are honoured here as follows:

| option | in your own loop |
| --- | --- |
| `mask_lr`, `mask_momentum`, `mask_nesterov`, `mask_weight_decay` | as in the engine: momentum and Nesterov, when null, are read from the `optimizer` you pass to `step` (its `param_groups[0]`, default 0.9 and Nesterov, e.g. for AdamW) |
| `mask_schedule=follow` | the mask learning rate is `mask_lr` times your optimizer's current lr over its initial one (`param_groups[0]["initial_lr"]`, which torch's and timm's schedulers set; without it, the lr of the first step): whatever schedule you run, the masks follow it |
| `warmup_epochs`, `hard_ft_epoch` | epochs are counted by `end_epoch()` calls: call it at the end of each epoch (without it you stay in epoch 0) |
| `reorder_every` | on `end_epoch()` |
| `widths_every` | `pruning.history`: {"step", "epoch", "widths", "flops_ratio"} every that many steps (0: at each `end_epoch()`) |
| `recalibrate_bn`, `recalibrate_batches` | `export(calibration=batches)` recomputes the BatchNorm statistics on `recalibrate_batches` of them; with `recalibrate_bn` on (the default) a network with BatchNorm needs `calibration` |
| `init_from` | a finished s2hpruner run folder: weights, masks and order from its `checkpoint.pt` (the same network) |

Refused, each with a one-line `ConfigError`: unknown options; `export` without `calibration`
while `recalibrate_bn` is on (BatchNorm present), or with `calibration` while it is off;
`export` before the masks have trained (still in warm-up); `mask_schedule=follow` with an
initial learning rate of 0; `init_from` of a folder with no s2hpruner checkpoint or another
network.

Checkpointing your loop: `pruning.state_dict()` holds the masks, their order, the mask
optimizer, the step and epoch counters, the phase and the history (tensors and primitives;
`torch.load(..., weights_only=True)` reads it). Save it beside your model's and optimizer's;
to resume, build the model, `S2HPruning` and optimizer as before, then load all three.
`model_name` and `width` pick the bucket sizes of the suite's zoo models (`method.buckets`);
leave them unset for your own network.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from core.config import flops_target_problem
from core.errors import ConfigError
from core.groups import discover_groups, slim
from core.records import resolve_run
from method.algorithm import S2HState
from method.evaluation import recalibrate_bn
from method.options import S2HOptions
from method.training import S2HTraining


def _options(options: dict[str, Any]) -> S2HOptions:
    known = {f.name for f in dataclasses.fields(S2HOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"S2HPruning: unknown option {unknown[0]!r} (the options are prune.options of s2hpruner: "
                          f"{', '.join(sorted(known))})")
    parsed = S2HOptions(**options)
    parsed.validate()
    return parsed


class S2HPruning:
    """S2HPruner attached to `model` (channel groups found from `example_input`)."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, flops_target: float, *,
                 flops_scope: str = "network", label_smoothing: float = 0.0, include_stem: bool = False,
                 keep: Iterable[str] = (), attention: str = "auto", model_name: str | None = None,
                 width: float = 1.0, **options: Any) -> None:
        if (problem := flops_target_problem("flops_target", flops_target, pruning=True)) is not None:
            raise ValueError(problem)
        self.options = _options(options)
        self.model = model
        device = next(model.parameters()).device
        groups = discover_groups(model, example_input.to(device), include_stem=include_stem, keep=keep, attention=attention)
        self.state = S2HState(model, groups, self.options, flops_target, flops_scope, label_smoothing,
                              model_name=model_name, width=width).to(device)
        self.history: list[dict[str, Any]] = []  # the widths' history (`widths_every`)
        self.training = S2HTraining(self.state, self.options, on_widths=self.history.append)
        if self.options.init_from:  # a folder, or run:<experiment>/<run_id> under ./results
            self.training.init_from(resolve_run(self.options.init_from, "results"), device)

    # ----------------------------------------------------------------------------- training

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One training step of the current phase; returns its cross-entropy (the soft network's
        when pruning, the unmasked one's in warm-up, the hard one's in hard fine-tuning)."""
        return self.training.step(inputs, targets, optimizer).loss.item()

    def end_epoch(self) -> dict[str, Any]:
        """End the current epoch (phases and reorders count these calls); its log fields:
        phase, FLOPs ratios, widths, mask lr and the epoch's mean losses."""
        return self.training.end_epoch()

    @property
    def epoch(self) -> int:
        """Epochs ended so far (`end_epoch` calls): the 0-based epoch of the next step."""
        return self.training.epoch

    @property
    def phase(self) -> str:
        """The phase of the next step: warmup, prune or hard_ft."""
        return self.training.phase()

    @property
    def mask_optimizer(self) -> torch.optim.Optimizer:
        return self.training.mask_optimizer

    @property
    def flops_ratio(self) -> float:
        """FLOPs of the current hard network over the dense network's."""
        return self.state.hard_flops_ratio()

    @property
    def widths(self) -> list[int]:
        """Kept units per group of the current hard network."""
        return self.state.masks.hard_widths()

    # ----------------------------------------------------------------------------- export

    def export(self, calibration: Iterable | None = None, batches: int | None = None) -> nn.Module:
        """The hard network as a plain module, BN statistics from `calibration` batches
        (`batches`, default `recalibrate_batches`, of them) when `recalibrate_bn` is on."""
        o = self.options
        if self.phase == "warmup":
            raise ConfigError(f"export: the masks have not trained yet (epoch {self.epoch} of warmup_epochs="
                              f"{o.warmup_epochs}); call end_epoch() at the end of each epoch")
        has_bn = any(isinstance(m, _BatchNorm) and m.track_running_stats for m in self.model.modules())
        if o.recalibrate_bn and calibration is None and has_bn:
            raise ConfigError("export: recalibrate_bn is on and needs calibration batches: export(calibration=loader), "
                              "or S2HPruning(..., recalibrate_bn=False) to keep the training statistics")
        if not o.recalibrate_bn and calibration is not None:
            raise ConfigError("export: calibration batches given but recalibrate_bn=False")
        pruned = slim(self.model, self.state.groups, self.state.hard_masks())
        if calibration is not None:
            device = next(pruned.parameters()).device
            count = o.recalibrate_batches if batches is None else batches
            images = ((batch[0] if isinstance(batch, (tuple, list)) else batch).to(device) for batch in calibration)
            recalibrate_bn(pruned, ((x, None) for x in itertools.islice(images, count)))
        return pruned.eval()

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything but your model and optimizer (see the module docstring)."""
        return {**self.training.state_dict(), "history": [dict(line) for line in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.training.load_state_dict(state)
        self.history[:] = [dict(line) for line in state["history"]]
