"""Building a baseline pruner directly, outside the engine, for white-box tests."""

from __future__ import annotations

import pytest
import torch

from core.models import build_model
from core.pruner import PRUNERS, TrainContext


@pytest.fixture
def make_pruner(tiny):
    """`make_pruner(*overrides)` -> (pruner, cfg) on the tiny config (16 px, 6 steps per epoch)."""

    def build(*overrides: str):
        cfg = tiny(*overrides)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, 10, 16)
        ctx = TrainContext(cfg, torch.device("cpu"), 6, 10, 16)
        return PRUNERS.get(cfg.prune.method).factory(model, ctx), cfg

    return build


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 10, (8,), generator=generator)
