"""Datasets with transforms, fixed subsets, and a resumable, seed-exact epoch order.

Reproducibility contract: the images a training step sees depend only on the run seed, the
epoch and the position in the epoch. The order of epoch `e` is a permutation drawn from a
stream derived from (seed, e); each position also gets its own augmentation seed, and the
sample's random transforms run under that seed (in whichever worker process loads it). So a
run resumed at step k of an epoch starts its sampler at position k * batch_size and sees
exactly the images, crops and flips an uninterrupted run would have seen, whatever the
number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, Subset

from core.config import RunConfig
from core.data import dataset_spec
from core.data.spec import DatasetInfo
from core.data.transforms import AUGMENTATIONS, Recipe, batch_transform, recipe_name, test_transform, train_transform
from core.seeding import DATA_ORDER, LOADER, SAMPLE_AUGMENT, derive_seed, derive_seeds


class TransformedDataset(Dataset):
    """Applies `transform` to the image of each (image, label) item.

    Keys are plain indices (deterministic transforms, e.g. for evaluation) or
    (index, seed) pairs from `EpochSampler`, in which case the transform's randomness is
    drawn from a generator seeded with `seed`, leaving the caller's RNG untouched. A transform
    that draws nothing (`random=False`: no augmentation) skips the seeding, which costs more
    than the transform itself (~1 ms per image on a CPU, most of a small network's step).
    """

    def __init__(self, base: Dataset, transform: Callable, random: bool = True) -> None:
        self.base = base
        self.transform = transform
        self.random = random

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple) and not self.random:
            key = key[0]
        if isinstance(key, tuple):
            index, seed = key
            image, label = self.base[index]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.transform(image), label
        image, label = self.base[key]
        return self.transform(image), label


class EpochSampler(Sampler[tuple[int, int]]):
    """The (index, augmentation seed) sequence of one epoch, from position `start` on.

    With `repeats` > 1 (repeated augmentation), each drawn index appears `repeats` times in a
    row and the sequence is cut back to the dataset length, so an epoch keeps its number of
    steps while seeing `1/repeats` of the images, each under several augmentations.
    """

    def __init__(self, size: int, seed: int, epoch: int, repeats: int = 1, start: int = 0) -> None:
        generator = torch.Generator().manual_seed(derive_seed(seed, DATA_ORDER, epoch))
        order = torch.randperm(size, generator=generator)
        if repeats > 1:
            order = order.repeat_interleave(repeats)[:size]
        self.order = order.tolist()
        self.seeds = derive_seeds(size, seed, SAMPLE_AUGMENT, epoch).tolist()
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self.order[self.start :], self.seeds[self.start :]))

    def __len__(self) -> int:
        return len(self.order) - self.start


class ShardBatches(Sampler[list[tuple[int, int]]]):
    """Rank `rank`'s part of every global batch of `sampler` (data-parallel training).

    The global batches are those of a single process; each is cut into `world` near-equal
    consecutive parts, so the images of a step do not depend on the number of processes.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, rank: int, world: int) -> None:
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for chunk in BatchSampler(self.sampler, self.batch_size, drop_last=False):
            n = len(chunk)
            part = chunk[self.rank * n // self.world : (self.rank + 1) * n // self.world]
            yield part or [chunk[self.rank % n]]  # a last batch smaller than the world

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def fixed_subset(dataset: Dataset, limit: Optional[int]) -> Dataset:
    """The same `limit` items for every run (a permutation seeded with 0), in index order."""
    size = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= size:
        return dataset
    chosen = torch.randperm(size, generator=torch.Generator().manual_seed(0))[:limit]
    return Subset(dataset, sorted(chosen.tolist()))


@dataclass
class DataBundle:
    """Everything the engine needs from the data side of a run."""

    info: DatasetInfo
    image_size: int
    recipe_name: str
    recipe: Recipe
    train_set: TransformedDataset
    test_set: TransformedDataset
    batch_mix: Optional[Callable[..., Any]]
    batch_size: int
    eval_batch_size: int
    workers: int
    pin_memory: bool
    seed: int
    rank: int = 0  # data-parallel rank and world size: each rank loads its part of a batch
    world: int = 1

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_set) // self.batch_size)

    def train_loader(self, epoch: int, start_step: int = 0) -> DataLoader:
        sampler = EpochSampler(len(self.train_set), self.seed, epoch, self.recipe.repeats, start_step * self.batch_size)
        batching: dict[str, Any] = {"batch_size": self.batch_size, "sampler": sampler}
        if self.world > 1:
            batching = {"batch_sampler": ShardBatches(sampler, self.batch_size, self.rank, self.world)}
        return DataLoader(
            self.train_set,
            **batching,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            # The loader draws its workers' base seed from this generator; from the global
            # one it would shift the training RNG by a draw each time an epoch is resumed.
            generator=torch.Generator().manual_seed(derive_seed(self.seed, LOADER, epoch)),
        )

    def test_loader(self) -> DataLoader:
        return DataLoader(
            self.test_set,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
        )


def build_data(cfg: RunConfig, pin_memory: bool = False, rank: int = 0, world: int = 1) -> DataBundle:
    spec = dataset_spec(cfg.data)
    spec.prepare()
    info = spec.info
    image_size = cfg.data.image_size or info.image_size
    name = recipe_name(cfg.data.augment, cfg.model.name, info, image_size)
    recipe = AUGMENTATIONS[name]
    train = fixed_subset(spec.split(train=True, image_size=image_size), cfg.data.train_limit)
    test = fixed_subset(spec.split(train=False, image_size=image_size), cfg.data.test_limit)
    return DataBundle(
        info=info,
        image_size=image_size,
        recipe_name=name,
        recipe=recipe,
        train_set=TransformedDataset(train, train_transform(recipe, info, image_size), random=recipe.random),
        test_set=TransformedDataset(test, test_transform(recipe, info, image_size)),
        batch_mix=batch_transform(recipe, info.num_classes),
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        workers=cfg.data.workers,
        pin_memory=pin_memory,
        seed=cfg.seed,
        rank=rank,
        world=world,
    )
