"""Tiny ImageNet (200 classes, 64x64) in its official folder layout.

Layout under `<data.root>/tiny-imagenet-200/` (the extracted official zip):
- `wnids.txt`: the 200 class ids; labels are their positions in sorted order;
- `train/<wnid>/images/*.JPEG`: 500 training images per class;
- `val/images/*.JPEG` with `val/val_annotations.txt` (file, wnid, box): the 10,000 labelled
  images the paper evaluates on (the official test split has no labels).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader, find_classes
from torchvision.datasets.utils import download_and_extract_archive

from core.data import DATASETS
from core.data.spec import DatasetInfo, DatasetSpec
from core.errors import DatasetNotFound

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"


class TinyImageNetVal(Dataset):
    """The labelled validation split, read through `val_annotations.txt`."""

    def __init__(self, folder: Path, class_to_idx: dict[str, int]) -> None:
        self.samples: list[tuple[Path, int]] = []
        for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
            if not line.strip():
                continue
            filename, wnid = line.split("\t")[:2]
            if wnid not in class_to_idx:
                raise DatasetNotFound(f"{folder}/val/val_annotations.txt names class {wnid} absent from train/")
            self.samples.append((folder / "val" / "images" / filename, class_to_idx[wnid]))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return default_loader(str(path)), label


@DATASETS.register("tinyimagenet")
class TinyImageNet(DatasetSpec):
    """Tiny ImageNet: 100,000 training and 10,000 validation images of 64x64, 200 classes."""

    info = DatasetInfo(
        num_classes=200,
        image_size=64,
        mean=(0.4802, 0.4481, 0.3975),
        std=(0.2770, 0.2691, 0.2821),
        family="imagenet",
    )

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    def _present(self) -> bool:
        f = self.folder
        return (f / "train").is_dir() and (f / "val" / "images").is_dir() and (f / "val" / "val_annotations.txt").is_file()

    def prepare(self) -> None:
        if self._present():
            return
        if self.download:
            download_and_extract_archive(URL, download_root=str(self.root), md5=MD5)
            if self._present():
                return
        raise DatasetNotFound(
            f"Tiny ImageNet not found at {self.folder} (needs train/ and val/ with "
            f"val_annotations.txt); run with data.download=true to fetch it (needs internet), "
            f"or download {URL} and unzip it into {self.root}"
        )

    def split(self, train: bool, image_size: int) -> Dataset:
        if train:
            return ImageFolder(str(self.folder / "train"))
        return TinyImageNetVal(self.folder, find_classes(str(self.folder / "train"))[1])
