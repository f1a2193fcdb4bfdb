"""A deterministic, learnable synthetic image dataset of any shape and class count.

Each class has a prototype: a random low-resolution (4x4) colour pattern, upsampled to the
image size. An image is its class prototype plus independent Gaussian pixel noise, mapped to
0-255. Classes are therefore separable (a small network learns them in an epoch or two) yet
not trivially so at high noise. Everything is drawn from generators seeded with
`options.seed` (a property of the dataset, not of the run), so every run, process and
machine sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from core.data import DATASETS
from core.data.spec import DatasetInfo, DatasetSpec, LabelledImages
from core.errors import ConfigError
from core.seeding import SYNTHETIC_PROTOTYPES, SYNTHETIC_TEST, SYNTHETIC_TRAIN, derive_seed


@dataclass
class SyntheticOptions:
    num_classes: int = 10
    image_size: int = 32
    train_size: int = 2048
    test_size: int = 512
    noise: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        for key in ("num_classes", "image_size", "train_size", "test_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.options.{key} must be >= 1, got {getattr(self, key)}")
        if self.noise < 0 or self.seed < 0:
            raise ConfigError("data.options.noise and data.options.seed must be >= 0")


@DATASETS.register("synthetic", options=SyntheticOptions)
class Synthetic(DatasetSpec):
    """Synthetic prototypes + noise: deterministic and learnable, any size and class count."""

    @property
    def info(self) -> DatasetInfo:  # type: ignore[override]
        o = self.options
        return DatasetInfo(o.num_classes, o.image_size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cifar")

    def prepare(self) -> None:
        """Generated on demand: always present."""

    def split(self, train: bool, image_size: int) -> Dataset:
        o = self.options
        proto_gen = torch.Generator().manual_seed(derive_seed(o.seed, SYNTHETIC_PROTOTYPES))
        prototypes = torch.randn(o.num_classes, 3, 4, 4, generator=proto_gen)
        prototypes = F.interpolate(prototypes, size=(image_size, image_size), mode="bilinear", align_corners=False)
        n = o.train_size if train else o.test_size
        labels = torch.arange(n) % o.num_classes
        noise_gen = torch.Generator().manual_seed(derive_seed(o.seed, SYNTHETIC_TRAIN if train else SYNTHETIC_TEST))
        images = prototypes[labels] + o.noise * torch.randn(n, 3, image_size, image_size, generator=noise_gen)
        images = ((images * 0.25 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return LabelledImages(images, labels)
