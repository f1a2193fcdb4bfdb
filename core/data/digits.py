"""scikit-learn's handwritten digits: a real, small dataset that needs no download.

1,797 grey 8x8 images of the digits 0-9 ship inside scikit-learn. They are scaled to
0-255, upsampled (bilinear) to the requested resolution and repeated over three channels so
that every model of the zoo takes them unchanged. A fixed split (permutation seeded with 0,
`test_fraction` of the images held out) makes the test set the same for every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from core.data import DATASETS
from core.data.spec import DatasetInfo, DatasetSpec, LabelledImages
from core.errors import ConfigError


@dataclass
class DigitsOptions:
    test_fraction: float = 0.2

    def validate(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"data.options.test_fraction must be in (0, 1), got {self.test_fraction}")


def to_uint8_rgb(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, H, W) floats in [0, 1] -> (N, 3, S, S) uint8, bilinear resize."""
    x = images.unsqueeze(1).float()
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


@DATASETS.register("digits", options=DigitsOptions)
class Digits(DatasetSpec):
    """Digits (scikit-learn): 1,797 images, 10 classes, upsampled from 8x8 (offline)."""

    info = DatasetInfo(num_classes=10, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), family="cifar")

    def prepare(self) -> None:
        """Shipped inside scikit-learn: always present."""

    def split(self, train: bool, image_size: int) -> Dataset:
        from sklearn.datasets import load_digits  # here, not at import: sklearn takes a second to import

        bunch = load_digits()
        images = torch.from_numpy(bunch.images / 16.0)
        labels = torch.from_numpy(bunch.target).long()
        order = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
        n_test = int(round(len(labels) * self.options.test_fraction))
        chosen = order[n_test:] if train else order[:n_test]
        return LabelledImages(to_uint8_rgb(images[chosen], image_size), labels[chosen])
