"""What every dataset provides: its shape facts, a presence check, and its two splits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset that configs and models need before any file is read."""

    num_classes: int
    image_size: int  # native resolution (square)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    family: str  # "cifar" | "imagenet": which augmentation recipes apply by default


class DatasetSpec(ABC):
    """One dataset at one root.

    `split` returns a map-style dataset of (image, label) pairs, the image a PIL image or a
    uint8 CHW tensor; the augmentation pipeline takes either.
    """

    info: DatasetInfo

    def __init__(self, root: Path, download: bool, options: Any) -> None:
        self.root = root
        self.download = download
        self.options = options

    @abstractmethod
    def prepare(self) -> None:
        """Check the files are present, downloading them first when allowed."""

    @abstractmethod
    def split(self, train: bool, image_size: int) -> Dataset:
        """The training (`train=True`) or test split."""


class LabelledImages(TensorDataset):
    """uint8 CHW images with integer labels; items are (image, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)

    def __getitem__(self, index: int):
        image, label = super().__getitem__(index)
        return image, int(label)
