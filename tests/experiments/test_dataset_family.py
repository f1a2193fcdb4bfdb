"""Add a dataset (docs/architecture.md), followed once: a dataset module alone, with no recipe of
its own, runs a grid on its family's recipes (recipes.yaml `families`)."""

from __future__ import annotations

import pytest

from core.data import DATASETS
from core.errors import ConfigError
from experiments.spec import expand, preflight

TOY = '''
"""A CIFAR-like toy dataset, declared outside the suite."""
import torch
from core.data import DATASETS, DatasetInfo, DatasetSpec
from core.data.spec import LabelledImages


@DATASETS.register("toy_cifar")
class ToyCifar(DatasetSpec):
    info = DatasetInfo(num_classes=20, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), family="cifar")

    def prepare(self):
        pass

    def split(self, train, image_size):
        n = 64 if train else 32
        return LabelledImages(torch.zeros(n, 3, image_size, image_size, dtype=torch.uint8), torch.arange(n) % 20)
'''


@pytest.fixture
def toy_dataset(plugin):
    return plugin("toy_cifar", TOY, DATASETS)


def _grid(tmp_path, dataset: str) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\nbase: {{data.name: {dataset}, model.name: resnet50}}\n"
                    "blocks:\n  - product: {prune.method: [dense]}\n")
    return str(path)


def test_a_new_cifar_like_dataset_takes_cifar100s_recipe(toy_dataset, tmp_path):
    (ours,) = expand(_grid(tmp_path, "toy_cifar"), "paper").cells
    (cifar,) = expand(_grid(tmp_path, "cifar100"), "paper").cells
    assert ours.cfg.data.name == "toy_cifar" and ours.cfg.train == cifar.cfg.train and ours.cfg.model == cifar.cfg.model
    assert ours.cfg.data.image_size == cifar.cfg.data.image_size == 32
    preflight([expand(_grid(tmp_path, "toy_cifar"), "paper")])  # its network: ResNet-50 for 20 classes
    mini = expand(_grid(tmp_path, "toy_cifar"), "mini").cells  # mini stands digits in, as for every dataset
    assert len(mini) == 3 and {cell.cfg.data.name for cell in mini} == {"digits"}


def test_a_dataset_whose_family_has_no_recipe_for_the_model_is_one_line(tmp_path):
    path = tmp_path / "vit.yaml"
    path.write_text("name: vit\nbase: {data.name: imagenet, model.name: vit}\nblocks:\n  - product: {prune.method: [dense]}\n")
    with pytest.raises(ConfigError, match=r"recipes.yaml has no paper recipe for data.name=imagenet model.name=vit "
                                          r"\(nor its dataset family's\)"):
        expand(str(path), "paper")
