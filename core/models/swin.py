"""Swin for small images: timm's `SwinTransformer` in the small-dataset configuration.

Configuration (`swin`), as in Lee et al. (2021) and the 27 pruned layers of the paper's
Fig. 4(e) (stage widths 96/192/384, MLP 192/384/768):
- embedding 96 x `width` (rounded to a multiple of the first stage's head count), depths
  (2, 6, 4), heads (3, 6, 12), MLP ratio 2, stochastic depth 0.1, timm's initialisation;
- patch 4 (Appendix A1 of the paper; Lee et al. use 2 at 32 px: set `patch_size=2`);
- window 4 below 128 px and 7 at 224 px (timm shrinks a window that exceeds the feature map).
Options: `patch_size`, `window_size` (null = by resolution), `embed_dim`, `depths`,
`num_heads`, `mlp_ratio`, `drop_path_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn
from timm.models.swin_transformer import SwinTransformer

from core.errors import ConfigError
from core.models import MODELS, SMALL_IMAGE_MAX, check_rate, scale_channels


@dataclass
class SwinOptions:
    patch_size: int = 4
    window_size: Optional[int] = None
    embed_dim: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 6, 4])
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12])
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.1

    def validate(self) -> None:
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ConfigError("model.options.depths and num_heads must be non-empty and of equal length")
        if min(self.depths) < 1 or min(self.num_heads) < 1 or self.patch_size < 1 or self.embed_dim < 1:
            raise ConfigError("model.options: depths, num_heads, patch_size and embed_dim must be >= 1")
        check_rate("drop_path_rate", self.drop_path_rate)


@MODELS.register("swin", options=SwinOptions)
def swin(num_classes: int, image_size: int, width: float, options: SwinOptions) -> nn.Module:
    """Swin-small-data (timm; 96-d, depths 2/6/4, heads 3/6/12, MLP ratio 2, window 4)."""
    stages = len(options.depths)
    tokens = image_size // options.patch_size
    if image_size % options.patch_size or tokens % (2 ** (stages - 1)):
        raise ConfigError(
            f"swin: image size {image_size} with patch {options.patch_size} cannot be merged "
            f"{stages - 1} times; choose another patch_size or image size"
        )
    embed_dim = scale_channels(options.embed_dim, width, divisor=options.num_heads[0])
    for i, heads in enumerate(options.num_heads):
        if (embed_dim * 2**i) % heads:
            raise ConfigError(f"swin: stage {i + 1} width {embed_dim * 2**i} is not divisible by {heads} heads")
    window = options.window_size or (4 if image_size < SMALL_IMAGE_MAX else 7)
    return SwinTransformer(
        img_size=image_size,
        patch_size=options.patch_size,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depths=tuple(options.depths),
        num_heads=tuple(options.num_heads),
        window_size=window,
        mlp_ratio=options.mlp_ratio,
        drop_path_rate=options.drop_path_rate,
    )
