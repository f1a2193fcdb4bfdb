"""Datasets, augmentation recipes and loaders.

Names (fixed for configs and records): `cifar100`, `tinyimagenet`, `imagenet` (real data on
disk), `fashion_mnist` (Zalando's 28x28 grey clothing images: on disk under `data.root`, or
Debian's `dataset-fashion-mnist` package in place), `digits` (scikit-learn's shipped 8x8
digits, upsampled; real, small, offline) and `synthetic` (deterministic, learnable, any
shape). A missing dataset is reported by
`prepare_dataset` in one line naming the path and how to obtain it, before a run starts.
"""

from __future__ import annotations

from pathlib import Path

from core.config import DataConfig
from core.data.spec import DatasetInfo, DatasetSpec
from core.data.transforms import AUGMENTATIONS
from core.registry import Registry

DATASETS: Registry = Registry("dataset")


def dataset_spec(cfg: DataConfig) -> DatasetSpec:
    """The spec object of `cfg.name`, bound to its root, download flag and options."""
    entry = DATASETS.get(cfg.name)
    options = entry.options(**cfg.options) if entry.options else None
    return entry.factory(Path(cfg.root).expanduser(), cfg.download, options)


def prepare_dataset(cfg: DataConfig) -> DatasetInfo:
    """Make sure the data is there (downloading only if allowed); raise `DatasetNotFound`."""
    spec = dataset_spec(cfg)
    spec.prepare()
    return spec.info


# Registration happens on import.
from core.data import cifar, digits, fashion_mnist, imagenet, synthetic, tinyimagenet  # noqa: E402,F401

__all__ = ["AUGMENTATIONS", "DATASETS", "DatasetInfo", "DatasetSpec", "dataset_spec", "prepare_dataset"]
