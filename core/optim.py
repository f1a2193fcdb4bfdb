"""Optimizers and learning-rate schedules from `TrainConfig`.

Schedules are timm's, updated every optimizer step (`t_in_epochs=False`), so the learning
rate is a pure function of the number of updates: a resumed run sets it from its step
counter and needs no scheduler state.
"""

from __future__ import annotations

from typing import Iterable

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.scheduler.scheduler import Scheduler

from core.config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    raise ValueError(f"unknown optimizer {t.optimizer!r}")  # resolve() rejects it first


def build_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig, steps_per_epoch: int) -> Scheduler:
    """Warm-up (linear, from `warmup_lr`) followed by cosine, step or constant decay."""
    warmup = t.warmup_epochs * steps_per_epoch
    if t.schedule == "cosine":
        return CosineLRScheduler(
            optimizer,
            t_initial=t.epochs * steps_per_epoch - warmup,
            lr_min=t.min_lr,
            warmup_t=warmup,
            warmup_lr_init=t.warmup_lr,
            warmup_prefix=True,
            t_in_epochs=False,
        )
    # timm applies a milestone m when t + 1 == m; +1 moves each decay to the first step of
    # its epoch, as torch's MultiStepLR would.
    milestones = [m * steps_per_epoch - warmup + 1 for m in t.milestones] if t.schedule == "step" else []
    return MultiStepLRScheduler(
        optimizer,
        decay_t=milestones,
        decay_rate=t.gamma,
        warmup_t=warmup,
        warmup_lr_init=t.warmup_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )
