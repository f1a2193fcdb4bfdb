"""Bucket sizes of the prefix masks: how many channels share one mask logit, per group.

The official code (`big_resnet_ddp.py` 5260-5310) gives each group one logit per bucket of
`ch_divisor` channels, reducing the divisor until it divides the group's size, or (its
`auto_divisor` mode) choosing the number of buckets as the largest factor of the size within a
range. Its hard width is a multiple of the bucket (1812-1834). The configs it ran with were
never published, so the per-architecture defaults below are read off the paper's Fig. 4 (the
15 % networks on CIFAR-100):

- ResNet-50, WRN-28-10, ViT, Swin: every kept width of a channel group is a multiple of 8
  (ResNet 24/64, 56/128, 120/256, 576/2048; WRN 56/160, 136/320, 288/640; ViT 96/192,
  200/384; Swin 64/192, 152/384, 272/768), so the divisor is 8, scaled with the model's width
  multiplier (a quarter-width ResNet-50 gets 2: the same number of buckets per group as the
  paper's network). Groups of at most 16 units (attention heads, head dimensions) get one
  logit per unit, as the official code does for small ViT widths (`make_divisible_tensor`).
- MobileNetV3: `auto`, at most 16 buckets per group: the number of buckets is the largest
  factor of the group's size not above 16. Every kept width that Fig. 4(b) prints legibly (27
  of them: 4/24, 12/72, 32/120, 42/112, 46/184, 150/480, 210/672, 180/960, 640/1280, ...) is
  a multiple of the bucket this gives, while a fixed divisor of 8 fits few of them.
- Any other model (your own, through `method.api`): 8, reduced until it divides the size.

`prune.options.divisor=N` sets N for every group (reduced until it divides the group's size,
as the official code does); `divisor=1` is one logit per channel (the paper's text).
"""

from __future__ import annotations

from core.groups import GroupSet

CHANNEL_DIVISOR = 8
SMALL_GROUP = 16  # groups of at most this many units get one logit per unit
MAX_BUCKETS = 16  # MobileNetV3's `auto` mode
AUTO_MODELS = ("mobilenetv3",)


def reduce_to_factor(divisor: int, size: int) -> int:
    """The largest divisor of `size` not above `divisor` (the official reduction)."""
    divisor = max(1, min(divisor, size))
    while size % divisor:
        divisor -= 1
    return divisor


def auto_divisor(size: int, max_buckets: int = MAX_BUCKETS) -> int:
    """Channels per bucket when the bucket count is the largest factor of `size` <= max_buckets."""
    buckets = max(f for f in range(1, min(size, max_buckets) + 1) if size % f == 0)
    return size // buckets


def bucket_divisors(groups: GroupSet, option: int | None, model_name: str | None = None,
                    width: float = 1.0) -> list[int]:
    """Channels per mask logit for every group of `groups` (see the module docstring)."""
    if option is not None:
        return [reduce_to_factor(option, g.size) for g in groups]
    if model_name in AUTO_MODELS:
        return [auto_divisor(g.size) for g in groups]
    base = max(1, round(CHANNEL_DIVISOR * width)) if model_name is not None else CHANNEL_DIVISOR
    return [1 if g.size <= SMALL_GROUP else reduce_to_factor(base, g.size) for g in groups]
