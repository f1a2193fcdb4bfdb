"""The budget policy shared by the baselines (see baselines/README.md).

A baseline gets the run's total budget (`train.epochs` x steps per epoch: the same total as
S2HPruner in that table's setting for "1x", twice that for "2x") and splits it across its
phases in the proportions of its official recipe (`budget_split`, a config field). Phase
boundaries are steps, so short smoke runs keep every phase. Within a phase the run's own
learning-rate schedule (warm-up, cosine or milestones) is laid over the phase's steps.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from timm.scheduler.scheduler import Scheduler

from core.config import RunConfig, TrainConfig
from core.errors import ConfigError
from core.optim import build_optimizer, build_scheduler


def check_split(split: Sequence[float], phases: int, key: str = "prune.options.budget_split") -> None:
    if len(split) != phases or any(s <= 0 for s in split):
        raise ConfigError(f"{key} must be {phases} positive numbers, got {list(split)}")


def phase_ends(total_steps: int, split: Sequence[float]) -> list[int]:
    """Cumulative end step of each phase; every phase gets at least one step."""
    if total_steps < len(split):
        raise ConfigError(f"{total_steps} training steps cannot hold {len(split)} phases")
    total = sum(split)
    ends, done = [], 0.0
    for i, share in enumerate(split):
        done += share
        end = round(total_steps * done / total)
        end = max(end, (ends[-1] if ends else 0) + 1)
        ends.append(min(end, total_steps - (len(split) - 1 - i)))
    ends[-1] = total_steps
    return ends


def regime_split(split: Sequence[float], cfg: RunConfig) -> list[float]:
    """The budget split with its first phase (the training before a baseline's first decision:
    OTOv2's warm-up, Group-SL's pre-training) stretched to at least `prune.decide_after_epochs`
    of the run's epochs, the other phases keeping their proportions (`core.regime`: no decision
    on an untrained network). The split as given when that is null or already met."""
    total = sum(split)
    shares = [s / total for s in split]
    after = cfg.prune.decide_after_epochs
    if after is None or shares[0] * cfg.train.epochs >= after:
        return shares
    first = after / cfg.train.epochs
    if first >= 1:
        raise ConfigError(f"prune.decide_after_epochs={after:g} leaves nothing of the run's {cfg.train.epochs} epochs "
                          f"to prune in: give it more epochs")
    rest = (1 - first) / (1 - shares[0])
    return [first] + [s * rest for s in shares[1:]]


def split_points(split: Sequence[float]) -> list[float]:
    """Where each phase ends, as a share of the budget (the last is 1): the planned decision
    points of a baseline whose decisions fall at phase ends (`core.regime`)."""
    total, done, points = sum(split), 0.0, []
    for share in split:
        done += share
        points.append(done / total)
    return points


def phase_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, phase_steps: int) -> Scheduler:
    """The run's schedule stretched over `phase_steps` steps (call `step_update(k)`, k = 1, 2, ...)."""
    fraction = phase_steps / train.epochs
    shape = dataclasses.replace(
        train,
        epochs=phase_steps,
        warmup_epochs=min(round(train.warmup_epochs * fraction), phase_steps - 1),
        milestones=[max(1, round(m * fraction)) for m in train.milestones],
    )
    return build_scheduler(optimizer, shape, steps_per_epoch=1)



def phase_optimizer(params, train: TrainConfig, phase_steps: int) -> tuple[torch.optim.Optimizer, Scheduler]:
    """A fresh optimizer of the run's kind for one phase, and the run's schedule over its steps."""
    optimizer = build_optimizer(params, train)
    return optimizer, phase_scheduler(optimizer, train, phase_steps)
