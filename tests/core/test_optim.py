from __future__ import annotations

import math

import pytest
import torch

from core.resolve import load
from core.optim import build_optimizer, build_scheduler

SPE = 10  # steps per epoch


def _lrs(*overrides: str) -> list[float]:
    cfg = load(list(overrides)).train
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg, SPE)
    lrs = []
    for step in range(cfg.epochs * SPE):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step_update(step + 1)
    return lrs


def test_cosine_decays_from_lr_to_min_lr_over_the_run():
    lrs = _lrs("train.epochs=5", "train.lr=0.1", "train.min_lr=0.001")
    total = 5 * SPE
    expected = [0.001 + 0.5 * (0.1 - 0.001) * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_warmup_is_linear_then_cosine_over_the_rest():
    lrs = _lrs("train.epochs=5", "train.lr=0.1", "train.warmup_epochs=2", "train.warmup_lr=0.0")
    warm = 2 * SPE
    assert lrs[:warm] == pytest.approx([0.1 * s / warm for s in range(warm)])
    assert lrs[warm] == pytest.approx(0.1)
    rest = 3 * SPE
    assert lrs[warm + rest // 2] == pytest.approx(0.05)


def test_step_schedule_decays_on_the_first_step_of_each_milestone_epoch():
    lrs = _lrs("train.epochs=6", "train.lr=0.1", "train.schedule=step", "train.milestones=[2,4]", "train.gamma=0.1")
    # Independent reference: torch's MultiStepLR stepped once per epoch.
    param = torch.nn.Parameter(torch.zeros(1))
    reference_opt = torch.optim.SGD([param], lr=0.1)
    reference = torch.optim.lr_scheduler.MultiStepLR(reference_opt, milestones=[2, 4], gamma=0.1)
    expected = []
    for _ in range(6):
        expected += [reference_opt.param_groups[0]["lr"]] * SPE
        reference_opt.step()
        reference.step()
    assert lrs == pytest.approx(expected)


def test_constant_schedule_and_adamw():
    assert set(_lrs("train.schedule=constant", "train.lr=0.3")) == {0.3}
    cfg = load(["train.optimizer=adamw", "train.betas=[0.8,0.9]", "train.weight_decay=0.05"]).train
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9) and optimizer.param_groups[0]["weight_decay"] == 0.05
