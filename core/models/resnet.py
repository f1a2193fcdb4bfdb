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


def width_resnet(layers: list[int], num_classes: int, width: float, small: bool) -> ResNet:
    """torchvision's ResNet whose stage widths scale with `width`.

    torchvision hard-codes the widths 64..512 in `ResNet.__init__`, so this re-states that
    body with scaled widths; blocks, `_make_layer`, `forward` and the initialisation are
    torchvision's own. The result is an instance of torchvision's `ResNet` itself, so a saved
    (or pruned and exported) network loads without any code of this suite.
    """
    model = ResNet.__new__(ResNet)
    nn.Module.__init__(model)
    model._norm_layer = nn.BatchNorm2d
    model.dilation = 1
    model.groups = 1
    model.base_width = 64
    planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
    model.inplanes = planes[0]
    if small:
        model.conv1 = nn.Conv2d(3, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    model.bn1 = nn.BatchNorm2d(planes[0])
    model.relu = nn.ReLU(inplace=True)
    model.layer1 = model._make_layer(Bottleneck, planes[0], layers[0])
    model.layer2 = model._make_layer(Bottleneck, planes[1], layers[1], stride=2)
    model.layer3 = model._make_layer(Bottleneck, planes[2], layers[2], stride=2)
    model.layer4 = model._make_layer(Bottleneck, planes[3], layers[3], stride=2)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model


@MODELS.register("resnet50", options=ResNetOptions)
def resnet50(num_classes: int, image_size: int, width: float, options: ResNetOptions) -> nn.Module:
    """ResNet-50 (torchvision blocks; 3x3 stride-1 stem below 128 px)."""
    return width_resnet([3, 4, 6, 3], num_classes, width, small_stem(options.stem, image_size))
