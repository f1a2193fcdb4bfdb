"""ViT for small images: timm's `VisionTransformer` in the configuration of Lee et al. (2021).

Configuration (`vit`), the small-dataset ViT that the paper cites for its transformer
recipe and whose widths its Fig. 4(d) shows (residual 192, 12 heads, MLP 384):
- embedding 192 x `width` (rounded to a multiple of the head count), depth 9, 12 heads,
  MLP ratio 2, class token, learned position embedding, pre-norm blocks, final LayerNorm,
  stochastic depth `drop_path_rate` 0.1, timm's initialisation;
- patch 4 at 32 px and 8 at 64 px (Lee et al.), 16 at 224 px; option `patch_size` overrides.
Options: `patch_size` (null = by resolution), `embed_dim`, `depth`, `num_heads`, `mlp_ratio`,
`drop_path_rate`, `qkv_bias`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from core.errors import ConfigError
from core.models import MODELS, SMALL_IMAGE_MAX, check_rate, scale_channels


@dataclass
class ViTOptions:
    patch_size: Optional[int] = None
    embed_dim: int = 192
    depth: int = 9
    num_heads: int = 12
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.1
    qkv_bias: bool = True

    def validate(self) -> None:
        for key in ("embed_dim", "depth", "num_heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.options.{key} must be >= 1, got {getattr(self, key)}")
        if self.patch_size is not None and self.patch_size < 1:
            raise ConfigError(f"model.options.patch_size must be >= 1 or null, got {self.patch_size}")
        check_rate("drop_path_rate", self.drop_path_rate)


def vit_patch_size(image_size: int, requested: Optional[int]) -> int:
    if requested is not None:
        return requested
    return image_size // 8 if image_size < SMALL_IMAGE_MAX else 16


@MODELS.register("vit", options=ViTOptions)
def vit(num_classes: int, image_size: int, width: float, options: ViTOptions) -> nn.Module:
    """ViT-Lee2021 (timm; 192-d, depth 9, 12 heads, MLP ratio 2, patch 4 at 32 px)."""
    patch = vit_patch_size(image_size, options.patch_size)
    if patch < 1:
        raise ConfigError(f"vit: image size {image_size} is too small for the default patch (image size / 8); "
                          "set model.options.patch_size or a larger data.image_size")
    if image_size % patch:
        raise ConfigError(f"vit: image size {image_size} is not a multiple of the patch size {patch}")
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch,
        num_classes=num_classes,
        embed_dim=scale_channels(options.embed_dim, width, divisor=options.num_heads),
        depth=options.depth,
        num_heads=options.num_heads,
        mlp_ratio=options.mlp_ratio,
        qkv_bias=options.qkv_bias,
        drop_path_rate=options.drop_path_rate,
    )
