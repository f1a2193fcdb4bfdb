"""Fashion-MNIST, on tiny IDX files written in the real format (plain and gzipped)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from core.resolve import load
from core.data import dataset_spec, prepare_dataset
from core.data import fashion_mnist as fm
from core.data.loaders import build_data
from core.errors import ConfigError, DatasetNotFound

N_TRAIN, N_TEST = 60, 30  # 6 and 3 images per class


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """The IDX format: zero, zero, type 0x08 (ubyte), the number of dimensions, big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def split_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose top-left pixel is their index; labels a shuffled, balanced 0-9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, rng.permutation(np.arange(n) % 10).astype(np.uint8)


def write_fashion(folder: Path, gz: bool, seed: int = 0) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {True: split_arrays(N_TRAIN, seed), False: split_arrays(N_TEST, seed + 1)}
    for train, (images, labels) in arrays.items():
        images_stem, labels_stem = fm.STEMS[train]
        write_idx(folder / images_stem, images, gz)
        write_idx(folder / labels_stem, labels, gz)
    return arrays


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Debian's folder pointed at an empty place, whatever this machine has installed."""
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "no-debian")


def _cfg(root: Path, *extra: str):
    return load(["data.name=fashion_mnist", f"data.root={root}", *extra])


def _spec(root: Path, *extra: str):
    return dataset_spec(_cfg(root, *extra).data)


@pytest.mark.parametrize("gz", [False, True])
def test_reads_torchvision_layout_under_data_root(tmp_path, no_debian, gz):
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw", gz)
    spec = _spec(tmp_path)
    spec.prepare()
    assert spec.info.num_classes == 10 and spec.info.image_size == 28 and spec.info.family == "cifar"
    for train, n in ((True, N_TRAIN), (False, N_TEST)):
        data = spec.split(train, 28)
        images, labels = data.tensors
        assert images.shape == (n, 3, 28, 28) and images.dtype == torch.uint8
        # At the native size the pixels are the file's, on each of the three channels.
        expected = torch.from_numpy(arrays[train][0])
        assert all(torch.equal(images[:, c], expected) for c in range(3))
        assert labels.tolist() == arrays[train][1].tolist()
        image, label = data[3]
        assert isinstance(label, int) and label == int(arrays[train][1][3])


@pytest.mark.parametrize("gz", [True, False])
def test_reads_debian_folder_in_place(tmp_path, monkeypatch, gz):
    debian = tmp_path / "debian" / "fashion-mnist"
    arrays = write_fashion(debian, gz)
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", debian)
    before = sorted(p.name for p in debian.iterdir())
    spec = _spec(tmp_path / "root")
    spec.prepare()
    labels = spec.split(False, 28).tensors[1]
    assert labels.tolist() == arrays[False][1].tolist()
    # Used in place: nothing written beside the files, nothing under data.root.
    assert sorted(p.name for p in debian.iterdir()) == before
    assert not (tmp_path / "root").exists()


def test_data_root_comes_before_debian(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_fashion(debian, gz=True, seed=10)
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", debian)
    ours = write_fashion(tmp_path / "root" / "FashionMNIST" / "raw", gz=False, seed=20)
    assert fm.find_folder(tmp_path / "root") == tmp_path / "root" / "FashionMNIST" / "raw"
    labels = _spec(tmp_path / "root").split(True, 28).tensors[1]
    assert labels.tolist() == ours[True][1].tolist()
    # An incomplete folder under data.root does not hide Debian's.
    (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert fm.find_folder(tmp_path / "root") == debian


def test_subsets_are_fixed_and_stratified(tmp_path, no_debian):
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw", gz=True)
    spec = _spec(tmp_path, "data.options.train_size=20", "data.options.test_size=13")
    train, test = spec.split(True, 28), spec.split(False, 28)
    assert (len(train), len(test)) == (20, 13)
    assert torch.bincount(train.tensors[1], minlength=10).tolist() == [2] * 10
    # 13 = 10 + 3: one more for classes 0, 1 and 2.
    assert torch.bincount(test.tensors[1], minlength=10).tolist() == [2, 2, 2] + [1] * 7
    # Deterministic (a fresh spec, a new process would agree: the permutation is seeded with 0) ...
    again = _spec(tmp_path, "data.options.train_size=20").split(True, 28)
    assert torch.equal(train.tensors[0], again.tensors[0]) and torch.equal(train.tensors[1], again.tensors[1])
    # ... in file order, each image with its own label, and nested in larger subsets.
    index = train.tensors[0][:, 0, 0, 0].long()
    assert index.tolist() == sorted(index.tolist())
    assert train.tensors[1].tolist() == arrays[True][1][index.numpy()].tolist()
    bigger = _spec(tmp_path, "data.options.train_size=30").split(True, 28).tensors[0][:, 0, 0, 0].long()
    assert set(index.tolist()) <= set(bigger.tolist())
    # The rule itself, on a large balanced set: equal counts per class for a multiple of ten.
    labels = torch.arange(60_000) % 10
    chosen = fm.stratified_subset(labels, 6_000)
    assert len(chosen.unique()) == 6_000 and torch.bincount(labels[chosen]).tolist() == [600] * 10
    assert torch.equal(chosen, fm.stratified_subset(labels, 6_000))


def test_images_at_a_requested_size(tmp_path, no_debian):
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    images = _spec(tmp_path, "data.options.train_size=10").split(True, 32).tensors[0]
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])

    data = build_data(_cfg(tmp_path, "data.image_size=32", "data.options.train_size=20", "train.batch_size=4"))
    batch, labels = next(iter(data.train_loader(epoch=0)))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.float32 and labels.shape == (4,)
    assert data.info.num_classes == 10 and data.recipe_name == "cifar" and len(data.test_set) == N_TEST


def test_missing_names_both_places_and_both_ways(tmp_path, no_debian):
    with pytest.raises(DatasetNotFound) as info:
        prepare_dataset(_cfg(tmp_path / "nowhere").data)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in message and str(tmp_path / "no-debian") in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.download=true" in message


def test_download_uses_torchvision_into_data_root(tmp_path, no_debian, monkeypatch):
    calls = []

    def fake_download(self):  # torchvision's download: the four files, extracted, in raw_folder
        calls.append(self.raw_folder)
        write_fashion(Path(self.raw_folder), gz=False)

    monkeypatch.setattr(fm.FashionMNIST, "download", fake_download)
    spec = _spec(tmp_path, "data.download=true")
    spec.prepare()
    assert calls == [str(tmp_path / "FashionMNIST" / "raw")]
    assert len(spec.split(True, 28)) == N_TRAIN
    spec.prepare()  # present now: no second download
    assert len(calls) == 1


def test_options_are_validated(tmp_path, no_debian):
    for bad in ("data.options.train_size=0", "data.options.test_size=-5", "data.options.train_size=60001",
                "data.options.test_size=10001"):
        with pytest.raises(ConfigError, match="data.options"):
            _cfg(tmp_path, bad)
    with pytest.raises(ConfigError):
        _cfg(tmp_path, "data.options.train_size=many")
    with pytest.raises(ConfigError):
        _cfg(tmp_path, "data.options.valid_size=10")
    # Above the images actually in the files: found when the split is read, in one line.
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=True)
    spec = _spec(tmp_path, "data.options.train_size=61")
    with pytest.raises(ConfigError) as info:
        spec.split(True, 28)
    assert "train_size=61" in str(info.value) and "\n" not in str(info.value)
    assert len(spec.split(False, 28)) == N_TEST


def test_each_split_is_decoded_once(tmp_path, no_debian, monkeypatch):
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=True)
    reads = []
    original = fm.LocatedFashionMNIST._load_data

    def counting(self):
        reads.append(self.train)
        return original(self)

    monkeypatch.setattr(fm.LocatedFashionMNIST, "_load_data", counting)
    for size in (10, 20, None):
        extra = [f"data.options.train_size={size}"] if size else []
        _spec(tmp_path, *extra).split(True, 28)
    assert reads == [True]


REAL = fm.DEBIAN_FOLDER


@pytest.mark.skipif(
    not all(fm.idx_file(REAL, stem) for stem in fm.ALL_STEMS), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_the_real_debian_files(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", REAL)
    spec = _spec(tmp_path / "empty-root")
    spec.prepare()
    train, test = spec.split(True, 28), spec.split(False, 28)
    assert (len(train), len(test)) == (60_000, 10_000)
    image, label = train[0]
    assert image.shape == (3, 28, 28) and image.dtype == torch.uint8 and label == 9  # an ankle boot
    assert [train[i][1] for i in range(1, 5)] == [0, 0, 3, 0]
    assert torch.bincount(train.tensors[1]).tolist() == [6_000] * 10
    pixels = train.tensors[0][:, 0].double() / 255
    assert spec.info.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-4)
    assert spec.info.std[0] == pytest.approx(pixels.std().item(), abs=1e-4)
    subset = _spec(tmp_path / "empty-root", "data.options.train_size=6000").split(True, 28)
    assert torch.bincount(subset.tensors[1]).tolist() == [600] * 10
