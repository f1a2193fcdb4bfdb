"""ImageNet-1k from `train/` and `val/` folders with one sub-folder per class.

Layout: `<data.root>/imagenet/train/<wnid>/*.JPEG` and `<data.root>/imagenet/val/<wnid>/*.JPEG`
(the validation images sorted into class folders, as most clusters keep them). ImageNet is
not downloadable: it must be obtained from image-net.org under its licence.
"""

from __future__ import annotations

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from core.data import DATASETS
from core.data.spec import DatasetInfo, DatasetSpec
from core.errors import DatasetNotFound

FOLDER = "imagenet"


@DATASETS.register("imagenet")
class ImageNet(DatasetSpec):
    """ImageNet-1k: 1.28M training and 50,000 validation images, 1000 classes, 224 px."""

    info = DatasetInfo(
        num_classes=1000,
        image_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        family="imagenet",
    )

    def prepare(self) -> None:
        folder = self.root / FOLDER
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return
        raise DatasetNotFound(
            f"ImageNet not found at {folder} (needs train/ and val/ with one folder per class); "
            f"it cannot be downloaded automatically: obtain ILSVRC2012 from https://image-net.org, "
            f"sort val/ into class folders, and set data.root to the folder holding imagenet/"
        )

    def split(self, train: bool, image_size: int) -> Dataset:
        folder = self.root / FOLDER
        dataset = ImageFolder(str(folder / ("train" if train else "val")))
        if not train and dataset.classes != find_classes(str(folder / "train"))[0]:
            raise DatasetNotFound(f"{folder}/val has other class folders than {folder}/train")
        return dataset
