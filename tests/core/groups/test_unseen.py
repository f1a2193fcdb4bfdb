"""The substrate on models it was not written for: a custom CNN and timm's test models."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

from core.groups import FlopsModel, GroupMasks, UnsupportedLayer, discover_groups, slim
from core.measure import count_flops


class Block(nn.Module):
    """A residual branch with an optional 1x1 projection and a sigmoid channel gate."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, 2 * c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * c_out)
        self.conv2 = nn.Conv2d(2 * c_out, c_out, 3, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_out, 4, 1), nn.ReLU(), nn.Conv2d(4, c_out, 1), nn.Sigmoid())
        self.short = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                      if stride > 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y * self.gate(y) + self.short(x))


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8, 12, 2), Block(12, 12, 1))
        self.hidden = nn.Linear(12, 20)
        self.out = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x)).mean((2, 3))
        return self.out(torch.relu(self.hidden(x)))


def _check(model: nn.Module, size: int, masks_for) -> None:
    model.eval()
    for module in model.modules():  # non-trivial norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, size, size)
    groups = discover_groups(model, x[:1])
    flops = FlopsModel(model, groups)
    masker = GroupMasks(model, groups)
    for fraction in (0.25, 0.6):
        masks = masks_for(groups, fraction, seed=1)
        slimmed = slim(model, groups, masks)
        with torch.no_grad():
            with masker.use(masks):
                masked = model(x)
            out = slimmed(x)
        assert float((masked - out).abs().max() / out.abs().max()) < 1e-4
        assert flops.exact(masks) == count_flops(slimmed, size)
        assert flops.exact(masks, "prunable") == flops.measure(slimmed, "prunable")
    return groups


def test_custom_cnn(masks_for):
    torch.manual_seed(0)
    groups = _check(SmallNet(), 16, masks_for)
    # blocks' interiors (2), gate hiddens (2), the 12-channel stream, the linear hidden.
    assert sorted((g.kind, g.size) for g in groups) == sorted(
        [("interior", 24), ("interior", 24), ("interior", 4), ("interior", 4), ("residual", 12), ("mlp", 20)])
    assert {g.name for g in groups.excluded} == {"stem.0", "out"}


@pytest.mark.parametrize("name", ["test_vit", "test_efficientnet", "test_resnet"])
def test_timm_models(name, masks_for):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7)
    groups = _check(model, 64, masks_for)
    assert len(groups) > 3


def test_unsupported_layer_is_a_clear_error():
    model = timm.create_model("test_convnext", num_classes=7).eval()
    with pytest.raises(UnsupportedLayer, match="LayerNorm2d"):
        discover_groups(model, torch.zeros(1, 3, 64, 64))
