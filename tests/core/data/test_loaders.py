from __future__ import annotations

import torch

from core.resolve import load
from core.data.loaders import EpochSampler, build_data, fixed_subset
from core.data.transforms import AUGMENTATIONS, recipe_name


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = list(EpochSampler(50, seed=3, epoch=2))
    assert a == list(EpochSampler(50, seed=3, epoch=2))
    assert a != list(EpochSampler(50, seed=3, epoch=1))
    assert a != list(EpochSampler(50, seed=4, epoch=2))
    assert sorted(i for i, _ in a) == list(range(50))


def test_resuming_an_epoch_continues_the_same_sequence():
    full = list(EpochSampler(40, seed=0, epoch=5))
    assert list(EpochSampler(40, seed=0, epoch=5, start=24)) == full[24:]
    assert len(EpochSampler(40, seed=0, epoch=5, start=24)) == 16


def test_repeated_augmentation_repeats_indices_with_fresh_seeds():
    items = list(EpochSampler(30, seed=1, epoch=0, repeats=3))
    indices = [i for i, _ in items]
    assert len(items) == 30 and len(set(indices)) == 10
    assert all(indices[k] == indices[k + 1] == indices[k + 2] for k in range(0, 30, 3))
    assert len({s for _, s in items}) == 30  # every copy is augmented differently


def test_sample_transforms_use_their_own_seed_and_leave_the_global_rng_alone():
    data = build_data(load(["data.name=synthetic", "data.augment=lee2021", "model.name=vit"]))
    state = torch.get_rng_state()
    first = data.train_set[(7, 123)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, data.train_set[(7, 123)][0])
    assert any(not torch.equal(first, data.train_set[(7, seed)][0]) for seed in range(124, 130))


def test_without_augmentation_an_item_is_the_same_with_or_without_its_seed():
    assert [name for name, recipe in AUGMENTATIONS.items() if not recipe.random] == ["none"]
    data = build_data(load(["data.name=synthetic", "data.augment=none", "data.options.train_size=16"]))
    assert not data.train_set.random
    state = torch.get_rng_state()
    seeded = [data.train_set[(i, 1000 + i)][0] for i in range(4)]
    assert torch.equal(torch.get_rng_state(), state)
    # the seeded path (what every augmented recipe takes) gives the same images for a transform that draws nothing
    data.train_set.random = True
    assert all(torch.equal(a, data.train_set[(i, 7)][0]) for i, a in enumerate(seeded))
    assert all(torch.equal(a, data.train_set[i][0]) for i, a in enumerate(seeded))


def test_batches_do_not_depend_on_the_number_of_workers():
    def batches(workers: int) -> list[torch.Tensor]:
        cfg = load(["data.name=synthetic", "data.options.train_size=64", f"data.workers={workers}", "train.batch_size=16"])
        return [images for images, _ in build_data(cfg).train_loader(epoch=1, start_step=1)]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 3
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_lee2021_mixes_some_batches_into_class_probabilities():
    data = build_data(load(["model.name=vit", "data.name=synthetic", "train.batch_size=8"]))
    assert data.recipe_name == "lee2021" and data.recipe.repeats == 3
    torch.manual_seed(0)
    images, labels = next(iter(data.train_loader(epoch=0)))
    mixed = 0
    for _ in range(20):
        out_images, out_labels = data.batch_mix(images, labels)
        if out_labels.ndim == 2:
            mixed += 1
            assert out_labels.shape == (8, 10)
            assert torch.allclose(out_labels.sum(1), torch.ones(8))
        else:
            assert torch.equal(out_labels, labels) and torch.equal(out_images, images)
    assert 0 < mixed < 20


def test_auto_recipe_by_model_family_and_dataset():
    from core.data import dataset_spec

    cifar = dataset_spec(load(["data.name=cifar100"]).data).info
    imagenet = dataset_spec(load(["data.name=imagenet"]).data).info
    tiny = dataset_spec(load(["data.name=tinyimagenet"]).data).info
    assert recipe_name("auto", "resnet50", cifar, 32) == "cifar"
    assert recipe_name("auto", "wrn28_10", tiny, 64) == "cifar"
    assert recipe_name("auto", "resnet50", imagenet, 224) == "imagenet"
    assert recipe_name("auto", "swin", cifar, 32) == "lee2021"
    assert recipe_name("none", "vit", cifar, 32) == "none"
    assert set(AUGMENTATIONS) == {"none", "cifar", "lee2021", "imagenet"}


def test_limits_take_a_fixed_subset():
    items = list(range(100))
    a, b = fixed_subset(items, 10), fixed_subset(items, 10)
    assert list(a) == list(b) and len(a) == 10 and list(a) == sorted(a)
    assert fixed_subset(items, None) is items and fixed_subset(items, 500) is items
    data = build_data(load(["data.name=digits", "data.train_limit=100", "data.test_limit=50"]))
    assert (len(data.train_set), len(data.test_set)) == (100, 50)
