"""S2HPruner's training step and phases: one implementation for the engine and for your own loop.

`S2HTraining` owns what S2HPruner adds to a training loop around an `S2HState`: the mask
optimizer, the phase of each epoch, the step, the epoch's bookkeeping and the checkpoint
state. The engine's pruner (`method.pruner.S2HPruner`) and the own-model API
(`method.api.S2HPruning`) both delegate to it; they differ only in who owns the weights'
optimizer and schedule (the engine, or you) and where the widths' history goes (a run
folder's `widths.jsonl`, or a list in memory).

Phases (the official code, `opposj/S2HPruner` `big_resnet_ddp.py`), by 0-based epoch e:

| phase     | epochs                     | weights theta get                 | mask logits u          |
| --------- | -------------------------- | --------------------------------- | ---------------------- |
| `warmup`  | e < warmup_epochs          | CE of the unmasked network        | untouched, no step     |
| `prune`   | the others                 | Algorithm 1 (`S2HState.gradients`)| the mask optimizer     |
| `hard_ft` | e >= hard_ft_epoch (if set)| CE of the hard network            | frozen, no step        |

The official code creates its masks at epoch `st_warmup_epochs` (5545), so the importance
order (`order=fixed`) is taken from the warmed-up weights: the order is recomputed when the
last warm-up epoch ends. From `hard_ft_epoch` on (4782, 5936) it trains the hard network only;
the hard widths are those the logits had when the phase began (they no longer change), and
with `order=l1_step` the units are re-sorted by L1 norm before every hard step, as the
official code sorts at every forward. `reorder_every` acts only in the `prune` phase.

The mask optimizer (`MaskSGD`) is SGD as the official code steps its masks (2643-2649,
2041-2064, 2607-2613): momentum, Nesterov and dampening from the weights' optimizer's
`param_groups[0]` (`.get("momentum", 0.9)`, `.get("nesterov", True)`, `.get("dampening", 0)`:
an AdamW run gets 0.9 and Nesterov), read at every step, unless `mask_momentum` (with
dampening 0) / `mask_nesterov` set them; its own weight decay `mask_weight_decay`, added to the
update after the momentum (outside the buffer, where the official code adds it). With no
weight decay and no dampening it steps exactly as `torch.optim.SGD`. Its learning rate is
`mask_lr` (`mask_schedule=constant`), or `mask_lr` times the weights' current learning rate
over their initial one (`follow`, the official `sync_schedule`, 2953); the initial one is
`param_groups[0]["initial_lr"]` (set by torch's and timm's schedulers) or, without it, the
learning rate at the first step.

`state_dict()` (tensors and primitives only) holds the masks, their order, the mask
optimizer, the step and epoch counters, the phase, the initial learning rate and the
epoch's running sums: with the model's and the weights' optimizer's, a resumed run continues
exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from core.errors import ConfigError
from core.groups import GroupMasks, strip_mask_hooks
from core.pruner import StepResult, classification_loss
from method.algorithm import S2HState
from method.options import S2HOptions

PHASES = ("warmup", "prune", "hard_ft")


def phase_of(options: S2HOptions, epoch: int) -> str:
    """The phase of 0-based `epoch` (see the module docstring)."""
    if epoch < options.warmup_epochs:
        return "warmup"
    if options.hard_ft_epoch is not None and epoch >= options.hard_ft_epoch:
        return "hard_ft"
    return "prune"


def mask_momentum(options: S2HOptions, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Momentum, Nesterov and dampening of the mask optimizer: the options' momentum and
    Nesterov where set, else the weights' optimizer's (official defaults 0.9, Nesterov); the
    dampening comes with the weights' momentum (0 when `mask_momentum` is set)."""
    ref = optimizer.param_groups[0] if optimizer is not None else {}
    if options.mask_momentum is not None:
        momentum, dampening = options.mask_momentum, 0.0
    else:
        momentum, dampening = float(ref.get("momentum", 0.9)), float(ref.get("dampening", 0.0))
    nesterov = options.mask_nesterov if options.mask_nesterov is not None else bool(ref.get("nesterov", True))
    return {"momentum": momentum, "nesterov": nesterov, "dampening": dampening}


class MaskSGD(torch.optim.Optimizer):
    """SGD with momentum, optional Nesterov, and weight decay outside the momentum buffer.

    buf <- g (first step) or momentum * buf + (1 - dampening) * g; d = g + momentum * buf
    (Nesterov) or buf; d += weight_decay * u; u -= lr * d. Momentum 0 is plain SGD, Nesterov
    or not.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
                                  "dampening": dampening})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, nesterov, decay = group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]
            dampening = group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.clone(d).detach()
                    else:
                        buf.mul_(momentum).add_(d, alpha=1 - dampening)
                    d = d.add(buf, alpha=momentum) if nesterov else buf
                if decay != 0:
                    d = d.add(p, alpha=decay)
                p.add_(d, alpha=-lr)
        return loss


class S2HTraining:
    """The mask optimizer, phases, step and checkpoint state of S2HPruner on one `S2HState`.

    `optimizer` (optional) gives the mask optimizer's initial momentum and Nesterov; every
    `step` reads them again from the optimizer it is given. `on_widths(line)` receives the
    widths' history: every `widths_every` steps (or at each epoch's end when it is 0) a dict
    {"step", "epoch" (1-based), "widths", "flops_ratio"}.
    """

    def __init__(self, state: S2HState, options: S2HOptions, optimizer: torch.optim.Optimizer | None = None,
                 on_widths: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.state, self.options, self.on_widths = state, options, on_widths
        self.mask_optimizer = MaskSGD(state.logits_params(), lr=options.mask_lr, weight_decay=options.mask_weight_decay,
                                      **mask_momentum(options, optimizer))
        self.steps_done = 0  # steps taken since the run began
        self.epoch = 0  # epochs ended (the epoch of the next step when no epoch is given)
        self.base_lr: float | None = None  # the weights' initial learning rate (`mask_schedule=follow`)
        self.sums: dict[str, float] = {}  # this epoch's sums of the step's scalars
        self.seen = 0

    def phase(self, epoch: int | None = None) -> str:
        return phase_of(self.options, self.epoch if epoch is None else epoch)

    # ----------------------------------------------------------------------------- one step

    def _tune_mask_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The mask optimizer's momentum, Nesterov and learning rate for this step."""
        ref = optimizer.param_groups[0]
        if self.base_lr is None:
            self.base_lr = float(ref.get("initial_lr", ref["lr"]))
        lr = self.options.mask_lr
        if self.options.mask_schedule == "follow":
            if self.base_lr <= 0:
                raise ConfigError("mask_schedule=follow: the weights' initial learning rate is 0, so there is no schedule to follow")
            lr = lr * float(ref["lr"]) / self.base_lr
        for group in self.mask_optimizer.param_groups:
            group.update(lr=lr, **mask_momentum(self.options, optimizer))

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
             epoch: int | None = None) -> StepResult:
        """One step of the epoch's phase; `optimizer` updates the weights (the caller's schedule)."""
        epoch = self.epoch if epoch is None else epoch
        phase = phase_of(self.options, epoch)
        state = self.state
        state.model.train()
        self._tune_mask_optimizer(optimizer)
        self.mask_optimizer.zero_grad(set_to_none=True)
        if phase == "prune":
            grads = state.gradients(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            state.apply(grads)
            optimizer.step()
            self.mask_optimizer.step()
            loss, logits, parts = grads.loss, grads.logits, dict(grads.parts)
        else:
            if phase == "warmup":
                out = state.forward_masked(inputs, None)
            else:
                if self.options.order == "l1_step":  # the official code sorts at every forward
                    state.reorder()
                out = state.forward_hard(inputs, state.hard_masks())
            objective = classification_loss(out, targets, state.label_smoothing)
            theta = state.weights()
            grads_theta = torch.autograd.grad(objective, theta, allow_unused=True)
            optimizer.zero_grad(set_to_none=True)
            for p, g in zip(theta, grads_theta):
                p.grad = g
            optimizer.step()
            loss, logits = objective.detach(), out.detach()
            parts = {"loss_dense" if phase == "warmup" else "loss_hard": loss.item()}
        self.steps_done += 1
        for key, value in parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.seen += 1
        every = self.options.widths_every
        if every and self.steps_done % every == 0:
            self._emit_widths(epoch)
        return StepResult(loss, logits)

    def _emit_widths(self, epoch: int) -> None:
        if self.on_widths is not None:
            self.on_widths({"step": self.steps_done, "epoch": epoch + 1, "widths": self.state.masks.hard_widths(),
                            "flops_ratio": self.state.hard_flops_ratio()})

    # ----------------------------------------------------------------------------- epochs

    def end_epoch(self, epoch: int | None = None) -> dict[str, Any]:
        """The end of 0-based `epoch` (default: the counted one): reorders, and its log fields."""
        epoch = self.epoch if epoch is None else epoch
        phase = phase_of(self.options, epoch)
        o = self.options
        if o.widths_every == 0:
            self._emit_widths(epoch)
        if o.warmup_epochs and epoch + 1 == o.warmup_epochs:
            self.state.reorder()  # the masks begin: importance from the warmed-up weights
        elif phase == "prune" and o.reorder_every and (epoch + 1) % o.reorder_every == 0:
            self.state.reorder()
        with torch.no_grad():
            soft_ratio = float(self.state.flops.ratio(self.state.masks.expected_widths(), "network"))
        extra = {
            "phase": phase,
            "flops_ratio": self.state.hard_flops_ratio(),
            "flops_ratio_prunable": self.state.hard_flops_ratio("prunable"),
            "flops_ratio_soft": soft_ratio,
            "widths": self.state.masks.hard_widths(),
            "mask_lr": float(self.mask_optimizer.param_groups[0]["lr"]),
        }
        extra.update({k: v / max(self.seen, 1) for k, v in self.sums.items()})
        self.sums, self.seen = {}, 0
        self.epoch = epoch + 1
        return extra

    # ----------------------------------------------------------------------------- state

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers of the S2HState outside the model and the mask logits."""
        return {k: v for k, v in self.state.state_dict().items() if not k.startswith(("model.", "masks."))}

    def state_dict(self) -> dict[str, Any]:
        """Masks, orders, mask optimizer, counters and phase: tensors and primitives only."""
        return {
            "masks": self.state.masks.state_dict(),
            "orders": list(self.state.masks.orders),
            "extra": self._extra_tensors(),
            "mask_optimizer": self.mask_optimizer.state_dict(),
            "steps_done": self.steps_done,
            "epoch": self.epoch,
            "phase": self.phase(),
            "base_lr": self.base_lr,
            "sums": dict(self.sums),
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.masks.load_state_dict(state["masks"])
        self.state.masks.set_orders(state["orders"])
        if state["extra"]:
            self.state.load_state_dict(state["extra"], strict=False)
        self.mask_optimizer.load_state_dict(state["mask_optimizer"])
        self.steps_done, self.epoch, self.base_lr = state["steps_done"], state["epoch"], state["base_lr"]
        self.sums, self.seen = dict(state["sums"]), state["seen"]

    def init_from(self, folder: str | Path, map_location: torch.device | str | None = None) -> None:
        """Weights, masks and order of a finished (or checkpointed) s2hpruner run (Table 7)."""
        path = Path(folder).expanduser() / "checkpoint.pt"
        if not path.exists():
            raise ConfigError(f"init_from: no checkpoint.pt in {folder}")
        if map_location is None:
            map_location = next(self.state.model.parameters()).device
        state = torch.load(path, map_location=map_location, weights_only=True)["pruner"]
        if "masks" not in state:
            raise ConfigError(f"init_from: {folder} is not an s2hpruner run")
        try:
            self.state.model.load_state_dict(state["model"])
            self.state.masks.load_state_dict(state["masks"])
        except RuntimeError as exc:
            raise ConfigError(f"init_from: {folder} holds a different network ({str(exc).splitlines()[0]})") from None
        self.state.masks.set_orders(state["orders"])


def masked_copy(state: S2HState, masks: list[torch.Tensor] | None) -> nn.Module:
    """A copy of the model under fixed masks at the state's mask points (hooks of its own)."""
    net = copy.deepcopy(state.model)
    strip_mask_hooks(net)
    if masks is not None:
        GroupMasks(net, state.mask_groups).set(masks)
    return net
