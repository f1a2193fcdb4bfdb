"""Prefix masks: the learnable mask of every group (paper Sec. 3.3).

Per group, logits u (one per channel position, or per bucket of `divisor` positions) give
p = softmax(u), where p_b is the probability that exactly the first b buckets are kept. The
probability of keeping position r is then w_r = sum over b >= bucket(r) of p_b, and the
expected kept width is sum_b p_b * channels(b) (= sum_r w_r). Positions are ranks in the
group's importance order, so every hard mask is a prefix of that order:

- `mean_threshold` (the paper): keep the positions with w_r >= mean(w);
- `expected_width` (the official code, `big_resnet_ddp.py` 1812-1834 and 5191-5195): keep the
  first ceil(expected width) positions, rounded up to a multiple of the group's bucket size and
  capped at the group's size; the backward pass goes straight through to w.

Buckets: group g has one logit per `divisors[g]` positions (a last, partial bucket where the
divisor does not divide the size); `method.buckets` chooses the divisors.

Initialisation: `uniform` (the default) sets u = 0: expected width half of each group, both
hard rules keep about half, and the softmax has healthy gradients everywhere. `dense` sets
u_b = 10 b / B, so training starts nearer the full network (expected width about 0.9); but a
peaked softmax learns slowly (its gradients vanish with the mass elsewhere), and in our
measurements it could stall above the FLOPs target. (With all mass on one bucket plus a
uniform remainder, the mean-threshold rule would keep only half: w is then a ramp from 1 to
1 - p_rest, whose mean sits in the middle.)

Masks are returned in unit space (one value per channel of the group, as `core.groups`
wants them): position r's value goes to unit `order[r]`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

HARD_RULES = ("mean_threshold", "expected_width")
INITS = ("dense", "uniform")
DENSE_RAMP = 10.0


def bucket_ceil(width: float, divisor: int, size: int) -> int:
    """ceil(width) rounded up to a multiple of `divisor`, at least one bucket, at most `size`.

    The tolerance keeps a width that is a whole number up to float rounding (all mass on one
    bucket) from being pushed to the next bucket.
    """
    count = max(1, math.ceil(width - 1e-6))
    return min(size, math.ceil(count / divisor) * divisor)


class PrefixMasks(nn.Module):
    """The mask logits of all groups, and the soft/hard masks and widths they define."""

    def __init__(self, sizes: list[int], divisor: int | list[int] = 1, init: str = "uniform",
                 rule: str = "mean_threshold") -> None:
        super().__init__()
        if rule not in HARD_RULES:
            raise ValueError(f"hard mask rule must be one of {', '.join(HARD_RULES)}, got {rule!r}")
        if init not in INITS:
            raise ValueError(f"mask init must be one of {', '.join(INITS)}, got {init!r}")
        self.sizes, self.rule = list(sizes), rule
        self.divisors = [divisor] * len(self.sizes) if isinstance(divisor, int) else [int(d) for d in divisor]
        if len(self.divisors) != len(self.sizes) or min(self.divisors, default=1) < 1:
            raise ValueError(f"expected one bucket size >= 1 per group, got {self.divisors}")
        self.logits = nn.ParameterList()
        for size, divisor in zip(self.sizes, self.divisors):
            buckets = math.ceil(size / divisor)
            u = torch.zeros(buckets)
            if init == "dense" and buckets > 1:
                # A ramp: the mass sits on wide prefixes (expected width ~0.9 of the group),
                # and w falls off only near the end, so the hard rules agree with it.
                u = DENSE_RAMP * torch.arange(1, buckets + 1, dtype=torch.float32) / buckets
            self.logits.append(nn.Parameter(u))
        for i, (size, divisor) in enumerate(zip(self.sizes, self.divisors)):
            buckets = len(self.logits[i])
            # channels kept when exactly the first b buckets are kept, and each position's bucket
            self.register_buffer(f"kept_{i}", torch.tensor([min((b + 1) * divisor, size) for b in range(buckets)], dtype=torch.float32), persistent=False)
            self.register_buffer(f"bucket_{i}", torch.arange(size) // divisor, persistent=False)
        self.orders = [torch.arange(size) for size in self.sizes]

    def set_orders(self, orders: list[torch.Tensor]) -> None:
        """Importance orders (most important first), one permutation of units per group."""
        self.orders = [o.detach().cpu().long() for o in orders]

    def probabilities(self) -> list[torch.Tensor]:
        return [torch.softmax(u, dim=0) for u in self.logits]

    def position_keep(self) -> list[torch.Tensor]:
        """w per group, per position in importance order (non-increasing, w_0 = 1)."""
        result = []
        for i, p in enumerate(self.probabilities()):
            tail = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])  # sum over b' >= b
            result.append(tail[getattr(self, f"bucket_{i}")])
        return result

    def expected_widths(self) -> list[torch.Tensor]:
        """Expected kept channels per group, differentiable."""
        return [(p * getattr(self, f"kept_{i}")).sum() for i, p in enumerate(self.probabilities())]

    def _to_units(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for order, v in zip(self.orders, values):
            order = order.to(v.device)
            out.append(torch.zeros_like(v).scatter(0, order, v))
        return out

    def soft(self) -> list[torch.Tensor]:
        """Soft masks w in unit space (differentiable in the logits)."""
        return self._to_units(self.position_keep())

    def hard_positions(self, keep: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """0/1 masks per position (prefixes); with `expected_width`, straight-through to w."""
        keep = self.position_keep() if keep is None else keep
        result = []
        for w, width, divisor in zip(keep, self.expected_widths(), self.divisors):
            positions = torch.arange(w.numel(), device=w.device)
            if self.rule == "mean_threshold":
                # w is non-increasing, so {r: w_r >= mean} is a prefix; the tolerance absorbs
                # rounding in the cumulative sums when all mass sits on one bucket.
                count = int((w.detach() >= w.detach().mean() - 1e-6).sum())
                result.append((positions < count).to(w.dtype))
            else:
                count = bucket_ceil(float(width.detach()), divisor, w.numel())
                hard = (positions < count).to(w.dtype)
                result.append(hard + (w - w.detach()))
        return result

    def hard(self, keep: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Hard masks in unit space."""
        return self._to_units(self.hard_positions(keep))

    def hard_widths(self) -> list[int]:
        with torch.no_grad():
            return [int(m.sum().round()) for m in self.hard_positions()]
