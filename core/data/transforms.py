"""Augmentation recipes, as data, built from torchvision's v2 transforms.

A recipe has three parts: a per-image training pipeline, an optional batch-level mix
(MixUp/CutMix) and a repeat count for repeated augmentation. The recipes follow Appendix A of
the paper:
- `cifar`: random crop with 4 px zero padding and horizontal flip (the CNN recipe on
  CIFAR-100 and Tiny ImageNet);
- `lee2021`: the small-dataset ViT recipe of Lee et al. (2021), which the paper uses for ViT
  and Swin: flip, padded crop, AutoAugment (CIFAR-10 policy on CIFAR-like data, ImageNet
  policy otherwise), random erasing (p 0.25, area 2-40 %, aspect 0.3-3.3, filled with the
  mean colour, i.e. 0 after normalisation), MixUp (alpha 1) or CutMix (alpha 1) on half of
  the batches, and 3 repeated augmentations per sampled image. Label smoothing (0.1 in that
  recipe) and stochastic depth (0.1) live in `train.label_smoothing` and the model options;
- `imagenet`: random-resized crop and flip for training; resize to 1/0.875 and centre crop
  for testing (the standard pipeline of the works the paper cites);
- `none`: resize and normalise only.
`auto` picks `lee2021` for transformers, `imagenet` for CNNs on 224 px ImageNet-family data
and `cifar` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torchvision.transforms import v2

from core.data.spec import DatasetInfo

TRANSFORMER_MODELS = ("vit", "swin")


@dataclass(frozen=True)
class Recipe:
    crop: str  # "none" | "pad" (random crop after zero padding) | "resized" (random-resized crop)
    flip: bool
    autoaugment: bool = False
    random_erasing: float = 0.0  # probability
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 0.0  # share of batches mixed (MixUp or CutMix, even odds)
    repeats: int = 1  # repeated augmentation: copies of each sampled image per epoch
    crop_padding: int = 4

    @property
    def random(self) -> bool:
        """Whether the per-image transform draws random numbers (MixUp/CutMix act on batches)."""
        return self.crop != "none" or self.flip or self.autoaugment or self.random_erasing > 0


AUGMENTATIONS: dict[str, Recipe] = {
    "none": Recipe(crop="none", flip=False),
    "cifar": Recipe(crop="pad", flip=True),
    "lee2021": Recipe(
        crop="pad",
        flip=True,
        autoaugment=True,
        random_erasing=0.25,
        mixup_alpha=1.0,
        cutmix_alpha=1.0,
        mix_prob=0.5,
        repeats=3,
    ),
    "imagenet": Recipe(crop="resized", flip=True),
}


def recipe_name(augment: str, model: str, info: DatasetInfo, image_size: int) -> str:
    """Resolve `data.augment=auto` by model family and dataset."""
    if augment != "auto":
        return augment
    if model in TRANSFORMER_MODELS:
        return "lee2021"
    if info.family == "imagenet" and image_size >= 128:
        return "imagenet"
    return "cifar"


def train_transform(recipe: Recipe, info: DatasetInfo, image_size: int) -> v2.Compose:
    ops: list[Callable] = [v2.ToImage()]
    if recipe.crop == "resized":
        ops.append(v2.RandomResizedCrop(image_size, antialias=True))
    else:
        ops.append(v2.Resize(image_size, antialias=True) if info.image_size != image_size else v2.Identity())
        if recipe.crop == "pad":
            ops.append(v2.RandomCrop(image_size, padding=recipe.crop_padding))
    if recipe.flip:
        ops.append(v2.RandomHorizontalFlip())
    if recipe.autoaugment:
        policy = v2.AutoAugmentPolicy.CIFAR10 if info.family == "cifar" else v2.AutoAugmentPolicy.IMAGENET
        ops.append(v2.AutoAugment(policy))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    if recipe.random_erasing > 0:
        ops.append(v2.RandomErasing(p=recipe.random_erasing, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    return v2.Compose(ops)


def test_transform(recipe: Recipe, info: DatasetInfo, image_size: int) -> v2.Compose:
    ops: list[Callable] = [v2.ToImage()]
    if recipe.crop == "resized":
        ops += [v2.Resize(int(round(image_size / 0.875)), antialias=True), v2.CenterCrop(image_size)]
    elif info.image_size != image_size:
        ops.append(v2.Resize(image_size, antialias=True))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    return v2.Compose(ops)


def batch_transform(recipe: Recipe, num_classes: int) -> Optional[Callable]:
    """MixUp or CutMix on a `mix_prob` share of batches; labels become class probabilities."""
    if recipe.mix_prob <= 0:
        return None
    mixes = []
    if recipe.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=recipe.mixup_alpha, num_classes=num_classes))
    if recipe.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=recipe.cutmix_alpha, num_classes=num_classes))
    return v2.RandomApply([v2.RandomChoice(mixes)], p=recipe.mix_prob)
