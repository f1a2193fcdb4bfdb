"""MobileNetV3-Large: torchvision's network, adapted to 32x32 and 64x64 inputs.

Configuration (`mobilenetv3`):
- torchvision `MobileNetV3` with the MobileNetV3-Large block table, `width_mult=width`
  (torchvision rounds channels to multiples of 8), classifier 960 -> 1280 -> classes with
  dropout `options.dropout`.
- squeeze-excitation reduces to `expanded // 4` channels without rounding to 8, which gives
  exactly the 18/30/120/168/240-channel SE layers of the paper's Fig. 4(b) (torchvision
  rounds 18 up to 24).
- stem `small` (32 and 64 px): the stem convolution and the first stride-2 block (16 -> 24
  channels) use stride 1, so the network downsamples by 8 instead of 32 and a 32 px input
  ends at 4x4 rather than 1x1. `imagenet` keeps torchvision's strides.
- option `stem`: auto (small below 128 px) | small | imagenet; `dropout` (default 0.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn as nn
from torchvision.models.mobilenetv3 import InvertedResidual, MobileNetV3, _mobilenet_v3_conf
from torchvision.ops.misc import SqueezeExcitation

from core.models import MODELS, check_rate, check_stem, small_stem


@dataclass
class MobileNetOptions:
    stem: str = "auto"
    dropout: float = 0.2

    def validate(self) -> None:
        check_stem(self.stem)
        check_rate("dropout", self.dropout)


def _quarter_squeeze(channels: int, _rounded_squeeze: int) -> nn.Module:
    """SE layer with `channels // 4` hidden units (the paper's MBV3), Hardsigmoid gate."""
    return SqueezeExcitation(channels, max(1, channels // 4), scale_activation=nn.Hardsigmoid)


@MODELS.register("mobilenetv3", options=MobileNetOptions)
def mobilenetv3(num_classes: int, image_size: int, width: float, options: MobileNetOptions) -> nn.Module:
    """MobileNetV3-Large (torchvision; stride-1 stem and first stage below 128 px)."""
    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=width)
    small = small_stem(options.stem, image_size)
    if small:
        first_downsampling = next(cnf for cnf in setting if cnf.stride == 2)
        first_downsampling.stride = 1
    model = MobileNetV3(
        setting,
        last_channel,
        num_classes=num_classes,
        block=partial(InvertedResidual, se_layer=_quarter_squeeze),
        dropout=options.dropout,
    )
    if small:
        model.features[0][0].stride = (1, 1)
    return model
