"""The six architectures the substrate must handle exactly, built once per test module."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from core.config import ModelConfig
from core.groups import FlopsModel, GroupSet, discover_groups, prefix_mask
from core.models import build_model

# id: (zoo name, input size, width, paper group count (Fig. 4) or None)
ARCHITECTURES = {
    "resnet50_cifar": ("resnet50", 32, 1.0, 36),
    "mobilenetv3": ("mobilenetv3", 32, 1.0, 29),
    "wrn28_10": ("wrn28_10", 32, 0.5, 15),
    "vit": ("vit", 32, 1.0, 19),
    "swin": ("swin", 32, 1.0, 27),
    "resnet50_imagenet": ("resnet50", 224, 0.25, 36),
}
FRACTIONS = (0.15, 0.35, 0.55)


@dataclass
class Arch:
    model: nn.Module
    groups: GroupSet
    flops: FlopsModel
    size: int
    config: ModelConfig  # what `build_model` built it from (10 classes)


def build_arch(arch_id: str, **discover_kwargs) -> Arch:
    name, size, width, _ = ARCHITECTURES[arch_id]
    torch.manual_seed(0)
    config = ModelConfig(name=name, width=width)
    model = build_model(config, 10, size).eval()
    _randomise_norms(model)
    groups = discover_groups(model, torch.zeros(1, 3, size, size), **discover_kwargs)
    return Arch(model, groups, FlopsModel(model, groups), size, config)


def _randomise_norms(model: nn.Module) -> None:
    """Fresh norms are identities; random affine parameters and running statistics make a
    wrongly kept or wrongly removed channel show in the outputs."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            with torch.no_grad():
                if module.weight is not None:
                    module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                    module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))


def random_masks(groups: GroupSet, fraction: float, seed: int = 0) -> list[torch.Tensor]:
    """0/1 masks keeping a random round(fraction x size) units (at least one) of every group."""
    generator = torch.Generator().manual_seed(seed)
    return [prefix_mask(torch.randperm(g.size, generator=generator), max(1, round(fraction * g.size))) for g in groups]


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request) -> Arch:
    """Each of the six architectures in turn, with its groups and FLOPs model."""
    return build_arch(request.param)


@pytest.fixture(params=FRACTIONS)
def fraction(request) -> float:
    """Kept fractions of the random 0/1 masks."""
    return request.param


@pytest.fixture
def masks_for():
    """`masks_for(groups, fraction, seed)`: random 0/1 masks, see `random_masks`."""
    return random_masks


@pytest.fixture
def arch_builder():
    """`arch_builder(arch_id, **discover_kwargs)`: one architecture, built afresh."""
    return build_arch
