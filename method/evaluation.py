"""What evaluating a masked network needs: BN recalibration and the gap metrics of Table 6.

BatchNorm statistics. During S2HPruner training the soft and hard passes (and Alt2's dense
pass) share every BatchNorm, so its running statistics mix networks of different widths; like
the official code, the networks we evaluate and export get statistics recomputed on training
batches first (`recalibrate_bn`, cumulative averages over the batches).

Gap metrics (Table 6), between the hard network's class distribution p and its direct
supervision q, averaged over the test set: `js`, the Jensen-Shannon divergence in nats
(per sample, bounded by ln 2), and `l2`, the mean squared difference of the probabilities
(over samples and classes). The paper does not define its normalisations; its JS values above
ln 2 suggest a different one, so compare our values with each other, not with the paper's.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm


def recalibrate_bn(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """Replace `net`'s BatchNorm running statistics by averages over `batches`; eval mode after."""
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return net.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    device = next(net.parameters()).device
    net.train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        for images, _ in batches:
            net(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label-smoothed one-hot distributions (Table 6's supervision of Alt1)."""
    return F.one_hot(labels, num_classes).float() * (1 - smoothing) + smoothing / num_classes


def gap_sums(p: torch.Tensor, q: torch.Tensor) -> tuple[float, float]:
    """Summed JS divergence (over samples) and summed squared differences (over samples x classes)."""
    m = 0.5 * (p + q)
    log_m = m.clamp_min(1e-12).log()
    js = 0.5 * (p * (p.clamp_min(1e-12).log() - log_m)).sum(-1) + 0.5 * (q * (q.clamp_min(1e-12).log() - log_m)).sum(-1)
    return float(js.sum()), float((p - q).square().sum())
