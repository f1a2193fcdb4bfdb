"""Fashion-MNIST (Zalando): 70,000 grey 28x28 images of clothing in 10 classes.

Read by torchvision's own `FashionMNIST` from the four original IDX files
(`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each plain or gzipped). They are looked
for, in this order, in
1. `<data.root>/FashionMNIST/raw/` (torchvision's layout: where `data.download=true` puts them);
2. `/usr/share/datasets/fashion-mnist/` (`DEBIAN_FOLDER`: Debian's `dataset-fashion-mnist`
   package), used in place: nothing is downloaded or copied.
The first folder holding all four files wins; in a folder a plain file is preferred to its
`.gz`. A gzipped file is decompressed into a temporary folder for torchvision's reader and
the folder removed; each split is decoded once per process (`decoded`, cached by the
files' paths, sizes and modification times).

Images are scaled bilinearly to the requested resolution and repeated over three channels,
so every model of the zoo takes them unchanged; `info.mean`/`info.std` are the dataset's
pixel statistics (of the 60,000 training images, pixel / 255) repeated likewise.

`options.train_size` / `options.test_size` pick a fixed, class-stratified subset of a split
(see `stratified_subset`) so that a laptop profile can train on, e.g., 6,000 / 2,000 images.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.error import URLError

import torch
from torch.utils.data import Dataset
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import extract_archive

from core.data import DATASETS
from core.data.digits import to_uint8_rgb
from core.data.spec import DatasetInfo, DatasetSpec, LabelledImages
from core.errors import ConfigError, DatasetNotFound

# Where Debian's `dataset-fashion-mnist` installs the original (gzipped) IDX files. Read at
# call time, so tests can point it elsewhere.
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
# (images, labels) file names, without `.gz`, of each split (train=True / False).
STEMS = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_STEMS = STEMS[True] + STEMS[False]
SIZES = {True: 60_000, False: 10_000}  # the official splits
NUM_CLASSES = 10


@dataclass
class FashionMNISTOptions:
    """Subset sizes; null = the whole split (60,000 training / 10,000 test images)."""

    train_size: Optional[int] = None
    test_size: Optional[int] = None

    def validate(self) -> None:
        for key, train in (("train_size", True), ("test_size", False)):
            value = getattr(self, key)
            if value is not None and not 0 < value <= SIZES[train]:
                raise ConfigError(
                    f"data.options.{key} must be a positive integer of at most {SIZES[train]:,} or null, got {value}"
                )


def torchvision_folder(root: str | os.PathLike) -> Path:
    """`<root>/FashionMNIST/raw`: where torchvision's FashionMNIST downloads and reads."""
    return Path(root) / FashionMNIST.__name__ / "raw"


def search_folders(root: str | os.PathLike) -> list[Path]:
    """The folders looked in, in order: torchvision's layout under `root`, then Debian's."""
    return [torchvision_folder(root), Path(DEBIAN_FOLDER)]


def idx_file(folder: Path, stem: str) -> Optional[Path]:
    """`folder/stem` if it is a file, else `folder/stem.gz` if that is, else None."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def find_folder(root: str | os.PathLike) -> Optional[Path]:
    """The first folder of `search_folders(root)` holding all four IDX files, or None."""
    for folder in search_folders(root):
        if all(idx_file(folder, stem) is not None for stem in ALL_STEMS):
            return folder
    return None


class LocatedFashionMNIST(FashionMNIST):
    """torchvision's FashionMNIST, reading the IDX files of `folder`, plain or gzipped.

    torchvision reads `<root>/FashionMNIST/raw/<stem>` (decompressed) only; this subclass
    reads the given folder, takes `<stem>.gz` where the plain file is absent (torchvision's
    own `extract_archive` decompresses it into a temporary folder for torchvision's own
    reader), and ignores the legacy `processed/*.pt` files.
    """

    def __init__(self, folder: str | os.PathLike, train: bool) -> None:
        self.folder = Path(folder)
        super().__init__(str(self.folder), train=train, download=False)

    @property
    def raw_folder(self) -> str:
        return str(self.folder)

    def _check_legacy_exist(self) -> bool:
        return False

    def _check_exists(self) -> bool:
        return all(idx_file(self.folder, stem) is not None for stem in STEMS[self.train])

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = (idx_file(self.folder, stem) for stem in STEMS[self.train])
        with tempfile.TemporaryDirectory(prefix="fashion-mnist-") as scratch:

            def plain(path: Path) -> str:
                if path.suffix != ".gz":
                    return str(path)
                return os.fspath(extract_archive(str(path), scratch))

            return read_image_file(plain(images)), read_label_file(plain(labels))


def _stamp(folder: Path, train: bool) -> tuple[tuple[str, int, int], ...]:
    """The split's files with their sizes and modification times: the cache key."""
    stamp = []
    for stem in STEMS[train]:
        path = idx_file(folder, stem)
        if path is None:
            raise DatasetNotFound(f"Fashion-MNIST: {folder / stem} (or .gz) disappeared")
        status = path.stat()
        stamp.append((str(path.resolve()), status.st_size, status.st_mtime_ns))
    return tuple(stamp)


@functools.lru_cache(maxsize=4)
def _decoded(folder: str, train: bool, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = LocatedFashionMNIST(folder, train)
    if len(dataset.data) != len(dataset.targets):
        raise DatasetNotFound(
            f"Fashion-MNIST in {folder}: {len(dataset.data)} images but {len(dataset.targets)} labels "
            f"in the {'training' if train else 'test'} files"
        )
    return dataset.data, dataset.targets


def decoded(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 28, 28) uint8 images and (N,) int64 labels of a split: decoded once per process."""
    return _decoded(str(folder), train, _stamp(folder, train))


def stratified_subset(labels: torch.Tensor, size: int) -> torch.Tensor:
    """`size` indices, in increasing order: the same for every run, balanced over classes.

    The rule: a fixed permutation of all indices (torch, seeded with 0) orders the images of
    each class; the subset takes classes in turn, 0 to 9, each its next image in that order,
    until `size` are taken. So every class gets `size // 10` images and classes 0 to
    `size % 10 - 1` one more (equal counts whenever `size` is a multiple of 10, as long as
    each class has that many; a class that runs out simply stops contributing), and a smaller
    subset is part of every larger one.
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    ordered = labels[order]
    rank = torch.empty_like(order)  # position of each image among its class in the order
    for label in ordered.unique():
        members = ordered == label
        rank[members] = torch.arange(int(members.sum()))
    key = rank * (int(labels.max()) + 1) + ordered  # round after round, classes in turn
    return order[torch.argsort(key)[:size]].sort().values


@DATASETS.register("fashion_mnist", options=FashionMNISTOptions)
class FashionMNISTData(DatasetSpec):
    """Fashion-MNIST: 60,000 training and 10,000 test grey 28x28 images, 10 classes."""

    # mean / std of pixel / 255 over the 60,000 training images (checked in the tests).
    info = DatasetInfo(
        num_classes=NUM_CLASSES,
        image_size=28,
        mean=(0.2860, 0.2860, 0.2860),
        std=(0.3530, 0.3530, 0.3530),
        family="cifar",
    )

    def _missing(self) -> DatasetNotFound:
        looked = " and ".join(str(folder) for folder in search_folders(self.root))
        names = ", ".join(ALL_STEMS)
        return DatasetNotFound(
            f"Fashion-MNIST not found: looked in {looked} for {names} (plain or .gz); "
            f"install Debian's package (apt-get install dataset-fashion-mnist) or run with "
            f"data.download=true to fetch it into {torchvision_folder(self.root)} (needs internet)"
        )

    def prepare(self) -> None:
        if find_folder(self.root) is not None:
            return
        if self.download:
            try:
                FashionMNIST(str(self.root), train=True, download=True)
            except (RuntimeError, URLError, OSError) as exc:
                raise DatasetNotFound(
                    f"Fashion-MNIST: download into {torchvision_folder(self.root)} failed: {exc}"
                ) from None
            if find_folder(self.root) is not None:
                return
        raise self._missing()

    def split(self, train: bool, image_size: int) -> Dataset:
        folder = find_folder(self.root)
        if folder is None:
            raise self._missing()
        images, labels = decoded(folder, train)
        key = "train_size" if train else "test_size"
        size = getattr(self.options, key) if self.options is not None else None
        if size is not None:
            if size > len(labels):
                raise ConfigError(
                    f"data.options.{key}={size} exceeds the {len(labels):,} "
                    f"{'training' if train else 'test'} images of Fashion-MNIST in {folder}"
                )
            chosen = stratified_subset(labels, size)
            images, labels = images[chosen], labels[chosen]
        return LabelledImages(to_uint8_rgb(images.float() / 255, image_size), labels.clone())
