"""The model zoo: one registry for every architecture the paper prunes.

Names (fixed for configs, command lines and records): `resnet50`, `mobilenetv3`, `wrn28_10`,
`vit`, `swin`. Every model takes a width multiplier (smoke runs use narrow copies of the
paper's models with the same topology) and chooses its stem or patch set-up from the input
resolution (small-image set-up at 32 and 64 px, ImageNet set-up at 224), which a model
option overrides. Each module's docstring states the exact configuration.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch
import torch.nn as nn

from core.config import ModelConfig
from core.errors import ConfigError
from core.registry import Registry

MODELS: Registry = Registry("model")

# Below this resolution a model uses its small-image stem (CIFAR 32 px, Tiny ImageNet 64 px).
SMALL_IMAGE_MAX = 128
STEMS = ("auto", "small", "imagenet")


def scale_channels(channels: int, width: float, divisor: int = 1) -> int:
    """`channels * width` rounded to a multiple of `divisor`, never below `divisor`."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def small_stem(stem: str, image_size: int) -> bool:
    """Resolve a model's `stem` option: 'small', 'imagenet' or 'auto' (by resolution)."""
    if stem == "auto":
        return image_size < SMALL_IMAGE_MAX
    return stem == "small"


def check_stem(stem: str) -> None:
    """Validate a model's `stem` option."""
    if stem not in STEMS:
        raise ConfigError(f"model.options.stem must be one of {', '.join(STEMS)}, got {stem!r}")


def check_rate(key: str, value: float) -> None:
    """Validate a dropout-like option: a probability in [0, 1)."""
    if not 0 <= value < 1:
        raise ConfigError(f"model.options.{key} must be in [0, 1), got {value}")


def build_model(cfg: ModelConfig, num_classes: int, image_size: int) -> nn.Module:
    """Build `cfg.name` for `num_classes` outputs at `image_size` px inputs."""
    entry = MODELS.get(cfg.name)
    options: Any = entry.options(**cfg.options) if entry.options else None
    return entry.factory(num_classes=num_classes, image_size=image_size, width=cfg.width, options=options)


# meta_model's cache: one meta-device model per (config, classes, image size, factory) in a process.
_META: dict[tuple[str, int, int, int], nn.Module] = {}


def meta_model(cfg: ModelConfig, num_classes: int, image_size: int) -> nn.Module:
    """`build_model` on the meta device (shapes, no memory), for config-time checks: built once
    per process for each config, classes and size, because a grid's cells share a few models
    and even on the meta device a build takes 0.1-0.5 s (the weight init runs through torch's
    Python reference ops); expanding Table 1's 48 paper cells built one 39 times. The model is
    shared between callers: read it, never change it."""
    key = (json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=repr), num_classes, image_size,
           id(MODELS.get(cfg.name).factory))
    if key not in _META:
        with torch.device("meta"):
            _META[key] = build_model(cfg, num_classes, image_size)
    return _META[key]


# Registration happens on import.
from core.models import mobilenet, resnet, swin, vit, wrn  # noqa: E402,F401
