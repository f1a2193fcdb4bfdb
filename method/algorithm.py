"""Algorithm 1 and its alternatives, independent of any training loop.

`S2HState` holds what S2HPruner adds to a network: its groups, mask hooks, FLOPs model and
prefix-mask logits. `S2HState.gradients(x, y)` runs one step's forward passes and returns the
gradients Algorithm 1 (or an alternative formulation) assigns to the weights theta and to the
mask logits u, without touching any optimizer; `apply` writes them into `.grad`. The
registered pruner (`method.pruner`) and the user API (`method.api`) both drive this class.

Gradient routing of "ours" (Eq. 4, Eq. 5, Algorithm 1 lines 7-12), with L the soft network's
cross-entropy, R the resource loss and G(h, s) = KL(softmax(s) || softmax(h)):

    theta <- beta * dL/dtheta + gamma * d G(y_h, sg(y_s)) / dtheta      [+ G(sg(y_h), y_s) if switched on]
    u     <- balance(dL/du, d G(sg(y_h), y_s) / du, dR/du)

where balance (A4) normalises the L and G gradients by their own L2 norms, adds them, scales
the sum to the L2 norm of dR/du and adds coef_r * dR/du; per group by default (`fuse`
`bal_only`; `default` is the official code's mode that lets the data term grow once R is
small). Each of the five terms can be switched off. G(sg(y_h), y_s) reaches theta only when
g_g_soft_theta is on.

R (`resource`): `hard_prunable` (the official code, `big_resnet_ddp.py` 5986-5991) is
(ratio - T')^2 on the FLOPs of the prunable layers at the hard widths, straight through to
the expected widths; T' is the prunable-layer ratio that meets the target T in the run's
`flops_scope` (the fixed layers' FLOPs do not move). `expected_network` (the paper's text) is
(FLOPs(expected widths) / FLOPs_all - T)^2 in the run's scope.

Importance order (`order`): `l1_step` re-sorts every group by the L1 norm of its producers'
weights before every step (official 5239-5256); `fixed` keeps the order of the start (and
`reorder_every` epochs).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.groups import FlopsModel, GroupMasks, GroupSet, SlicedNetwork, channel_order
from method.buckets import bucket_divisors
from method.options import S2HOptions
from method.prefix import PrefixMasks
from method.residual import block_output_groups
from method.streams import PassStreams

EPS = 1e-12


def gap(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """G: KL(teacher || student) over the class distributions, averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), reduction="batchmean", log_target=True)


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors))


def balance(
    g_l: list[torch.Tensor] | None,
    g_g: list[torch.Tensor] | None,
    g_r: list[torch.Tensor],
    coef_r: float,
    mode: str,
    fuse: str = "bal_only",
    explore: float = 1.0,
) -> list[torch.Tensor]:
    """A4's combination of the mask gradients (see the module docstring).

    `fuse="default"` is the official code's `default` mode (`big_resnet_ddp.py` 2265-2273) with
    its `dis_flops_scale` = 1 / coef_r: with s = (1 / coef_r) / explore, the data term D and the
    resource term R are rescaled so that |D| = s |R| (the smaller one grows), then
    coef_r * (D + R). `explore` = min(R_loss / relax^2, 1) shrinks as the FLOPs loss falls
    under the relax threshold, so the data term takes over and the masks keep exploring; at
    explore 1 the direction is bal_only's. explore 0 (R exactly met) adds the two unscaled.
    """
    if mode == "none":
        return [coef_r * r + sum(t[i] for t in (g_l, g_g) if t is not None) for i, r in enumerate(g_r)]
    blocks = [[i] for i in range(len(g_r))] if mode == "per_group" else [list(range(len(g_r)))]
    out = [coef_r * r for r in g_r]
    for block in blocks:
        total = [torch.zeros_like(g_r[i]) for i in block]
        for term in (g_l, g_g):
            if term is None:
                continue
            norm = _norm([term[i] for i in block])
            if norm > EPS:
                total = [acc + term[i] / norm for acc, i in zip(total, block)]
        size = _norm(total)
        r_norm = _norm([g_r[i] for i in block])
        if fuse == "default":
            d_scale = r_scale = 1.0
            if explore > 0:
                s = 1.0 / coef_r / explore
                if size > r_norm * s and r_norm > EPS:
                    r_scale = float(size / (r_norm * s))
                elif size < r_norm * s and size > EPS:
                    d_scale = float(r_norm * s / size)
            for acc, i in zip(total, block):
                out[i] = coef_r * (g_r[i] * r_scale + (acc * d_scale).to(g_r[i].dtype))
        elif size > EPS:
            scale = r_norm / size
            for acc, i in zip(total, block):
                out[i] = out[i] + (acc * scale).to(out[i].dtype)
    return out


@dataclass
class Gradients:
    theta: list[torch.Tensor | None]
    u: list[torch.Tensor]
    loss: torch.Tensor  # the soft network's cross-entropy (the hard one's for alt1 weights)
    logits: torch.Tensor  # the soft network's outputs
    parts: dict[str, float]


class S2HState(nn.Module):
    """Masks, groups, FLOPs and coefficients of S2HPruner on one model."""

    def __init__(
        self,
        model: nn.Module,
        groups: GroupSet,
        options: S2HOptions,
        flops_target: float,
        flops_scope: str = "network",
        label_smoothing: float = 0.0,
        model_name: str | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.model, self.groups, self.options = model, groups, options
        self.target, self.scope, self.label_smoothing = flops_target, flops_scope, label_smoothing
        # Where masks multiply activations: the substrate's points, or (official) the blocks'
        # outputs on CNN residual streams. Copies of the model (evaluation) use the same points.
        self.mask_groups = block_output_groups(model, groups) if options.soft_residual == "block_output" else groups
        self.masker = GroupMasks(model, self.mask_groups)
        # The hard network's training passes: at its kept widths, sharing theta (`hard_pass`).
        self.sliced: SlicedNetwork | None = None
        if options.hard_pass == "sliced":
            sliced = SlicedNetwork(model, groups)
            if sliced.usable:
                self.sliced = sliced
            else:
                print(f"s2hpruner: the hard network cannot be sliced for this model ({sliced.reason}); "
                      "it trains masked at full width", file=sys.stderr)
        self.flops = FlopsModel(model, groups)
        self.divisors = bucket_divisors(groups, options.divisor, model_name, width)
        self.masks = PrefixMasks(groups.sizes, self.divisors, options.mask_init, options.mask_rule)
        self.masks.set_orders(self._order())
        transformer = any(g.kind in ("head", "head-dim") for g in groups)
        default_l, default_g = (1.0, 1.0) if transformer else (0.5, 5.0)
        self.coef_l = options.coef_l_theta if options.coef_l_theta is not None else default_l
        self.coef_g = options.coef_g_theta if options.coef_g_theta is not None else default_g
        # Seconds per phase of `gradients`, summed over calls, when set to a dict (`make bench` sets
        # it to show where a step's time goes); None, the default, times nothing.
        self.phase_times: dict[str, float] | None = None
        # the hard pass on a stream of its own beside the soft pass (`streams=two`, Appendix F)
        self.streams = PassStreams(options.streams)

    # ----------------------------------------------------------------------------- networks

    def weights(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def logits_params(self) -> list[nn.Parameter]:
        return list(self.masks.logits)

    def hard_masks(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [m.detach() for m in self.masks.hard()]

    def soft_masks(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [m.detach() for m in self.masks.soft()]

    def hard_flops_ratio(self, scope: str = "network") -> float:
        return self.flops.exact(self.hard_masks(), scope) / self.flops.dense(scope)

    def resource_target(self) -> float:
        """T': the ratio R drives its FLOPs to (the prunable layers' under `hard_prunable`)."""
        if self.options.resource == "expected_network" or self.scope == "prunable":
            return self.target
        flops = self.flops
        return (self.target * flops.dense("network") - flops.fixed_network) / flops.dense("prunable")

    def resource_loss(self, hard_positions: list[torch.Tensor] | None = None) -> torch.Tensor:
        """R (see the module docstring); `hard_positions` saves recomputing the hard masks."""
        expected = self.masks.expected_widths()
        if self.options.resource == "expected_network":
            return (self.flops.ratio(expected, self.scope) - self.target) ** 2
        if hard_positions is None:
            hard_positions = self.masks.hard_positions()
        # the hard widths forward, the expected widths' gradient backward (straight through)
        widths = [h.detach().sum() + e - e.detach() for h, e in zip(hard_positions, expected)]
        return (self.flops.ratio(widths, "prunable") - self.resource_target()) ** 2

    def _order(self) -> list[torch.Tensor]:
        return channel_order(self.model, self.groups, "sum" if self.options.order == "l1_step" else "mean")

    def forward_masked(self, x: torch.Tensor, masks: list[torch.Tensor] | None) -> torch.Tensor:
        with self.masker.use(masks):
            return self.model(x)

    def forward_hard(self, x: torch.Tensor, hard: list[torch.Tensor]) -> torch.Tensor:
        """The hard network's outputs under 0/1 unit masks `hard`: sliced, or masked at full
        width. No gradient reaches the mask logits through it either way (only theta's is taken)."""
        if self.sliced is not None:
            return self.sliced(x, hard)
        return self.forward_masked(x, hard)

    def reorder(self) -> None:
        """Re-rank every group's units by the current weights' L1 importance."""
        self.masks.set_orders(self._order())

    # ----------------------------------------------------------------------------- one step

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        if self.phase_times is None:
            yield
            return
        cuda = torch.cuda.is_initialized()  # the phases' kernels finish inside their phase
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        yield
        if cuda:
            torch.cuda.synchronize()
        self.phase_times[name] = self.phase_times.get(name, 0.0) + time.perf_counter() - tick

    def _ce(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> Gradients:
        """One step's gradients for the weights and the mask logits (nothing is updated)."""
        o = self.options
        theta, u = self.weights(), self.logits_params()
        if o.order == "l1_step":
            with self._phase("reorder"):
                self.reorder()
        with self._phase("soft_forward"):
            keep = self.masks.position_keep()
            # the hard masks come before the soft pass, so that on two streams the hard pass
            # may start with them while the soft pass runs (`method.streams`)
            hard_positions = self.masks.hard_positions(keep)
            hard = self.masks._to_units(hard_positions)
            self.streams.fork(x.device)
            soft = self.masks._to_units(keep)
            y_s = self.forward_masked(x, soft)
            loss_soft = self._ce(y_s, y)
        with self._phase("resource"):
            r = self.resource_loss(hard_positions)
            g_r = _fill(torch.autograd.grad(r, u, allow_unused=True), u)
        parts = {"loss_soft": loss_soft.item(), "resource": r.item()}
        explore = min(parts["resource"] / o.flops_relax ** 2, 1.0)

        def fuse(g_l: list[torch.Tensor] | None, g_g: list[torch.Tensor] | None) -> list[torch.Tensor]:
            return balance(g_l, g_g, g_r, o.coef_r, o.balance, o.fuse, explore)

        if o.formulation == "soft_only":
            grads = torch.autograd.grad(loss_soft, theta + u, allow_unused=True)
            g_theta, g_lu = list(grads[: len(theta)]), list(grads[len(theta):])
            g_u = fuse(_fill(g_lu, u) if o.g_l_w else None, None)
            return Gradients(g_theta, g_u, loss_soft.detach(), y_s.detach(), parts)

        if o.formulation in ("alt1", "alt2"):
            with self._phase("hard_forward"):
                y_h = self.forward_hard(x, hard)
            g_lu = torch.autograd.grad(loss_soft, u, allow_unused=True) if o.g_l_w else None
            g_u = fuse(_fill(g_lu, u) if g_lu is not None else None, None)
            if o.formulation == "alt1":  # Eq. 6: weights trained through the hard network alone
                objective = self._ce(y_h, y)
                parts["loss_hard"] = objective.item()
            else:  # Eq. 7: the unmasked network learns the task and teaches the hard one
                y_o = self.forward_masked(x, None)
                distil = gap(y_h, y_o.detach())
                objective = self._ce(y_o, y) + distil
                parts["gap"] = distil.item()
            g_theta = list(torch.autograd.grad(objective, theta, allow_unused=True))
            return Gradients(g_theta, g_u, loss_soft.detach(), y_s.detach(), parts)

        # Algorithm 1, lines 6-12: d1 = G(y_h, sg(y_s)) -> theta through the hard network,
        # d2 = G(sg(y_h), y_s) -> u through the soft network, L -> theta and u through it too.
        # `step_memory=low` (sliced pass): the hard outputs d2 needs come from a pass without a
        # graph, the soft graph is released by L's pass, and only then is the hard network's
        # graph built (the same random draws: the generator is rewound; BatchNorm statistics are
        # updated once): the peak holds one graph. `fast`: the hard graph is built first and
        # released by d1's pass, beside the soft graph.
        low = self.sliced is not None and o.step_memory == "low"
        wants_l = (theta if o.g_l_theta else []) + (u if o.g_l_w else [])
        wants_d2 = (u if o.g_g_w else []) + (theta if o.g_g_soft_theta else [])
        g_d1 = None
        if low:
            rng = _rng_state(x.device)
            with self._phase("hard_outputs"), torch.no_grad():
                y_h_out = self.sliced(x, hard, statistics=not o.g_g_hard_theta)  # type: ignore[misc]
        else:
            with self._phase("hard_forward"), self.streams.hard(x, *hard):
                y_h = self.forward_hard(x, hard)
            self.streams.join(y_h)
            y_h_out = y_h.detach()
            with self._phase("backward_gap_hard"):
                g_d1 = list(torch.autograd.grad(gap(y_h, y_s.detach()), theta, allow_unused=True)) if o.g_g_hard_theta else None
            del y_h
        parts["gap"] = gap(y_h_out, y_s.detach()).item()
        with self._phase("backward_gap_soft"):  # G(sg(y_h), y_s) -> u, through the soft network again
            d2 = gap(y_h_out, y_s)
            g_d2 = torch.autograd.grad(d2, wants_d2, retain_graph=bool(wants_l), allow_unused=True) if wants_d2 else ()
        g_d2_u = list(g_d2[: len(u)]) if o.g_g_w else None
        g_d2_theta = list(g_d2[len(u) if o.g_g_w else 0:]) if o.g_g_soft_theta else None
        with self._phase("backward_soft_loss"):  # L -> theta and u, through the soft network
            g_l = torch.autograd.grad(loss_soft, wants_l, allow_unused=True) if wants_l else ()
        g_l_theta = list(g_l[: len(theta)]) if o.g_l_theta else None
        g_l_u = list(g_l[len(theta) if o.g_l_theta else 0:]) if o.g_l_w else None
        if low and o.g_g_hard_theta:
            _set_rng_state(rng, x.device)
            with self._phase("hard_forward"):
                y_h = self.forward_hard(x, hard)
            with self._phase("backward_gap_hard"):  # G(y_h, sg(y_s)) -> theta, through the hard network
                g_d1 = list(torch.autograd.grad(gap(y_h, y_s.detach()), theta, allow_unused=True))

        with self._phase("combine"):  # theta's weighted sum and A4's balance of u's gradients
            g_theta: list[torch.Tensor | None] = []
            for i, p in enumerate(theta):
                total = None
                for coef, term in ((self.coef_l, g_l_theta), (self.coef_g, g_d1), (self.coef_g, g_d2_theta)):
                    if term is not None and term[i] is not None:
                        total = coef * term[i] if total is None else total + coef * term[i]
                g_theta.append(total)
            g_u = fuse(_fill(g_l_u, u) if g_l_u is not None else None, _fill(g_d2_u, u) if g_d2_u is not None else None)
        return Gradients(g_theta, g_u, loss_soft.detach(), y_s.detach(), parts)

    def apply(self, grads: Gradients) -> None:
        """Write a step's gradients into `.grad` (replacing what was there)."""
        for p, g in zip(self.weights(), grads.theta):
            p.grad = None if g is None else g.detach()
        for p, g in zip(self.logits_params(), grads.u):
            p.grad = g.detach().to(p.dtype)


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _fill(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, like)]
