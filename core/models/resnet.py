"""ResNet-50: torchvision's bottleneck ResNet with a width multiplier and a small-image stem.

Configuration (`resnet50`):
- blocks: torchvision `Bottleneck`, layers (3, 4, 6, 3), stage widths (64, 128, 256, 512) x
  `width`, expansion 4, torchvision's initialisation.
- stem `small` (CIFAR-100 at 32 px, Tiny ImageNet at 64 px): one 3x3 stride-1 convolution, no
  max-pool, as in the CIFAR ResNets the paper builds on; full width with 100 classes has
  23.7M parameters.
- stem `imagenet` (224 px): torchvision's 7x7 stride-2 convolution and 3x3 max-pool, i.e.
  exactly `torchvision.models.resnet50` at width 1.0 (25.6M parameters with 1000 classes).
- option `stem`: auto (small below 128 px) | small | imagenet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torchvision.models.resnet import Bottleneck, ResNet

from core.models import MODELS, check_stem, scale_channels, small_stem


@dataclass
class ResNetOptions:
    stem: str = "auto"

    def validate(self) -> None:
        check_stem(self.stem)


class WidthResNet(ResNet):
    """torchvision's ResNet whose stage widths scale with `width`.

    torchvision hard-codes the widths 64..512 in `ResNet.__init__`, so this constructor
    re-states that body with scaled widths; blocks, `_make_layer`, `forward` and the
    initialisation are torchvision's own.
    """

    def __init__(self, layers: list[int], num_classes: int, width: float, small: bool) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        if small:
            self.conv1 = nn.Conv2d(3, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(Bottleneck, planes[0], layers[0])
        self.layer2 = self._make_layer(Bottleneck, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(Bottleneck, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(Bottleneck, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


@MODELS.register("resnet50", options=ResNetOptions)
def resnet50(num_classes: int, image_size: int, width: float, options: ResNetOptions) -> nn.Module:
    """ResNet-50 (torchvision blocks; 3x3 stride-1 stem below 128 px)."""
    return WidthResNet([3, 4, 6, 3], num_classes, width, small_stem(options.stem, image_size))
