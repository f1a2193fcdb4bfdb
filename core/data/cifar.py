"""CIFAR-100 through torchvision, from the official python-pickle archive.

Layout: `<data.root>/cifar-100-python/{train,test,meta}` (what torchvision's download
extracts). torchvision verifies the archive's checksum when it downloads; on load this
subclass checks that the files exist rather than re-hashing 160 MB at every start (which
also lets tests use small files written in the same pickle format).
"""

from __future__ import annotations

import os
import pickle

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR100

from core.data import DATASETS
from core.data.spec import DatasetInfo, DatasetSpec
from core.errors import DatasetNotFound


def cifar_files(root: str | os.PathLike) -> list[str]:
    """The three pickles torchvision reads: train, test and meta."""
    folder = os.path.join(root, CIFAR100.base_folder)
    names = [name for name, _ in CIFAR100.train_list + CIFAR100.test_list] + [CIFAR100.meta["filename"]]
    return [os.path.join(folder, name) for name in names]


class PresentCIFAR100(CIFAR100):
    """torchvision's CIFAR100 that trusts files already on disk (see module docstring)."""

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(path) for path in cifar_files(self.root))

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


@DATASETS.register("cifar100")
class Cifar100(DatasetSpec):
    """CIFAR-100: 50,000 training and 10,000 test images of 32x32, 100 classes."""

    info = DatasetInfo(
        num_classes=100,
        image_size=32,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        family="cifar",
    )

    def prepare(self) -> None:
        if all(os.path.isfile(path) for path in cifar_files(self.root)):
            return
        if self.download:
            PresentCIFAR100(str(self.root), train=True, download=True)
            return
        raise DatasetNotFound(
            f"CIFAR-100 not found at {self.root / CIFAR100.base_folder}; run with data.download=true to fetch it "
            f"(needs internet), or extract cifar-100-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html into {self.root}"
        )

    def split(self, train: bool, image_size: int) -> Dataset:
        return PresentCIFAR100(str(self.root), train=train, download=False)
