"""WRN-28-10: the wide residual network of Zagoruyko & Komodakis (2016), CIFAR form.

No dependency of the suite ships this CIFAR network, so it is defined here, following the
paper's original (pre-activation) layout:
- stem: 3x3 convolution, 16 x `width` channels;
- three stages of 4 pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3),
  widths (160, 320, 640) x `width`, strides (1, 2, 2), a 1x1 projection shortcut where the
  shape changes;
- final BN-ReLU, global average pool, linear classifier.
Full width with 100 classes has 36.5M parameters. The same network serves 32 and 64 px (the
pool is global), so it has no stem option. Option `dropout` (default 0.0) sits between the
two convolutions of each block, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from core.models import MODELS, check_rate, scale_channels

DEPTH = 28
WIDEN = 10


@dataclass
class WRNOptions:
    dropout: float = 0.0

    def validate(self) -> None:
        check_rate("dropout", self.dropout)


class PreActBlock(nn.Module):
    """Pre-activation basic block: the residual branch starts with BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        # The projection sees the activated input, as in the original WRN code.
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + identity


class WideResNet(nn.Module):
    def __init__(self, num_classes: int, width: float, dropout: float) -> None:
        super().__init__()
        blocks_per_stage = (DEPTH - 4) // 6
        widths = [scale_channels(c, width) for c in (16, 16 * WIDEN, 32 * WIDEN, 64 * WIDEN)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        stages = []
        in_ch = widths[0]
        for out_ch, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(PreActBlock(in_ch, out_ch, stride if i == 0 else 1, dropout))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.pool(self.relu(self.bn(x)))
        return self.fc(torch.flatten(x, 1))


@MODELS.register("wrn28_10", options=WRNOptions)
def wrn28_10(num_classes: int, image_size: int, width: float, options: WRNOptions) -> nn.Module:
    """WRN-28-10 (pre-activation, CIFAR layout)."""
    return WideResNet(num_classes, width, options.dropout)
