"""The real loaders, on tiny files written in the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.resolve import load
from core.data import DATASETS, dataset_spec, prepare_dataset
from core.data.loaders import build_data
from core.errors import DatasetNotFound


def _cifar_pickle(path: Path, images: np.ndarray, labels: list[int]) -> None:
    # The official archive's layout: (N, 3072) uint8 rows, channel-major, and fine labels.
    entry = {"data": images.reshape(len(labels), -1), "fine_labels": labels, "coarse_labels": [0] * len(labels)}
    path.write_bytes(pickle.dumps(entry))


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 6) -> np.ndarray:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(n_train, 3, 32, 32), dtype=np.uint8)
    _cifar_pickle(folder / "train", train, [i % 100 for i in range(n_train)])
    _cifar_pickle(folder / "test", rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8), [99 - i for i in range(n_test)])
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}))
    return train


def _jpeg(path: Path, size: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, value // 2)).save(path, "JPEG")


def write_tinyimagenet(root: Path) -> list[str]:
    folder = root / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # deliberately unsorted, as the real file is
    (folder).mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for i in range(2):
            _jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 64, 10 * i)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate(["n03", "n01", "n02", "n03"]):
        _jpeg(folder / "val" / "images" / f"val_{i}.JPEG", 64, 50 * i)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return wnids


def write_imagenet(root: Path) -> None:
    for split, count in (("train", 2), ("val", 1)):
        for wnid in ("n01440764", "n01443537"):
            for i in range(count):
                _jpeg(root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG", 48 + 16 * i, 30 * i)


def _cfg(name: str, root: Path, *extra: str):
    return load([f"data.name={name}", f"data.root={root}", *extra])


def test_dataset_names_are_the_fixed_ones():
    assert DATASETS.names() == ["cifar100", "digits", "fashion_mnist", "imagenet", "synthetic", "tinyimagenet"]


def test_cifar100_reads_the_official_pickles(tmp_path):
    train_pixels = write_cifar100(tmp_path)
    spec = dataset_spec(_cfg("cifar100", tmp_path).data)
    spec.prepare()
    train, test = spec.split(True, 32), spec.split(False, 32)
    assert (len(train), len(test)) == (12, 6)
    image, label = train[5]
    assert label == 5 and image.size == (32, 32)
    # Pixel (row 0, col 0) of image 5, channel-major rows as in the archive.
    assert image.getpixel((0, 0)) == tuple(int(v) for v in train_pixels[5, :, 0, 0])
    assert test[0][1] == 99

    data = build_data(_cfg("cifar100", tmp_path, "train.batch_size=4"))
    images, labels = next(iter(data.train_loader(epoch=0)))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert data.info.num_classes == 100 and data.recipe_name == "cifar"


def test_tinyimagenet_reads_train_folders_and_val_annotations(tmp_path):
    wnids = write_tinyimagenet(tmp_path)
    spec = dataset_spec(_cfg("tinyimagenet", tmp_path).data)
    spec.prepare()
    train, val = spec.split(True, 64), spec.split(False, 64)
    order = sorted(wnids)
    assert len(train) == 6 and len(val) == 4
    assert [label for _, label in (val[i] for i in range(4))] == [order.index(w) for w in ["n03", "n01", "n02", "n03"]]
    assert train.classes == order
    data = build_data(_cfg("tinyimagenet", tmp_path, "train.batch_size=3"))
    images, _ = next(iter(data.train_loader(epoch=0)))
    assert images.shape == (3, 3, 64, 64) and data.info.num_classes == 200


def test_imagenet_reads_class_folders_at_224(tmp_path):
    write_imagenet(tmp_path)
    data = build_data(_cfg("imagenet", tmp_path, "train.batch_size=2"))
    assert data.recipe_name == "imagenet" and data.image_size == 224
    images, _ = next(iter(data.train_loader(epoch=0)))
    assert images.shape == (2, 3, 224, 224)
    test_images, labels = next(iter(data.test_loader()))
    assert test_images.shape == (2, 3, 224, 224) and labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("name", "needle"),
    [("cifar100", "cifar-100-python"), ("tinyimagenet", "tiny-imagenet-200"), ("imagenet", "imagenet")],
)
def test_missing_dataset_names_the_path_and_how_to_get_it(tmp_path, name, needle):
    with pytest.raises(DatasetNotFound) as info:
        prepare_dataset(_cfg(name, tmp_path / "nowhere").data)
    message = str(info.value)
    assert needle in message and str(tmp_path / "nowhere") in message and "\n" not in message
    assert ("data.download=true" in message) == (name != "imagenet")


def test_digits_is_a_fixed_real_split():
    spec = dataset_spec(load(["data.name=digits"]).data)
    train, test = spec.split(True, 32), spec.split(False, 32)
    assert (len(train), len(test)) == (1438, 359)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and 0 <= label < 10
    again = spec.split(True, 32)
    assert torch.equal(train.tensors[0], again.tensors[0])
    assert {int(y) for _, y in test} == set(range(10))


def test_synthetic_is_deterministic_shaped_and_learnable():
    cfg = load(["data.name=synthetic", "data.options.num_classes=7", "data.options.image_size=20"])
    spec = dataset_spec(cfg.data)
    assert spec.info.num_classes == 7 and spec.info.image_size == 20
    train, test = spec.split(True, 20), spec.split(False, 20)
    assert train.tensors[0].shape == (2048, 3, 20, 20)
    assert torch.equal(train.tensors[0], dataset_spec(cfg.data).split(True, 20).tensors[0])
    assert not torch.equal(train.tensors[0][:512], test.tensors[0])
    # Learnable: nearest class mean, fitted on the training split, classifies the test split.
    x_train, y_train = train.tensors[0].flatten(1).float(), train.tensors[1]
    x_test, y_test = test.tensors[0].flatten(1).float(), test.tensors[1]
    means = torch.stack([x_train[y_train == c].mean(0) for c in range(7)])
    accuracy = (torch.cdist(x_test, means).argmin(1) == y_test).float().mean()
    assert accuracy > 0.9
