"""Small networks for the method's tests: a residual CNN and a ViT, both quick on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from core.config import ModelConfig
from core.models import build_model


class SmallCNN(nn.Module):
    """A stem, a residual block, a strided block and a linear classifier: 3 groups of 2c."""

    def __init__(self, c: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),
                               nn.Conv2d(2 * c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.b = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),
                               nn.Conv2d(2 * c, 2 * c, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.fc = nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.a(x))
        return self.fc(self.b(x).mean((2, 3)))


def small_vit() -> nn.Module:
    """The zoo's ViT at width 1/8 (24 wide, 12 heads of 2), 3 blocks, 16 px inputs."""
    return build_model(ModelConfig(name="vit", width=0.125, options={"drop_path_rate": 0.0, "depth": 3}), 10, 16)


@pytest.fixture
def small_cnn():
    return SmallCNN


@pytest.fixture
def vit_factory():
    return small_vit
